"""Cache-affine routing and prompt-cache accounting through the real service and app: a long
prefix prefers the model that recently answered it, while its provider keeps it and where no
dearer; what caching did reaches the ledger, the headers, the decision log and the metrics."""

from __future__ import annotations

import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import prometheus_client
import pytest

from app.budget.pricing import TokenUsage
from app.config import parse_config
from app.observability.metrics import Metrics
from app.routing.affinity import (
    ANTHROPIC_CACHE_S,
    IMPLICIT_CACHE_S,
    PrefixAffinity,
    SharedPrefixes,
    cache_lifetime_s,
    prefix_of,
    shared_for,
)
from tests.fakes.backends import ScriptedBackend
from tests.support.wiring import app_client, default_config, log_records, make_service, scripted_backends
from tests.unit.redis_fixture import redis_url, unique_prefix  # noqa: F401

DOCUMENT = "clause " * 60_000  # ~105K characters of contract: a long stable prefix


class Clock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


def ask(question: str, document: str = DOCUMENT, **body: Any) -> dict[str, Any]:
    return {
        "model": "auto",
        "messages": [
            {"role": "system", "content": f"Answer from this contract.\n{document}"},
            {"role": "user", "content": question},
        ],
        **body,
    }


class CachingBackend(ScriptedBackend):
    """Reports a provider's cache use: a write the first time it sees a prefix, reads after."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.seen: set[str] = set()

    def _usage(self, request: dict[str, Any]) -> dict[str, Any]:
        usage: dict[str, Any] = dict(super()._usage(request))
        system = str(request["messages"][0]["content"])
        prompt = usage["prompt_tokens"]
        kind = "cached_tokens" if system in self.seen else "cache_write_tokens"
        self.seen.add(system)
        usage["prompt_tokens_details"] = {kind: prompt - 4}
        return usage


def without_prompt_caching() -> dict[str, Any]:
    """The default config with the router's prompt caching off on every provider."""
    raw = default_config().model_dump(mode="json")
    for provider in raw["providers"].values():
        provider["prompt_cache"] = False
    return raw


def service_with(
    clock: Clock,
    ledger: Path | None = None,
    raw: dict[str, Any] | None = None,
    shared: SharedPrefixes | None = None,
    **routing: Any,
):
    raw = raw or default_config().model_dump(mode="json")
    raw["routing"].update(routing)
    if ledger is not None:
        raw["ledger"]["path"] = str(ledger)
    config = parse_config(raw)
    backends: dict[str, Any] = scripted_backends(config)
    for name in ("claude-haiku", "gemini-flash", "gpt"):
        backends[name] = CachingBackend(name)
    metrics = Metrics(prometheus_client.CollectorRegistry())
    affinity = PrefixAffinity(config, clock, shared)
    return make_service(config, backends, clock=clock, metrics=metrics, affinity=affinity), backends, metrics


# --- the prefix -------------------------------------------------------------------------------------


def test_the_prefix_is_the_stable_part_known_by_its_hash_only() -> None:
    one, other = prefix_of(ask("What is the notice period?")), prefix_of(ask("Who pays for repairs?"))
    assert one is not None and other is not None
    assert one.key == other.key and len(one.key) == 64 and "clause" not in one.key
    assert one.tokens > 20_000
    assert prefix_of(ask("Who pays?", document="A short note.")) is None  # too short to cache
    changed = prefix_of(ask("What is the notice period?", document=DOCUMENT + " amended"))
    assert changed is not None and changed.key != one.key


def test_a_document_part_before_the_question_part_is_a_prefix_too() -> None:
    def parts(document: str, question: str) -> dict[str, Any]:
        content = [{"type": "text", "text": document}, {"type": "text", "text": question}]
        return {"model": "auto", "messages": [{"role": "user", "content": content}]}

    one, other = prefix_of(parts(DOCUMENT, "The notice period?")), prefix_of(parts(DOCUMENT, "Repairs?"))
    assert one is not None and other is not None and one.key == other.key and one.tokens > 20_000
    assert prefix_of(parts(DOCUMENT + " amended", "Repairs?")).key != one.key  # type: ignore[union-attr]
    assert prefix_of(parts("A short note.", "Who pays?")) is None  # too short to cache
    assert prefix_of(ask("The notice period?")).key != one.key  # type: ignore[union-attr]


# --- affinity ---------------------------------------------------------------------------------------


async def test_a_repeated_prefix_goes_back_to_the_model_that_has_it_cached() -> None:
    clock = Clock()
    service, _, _ = service_with(clock)
    first, _ = await service.complete(ask("Summarise it.", model="claude-haiku"), "r1")
    assert first["model"] == "claude-haiku"
    clock.now += 60
    with log_records() as records:
        answer, outcome = await service.complete(ask("What is the notice period?"), "r2")
    assert answer["model"] == "claude-haiku"
    assert outcome.plan.affinity == "claude-haiku"
    assert outcome.plan.primary.reason.startswith("cache affinity: its ~")
    assert "claude-haiku 60 s ago" in outcome.plan.primary.reason
    (decision,) = [r for r in records if r.get("event") == "route_decision"]
    assert decision["cache_affinity"] is True
    assert "clause" not in str(records)  # the prefix is a hash in every log line, never its text


async def test_affinity_lasts_as_long_as_the_provider_keeps_the_prefix() -> None:
    clock = Clock()
    service, _, _ = service_with(clock)
    await service.complete(ask("Summarise it.", model="claude-haiku"), "r1")
    clock.now += ANTHROPIC_CACHE_S - 1
    kept = await service.plan(ask("And the term?"))
    assert kept.primary.model == "claude-haiku"
    await service.complete(ask("And the term?"), "r2")  # a use refreshes Anthropic's cache
    clock.now += ANTHROPIC_CACHE_S - 1
    assert (await service.plan(ask("And the fees?"))).primary.model == "claude-haiku"
    clock.now += 2
    gone = await service.plan(ask("And the fees?"))
    assert gone.affinity is None and gone.primary.model != "claude-haiku"


def test_affinity_follows_whether_the_provider_keeps_the_prefix() -> None:
    on, off = default_config(), parse_config(without_prompt_caching())
    ttl = on.providers["vertex_ai"].prompt_cache_ttl_s
    lifetimes = {m: (cache_lifetime_s(on, m), cache_lifetime_s(off, m)) for m in on.models}
    assert lifetimes["claude-haiku"] == (ANTHROPIC_CACHE_S, 0.0)  # no breakpoints: Anthropic caches nothing
    assert lifetimes["gpt"] == (IMPLICIT_CACHE_S, IMPLICIT_CACHE_S)  # OpenAI's automatic cache
    assert lifetimes["gemini-flash"] == (ttl, IMPLICIT_CACHE_S)  # context caches, else the implicit one
    assert lifetimes["mistral-7b-instruct"] == (on.providers["self_hosted"].prompt_cache_ttl_s,) * 2  # vLLM
    raw = default_config().model_dump(mode="json")
    raw["providers"]["openai"].update(
        kind="openai_compatible", base_url="https://llm.example/v1"
    )  # caching unknown
    assert cache_lifetime_s(parse_config(raw), "gpt") == 0.0


@pytest.mark.parametrize(("model", "kept"), [("gemini-flash", True), ("gpt", True), ("claude-haiku", False)])
async def test_with_the_routers_caching_off_affinity_stays_where_the_provider_caches_by_itself(
    model: str, kept: bool
) -> None:
    clock = Clock()
    service, _, _ = service_with(clock, raw=without_prompt_caching())
    await service.complete(ask("Summarise it.", model=model), "r1")
    clock.now += IMPLICIT_CACHE_S - 1
    plan = await service.plan(ask("And the term?"))
    assert (plan.affinity == model) is kept
    clock.now += 2
    assert (await service.plan(ask("And the fees?"))).affinity is None


async def test_affinity_yields_where_the_cached_model_costs_more_than_the_choice_without() -> None:
    clock = Clock()
    service, _, _ = service_with(clock)
    short = "term " * 1_500  # ~1.9K tokens: fits the self-hosted models, still a cacheable prefix
    await service.complete(ask("Summarise it.", document=short, model="gpt"), "r1")
    plan = await service.plan(ask("And the term?", document=short, model="auto:1"))  # the cheapest
    pricer, tokens = service.catalog.pricer, plan.features.tokens
    cached = pricer.cost(
        "gpt", TokenUsage(input_tokens=tokens, cache_read_tokens=tokens - 10, output_tokens=256)
    )
    plain = pricer.cost(plan.primary.model, TokenUsage(input_tokens=tokens, output_tokens=256))
    assert cached > plain  # gpt with the prefix cached is still dearer than the self-hosted answer
    assert plan.primary.model == "mistral-7b-instruct" and plan.affinity is None


async def test_affinity_stays_within_what_the_strategy_allows_and_can_be_switched_off() -> None:
    clock = Clock()
    service, _, _ = service_with(clock)
    short = "term " * 1_500  # fits the self-hosted models too
    await service.complete(ask("Summarise it.", document=short, model="claude-haiku"), "r1")
    cloud = await service.plan(ask("And the term?", document=short, routing_strategy="cloud_only"))
    assert cloud.primary.model == "claude-haiku"
    private = await service.plan(
        ask(
            "And the term?",
            document=short,
            routing_strategy="private_first",
            metadata={"confidential": "true"},
        )
    )
    assert private.primary.provider == "self_hosted" and private.affinity is None
    off, _, _ = service_with(clock, cache_affinity=False)
    await off.complete(ask("Summarise it.", model="claude-haiku"), "r1")
    assert (await off.plan(ask("And the term?"))).affinity is None


async def test_a_failed_or_dry_run_request_teaches_no_affinity() -> None:
    clock = Clock()
    service, _, _ = service_with(clock)
    with app_client(service) as client:
        shown = client.post("/v1/route", json=ask("Summarise it.", model="claude-haiku"))
        assert shown.status_code == 200
    assert (await service.plan(ask("And the term?"))).affinity is None


# --- accounting -------------------------------------------------------------------------------------


def test_cache_use_reaches_headers_ledger_budget_view_log_and_metrics(tmp_path: Path) -> None:
    clock = Clock()
    # A ledger of its own (HYBRID_ROUTER_STATE_DIR keeps the folder, so the file name tells them apart).
    service, _, metrics = service_with(clock, tmp_path / f"ledger-{uuid.uuid4().hex}.db")
    body = ask("Summarise it.", model="claude-haiku")
    with app_client(service) as client, log_records() as records:
        first = client.post("/v1/chat/completions", json=body)
        second = client.post(
            "/v1/chat/completions",
            json={**body, "messages": [*body["messages"][:1], {"role": "user", "content": "The term?"}]},
        )
        budget = client.get("/v1/budget").json()
    assert first.status_code == second.status_code == 200
    written = int(first.headers["x-router-prompt-cache-write-tokens"])
    read = int(second.headers["x-router-prompt-cache-read-tokens"])
    assert written > 50_000 and read == written
    assert Decimal(first.headers["x-router-prompt-cache-saved-usd"]) < 0  # a write costs more
    assert Decimal(second.headers["x-router-prompt-cache-saved-usd"]) > 0
    usage = second.json()["usage"]
    pricer = service.catalog.pricer
    plain = pricer.cost(
        "claude-haiku",
        TokenUsage(input_tokens=usage["prompt_tokens"], output_tokens=usage["completion_tokens"]),
    )
    actual = pricer.cost(
        "claude-haiku",
        TokenUsage(
            input_tokens=usage["prompt_tokens"],
            cache_read_tokens=read,
            output_tokens=usage["completion_tokens"],
        ),
    )
    assert Decimal(second.headers["x-router-prompt-cache-saved-usd"]) == pytest.approx(
        plain - actual, abs=Decimal("1e-8")
    )
    cache = budget["prompt_cache"]
    assert cache["read_tokens"] == read and cache["write_tokens"] == written
    assert cache["saved_usd"] == pytest.approx(float(plain - actual), abs=1e-8)
    assert "prompt_cache.read_tokens" not in budget["budgets"]  # counters, never a budget
    decisions = [r for r in records if r.get("event") == "route_decision"]
    assert decisions[1]["prompt_cache"]["read_tokens"] == read
    assert metrics.sample("router_prompt_cache_tokens_total", model="claude-haiku", kind="read") == read
    assert metrics.sample("router_prompt_cache_tokens_total", model="claude-haiku", kind="write") == written
    assert metrics.sample("router_prompt_cache_saved_usd_total", model="claude-haiku") == pytest.approx(
        float(plain - actual)
    )


# --- shared between replicas ------------------------------------------------------------------------


async def test_replicas_sharing_redis_send_a_prefix_back_to_the_model_another_replica_used(
    redis_url: str,  # noqa: F811
) -> None:
    key_prefix = unique_prefix("affinity") + ":"
    one, _, _ = service_with(Clock(), shared=SharedPrefixes(redis_url, prefix=key_prefix))
    other, _, _ = service_with(Clock(), shared=SharedPrefixes(redis_url, prefix=key_prefix))
    try:
        await one.complete(ask("Summarise it.", model="claude-haiku"), "r1")
        await one.affinity.settled()
        plan = await other.plan(ask("What is the notice period?"))
        assert plan.affinity == "claude-haiku"
        assert plan.primary.reason.startswith("cache affinity: its ~")
    finally:
        await one.close()
        await other.close()


async def test_a_redis_that_fails_is_a_miss_logged_once_never_an_error() -> None:
    shared = SharedPrefixes("redis://127.0.0.1:1/0", timeout_s=0.05)  # nothing listens there
    service, _, _ = service_with(Clock(), shared=shared)
    with log_records() as records:
        await service.complete(ask("Summarise it.", model="claude-haiku"), "r1")
        await service.affinity.settled()
        fresh = await service.plan(ask("Another question.", document=DOCUMENT + " v2"))
        again = await service.plan(ask("And another.", document=DOCUMENT + " v3"))
    assert fresh.affinity is None and again.affinity is None
    assert (await service.plan(ask("The notice period?"))).affinity == "claude-haiku"  # still known here
    errors = [r for r in records if r.get("event") == "affinity_store_error"]
    assert len(errors) == 1 and "redis://" not in str(errors)
    await service.close()


def test_replicas_share_prefixes_through_the_routers_redis_when_it_has_one() -> None:
    config = default_config()
    assert shared_for(config, env={}) is None
    raw = config.model_dump(mode="json")
    raw["ledger"]["backend"] = "redis"
    with_redis = parse_config(raw)
    assert isinstance(shared_for(with_redis, env={"REDIS_URL": "redis://127.0.0.1:6379/0"}), SharedPrefixes)
    assert shared_for(with_redis, env={}) is None
