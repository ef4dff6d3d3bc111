"""``AnthropicBackend`` on the real ``anthropic`` SDK against ``FakeAnthropic`` on loopback (no Ray)."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from app.backends.anthropic_client import AnthropicBackend, AnthropicClient, build
from app.backends.registry import build_backends
from app.config import ModelSpec, ProviderSpec, parse_config
from app.errors import (
    RouterError,
    UnsupportedFeatureError,
    UpstreamAuthError,
    UpstreamBadRequestError,
    UpstreamRateLimitedError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from tests.conformance import assert_conforms
from tests.fakes.adapters import assert_unchained, one_provider_config, record_aiohttp_sessions
from tests.fakes.anthropic_server import FakeAnthropic
from tests.support.fake_servers import fake_server_fixtures

KEY = "test-anthropic-key"
MODEL = "claude-sonnet-4-6"
SPEC = ModelSpec(
    provider="anthropic",
    model_id=MODEL,
    context_window=200_000,
    max_output_tokens=2048,
    weights={"cost": 0.5, "latency": 0.5, "quality": 0.5},
    typical_latency_ms=900,
)
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n fake image bytes").decode()

# NOTE: tests and the backend fixture share one loop, named here so that the ini defaults do not
# matter: the SDK's aiohttp session belongs to the loop it was first used on.
pytestmark = pytest.mark.asyncio(loop_scope="module")


server, _reset = fake_server_fixtures(lambda: FakeAnthropic(api_key=KEY))


@pytest.fixture
def fake(_reset: FakeAnthropic) -> FakeAnthropic:
    _reset.event_interval_s, _reset.error_event_after = 0.0, None
    return _reset


def make(
    fake: FakeAnthropic, *, api_key: str = KEY, timeout_s: float = 5.0, url: str | None = None
) -> AnthropicBackend:
    provider = ProviderSpec(
        kind="anthropic",
        api_key_env="ANTHROPIC_API_KEY",
        base_url=url or fake.url,
        timeout_s=timeout_s,
        connect_timeout_s=1.0,
    )
    return AnthropicBackend("claude-test", SPEC, provider, api_key=api_key)


@pytest_asyncio.fixture(loop_scope="module")
async def backend(fake: FakeAnthropic) -> AsyncIterator[AnthropicBackend]:
    b = make(fake)
    yield b
    await b.aclose()


def request(*messages: dict[str, Any], **body: Any) -> dict[str, Any]:
    msgs = list(messages) or [
        {"role": "system", "content": "Travel assistant here."},
        {"role": "user", "content": "Hi"},
    ]
    return {"model": MODEL, "messages": msgs, **body}


async def collect(stream: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    return [chunk async for chunk in stream]


def text_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


async def test_a_plain_answer_with_usage(backend: AnthropicBackend, fake: FakeAnthropic) -> None:
    completion = await backend.complete(request(temperature=0.7, seed=3))
    assert_conforms(completion, "CreateChatCompletionResponse")
    assert completion["model"] == MODEL
    assert (
        completion["choices"][0]["message"]["content"]
        == "Hello from fake Anthropic: 1 messages, system=Travel."
    )
    assert completion["choices"][0]["finish_reason"] == "stop"
    usage = completion["usage"]
    details = usage["prompt_tokens_details"]
    assert details == {"cached_tokens": 0, "cache_write_tokens": 0}  # too short to cache
    assert usage["prompt_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    [sent] = fake.requests
    assert sent.path == "/v1/messages"
    assert sent.headers["anthropic-version"] and sent.headers["authorization"] == f"Bearer {KEY}"
    assert (
        sent.body["system"] == "Travel assistant here." and sent.body["max_tokens"] == SPEC.max_output_tokens
    )
    assert "temperature" not in sent.body  # the fake, like API version 2026-10-21, would answer 400


async def test_the_stream_says_what_complete_says_and_ends_with_usage(backend: AnthropicBackend) -> None:
    completion = await backend.complete(request())
    chunks = await collect(backend.stream(request()))
    for chunk in chunks:
        assert_conforms(chunk, "CreateChatCompletionStreamResponse")
    assert text_of(chunks) == completion["choices"][0]["message"]["content"]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert (
        chunks[-1]["choices"] == []
        and chunks[-1]["usage"]["completion_tokens"] == completion["usage"]["completion_tokens"]
    )
    assert chunks[-1]["usage"]["prompt_tokens"] == completion["usage"]["prompt_tokens"]


async def test_stop_sequences_and_max_tokens_reach_the_model(backend: AnthropicBackend) -> None:
    stopped = await backend.complete(request(stop=[":"]))
    assert stopped["choices"][0] == {
        "index": 0,
        "logprobs": None,
        "finish_reason": "stop",
        "message": {"role": "assistant", "content": "Hello from fake Anthropic", "refusal": None},
    }
    cut = await backend.complete(request(max_tokens=2))
    assert (cut["choices"][0]["message"]["content"], cut["choices"][0]["finish_reason"]) == (
        "Hello from",
        "length",
    )


async def test_a_tool_call_round_trip(backend: AnthropicBackend, fake: FakeAnthropic) -> None:
    ask = {"role": "user", "content": "Weather in Paris?"}
    first = await backend.complete(request(ask, tools=[WEATHER], tool_choice="auto"))
    choice = first["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    [call] = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather" and json.loads(call["function"]["arguments"]) == {
        "city": "Paris"
    }
    answer = {"role": "tool", "tool_call_id": call["id"], "content": "18C and rain"}
    second = await backend.complete(request(ask, choice["message"], answer, tools=[WEATHER]))
    assert second["choices"][0]["finish_reason"] == "stop"
    assert second["choices"][0]["message"]["content"] == "Hello from fake Anthropic: 3 messages, system=none."
    turn = fake.requests[-1].body["messages"][2]
    assert turn == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": call["id"], "content": "18C and rain"}],
    }


async def test_a_streamed_tool_call(backend: AnthropicBackend) -> None:
    chunks = await collect(backend.stream(request({"role": "user", "content": "Weather?"}, tools=[WEATHER])))
    calls = [d for c in chunks if c["choices"] for d in c["choices"][0]["delta"].get("tool_calls", [])]
    assert calls[0]["function"]["name"] == "get_weather" and calls[0]["id"].startswith("toolu_")
    assert json.loads("".join(c["function"]["arguments"] for c in calls)) == {"city": "Paris"}
    assert text_of(chunks) == "Let me check that."
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"


async def test_an_image_reaches_the_model_as_a_base64_block(
    backend: AnthropicBackend, fake: FakeAnthropic
) -> None:
    parts = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
    ]
    await backend.complete(request({"role": "user", "content": parts}))
    blocks = fake.requests[-1].body["messages"][0]["content"]
    assert blocks[1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
    }


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize(
    ("fault", "error", "retryable", "retry_after"),
    [
        ({"status": 400}, UpstreamBadRequestError, False, None),
        ({"status": 429, "retry_after": 1}, UpstreamRateLimitedError, True, 1.0),
        ({"status": 500}, UpstreamUnavailableError, True, None),
        ({"status": 503}, UpstreamUnavailableError, True, None),
        ({"status": 529}, UpstreamUnavailableError, True, None),
    ],
)
async def test_status_faults_map_to_router_errors(
    backend: AnthropicBackend,
    fake: FakeAnthropic,
    stream: bool,
    fault: dict[str, Any],
    error: type[RouterError],
    retryable: bool,
    retry_after: float | None,
) -> None:
    fake.inject(**fault)
    with pytest.raises(RouterError) as exc:
        await (collect(backend.stream(request())) if stream else backend.complete(request()))
    assert type(exc.value) is error
    assert (exc.value.retryable, exc.value.retry_after) == (retryable, retry_after)
    assert KEY not in str(exc.value) and KEY not in exc.value.message


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
async def test_a_refused_key_is_an_auth_error_that_never_shows_the_key(
    fake: FakeAnthropic, stream: bool
) -> None:
    secret = "sk-ant-api03-SECRET-do-not-log"
    backend = make(fake, api_key=secret)
    try:
        with pytest.raises(UpstreamAuthError) as exc:
            await (collect(backend.stream(request())) if stream else backend.complete(request()))
    finally:
        await backend.aclose()
    assert not exc.value.retryable and "invalid x-api-key" in exc.value.message
    assert secret not in str(exc.value) and secret not in repr(exc.value)
    assert_unchained(exc.value)  # no SDK error (with its request) chained


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
async def test_a_slow_first_byte_is_a_timeout(fake: FakeAnthropic, stream: bool) -> None:
    backend = make(fake, timeout_s=0.3)
    fake.inject(delay_s=1.5)
    try:
        with pytest.raises(UpstreamTimeoutError) as exc:
            await (collect(backend.stream(request())) if stream else backend.complete(request()))
    finally:
        await backend.aclose()
    assert exc.value.retryable


async def test_a_refused_connection_is_unavailable(fake: FakeAnthropic) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = make(fake, url=f"http://127.0.0.1:{port}")
    try:
        with pytest.raises(UpstreamUnavailableError):
            await backend.complete(request())
    finally:
        await backend.aclose()


async def _chunks_then_error(backend: AnthropicBackend) -> tuple[list[dict[str, Any]], RouterError]:
    chunks: list[dict[str, Any]] = []
    with pytest.raises(RouterError) as exc:
        async for chunk in backend.stream(request()):
            chunks.append(chunk)
    return chunks, exc.value


async def test_a_stream_cut_after_two_events_fails_after_some_chunks(
    backend: AnthropicBackend, fake: FakeAnthropic
) -> None:
    fake.inject(cut_after=2)
    chunks, error = await _chunks_then_error(backend)
    assert isinstance(error, UpstreamUnavailableError) and error.retryable
    assert chunks and chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert KEY not in error.message
    assert chunks[0]["id"] in fake.streams_unfinished


async def test_a_malformed_event_is_unavailable(backend: AnthropicBackend, fake: FakeAnthropic) -> None:
    fake.inject(malformed_after=4)
    chunks, error = await _chunks_then_error(backend)
    assert isinstance(error, UpstreamUnavailableError) and "malformed" in error.message
    assert text_of(chunks) == "Hello"


async def test_an_error_event_mid_stream_is_mapped_by_its_type(
    backend: AnthropicBackend, fake: FakeAnthropic
) -> None:
    fake.error_event_after = 5  # message_start, block start, ping, 2 deltas, then an overloaded_error event
    chunks, error = await _chunks_then_error(backend)
    assert isinstance(error, UpstreamUnavailableError) and error.retryable and "Overloaded" in error.message
    assert error.message.startswith("claude-test: ")  # named after the model, like every other error
    assert text_of(chunks) == "Hello from"


async def _wait_for(condition: Any, timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "the fake never saw the stream go away"
        await asyncio.sleep(0.02)


async def test_closing_a_stream_early_closes_the_upstream_request(
    backend: AnthropicBackend, fake: FakeAnthropic
) -> None:
    fake.event_interval_s = 0.05
    stream = backend.stream(request())
    first = [await stream.__anext__(), await stream.__anext__()]
    await stream.aclose()  # type: ignore[attr-defined]
    assert first[1]["choices"][0]["delta"] == {"content": "Hello"}
    await _wait_for(lambda: first[0]["id"] in fake.streams_unfinished)


async def test_cancelling_a_consumer_closes_the_upstream_request(
    backend: AnthropicBackend, fake: FakeAnthropic
) -> None:
    fake.event_interval_s = 0.05
    got_one = asyncio.Event()
    ids: list[str] = []

    async def consume() -> None:
        async for chunk in backend.stream(request()):
            ids.append(chunk["id"])
            got_one.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got_one.wait(), 3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await _wait_for(lambda: ids[0] in fake.streams_unfinished)


async def test_unsupported_features_fail_before_any_call(
    backend: AnthropicBackend, fake: FakeAnthropic
) -> None:
    with pytest.raises(UnsupportedFeatureError):
        await backend.complete(request(n=2))
    with pytest.raises(UnsupportedFeatureError):
        await collect(backend.stream(request(logprobs=True)))
    assert fake.requests == []


async def test_build_reads_the_key_from_the_environment_and_is_cheap() -> None:
    config = parse_config(
        {
            "providers": {"anthropic": {"kind": "anthropic", "api_key_env": "ANTHROPIC_API_KEY"}},
            "models": {
                "claude": {
                    "provider": "anthropic",
                    "model_id": MODEL,
                    "context_window": 200000,
                    "weights": {"cost": 0.5, "latency": 0.5, "quality": 0.5},
                    "typical_latency_ms": 900,
                    "pricing": {"provider_id": "anthropic"},
                }
            },
            "routing": {
                "auto": {
                    k: ["claude"]
                    for k in (
                        "long_context",
                        "medium_context",
                        "code_generation",
                        "high_complexity",
                        "low_latency",
                        "default",
                    )
                }
            },
        }
    )
    provider = config.providers["anthropic"]
    backend = build("claude", provider, config, {"ANTHROPIC_API_KEY": "k-123"})
    assert backend.spec.model_id == MODEL and backend.unavailable_reason() is None
    assert backend.client._sdk is None  # the SDK client is made on first use
    with pytest.raises(ValueError, match="ANTHROPIC_API_KEY") as exc:
        build("claude", provider, config, {})
    assert "k-123" not in str(exc.value)


@pytest.mark.parametrize(
    ("fault", "stream"),
    [
        ({"status": 429, "retry_after": 2}, False),
        ({"status": 529}, True),
        ({"cut_after": 2}, True),  # an httpx2/aiohttp error below the SDK
    ],
)
async def test_a_mapped_error_carries_no_sdk_exception(
    backend: AnthropicBackend, fake: FakeAnthropic, stream: bool, fault: dict[str, Any]
) -> None:
    fake.inject(**fault)
    with pytest.raises(RouterError) as exc:
        await (collect(backend.stream(request())) if stream else backend.complete(request()))
    assert_unchained(exc.value)


async def test_two_models_of_one_provider_share_one_client(
    fake: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    sessions = record_aiohttp_sessions(monkeypatch)
    provider = {"kind": "anthropic", "api_key_env": "ANTHROPIC_API_KEY", "base_url": fake.url, "timeout_s": 5}
    config = one_provider_config(provider, {"claude-a": MODEL, "claude-b": "claude-haiku-4-5"})
    backends = build_backends(config, pytest.fail, env={"ANTHROPIC_API_KEY": KEY})
    a, b = backends["claude-a"], backends["claude-b"]
    assert isinstance(a, AnthropicBackend) and isinstance(b, AnthropicBackend)
    assert isinstance(a.client, AnthropicClient) and a.client is b.client
    answer = await a.complete(request())
    chunks = await collect(b.stream({**request(), "model": "claude-haiku-4-5"}))
    assert answer["model"] == MODEL and {c["model"] for c in chunks} == {"claude-haiku-4-5"}
    assert [r.body["model"] for r in fake.requests] == [MODEL, "claude-haiku-4-5"]
    assert fake.requests[0].body["max_tokens"] == 1024  # each model keeps its own output limit
    assert len(sessions) == 1  # one connection pool for the provider
    await a.aclose()
    await b.aclose()  # closing the other model's backend, or the same one again, is harmless
    await a.aclose()
    assert all(session.closed for session in sessions)


# --- the fake itself checks what the real API checks --------------------------------------------
async def _post(fake: FakeAnthropic, body: dict[str, Any], **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=fake.url) as client:
        return await client.post("/v1/messages", json=body, headers=headers)


async def test_the_fake_refuses_what_the_api_refuses(fake: FakeAnthropic) -> None:
    body = {"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}
    ok = await _post(fake, body, **{"x-api-key": KEY, "anthropic-version": "2023-06-01"})
    assert ok.status_code == 200 and ok.json()["type"] == "message"
    refused = [
        (await _post(fake, body, **{"anthropic-version": "2023-06-01"}), 401),
        (await _post(fake, body, **{"x-api-key": KEY}), 400),
        (
            await _post(
                fake,
                {k: v for k, v in body.items() if k != "max_tokens"},
                **{"x-api-key": KEY, "anthropic-version": "2023-06-01"},
            ),
            400,
        ),
        (
            await _post(
                fake, {**body, "temperature": 0.5}, **{"x-api-key": KEY, "anthropic-version": "2026-10-21"}
            ),
            400,
        ),
    ]
    for response, status in refused:
        assert response.status_code == status
        assert response.json()["type"] == "error" and response.json()["error"]["type"] in (
            "authentication_error",
            "invalid_request_error",
        )
    sampled = await _post(
        fake, {**body, "temperature": 0.5}, **{"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    )
    assert sampled.status_code == 200


async def test_the_fake_streams_named_events_in_the_documented_order(fake: FakeAnthropic) -> None:
    body = {"model": MODEL, "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": "Hi"}]}
    response = await _post(
        fake, body, **{"authorization": f"Bearer {KEY}", "anthropic-version": "2026-10-21"}
    )
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [block.split("\n") for block in response.text.strip().split("\n\n")]
    names = [lines[0].removeprefix("event: ") for lines in events]
    datas = [json.loads(lines[1].removeprefix("data: ")) for lines in events]
    assert [d["type"] for d in datas] == names
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-4:] == ["content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    assert datas[-2]["usage"]["output_tokens"] > 0 and datas[0]["message"]["usage"]["input_tokens"] > 0
