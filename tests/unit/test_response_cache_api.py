"""The response cache through the HTTP surface: the real FastAPI app and ``RouterService`` over
scripted backends, with the in-memory store (a fake clock for TTLs) and, in one test, a Redis
store shared by two services. Plain requests route to the self-hosted ``mistral-7b-instruct``;
each test has its own SQLite ledger, metrics registry and cache."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from app.api.routes import create_app
from app.budget.ledger import KeySpend, LedgerSettings, build_ledger
from app.cache.service import ResponseCache
from app.cache.store import MemoryCache, RedisCache
from app.errors import InvalidRequestError
from app.service import RouterService
from tests.conformance import assert_conforms
from tests.unit.budget_support import (
    MISTRAL,
    FakeMonotonic,
    FakeNow,
    collect_events,
    events_named,
    make_config,
    make_service,
    scripted_backends,
)
from tests.unit.redis_fixture import redis_url, unique_prefix  # noqa: F401 - the fixture

QUESTION = [{"role": "user", "content": "What is Kubernetes?"}]
ANSWER = "Hello from the fake backend"
TTL_S = 60.0


def ask(**extra: Any) -> dict[str, Any]:
    return {"model": "auto:rules", "messages": QUESTION, **extra}


DETERMINISTIC = ask(temperature=0)


def sse_events(response: Any) -> list[str]:
    return [line[len("data: ") :] for line in response.text.split("\n") if line.startswith("data: ")]


def streamed_text(response: Any) -> str:
    chunks = [json.loads(e) for e in sse_events(response)[:-1]]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))


class Served:
    def __init__(self, service: RouterService, backends: dict[str, Any], client: TestClient) -> None:
        self.service, self.backends, self.client = service, backends, client

    @property
    def mistral_calls(self) -> int:
        return len(self.backends[MISTRAL].calls)

    def post(self, body: dict[str, Any]) -> Any:
        return self.client.post("/v1/chat/completions", json=body)

    def hits(self, model: str = MISTRAL) -> float:
        return self.service.metrics.sample("router_cache_hits_total", model=model) or 0.0

    def spend(self) -> dict[str, KeySpend]:
        budgets = self.service.budgets
        assert self.client.portal is not None
        self.client.portal.call(budgets.settled)
        return self.client.portal.call(budgets.ledger.spend, budgets.today())


@contextmanager
def served(tmp_path: Path, store: Any = None, name: str = "ledger") -> Iterator[Served]:
    config = make_config()
    backends = scripted_backends(config)
    ledger = build_ledger(LedgerSettings(backend="sqlite", path=str(tmp_path / f"{name}.sqlite3")))
    cache = ResponseCache(store if store is not None else MemoryCache(100), TTL_S)
    service = make_service(config, backends, ledger, FakeNow(), cache=cache)
    with TestClient(create_app(service)) as client:
        yield Served(service, backends, client)


def test_deterministic_request_is_a_miss_then_a_free_hit(tmp_path: Path) -> None:
    with collect_events() as events, served(tmp_path) as app:
        miss = app.post(DETERMINISTIC)
        hit = app.post(DETERMINISTIC)
        spend = app.spend()
        calls, hits = app.mistral_calls, app.hits()

    assert miss.status_code == hit.status_code == 200
    assert miss.headers["x-router-cache"] == "miss" and hit.headers["x-router-cache"] == "hit"
    assert calls == 1
    assert Decimal(miss.headers["x-router-cost-usd"]) > 0
    assert hit.headers["x-router-cost-usd"] == "0.00000000"
    assert hit.headers["x-router-cost-kind"] == "actual"
    assert hit.headers["x-router-model"] == MISTRAL
    assert hits == 1.0
    first, second = miss.json(), hit.json()
    assert_conforms(second, "CreateChatCompletionResponse")
    assert second["id"] != first["id"] and second["id"].startswith("chatcmpl-")
    assert second["choices"] == first["choices"] and second["model"] == first["model"] == MISTRAL
    assert second["choices"][0]["message"]["content"] == ANSWER
    # Only the miss was paid for.
    assert spend["self_hosted"].spent == Decimal(miss.headers["x-router-cost-usd"])
    assert [d["cache"] for d in events_named(events, "route_decision")] == ["miss", "hit"]
    assert events_named(events, "route_decision")[1]["cost_usd"] == 0


def test_non_deterministic_requests_are_never_cached(tmp_path: Path) -> None:
    bodies = [
        ask(),
        ask(),
        ask(temperature=0.7),
        ask(temperature=0.7),
        ask(top_p=0),
        ask(top_p=0),
        ask(stream=True),
        ask(stream=True),
    ]
    with served(tmp_path) as app:
        responses = [app.post(body) for body in bodies]
        calls, hits = app.mistral_calls, app.hits()
    assert all(r.status_code == 200 for r in responses)
    assert [r.headers["x-router-cache"] for r in responses] == ["miss"] * len(bodies)
    assert calls == len(bodies)
    assert hits == 0


def test_entries_expire_after_the_ttl(tmp_path: Path) -> None:
    clock = FakeMonotonic()
    with served(tmp_path, MemoryCache(100, clock=clock)) as app:
        states = [app.post(DETERMINISTIC).headers["x-router-cache"]]
        clock.value += TTL_S - 1
        states.append(app.post(DETERMINISTIC).headers["x-router-cache"])
        clock.value += 2  # past the TTL of the first answer
        states.append(app.post(DETERMINISTIC).headers["x-router-cache"])
        states.append(app.post(DETERMINISTIC).headers["x-router-cache"])  # the new answer is stored
        calls = app.mistral_calls
    assert states == ["miss", "hit", "miss", "hit"]
    assert calls == 2


def test_errors_are_not_cached(tmp_path: Path) -> None:
    with served(tmp_path) as app:
        app.backends[MISTRAL].outcomes = [InvalidRequestError("bad stop sequence", param="stop")]
        failed = app.post(DETERMINISTIC)
        retried = app.post(DETERMINISTIC)
        cached = app.post(DETERMINISTIC)
        calls = app.mistral_calls
    assert failed.status_code == 400
    assert retried.status_code == 200 and retried.headers["x-router-cache"] == "miss"
    assert cached.headers["x-router-cache"] == "hit"
    assert calls == 2


def test_a_stream_cut_midway_is_not_cached(tmp_path: Path) -> None:
    body = ask(temperature=0, stream=True)
    with served(tmp_path) as app:
        app.backends[MISTRAL].outcomes = [("cut", 2)]
        cut = app.post(body)
        again = app.post(body)
        json_after = app.post(DETERMINISTIC)
        calls = app.mistral_calls
    events = sse_events(cut)
    assert events[-1] == "[DONE]" and json.loads(events[-2])["error"]["code"] == "upstream_unavailable"
    assert again.headers["x-router-cache"] == "miss"
    assert streamed_text(again) == ANSWER
    assert calls == 2  # the cut stream was not stored: the next request asked the model again
    assert json_after.headers["x-router-cache"] == "hit"  # the clean stream was


def test_a_streamed_miss_then_a_streamed_hit(tmp_path: Path) -> None:
    body = ask(temperature=0, stream=True, stream_options={"include_usage": True})
    with served(tmp_path) as app:
        miss = app.post(body)
        hit = app.post(body)
        calls, hits = app.mistral_calls, app.hits()
    assert miss.headers["x-router-cache"] == "miss" and hit.headers["x-router-cache"] == "hit"
    assert hit.headers["content-type"].startswith("text/event-stream")
    assert hit.headers["x-router-cost-usd"] == "0.00000000"
    assert calls == 1 and hits == 1.0
    events = sse_events(hit)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    for chunk in chunks:
        assert_conforms(chunk, "CreateChatCompletionStreamResponse")
    assert streamed_text(hit) == streamed_text(miss) == ANSWER
    assert {c["id"] for c in chunks} != {json.loads(e)["id"] for e in sse_events(miss)[:-1]}
    assert len({c["id"] for c in chunks}) == 1 and all(c["model"] == MISTRAL for c in chunks)
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 5


def test_a_json_answer_serves_a_stream_and_a_stream_serves_json(tmp_path: Path) -> None:
    json_first = ask(temperature=0)
    stream_first = {
        "model": "auto:rules",
        "messages": [{"role": "user", "content": "Name a colour."}],
        "temperature": 0,
    }
    with served(tmp_path) as app:
        stored_json = app.post(json_first)
        as_stream = app.post({**json_first, "stream": True})
        stored_stream = app.post({**stream_first, "stream": True})
        as_json = app.post(stream_first)
        calls = app.mistral_calls
    assert stored_json.headers["x-router-cache"] == "miss" and as_stream.headers["x-router-cache"] == "hit"
    assert streamed_text(as_stream) == stored_json.json()["choices"][0]["message"]["content"]
    assert sse_events(as_stream)[-1] == "[DONE]"
    assert stored_stream.headers["x-router-cache"] == "miss" and as_json.headers["x-router-cache"] == "hit"
    assert as_json.json()["choices"][0]["message"]["content"] == streamed_text(stored_stream) == ANSWER
    assert as_json.json()["choices"][0]["finish_reason"] == "stop"
    assert calls == 2


def test_redis_cache_is_shared_by_two_services(tmp_path: Path, redis_url: str) -> None:  # noqa: F811
    prefix = f"{unique_prefix('cache')}:"
    with served(tmp_path, RedisCache(redis_url, prefix=prefix), name="a") as first:
        miss = first.post(DETERMINISTIC)
        first_calls = first.mistral_calls
    with served(tmp_path, RedisCache(redis_url, prefix=prefix), name="b") as second:
        hit = second.post(DETERMINISTIC)
        streamed = second.post({**DETERMINISTIC, "stream": True})
        second_calls, hits = second.mistral_calls, second.hits()
    assert miss.headers["x-router-cache"] == "miss" and first_calls == 1
    assert hit.headers["x-router-cache"] == "hit" and streamed.headers["x-router-cache"] == "hit"
    assert second_calls == 0 and hits == 2.0
    assert hit.json()["choices"] == miss.json()["choices"] and hit.json()["id"] != miss.json()["id"]
    assert streamed_text(streamed) == ANSWER
