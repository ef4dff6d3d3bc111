"""Vertex AI Gemini prompt caching, implicit first: implicit cache hits reported and priced and
never followed by an explicit context cache; a prefix the implicit cache missed on a repeat gets
one on its next sighting, used after; a cache gone never failing a request. Through the real
google-genai SDK against ``FakeGemini`` on loopback (``implicit_enabled = False`` makes its
implicit cache miss)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio
from genai_prices import Usage, calc_price
from google.oauth2.credentials import Credentials

from app.backends.gemini_cache import ContextCaches, implicit_hit, split
from app.backends.gemini_client import GeminiBackend
from app.backends.gemini_translate import to_gemini_request
from app.budget.pricing import Pricer
from app.config import ModelSpec, ModelWeights, Pricing, ProviderSpec
from tests.conformance import assert_conforms
from tests.fakes.gemini_server import FakeGemini
from tests.support.fake_servers import fake_server_fixtures

MODEL = "gemini-2.5-flash"
PROJECT, LOCATION = "demo-project", "us-central1"
TTL_S = 600.0
SPEC = ModelSpec(
    provider="vertex_ai",
    model_id=MODEL,
    context_window=1_048_576,
    max_output_tokens=4096,
    weights=ModelWeights(cost=0.8, latency=0.8, quality=0.8),
    pricing=Pricing(provider_id="google"),
    typical_latency_ms=800,
)
DOC = " ".join(f"clause{i}" for i in range(1_500))  # ~12k characters: ~3k tokens by estimate
FLASH_STORAGE = Decimal("1.00")  # Google's list price, USD per 1M tokens per hour
on_module_loop = pytest.mark.asyncio(loop_scope="module")


def chat(question: str, system: str = DOC) -> dict[str, Any]:
    messages = [{"role": "system", "content": system}, {"role": "user", "content": question}]
    return {"model": MODEL, "messages": messages}


# --- pure ------------------------------------------------------------------------------------
def test_the_stable_prefix_is_the_system_and_the_leading_long_contents() -> None:
    body = to_gemini_request(
        {
            "model": MODEL,
            "messages": [
                {"role": "system", "content": "Be terse."},
                {"role": "user", "content": DOC},
                {"role": "assistant", "content": "Read."},
                {"role": "user", "content": "Question?"},
            ],
        }
    )
    found = split(body, MODEL, 2048)
    assert found is not None
    assert set(found.prefix) == {"systemInstruction", "contents"} and len(found.prefix["contents"]) == 1
    assert found.rest == body["contents"][1:] and DOC not in found.key
    again = to_gemini_request(chat("Other?", system="Be terse."))
    assert split(again, MODEL, 2048) is None  # short: no prefix worth a cache
    assert (
        split(to_gemini_request(chat("Q1")), MODEL, 2048).key
        == split(to_gemini_request(chat("Q2")), MODEL, 2048).key
    )  # type: ignore[union-attr]


def test_a_prefix_counts_as_seen_again_within_the_ttl_only() -> None:
    now = [0.0]
    caches = ContextCaches(TTL_S, clock=lambda: now[0])
    assert not caches.seen_again("k")
    now[0] += TTL_S - 1
    assert caches.seen_again("k")
    now[0] += TTL_S + 1
    assert not caches.seen_again("k")
    caches.add("k", "projects/p/locations/l/cachedContents/1", 100)
    assert caches.live("k") is not None
    now[0] += TTL_S - 10  # within the safety margin of its end: not used any more
    assert caches.live("k") is None


def usage(prompt: int, cached: int) -> dict[str, Any]:
    return {"prompt_tokens": prompt, "prompt_tokens_details": {"cached_tokens": cached}}


def test_an_implicit_hit_is_half_the_prefix_or_more_by_its_share_of_the_prompt() -> None:
    found = split(to_gemini_request(chat("Q")), MODEL, 2048)
    assert found is not None and 0.99 < found.share < 1
    assert implicit_hit(found, usage(1_000, 900)) and implicit_hit(found, usage(1_000, 500))
    assert not implicit_hit(found, usage(1_000, 400)) and not implicit_hit(found, usage(1_000, 0))


def test_only_an_implicit_miss_on_a_repeat_calls_for_a_context_cache() -> None:
    now = [0.0]
    caches = ContextCaches(TTL_S, clock=lambda: now[0])
    found = split(to_gemini_request(chat("Q")), MODEL, 2048)
    assert found is not None
    key, miss, hit = found.key, usage(3_000, 0), usage(3_000, 2_900)
    caches.record_implicit(found, miss, caches.seen_again(key))  # a first sighting: says nothing
    assert not caches.should_create(key)
    caches.record_implicit(found, hit, caches.seen_again(key))  # the implicit cache read it
    assert not caches.should_create(key)
    caches.record_implicit(found, miss, caches.seen_again(key))  # a repeat it missed
    assert caches.should_create(key)
    caches.record_implicit(found, hit, caches.seen_again(key))  # hit again: no cache after all
    assert not caches.should_create(key)
    caches.record_implicit(found, miss, caches.seen_again(key))
    now[0] += TTL_S + 1
    assert not caches.seen_again(key) and not caches.should_create(key)  # a long gap starts afresh
    caches.record_implicit(found, miss, caches.seen_again(key))
    caches.add(key, "projects/p/locations/l/cachedContents/1", 100)
    assert not caches.should_create(key)  # the miss is spent on the cache
    caches.record_implicit(found, miss, caches.seen_again(key))
    caches.failed(key)  # a creation failed: not again within the TTL
    caches.record_implicit(found, miss, caches.seen_again(key))
    assert not caches.should_create(key)
    now[0] += TTL_S - 1
    caches.record_implicit(found, miss, caches.seen_again(key))
    now[0] += 2
    assert caches.should_create(key)


# --- through the SDK and the fake -----------------------------------------------------------
server, fake = fake_server_fixtures(lambda: FakeGemini())


def make(fake: FakeGemini, *, prompt_cache: bool = True) -> GeminiBackend:
    provider = ProviderSpec(
        kind="vertex_ai",
        location=LOCATION,
        base_url=fake.url,
        timeout_s=5,
        prompt_cache=prompt_cache,
        prompt_cache_ttl_s=TTL_S,
    )
    return GeminiBackend(
        "gemini-flash",
        SPEC,
        provider,
        project=PROJECT,
        location=LOCATION,
        credentials=Credentials(token="test"),
    )


@pytest_asyncio.fixture(loop_scope="module")
async def backend(fake: FakeGemini) -> AsyncIterator[GeminiBackend]:
    b = make(fake)
    yield b
    await b.aclose()


def generate_calls(fake: FakeGemini) -> list[dict[str, Any]]:
    return [r.body for r in fake.requests if "GenerateContent" in r.path or "generateContent" in r.path]


def cache_creations(fake: FakeGemini) -> int:
    return sum(1 for r in fake.requests if r.path.endswith("/cachedContents"))


def genai_prices_cost(usage: dict[str, Any]) -> Decimal:
    """genai-prices' own price for the tokens, plus storage at Google's list price."""
    details = usage["prompt_tokens_details"]
    tokens = calc_price(
        Usage(
            input_tokens=usage["prompt_tokens"],
            cache_read_tokens=details.get("cached_tokens") or None,
            cache_write_tokens=details.get("cache_write_tokens") or None,
            output_tokens=usage["completion_tokens"],
        ),
        model_ref=MODEL,
        provider_id="google",
    ).total_price
    written = details.get("cache_write_tokens") or 0
    return Decimal(tokens) + Decimal(written) * Decimal(TTL_S) / 3600 * FLASH_STORAGE / 1_000_000


def assert_priced_right(usage: dict[str, Any]) -> None:
    cost = Pricer({"gemini": SPEC}).usage_cost("gemini", usage)
    expected = genai_prices_cost(usage)
    assert round(cost, 2) == round(expected, 2) and abs(cost - expected) < Decimal("1e-12")


async def stream_usage(stream: AsyncIterator[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    chunks = [c async for c in stream]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    usage: dict[str, Any] = chunks[-1]["usage"]
    return text, usage


@on_module_loop
async def test_implicit_cache_hits_are_reported_and_priced(fake: FakeGemini) -> None:
    backend = make(fake, prompt_cache=False)
    try:
        first = (await backend.complete(chat("What does clause 7 say?")))["usage"]
        second = (await backend.complete(chat("And clause 9?")))["usage"]
        _, streamed = await stream_usage(backend.stream(chat("And clause 11?")))
    finally:
        await backend.aclose()
    assert first["prompt_tokens_details"]["cached_tokens"] == 0
    cached = second["prompt_tokens_details"]["cached_tokens"]
    assert (
        1024 < cached < second["prompt_tokens"]
        and streamed["prompt_tokens_details"]["cached_tokens"] == cached
    )
    assert cache_creations(fake) == 0
    for usage in (first, second, streamed):
        assert_priced_right(usage)
    assert Pricer({"gemini": SPEC}).usage_cost("gemini", second) < Pricer({"gemini": SPEC}).usage_cost(
        "gemini", first
    )


@on_module_loop
async def test_implicit_hits_never_make_a_context_cache(backend: GeminiBackend, fake: FakeGemini) -> None:
    answers = [await backend.complete(chat(f"What does clause {n} say?")) for n in range(1, 5)]
    _, streamed = await stream_usage(backend.stream(chat("And clause 11?")))
    assert cache_creations(fake) == 0 and all("cachedContent" not in c for c in generate_calls(fake))
    for answer in answers[1:]:
        assert answer["usage"]["prompt_tokens_details"]["cached_tokens"] > 1024
    assert streamed["prompt_tokens_details"]["cached_tokens"] > 1024


@on_module_loop
async def test_an_implicit_miss_on_a_repeat_makes_a_context_cache_on_the_next_sighting(
    backend: GeminiBackend, fake: FakeGemini
) -> None:
    fake.implicit_enabled = False
    answers = [await backend.complete(chat(f"What does clause {n} say?")) for n in (1, 2, 3, 4)]
    first, second, third, fourth = (a["usage"] for a in answers)
    calls = generate_calls(fake)
    assert cache_creations(fake) == 1
    for call in calls[:2]:  # a first sighting, then a repeat the implicit cache missed: sent whole
        assert "cachedContent" not in call and call["systemInstruction"]
    for call in calls[2:]:
        assert call["cachedContent"].endswith("/cachedContents/1") and "systemInstruction" not in call
        assert len(call["contents"]) == 1  # only what follows the cached prefix
    assert first["prompt_tokens_details"]["cached_tokens"] == 0
    assert second["prompt_tokens_details"]["cached_tokens"] == 0
    assert_conforms(answers[2], "CreateChatCompletionResponse")  # the extra usage fields included
    made = third["prompt_tokens_details"]
    assert made["cache_write_tokens"] == made["cached_tokens"] > 1024
    assert made["cache_storage_token_hours"] == pytest.approx(made["cache_write_tokens"] * TTL_S / 3600)
    assert fourth["prompt_tokens_details"]["cached_tokens"] == made["cached_tokens"]
    assert "cache_write_tokens" not in fourth["prompt_tokens_details"]
    assert [a["choices"][0]["message"]["content"] for a in answers] == [
        f"Echo: What does clause {n} say?" for n in (1, 2, 3, 4)
    ]
    for usage in (first, second, third, fourth):
        assert_priced_right(usage)
    storage = Decimal(made["cache_write_tokens"]) * Decimal(TTL_S) / 3600 * FLASH_STORAGE / 1_000_000
    assert Pricer({"gemini": SPEC}).usage_cost("gemini", third) > storage > 0  # the ledger's cost has it


@on_module_loop
@pytest.mark.parametrize("end", ["delete_caches", "expire_caches"])
async def test_a_cache_gone_still_answers_and_is_made_again(
    backend: GeminiBackend, fake: FakeGemini, end: str
) -> None:
    fake.implicit_enabled = False
    for n in (1, 2, 3):
        await backend.complete(chat(f"Q{n}"))
    assert cache_creations(fake) == 1
    getattr(fake, end)()
    answer = await backend.complete(chat("Q4"))
    assert answer["choices"][0]["message"]["content"] == "Echo: Q4"
    assert "cache_write_tokens" not in answer["usage"]["prompt_tokens_details"]  # sent whole
    fourth = generate_calls(fake)[3:]
    assert "cachedContent" in fourth[0] and "cachedContent" not in fourth[1]
    fifth = await backend.complete(chat("Q5"))  # Q4, sent whole, missed the implicit cache too
    assert cache_creations(fake) == 2 and fifth["usage"]["prompt_tokens_details"]["cache_write_tokens"] > 0
    assert generate_calls(fake)[-1]["cachedContent"].endswith("/cachedContents/2")


@on_module_loop
async def test_a_streamed_answer_records_the_implicit_outcome_and_streams_use_the_cache(
    backend: GeminiBackend, fake: FakeGemini
) -> None:
    fake.implicit_enabled = False
    for n in (1, 2):  # the usage chunk of the second tells the implicit cache missed
        _, plain = await stream_usage(backend.stream(chat(f"Q{n}")))
        assert plain["prompt_tokens_details"]["cached_tokens"] == 0
    text, made = await stream_usage(backend.stream(chat("Q3")))
    assert text == "Echo: Q3" and made["prompt_tokens_details"]["cache_write_tokens"] > 1024
    assert made["prompt_tokens_details"]["cache_storage_token_hours"] > 0
    assert cache_creations(fake) == 1 and generate_calls(fake)[-1]["cachedContent"]
    assert_priced_right(made)
    fake.delete_caches()
    text, after = await stream_usage(backend.stream(chat("Q4")))
    assert text == "Echo: Q4" and "cache_write_tokens" not in after["prompt_tokens_details"]
    assert "cachedContent" in generate_calls(fake)[-2] and "cachedContent" not in generate_calls(fake)[-1]
    _, again = await stream_usage(backend.stream(chat("Q5")))  # Q4's stream, whole, missed too
    assert again["prompt_tokens_details"]["cache_write_tokens"] > 1024 and cache_creations(fake) == 2


@on_module_loop
async def test_switched_off_makes_no_context_cache(fake: FakeGemini) -> None:
    fake.implicit_enabled = False
    backend = make(fake, prompt_cache=False)
    try:
        for n in range(4):
            await backend.complete(chat(f"Q{n}"))
    finally:
        await backend.aclose()
    assert cache_creations(fake) == 0 and all("cachedContent" not in c for c in generate_calls(fake))


@on_module_loop
async def test_a_failed_creation_leaves_the_request_uncached_and_is_not_retried_at_once(
    backend: GeminiBackend, fake: FakeGemini
) -> None:
    fake.implicit_enabled = False
    fake.cache_min_tokens = 10**9  # the API refuses the cache (400)
    try:
        answers = [await backend.complete(chat(f"Q{n}")) for n in (1, 2, 3, 4)]
    finally:
        fake.cache_min_tokens = 1024
    assert [a["choices"][0]["message"]["content"] for a in answers] == [f"Echo: Q{n}" for n in (1, 2, 3, 4)]
    assert cache_creations(fake) == 1 and all("cachedContent" not in c for c in generate_calls(fake))
