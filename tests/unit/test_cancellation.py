"""A client going away reaches the upstream provider, through the real SDK adapters (no Ray).

``RouterService`` runs the default config with the real ``OpenAIBackend`` (model ``gpt``) and
``AnthropicBackend`` (model ``claude-haiku``) pointed at the fake servers on loopback; the other
models are scripted fakes. Closing or cancelling a request must close its upstream HTTP
connection (which is what stops a provider's generation), and must not count against the
model's circuit breaker. Real time here, each test well under 2 s.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.backends.anthropic_client import AnthropicBackend
from app.backends.openai_client import OpenAIBackend
from app.config import ProviderSpec, load_config
from app.resilience.breaker import CLOSED
from app.service import RouterService
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.backends import ScriptedBackend
from tests.fakes.openai_server import FakeOpenAI

CONFIG = load_config(Path(__file__).parents[2] / "deployments" / "configs" / "router.yaml")
OPENAI_KEY = "test-openai-key"
ANTHROPIC_KEY = "test-anthropic-key"
GPT, HAIKU = "gpt", "claude-haiku"
INTERVAL = 0.05  # the fakes' pace between stream events: a whole stream takes about 0.5 s


@pytest.fixture(scope="module")
def openai_server() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI(api_key=OPENAI_KEY).start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def anthropic_server() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic(api_key=ANTHROPIC_KEY).start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_openai(openai_server: FakeOpenAI) -> Iterator[FakeOpenAI]:
    openai_server.reset()
    openai_server.event_interval_s = INTERVAL
    openai_server.streams_finished = openai_server.streams_abandoned = 0
    openai_server.disconnected_before_answer = 0
    yield openai_server
    openai_server.event_interval_s = 0.0
    openai_server.faults.clear()


@pytest.fixture
def fake_anthropic(anthropic_server: FakeAnthropic) -> Iterator[FakeAnthropic]:
    anthropic_server.reset()
    anthropic_server.event_interval_s, anthropic_server.error_event_after = INTERVAL, None
    anthropic_server.streams_unfinished.clear()
    yield anthropic_server
    anthropic_server.event_interval_s = 0.0
    anthropic_server.faults.clear()


@pytest.fixture
async def service(openai_server: FakeOpenAI, anthropic_server: FakeAnthropic) -> AsyncIterator[RouterService]:
    backends: dict[str, Any] = {name: ScriptedBackend(name) for name in CONFIG.models}
    backends[GPT] = OpenAIBackend(
        GPT,
        CONFIG.models[GPT],
        ProviderSpec(kind="openai", base_url=f"{openai_server.url}/v1", timeout_s=5, connect_timeout_s=1),
        api_key=OPENAI_KEY,
    )
    backends[HAIKU] = AnthropicBackend(
        HAIKU,
        CONFIG.models[HAIKU],
        ProviderSpec(kind="anthropic", base_url=anthropic_server.url, timeout_s=5, connect_timeout_s=1),
        api_key=ANTHROPIC_KEY,
    )
    svc = RouterService(CONFIG, backends)
    yield svc
    await svc.close()


def body(model: str, *, stream: bool = False) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "Tell me about Kubernetes."}],
        "stream": stream,
    }


def text_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))


async def wait_for(condition: Callable[[], bool], timeout: float = 1.0, what: str = "the condition") -> float:
    """Polls ``condition`` until true; returns the seconds it took, fails after ``timeout``."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not condition():
        assert loop.time() - start < timeout, f"{what} did not happen within {timeout} s"
        await asyncio.sleep(0.01)
    return loop.time() - start


def assert_breaker_untouched(service: RouterService, model: str) -> None:
    breaker = service.breakers[model]
    assert breaker.current() == CLOSED
    assert breaker.failures == 0
    assert breaker.probes_in_flight == 0


# --- OpenAI -----------------------------------------------------------------------------


async def test_openai_stream_closed_by_the_client_is_abandoned_upstream(
    service: RouterService, fake_openai: FakeOpenAI
) -> None:
    chunks, outcome = await service.stream(body(GPT, stream=True), "c1")
    got = [await chunks.__anext__() for _ in range(3)]
    assert text_of(got) == "Hello from"
    assert all(c["model"] == GPT for c in got)
    await chunks.aclose()  # type: ignore[attr-defined]
    await wait_for(lambda: fake_openai.streams_abandoned == 1, what="the fake seeing the stream abandoned")
    assert fake_openai.streams_finished == 0
    assert outcome.status == "cancelled"
    assert len(fake_openai.requests) == 1  # no retry, no fallback
    assert_breaker_untouched(service, GPT)


async def test_openai_stream_whose_consumer_is_cancelled_is_abandoned_upstream(
    service: RouterService, fake_openai: FakeOpenAI
) -> None:
    got: list[dict[str, Any]] = []
    three = asyncio.Event()

    async def consume() -> None:
        chunks, _ = await service.stream(body(GPT, stream=True), "c2")
        async for chunk in chunks:
            got.append(chunk)
            if len(got) == 3:
                three.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(three.wait(), 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_for(lambda: fake_openai.streams_abandoned == 1, what="the fake seeing the stream abandoned")
    assert fake_openai.streams_finished == 0
    assert_breaker_untouched(service, GPT)


async def test_openai_stream_read_to_the_end_is_finished_not_abandoned(
    service: RouterService, fake_openai: FakeOpenAI
) -> None:
    fake_openai.event_interval_s = 0.0
    chunks, outcome = await service.stream(body(GPT, stream=True), "c3")
    got = [c async for c in chunks]
    assert text_of(got) == "Hello from fake OpenAI: 1 messages."
    await wait_for(lambda: fake_openai.streams_finished == 1, what="the fake seeing the stream finished")
    assert fake_openai.streams_abandoned == 0
    assert outcome.status == "ok"


async def test_openai_stream_closed_before_reading_is_abandoned_upstream(
    service: RouterService, fake_openai: FakeOpenAI
) -> None:
    chunks, _ = await service.stream(body(GPT, stream=True), "c4")
    await chunks.aclose()  # type: ignore[attr-defined]
    await wait_for(lambda: fake_openai.streams_abandoned == 1, what="the fake seeing the stream abandoned")
    assert fake_openai.streams_finished == 0
    assert_breaker_untouched(service, GPT)


async def test_openai_complete_cancelled_before_the_first_byte_closes_the_connection(
    service: RouterService, fake_openai: FakeOpenAI
) -> None:
    fake_openai.inject(delay_s=2)
    task = asyncio.create_task(service.complete(body(GPT), "c5"))
    await asyncio.sleep(0.2)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_for(
        lambda: fake_openai.disconnected_before_answer == 1, what="the fake seeing the connection closed"
    )
    assert len(fake_openai.requests) == 1
    assert_breaker_untouched(service, GPT)


async def test_openai_complete_that_waits_is_answered_when_not_cancelled(
    service: RouterService, fake_openai: FakeOpenAI
) -> None:
    """The delay fault still delays (and answers) a client that stays."""
    fake_openai.inject(delay_s=0.3)
    loop = asyncio.get_running_loop()
    start = loop.time()
    response, outcome = await service.complete(body(GPT), "c6")
    assert loop.time() - start >= 0.3
    assert response["choices"][0]["message"]["content"] == "Hello from fake OpenAI: 1 messages."
    assert outcome.status == "ok"
    assert fake_openai.disconnected_before_answer == 0


# --- Anthropic --------------------------------------------------------------------------


async def test_anthropic_stream_closed_by_the_client_is_unfinished_upstream(
    service: RouterService, fake_anthropic: FakeAnthropic
) -> None:
    chunks, outcome = await service.stream(body(HAIKU, stream=True), "a1")
    got = [await chunks.__anext__() for _ in range(3)]
    assert text_of(got).startswith("Hello")
    assert all(c["model"] == HAIKU for c in got)
    await chunks.aclose()  # type: ignore[attr-defined]
    message_id = got[0]["id"]
    await wait_for(
        lambda: message_id in fake_anthropic.streams_unfinished, what="the fake seeing the stream unfinished"
    )
    assert outcome.status == "cancelled"
    assert len(fake_anthropic.requests) == 1
    assert_breaker_untouched(service, HAIKU)


async def test_anthropic_stream_whose_consumer_is_cancelled_is_unfinished_upstream(
    service: RouterService, fake_anthropic: FakeAnthropic
) -> None:
    got: list[dict[str, Any]] = []
    two = asyncio.Event()

    async def consume() -> None:
        chunks, _ = await service.stream(body(HAIKU, stream=True), "a2")
        async for chunk in chunks:
            got.append(chunk)
            if len(got) == 2:
                two.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(two.wait(), 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    message_id = got[0]["id"]
    await wait_for(
        lambda: message_id in fake_anthropic.streams_unfinished, what="the fake seeing the stream unfinished"
    )
    assert_breaker_untouched(service, HAIKU)


async def test_anthropic_stream_read_to_the_end_is_not_unfinished(
    service: RouterService, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.event_interval_s = 0.0
    chunks, outcome = await service.stream(body(HAIKU, stream=True), "a3")
    got = [c async for c in chunks]
    assert text_of(got).startswith("Hello from fake Anthropic")
    await asyncio.sleep(0.1)
    assert fake_anthropic.streams_unfinished == []
    assert outcome.status == "ok"
