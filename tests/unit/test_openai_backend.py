"""The real openai SDK through OpenAIBackend against the fake OpenAI server on loopback."""

from __future__ import annotations

import json

import pytest

from app.backends.openai_client import OpenAIBackend, OpenAIClient
from app.backends.registry import build_backends
from app.config import ModelSpec, ProviderSpec
from app.errors import (
    RouterError,
    UpstreamAuthError,
    UpstreamBadRequestError,
    UpstreamRateLimitedError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from tests.fakes.adapters import assert_unchained, one_provider_config, record_aiohttp_sessions
from tests.fakes.openai_server import FakeOpenAI

KEY = "test-openai-key"
SPEC = ModelSpec(
    provider="openai",
    model_id="gpt-5.5",
    context_window=1_000_000,
    weights={"cost": 0.3, "latency": 0.5, "quality": 1.0},
    typical_latency_ms=2000,
)
WEATHER = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]


@pytest.fixture(scope="module")
def fake():
    server = FakeOpenAI(api_key=KEY).start()
    yield server
    server.stop()


@pytest.fixture
async def backend(fake):
    fake.reset()
    provider = ProviderSpec(
        kind="openai", api_key_env="OPENAI_API_KEY", base_url=f"{fake.url}/v1", timeout_s=5
    )
    backend = OpenAIBackend("gpt", SPEC, provider, api_key=KEY)
    yield backend
    await backend.aclose()


@pytest.fixture
async def closing():
    """Closes the backends a test makes for itself."""
    made: list[OpenAIBackend] = []
    yield made.append
    for backend in made:
        await backend.aclose()


def body(text: str = "Hello", **extra) -> dict:
    return {"model": "gpt-5.5", "messages": [{"role": "user", "content": text}], **extra}


async def collect(stream) -> list[dict]:
    return [chunk async for chunk in stream]


async def test_plain_answer_with_usage(backend, fake):
    response = await backend.complete(body(max_tokens=40))
    assert response["choices"][0]["message"]["content"] == "Hello from fake OpenAI: 1 messages."
    assert (
        response["usage"]["total_tokens"]
        == response["usage"]["prompt_tokens"] + response["usage"]["completion_tokens"]
    )
    sent = fake.requests[-1]
    assert sent.body["max_completion_tokens"] == 40 and "max_tokens" not in sent.body
    assert sent.headers["authorization"] == f"Bearer {KEY}"


async def test_stream_matches_the_plain_answer_and_ends_with_usage(backend):
    chunks = await collect(backend.stream(body()))
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Hello from fake OpenAI: 1 messages."
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
    assert {c["model"] for c in chunks} == {"gpt-5.5"}


async def test_tool_call_round_trip(backend):
    first = await backend.complete(body("Weather in Paris?", tools=WEATHER))
    call = first["choices"][0]["message"]["tool_calls"][0]
    assert first["choices"][0]["finish_reason"] == "tool_calls"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    follow_up = body("Weather in Paris?", tools=WEATHER)
    follow_up["messages"] += [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "18C and sunny"},
    ]
    second = await backend.complete(follow_up)
    assert second["choices"][0]["message"]["content"] == "Hello from fake OpenAI: 3 messages."


async def test_streamed_tool_call_arrives_in_fragments(backend):
    chunks = await collect(backend.stream(body("Weather?", tools=WEATHER)))
    deltas = [tc for c in chunks if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls") or []]
    assert deltas[0]["function"]["name"] == "get_weather"
    assert json.loads("".join(d["function"].get("arguments") or "" for d in deltas)) == {"city": "Paris"}


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, UpstreamBadRequestError),
        (401, UpstreamAuthError),
        (429, UpstreamRateLimitedError),
        (500, UpstreamUnavailableError),
        (503, UpstreamUnavailableError),
    ],
)
async def test_status_faults_map_to_router_errors(backend, fake, status, error_class):
    fake.inject(status=status, retry_after=3 if status == 429 else None)
    with pytest.raises(error_class) as excinfo:
        await backend.complete(body())
    if status == 429:
        assert excinfo.value.retry_after == 3.0
    assert KEY not in str(excinfo.value)


async def test_wrong_key_is_an_auth_error_that_does_not_show_the_key(fake, closing):
    provider = ProviderSpec(kind="openai", base_url=f"{fake.url}/v1")
    backend = OpenAIBackend("gpt", SPEC, provider, api_key="sk-wrong-secret-key")
    closing(backend)
    with pytest.raises(UpstreamAuthError) as excinfo:
        await backend.complete(body())
    assert "sk-wrong-secret-key" not in str(excinfo.value)


async def test_slow_first_byte_times_out(fake, closing):
    provider = ProviderSpec(kind="openai", base_url=f"{fake.url}/v1", timeout_s=0.3)
    backend = OpenAIBackend("gpt", SPEC, provider, api_key=KEY)
    closing(backend)
    fake.inject(delay_s=1.0)
    with pytest.raises(UpstreamTimeoutError):
        await backend.complete(body())


async def test_stream_cut_midway_raises_after_content(backend, fake):
    fake.inject(cut_after=3)
    received = []
    with pytest.raises(UpstreamUnavailableError):
        async for chunk in backend.stream(body()):
            received.append(chunk)
    assert len(received) >= 2


async def test_malformed_stream_event_is_an_upstream_error(backend, fake):
    fake.inject(malformed_after=2)
    with pytest.raises(UpstreamUnavailableError):
        await collect(backend.stream(body()))


async def test_connection_refused_is_a_retryable_upstream_error(closing):
    provider = ProviderSpec(kind="openai_compatible", base_url="http://127.0.0.1:9/v1", connect_timeout_s=1)
    backend = OpenAIBackend("local", SPEC, provider, api_key=None)
    closing(backend)
    with pytest.raises((UpstreamUnavailableError, UpstreamTimeoutError)) as excinfo:
        await backend.complete(body())
    assert excinfo.value.retryable


async def test_compatible_server_without_a_key(closing):
    open_server = FakeOpenAI(api_key=None, name="fake-vllm").start()
    try:
        provider = ProviderSpec(kind="openai_compatible", base_url=f"{open_server.url}/v1")
        backend = OpenAIBackend("mistral", SPEC, provider, api_key=None)
        closing(backend)
        response = await backend.complete(body(max_tokens=3))
        assert response["choices"][0]["finish_reason"] == "length"
        assert open_server.requests[-1].body["max_tokens"] == 3
    finally:
        open_server.stop()


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize("fault", [{"status": 401}, {"status": 429, "retry_after": 1}])
async def test_a_mapped_error_carries_no_sdk_exception(backend, fake, stream, fault):
    fake.inject(**fault)
    with pytest.raises(RouterError) as excinfo:
        await (collect(backend.stream(body())) if stream else backend.complete(body()))
    assert_unchained(excinfo.value)  # the SDK's exception holds the request and its headers


async def test_transport_failures_carry_no_sdk_exception(backend, fake, closing):
    fake.inject(cut_after=2)
    with pytest.raises(RouterError) as excinfo:
        await collect(backend.stream(body()))
    assert_unchained(excinfo.value)
    provider = ProviderSpec(kind="openai_compatible", base_url="http://127.0.0.1:9/v1", connect_timeout_s=1)
    backend = OpenAIBackend("local", SPEC, provider, api_key=None)
    closing(backend)
    for call in (backend.complete(body()), collect(backend.stream(body()))):
        with pytest.raises(RouterError) as excinfo:
            await call
        assert_unchained(excinfo.value)


async def test_two_models_of_one_provider_share_one_client(fake, monkeypatch):
    sessions = record_aiohttp_sessions(monkeypatch)
    provider = {
        "kind": "openai",
        "api_key_env": "OPENAI_API_KEY",
        "base_url": f"{fake.url}/v1",
        "timeout_s": 5,
    }
    config = one_provider_config(provider, {"gpt-a": "gpt-5.5", "gpt-b": "gpt-5.5-mini"})
    backends = build_backends(config, pytest.fail, env={"OPENAI_API_KEY": KEY})
    a, b = backends["gpt-a"], backends["gpt-b"]
    assert isinstance(a.client, OpenAIClient) and a.client is b.client
    answer = await a.complete(body() | {"model": "gpt-5.5"})
    chunks = await collect(b.stream(body() | {"model": "gpt-5.5-mini"}))
    assert answer["model"] == "gpt-5.5" and {c["model"] for c in chunks} == {"gpt-5.5-mini"}
    assert [r.body["model"] for r in fake.requests[-2:]] == ["gpt-5.5", "gpt-5.5-mini"]
    assert len(sessions) == 1  # one connection pool for the provider
    await a.aclose()
    await b.aclose()  # closing the other model's backend, or the same one again, is harmless
    await a.aclose()
    assert all(session.closed for session in sessions)
