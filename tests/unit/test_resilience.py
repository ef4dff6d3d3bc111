"""Retries, fallbacks, circuit breakers, timeouts and cancellation through ``RouterService``.

The service runs the default config (deployments/configs/router.yaml) over ``ScriptedBackend``
fakes, every model available, with a fake clock and a recording ``sleep`` that advances that
clock instead of sleeping: no test here waits for a backoff. Where the HTTP shape matters
(headers, SSE error events, /v1/route) the real FastAPI app runs under ``TestClient``.

A plain request routes ``auto`` -> mistral-7b-instruct, whose chain is
mistral-7b-fast (32K window) -> gemini-flash (1M) -> claude-haiku (200K).
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from app.api.routes import create_app
from app.config import RouterConfig, parse_config
from app.errors import (
    ContentFilterError,
    ContextWindowExceededError,
    InvalidRequestError,
    RouterError,
    UpstreamAuthError,
    UpstreamBadRequestError,
    UpstreamRateLimitedError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from app.resilience.breaker import CLOSED, HALF_OPEN, OPEN
from app.resilience.executor import DeadlineExceeded
from app.resilience.retry import RetryPolicy
from app.service import RouterService
from tests.conformance import assert_conforms
from tests.fakes.backends import ScriptedBackend

CONFIG_PATH = Path(__file__).parents[2] / "deployments" / "configs" / "router.yaml"
RAW = yaml.safe_load(CONFIG_PATH.read_text(encoding="utf-8"))
SIMPLE = {"model": "auto:rules", "messages": [{"role": "user", "content": "What is Kubernetes?"}]}
STREAM = {**SIMPLE, "stream": True}
TEXT = "Hello from the fake backend"

PRIMARY, NEXT, FLASH, HAIKU = "mistral-7b-instruct", "mistral-7b-fast", "gemini-flash", "claude-haiku"
BASE_DELAY = 0.25  # retries.base_delay_s of the default config


# --- the world a test runs in -----------------------------------------------------------


class FakeClock:
    def __init__(self, now: float = 10_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingSleep:
    """The executor's ``sleep``: records each wait and moves the fake clock by it, at once."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.clock.advance(seconds)


class StallingBackend(ScriptedBackend):
    """A backend that goes quiet for ``stall_s`` (real time) before answering; a stream may send
    its role chunk (no content) first."""

    def __init__(self, name: str, stall_s: float = 10.0, role_first: bool = False) -> None:
        super().__init__(name)
        self.stall_s = stall_s
        self.role_first = role_first

    async def complete(self, request: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(self.stall_s)
        return await super().complete(request)

    async def stream(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        self.calls.append(request)
        base = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
        }
        try:
            if self.role_first:
                yield {
                    **base,
                    "model": request["model"],
                    "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}],
                }
            await asyncio.sleep(self.stall_s)
            yield {**base, "model": request["model"], "choices": [{"index": 0, "delta": {"content": "late"}}]}
        finally:
            self.closed_streams += 1


class GatedBackend(ScriptedBackend):
    """``complete`` and ``stream`` block on ``gate`` (an asyncio.Event) before doing anything;
    ``entered`` counts the calls waiting there."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.gate = asyncio.Event()
        self.entered = 0

    async def _wait(self) -> None:
        self.entered += 1
        await self.gate.wait()

    async def complete(self, request: dict[str, Any]) -> dict[str, Any]:
        await self._wait()
        return await super().complete(request)

    async def stream(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        await self._wait()
        async for chunk in super().stream(request):
            yield chunk


class ClockAdvancingBackend(ScriptedBackend):
    """Each call takes ``seconds`` of fake time, then runs its scripted outcome."""

    def __init__(self, name: str, clock: FakeClock, seconds: float, outcomes: list[Any]) -> None:
        super().__init__(name, outcomes=outcomes)
        self.clock = clock
        self.seconds = seconds

    async def complete(self, request: dict[str, Any]) -> dict[str, Any]:
        self.clock.advance(self.seconds)
        return await super().complete(request)


def make_config(**sections: dict[str, Any]) -> RouterConfig:
    """The default config with top-level sections merged in (``resilience={...}``)."""
    raw = copy.deepcopy(RAW)
    for key, value in sections.items():
        merged = dict(raw.get(key) or {})
        merged.update(value)
        raw[key] = merged
    return parse_config(raw, source="test-resilience.yaml")


@dataclass
class World:
    service: RouterService
    backends: dict[str, ScriptedBackend]
    clock: FakeClock
    sleep: RecordingSleep

    def __getitem__(self, model: str) -> ScriptedBackend:
        return self.backends[model]

    def breaker(self, model: str = PRIMARY):
        return self.service.breakers[model]

    def calls(self) -> dict[str, int]:
        return {name: len(b.calls) for name, b in self.backends.items() if b.calls}


def make_world(config: RouterConfig | None = None, **special: ScriptedBackend) -> World:
    config = config or make_config()
    clock = FakeClock()
    sleep = RecordingSleep(clock)
    backends: dict[str, ScriptedBackend] = {name: ScriptedBackend(name) for name in config.models}
    backends.update(special)
    service = RouterService(config, backends, clock=clock, sleep=sleep)
    # NOTE: random() == 0.5 is no jitter, so the first backoff is exactly base_delay_s.
    service.executor.retry = RetryPolicy(config.resilience.retries, random=lambda: 0.5)
    return World(service, backends, clock, sleep)


@pytest.fixture
def world() -> World:
    return make_world()


@pytest.fixture
def http() -> Iterator[tuple[TestClient, World]]:
    w = make_world()
    with TestClient(create_app(w.service)) as client:
        yield client, w


def sse_events(response: Any) -> list[str]:
    return [line[len("data: ") :] for line in response.text.split("\n") if line.startswith("data: ")]


def text_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))


async def drain(chunks: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c async for c in chunks]


async def fail_requests(world: World, n: int, error: RouterError | None = None) -> None:
    """``n`` requests whose primary fails every call; each is answered by the next target."""
    world[PRIMARY].outcomes = [error or UpstreamUnavailableError("engine down")] * 100
    for i in range(n):
        response, _ = await world.service.complete(SIMPLE, f"fail-{i}")
        assert response["model"] == NEXT


# --- retries and fallbacks --------------------------------------------------------------


async def test_plan_is_primary_then_its_chain(world: World) -> None:
    plan = await world.service.plan(SIMPLE)
    assert [t.model for t in plan.targets] == [PRIMARY, NEXT, FLASH, HAIKU]
    assert plan.dropped == []


async def test_a_500_then_success_is_retried_once_on_the_same_target(world: World) -> None:
    world[PRIMARY].outcomes = [UpstreamUnavailableError("engine hiccup")]
    response, outcome = await world.service.complete(SIMPLE, "r1")
    assert response["model"] == PRIMARY
    assert response["choices"][0]["message"]["content"] == TEXT
    assert world.calls() == {PRIMARY: 2}
    assert world.sleep.calls == [BASE_DELAY]
    assert outcome.fallbacks == 0 and outcome.retries == 1
    assert world.breaker().failures == 0 and world.breaker().current() == CLOSED  # the success reset it


async def test_the_backoff_is_jittered_within_bounds() -> None:
    world = make_world()
    world.service.executor.retry = RetryPolicy(world.service.config.resilience.retries)  # real random
    for i in range(20):
        world[PRIMARY].outcomes = [UpstreamUnavailableError("hiccup")]
        await world.service.complete(SIMPLE, f"r{i}")
    assert len(world.sleep.calls) == 20
    assert all(BASE_DELAY * 0.75 <= s <= BASE_DELAY * 1.25 for s in world.sleep.calls)


async def test_two_500s_fall_back_to_the_next_target_in_the_chain(world: World) -> None:
    world[PRIMARY].outcomes = [UpstreamUnavailableError("engine down")] * 2
    response, outcome = await world.service.complete(SIMPLE, "r1")
    assert response["model"] == NEXT
    assert world.calls() == {PRIMARY: 2, NEXT: 1}
    assert world.sleep.calls == [BASE_DELAY]  # the retry waited; the fallback does not
    assert outcome.fallbacks == 1 and outcome.retries == 1
    assert outcome.target is not None and outcome.target.model == NEXT
    assert [m for m, _ in outcome.failures] == [PRIMARY]
    assert "engine down" in outcome.failures[0][1]
    assert world.breaker(PRIMARY).failures == 2
    assert world.breaker(NEXT).failures == 0


async def test_each_target_fails_in_turn_down_the_chain(world: World) -> None:
    for name in (PRIMARY, NEXT, FLASH):
        world[name].outcomes = [UpstreamUnavailableError(f"{name} down")] * 2
    response, outcome = await world.service.complete(SIMPLE, "r1")
    assert response["model"] == HAIKU
    assert outcome.fallbacks == 3
    assert world.calls() == {PRIMARY: 2, NEXT: 2, FLASH: 2, HAIKU: 1}
    assert world.sleep.calls == [BASE_DELAY] * 3


async def test_every_target_failing_is_one_all_backends_failed_error(world: World) -> None:
    for name in (PRIMARY, NEXT, FLASH, HAIKU):
        world[name].outcomes = [UpstreamUnavailableError(f"{name}: injected 503")] * 2
    with pytest.raises(UpstreamUnavailableError) as excinfo:
        await world.service.complete(SIMPLE, "r1")
    assert excinfo.value.code == "all_backends_failed"
    assert excinfo.value.status_code == 503
    for name in (PRIMARY, NEXT, FLASH, HAIKU):
        assert excinfo.value.message.count(f"{name}: injected 503") == 1  # each model named once per failure
        assert f"{name}: {name}:" not in excinfo.value.message


def test_fallback_header_over_http(http: tuple[TestClient, World]) -> None:
    client, world = http
    world[PRIMARY].outcomes = [UpstreamUnavailableError("engine down")] * 2
    response = client.post("/v1/chat/completions", json=SIMPLE)
    assert response.status_code == 200
    assert response.headers["x-router-fallbacks"] == "1"
    assert response.headers["x-router-model"] == NEXT
    assert response.json()["model"] == NEXT
    world[PRIMARY].outcomes = [UpstreamUnavailableError("engine hiccup")]
    response = client.post("/v1/chat/completions", json=SIMPLE)
    assert response.headers["x-router-fallbacks"] == "0"
    assert response.headers["x-router-model"] == PRIMARY


async def test_a_429_with_retry_after_waits_exactly_that_long(world: World) -> None:
    world[PRIMARY].outcomes = [UpstreamRateLimitedError("slow down", retry_after=2)]
    response, outcome = await world.service.complete(SIMPLE, "r1")
    assert response["model"] == PRIMARY
    assert world.sleep.calls == [2]
    assert world.calls() == {PRIMARY: 2}
    assert outcome.fallbacks == 0


async def test_a_retry_after_over_max_delay_moves_on_without_waiting(world: World) -> None:
    world[PRIMARY].outcomes = [UpstreamRateLimitedError("come back later", retry_after=30)]
    response, outcome = await world.service.complete(SIMPLE, "r1")
    assert response["model"] == NEXT
    assert world.sleep.calls == []
    assert world.calls() == {PRIMARY: 1, NEXT: 1}
    assert outcome.fallbacks == 1 and outcome.retries == 0


async def test_a_retry_after_beyond_the_deadline_moves_on_without_waiting() -> None:
    world = make_world(make_config(resilience={"deadline_s": 3}))
    world[PRIMARY].outcomes = [UpstreamRateLimitedError("busy", retry_after=3.5)]  # under max_delay 4
    response, _ = await world.service.complete(SIMPLE, "r1")
    assert response["model"] == NEXT
    assert world.sleep.calls == []


async def test_an_upstream_timeout_moves_to_the_next_target_without_a_retry(world: World) -> None:
    # A stalled target is not waited on twice: its timeout already cost the client that long.
    world[PRIMARY].outcomes = [UpstreamTimeoutError("slow")]
    response, outcome = await world.service.complete(SIMPLE, "r1")
    assert response["model"] == NEXT and outcome.retries == 0
    assert len(world[PRIMARY].calls) == 1


# --- streams: first-byte timeout and cuts -----------------------------------------------


@pytest.mark.parametrize("role_first", [False, True], ids=["silent", "role-chunk-then-silent"])
async def test_a_stream_without_content_in_time_falls_back_cleanly(role_first: bool) -> None:
    config = make_config(resilience={"first_byte_timeout_s": 0.05})
    stalling = StallingBackend(PRIMARY, stall_s=10, role_first=role_first)
    world = make_world(config, **{PRIMARY: stalling})
    # The stalling backend would hold the stream 10 s: answering within wait_for's 2 s is the fallback.
    chunks, outcome = await asyncio.wait_for(world.service.stream(STREAM, "s1"), 2)
    got = await drain(chunks)
    assert outcome.target is not None and outcome.target.model == NEXT
    assert outcome.fallbacks == 1
    assert "no content within 0.05 s" in outcome.failures[0][1]
    assert len(stalling.calls) == 1  # a first-byte timeout moves on at once, without a retry
    assert stalling.closed_streams == 1  # the abandoned upstream stream was closed
    assert text_of(got) == TEXT
    assert all(c["model"] == NEXT for c in got)
    assert all("error" not in c for c in got)
    assert sum(1 for c in got if c["choices"] and c["choices"][0]["delta"].get("role")) == 1  # one stream
    assert world.breaker(PRIMARY).failures == 1


async def test_a_stream_cut_after_content_raises_and_counts_against_the_breaker(world: World) -> None:
    world[PRIMARY].outcomes = [("cut", 2)]
    chunks, outcome = await world.service.stream(STREAM, "s1")
    got: list[dict[str, Any]] = []
    with pytest.raises(UpstreamUnavailableError):
        async for chunk in chunks:
            got.append(chunk)
    assert text_of(got) == "Hello from"
    assert outcome.status == "error"
    assert world.breaker(PRIMARY).failures == 1
    assert world[PRIMARY].closed_streams == 1
    assert world.calls() == {PRIMARY: 1}  # no fallback once content went out


def test_a_stream_cut_over_http_ends_with_an_error_event_then_done(http: tuple[TestClient, World]) -> None:
    client, world = http
    world[PRIMARY].outcomes = [("cut", 2)]
    response = client.post("/v1/chat/completions", json=STREAM)
    assert response.status_code == 200
    assert response.headers["x-router-model"] == PRIMARY
    events = sse_events(response)
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])
    assert_conforms(error, "ErrorResponse")
    assert error["error"]["code"] == "upstream_unavailable"
    assert error["error"]["type"] == "upstream_error"
    chunks = [json.loads(e) for e in events[:-2]]
    assert all("error" not in c for c in chunks)
    assert text_of(chunks) == "Hello from"
    assert world.breaker(PRIMARY).failures == 1
    assert world.calls() == {PRIMARY: 1}


async def test_streams_cut_mid_way_in_a_row_open_the_breaker(world: World) -> None:
    threshold = world.service.config.circuit_breaker.failure_threshold
    world[PRIMARY].outcomes = [("cut", 2)] * threshold
    for i in range(threshold):
        chunks, _ = await world.service.stream(STREAM, f"s{i}")
        with pytest.raises(UpstreamUnavailableError):
            await drain(chunks)
    assert world.breaker(PRIMARY).current() == OPEN


# --- client errors and context windows --------------------------------------------------


async def test_context_too_long_skips_to_a_larger_window(world: World) -> None:
    world[PRIMARY].outcomes = [ContextWindowExceededError("prompt is too long", param="messages")]
    response, outcome = await world.service.complete(SIMPLE, "r1")
    assert response["model"] == FLASH  # mistral-7b-fast (same 32K window) is skipped
    assert world.calls() == {PRIMARY: 1, FLASH: 1}
    assert world.sleep.calls == []  # not retried on the same target
    assert outcome.fallbacks == 1
    assert world.breaker(PRIMARY).failures == 0  # the request was at fault, not the backend


async def test_context_too_long_then_a_larger_model_failing_still_skips_smaller_windows(world: World) -> None:
    world[PRIMARY].outcomes = [ContextWindowExceededError("prompt is too long")]
    world[FLASH].outcomes = [UpstreamUnavailableError("flash down")] * 2
    response, outcome = await world.service.complete(SIMPLE, "r1")
    assert response["model"] == HAIKU  # 200K > the 32K that was too small
    assert world.calls() == {PRIMARY: 1, FLASH: 2, HAIKU: 1}
    assert outcome.fallbacks == 2


async def test_context_too_long_on_a_larger_window_skips_the_smaller_rest(world: World) -> None:
    world[PRIMARY].outcomes = [ContextWindowExceededError("prompt is too long")]
    world[FLASH].outcomes = [ContextWindowExceededError("input token count exceeds")]
    with pytest.raises(RouterError):
        await world.service.complete(SIMPLE, "r1")
    assert world.calls() == {PRIMARY: 1, FLASH: 1}  # claude-haiku's 200K < gemini-flash's 1M


async def test_context_too_long_everywhere_is_the_clients_400(world: World) -> None:
    world[PRIMARY].outcomes = [ContextWindowExceededError("prompt is too long", param="messages")]
    world[FLASH].outcomes = [ContextWindowExceededError("input token count exceeds", param="messages")]
    with pytest.raises(RouterError) as excinfo:
        await world.service.complete(SIMPLE, "r1")
    assert excinfo.value.status_code == 400
    assert excinfo.value.code == "context_length_exceeded"


async def test_context_too_long_with_no_larger_window_left_is_returned_as_is() -> None:
    world = make_world()
    world[PRIMARY].outcomes = [ContextWindowExceededError("prompt is too long", param="messages")]
    body = {**SIMPLE, "model": "mistral-7b-instruct"}  # explicit: no fallbacks in the plan
    with pytest.raises(ContextWindowExceededError) as excinfo:
        await world.service.complete(body, "r1")
    assert excinfo.value.status_code == 400 and excinfo.value.code == "context_length_exceeded"


async def test_a_plain_400_is_returned_and_nothing_else_is_called(world: World) -> None:
    world[PRIMARY].outcomes = [InvalidRequestError("bad stop sequence", param="stop")]
    with pytest.raises(InvalidRequestError) as excinfo:
        await world.service.complete(SIMPLE, "r1")
    assert excinfo.value.status_code == 400 and excinfo.value.param == "stop"
    assert world.calls() == {PRIMARY: 1}
    assert world.sleep.calls == []
    assert world.breaker(PRIMARY).failures == 0


@pytest.mark.parametrize(
    "error",
    [
        InvalidRequestError("bad stop sequence", param="stop"),
        UpstreamBadRequestError("the backend refused it"),
        ContentFilterError("content policy"),
        UpstreamAuthError("bad key"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_client_errors_are_not_retried_nor_fallen_back_by_default(
    world: World, error: RouterError
) -> None:
    world[PRIMARY].outcomes = [error]
    with pytest.raises(type(error)):
        await world.service.complete(SIMPLE, "r1")
    assert world.calls() == {PRIMARY: 1}
    assert world.breaker(PRIMARY).failures == 0


@pytest.mark.parametrize(
    "error",
    [
        InvalidRequestError("bad stop sequence", param="stop"),
        UpstreamBadRequestError("the backend refused it"),
        ContentFilterError("content policy"),
        UpstreamAuthError("bad key"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_fallback_on_client_errors_tries_the_next_target(error: RouterError) -> None:
    world = make_world(make_config(resilience={"fallback_on_client_errors": True}))
    world[PRIMARY].outcomes = [error]
    response, outcome = await world.service.complete(SIMPLE, "r1")
    assert response["model"] == NEXT
    assert world.calls() == {PRIMARY: 1, NEXT: 1}  # still not retried on the same target
    assert outcome.fallbacks == 1
    assert world.breaker(PRIMARY).failures == 0


def test_a_plain_400_over_http(http: tuple[TestClient, World]) -> None:
    client, world = http
    world[PRIMARY].outcomes = [InvalidRequestError("bad stop sequence", param="stop")]
    response = client.post("/v1/chat/completions", json=SIMPLE)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "stop"
    assert world.calls() == {PRIMARY: 1}


# --- circuit breakers -------------------------------------------------------------------


async def test_failure_threshold_failed_calls_open_the_breaker_and_the_planner_skips_it(world: World) -> None:
    threshold = world.service.config.circuit_breaker.failure_threshold
    await fail_requests(world, threshold)
    # each request's failed calls counted (2 per request); the 5th opened it and later requests
    # skip the model entirely
    assert len(world[PRIMARY].calls) == threshold
    assert world.breaker(PRIMARY).current() == OPEN
    assert world.service.breakers.states()[PRIMARY] == OPEN
    plan = await world.service.plan(SIMPLE)
    assert (PRIMARY, "circuit breaker open") in plan.dropped
    assert plan.primary.model == NEXT
    assert world.service.availability(PRIMARY) == "circuit breaker open"
    response, outcome = await world.service.complete(SIMPLE, "after")
    assert response["model"] == NEXT and outcome.fallbacks == 0
    assert len(world[PRIMARY].calls) == threshold


async def test_a_breaker_opened_mid_request_is_refused_before_calling(world: World) -> None:
    threshold = world.service.config.circuit_breaker.failure_threshold
    for _ in range(threshold - 1):
        world.breaker(PRIMARY).failure()
    world[PRIMARY].outcomes = [UpstreamUnavailableError("down")] * 2
    response, outcome = await world.service.complete(SIMPLE, "r1")
    assert response["model"] == NEXT
    assert len(world[PRIMARY].calls) == 1  # the retry found the breaker open and did not call
    assert "circuit breaker open" in outcome.failures[0][1]


async def test_half_open_after_the_timeout_and_three_probe_successes_close_it(world: World) -> None:
    cb = world.service.config.circuit_breaker
    await fail_requests(world, cb.failure_threshold)
    world[PRIMARY].outcomes = []  # healthy again
    opened_at = world.breaker(PRIMARY).opened_at
    world.clock.now = opened_at + cb.timeout_seconds - 0.01
    assert (PRIMARY, "circuit breaker open") in (await world.service.plan(SIMPLE)).dropped
    world.clock.now = opened_at + cb.timeout_seconds
    assert world.breaker(PRIMARY).current() == HALF_OPEN
    plan = await world.service.plan(SIMPLE)
    assert plan.primary.model == PRIMARY and plan.dropped == []
    before = len(world[PRIMARY].calls)
    for i in range(cb.half_open_requests):
        assert world.breaker(PRIMARY).current() == HALF_OPEN, f"closed after {i} probes"
        response, _ = await world.service.complete(SIMPLE, f"probe-{i}")
        assert response["model"] == PRIMARY
    assert len(world[PRIMARY].calls) == before + cb.half_open_requests
    assert world.breaker(PRIMARY).current() == CLOSED
    assert world.service.breakers.states()[PRIMARY] == CLOSED


async def test_a_failed_probe_reopens_the_breaker(world: World) -> None:
    cb = world.service.config.circuit_breaker
    await fail_requests(world, cb.failure_threshold)
    world.clock.advance(cb.timeout_seconds)
    assert world.breaker(PRIMARY).current() == HALF_OPEN
    calls = len(world[PRIMARY].calls)
    world[PRIMARY].outcomes = [UpstreamUnavailableError("still down")] * 2
    reopened_at = world.clock.now
    response, outcome = await world.service.complete(SIMPLE, "probe")
    assert response["model"] == NEXT and outcome.fallbacks == 1
    assert len(world[PRIMARY].calls) == calls + 1  # the probe failed; its retry was refused
    assert world.breaker(PRIMARY).current() == OPEN
    assert world.breaker(PRIMARY).opened_at == reopened_at
    assert (PRIMARY, "circuit breaker open") in (await world.service.plan(SIMPLE)).dropped
    world.clock.now = reopened_at + cb.timeout_seconds - 0.01
    assert world.breaker(PRIMARY).current() == OPEN
    world.clock.now = reopened_at + cb.timeout_seconds
    assert world.breaker(PRIMARY).current() == HALF_OPEN


async def test_half_open_admits_only_its_probe_count_at_a_time() -> None:
    gated = GatedBackend(PRIMARY)
    world = make_world(**{PRIMARY: gated})
    cb = world.service.config.circuit_breaker
    for _ in range(cb.failure_threshold):
        world.breaker(PRIMARY).failure()
    world.clock.advance(cb.timeout_seconds)
    probes = [
        asyncio.create_task(world.service.complete(SIMPLE, f"probe-{i}"))
        for i in range(cb.half_open_requests)
    ]
    try:
        while gated.entered < cb.half_open_requests:
            await asyncio.sleep(0)
        plan = await world.service.plan(SIMPLE)
        assert (PRIMARY, "circuit breaker half_open") in plan.dropped
        response, _ = await world.service.complete(SIMPLE, "meanwhile")
        assert response["model"] == NEXT
        gated.gate.set()
        results = await asyncio.wait_for(asyncio.gather(*probes), 2)
    finally:
        gated.gate.set()
        for task in probes:
            task.cancel()
    assert {r["model"] for r, _ in results} == {PRIMARY}
    assert world.breaker(PRIMARY).current() == CLOSED


def test_route_and_health_show_an_open_breaker(http: tuple[TestClient, World]) -> None:
    client, world = http
    world[PRIMARY].outcomes = [UpstreamUnavailableError("engine down")] * 100
    for _ in range(3):  # 2 failed calls each: the 5th failure opens the breaker
        assert client.post("/v1/chat/completions", json=SIMPLE).headers["x-router-model"] == NEXT
    plan = client.post("/v1/route", json=SIMPLE).json()
    assert plan["model"] == NEXT
    assert {"model": PRIMARY, "reason": "circuit breaker open"} in plan["dropped"]
    health = client.get("/health").json()
    assert health["status"] == "degraded"
    assert health["models"][PRIMARY]["available"] is False
    assert health["models"][PRIMARY]["reason"] == "circuit breaker open"
    models = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    assert models[PRIMARY]["unavailable_reason"] == "circuit breaker open"


async def test_an_explicit_model_with_an_open_breaker_is_503(world: World) -> None:
    for _ in range(world.service.config.circuit_breaker.failure_threshold):
        world.breaker(PRIMARY).failure()
    with pytest.raises(RouterError) as excinfo:
        await world.service.complete({**SIMPLE, "model": PRIMARY}, "r1")
    assert excinfo.value.status_code == 503
    assert "circuit breaker open" in excinfo.value.message
    assert world.calls() == {}


async def test_a_disabled_breaker_never_skips_a_model() -> None:
    world = make_world(make_config(circuit_breaker={"enabled": False}))
    await fail_requests(world, 6)
    assert len(world[PRIMARY].calls) == 12  # every request still tried it, twice
    plan = await world.service.plan(SIMPLE)
    assert plan.primary.model == PRIMARY and plan.dropped == []


# --- cancellation -----------------------------------------------------------------------


async def _cancel_while_waiting(world: World, gated: GatedBackend, call: Any) -> None:
    task = asyncio.create_task(call)
    while gated.entered == 0:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2)


async def test_a_cancelled_request_is_not_a_backend_failure() -> None:
    gated = GatedBackend(PRIMARY)
    world = make_world(**{PRIMARY: gated})
    await _cancel_while_waiting(world, gated, world.service.complete(SIMPLE, "r1"))
    assert world.breaker(PRIMARY).failures == 0
    assert world.breaker(PRIMARY).current() == CLOSED
    assert world.calls() == {}  # the gated call never reached ScriptedBackend.complete
    assert world.sleep.calls == []  # no retry, no fallback
    assert all(not b.calls for name, b in world.backends.items() if name != PRIMARY)


async def test_a_cancelled_stream_request_is_not_a_backend_failure() -> None:
    gated = GatedBackend(PRIMARY)
    world = make_world(**{PRIMARY: gated})
    await _cancel_while_waiting(world, gated, world.service.stream(STREAM, "s1"))
    assert world.breaker(PRIMARY).failures == 0
    assert all(not b.calls for name, b in world.backends.items() if name != PRIMARY)


async def test_a_cancelled_probe_frees_its_slot_without_counting() -> None:
    gated = GatedBackend(PRIMARY)
    world = make_world(**{PRIMARY: gated})
    cb = world.service.config.circuit_breaker
    for _ in range(cb.failure_threshold):
        world.breaker(PRIMARY).failure()
    world.clock.advance(cb.timeout_seconds)
    await _cancel_while_waiting(world, gated, world.service.complete(SIMPLE, "probe"))
    breaker = world.breaker(PRIMARY)
    assert breaker.current() == HALF_OPEN
    assert breaker.probes_in_flight == 0 and breaker.probe_successes == 0


async def test_cancellation_keeps_earlier_failures_but_adds_none() -> None:
    gated = GatedBackend(PRIMARY)
    world = make_world(**{PRIMARY: gated})
    for _ in range(3):
        world.breaker(PRIMARY).failure()
    await _cancel_while_waiting(world, gated, world.service.complete(SIMPLE, "r1"))
    assert world.breaker(PRIMARY).failures == 3


async def test_closing_a_stream_mid_way_is_not_a_failure(world: World) -> None:
    chunks, outcome = await world.service.stream(STREAM, "s1")
    first = [await chunks.__anext__(), await chunks.__anext__()]
    await chunks.aclose()  # type: ignore[attr-defined]
    assert text_of(first) == "Hello"
    assert outcome.status == "cancelled"
    assert world[PRIMARY].closed_streams == 1
    assert world.breaker(PRIMARY).failures == 0 and world.breaker(PRIMARY).current() == CLOSED


async def test_closing_a_stream_before_reading_it_still_closes_the_upstream(world: World) -> None:
    chunks, _ = await world.service.stream(STREAM, "s1")
    await chunks.aclose()  # type: ignore[attr-defined]
    await asyncio.sleep(0.01)  # NOTE: today the upstream is closed by the async-generator finalizer
    assert world[PRIMARY].closed_streams == 1
    assert world.breaker(PRIMARY).failures == 0


async def test_closing_a_stream_before_reading_it_is_recorded_as_cancelled(world: World) -> None:
    chunks, outcome = await world.service.stream(STREAM, "s1")
    await chunks.aclose()  # type: ignore[attr-defined]
    assert outcome.status == "cancelled"


# --- the deadline -----------------------------------------------------------------------


async def test_the_deadline_stops_a_slow_backend() -> None:
    world = make_world(make_config(resilience={"deadline_s": 0.05}), **{PRIMARY: StallingBackend(PRIMARY)})
    with pytest.raises(DeadlineExceeded) as excinfo:  # not wait_for's TimeoutError: the deadline fired first
        await asyncio.wait_for(world.service.complete(SIMPLE, "r1"), 2)
    error = excinfo.value
    assert error.status_code == 504
    assert error.code == "deadline_exceeded"
    assert not error.retryable
    assert world.calls() == {}  # no fallback after the deadline: nothing is left of it
    assert all(not b.calls for name, b in world.backends.items() if name != PRIMARY)


async def test_the_deadline_stops_a_slow_stream() -> None:
    stalling = StallingBackend(PRIMARY, role_first=True)
    world = make_world(make_config(resilience={"deadline_s": 0.05}), **{PRIMARY: stalling})
    with pytest.raises(DeadlineExceeded):
        await asyncio.wait_for(world.service.stream(STREAM, "s1"), 2)
    assert stalling.closed_streams == 1


async def test_the_deadline_covers_retries_and_fallbacks() -> None:
    clock_world = make_world(make_config(resilience={"deadline_s": 3}))
    slow = ClockAdvancingBackend(PRIMARY, clock_world.clock, 2.0, [UpstreamUnavailableError("down")] * 2)
    clock_world.backends[PRIMARY] = slow
    clock_world.service.backends[PRIMARY] = slow
    with pytest.raises(DeadlineExceeded) as excinfo:
        await clock_world.service.complete(SIMPLE, "r1")
    assert excinfo.value.code == "deadline_exceeded"
    assert len(slow.calls) == 2  # 2 s, a 0.25 s backoff, 2 s more: the deadline of 3 s has passed
    assert all(not b.calls for name, b in clock_world.backends.items() if name != PRIMARY)


def test_the_deadline_over_http_is_a_504() -> None:
    world = make_world(make_config(resilience={"deadline_s": 0.05}), **{PRIMARY: StallingBackend(PRIMARY)})
    with TestClient(create_app(world.service)) as client:
        response = client.post("/v1/chat/completions", json=SIMPLE)
    assert response.status_code == 504
    assert_conforms(response.json(), "ErrorResponse")
    assert response.json()["error"]["code"] == "deadline_exceeded"
