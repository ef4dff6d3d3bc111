"""``GeminiBackend`` on the real google-genai SDK (Vertex mode) against ``FakeGemini`` (loopback, no Ray)."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from google.oauth2.credentials import Credentials

from app.backends.gemini_client import GeminiBackend, GeminiClient, build
from app.backends.gemini_translate import StreamTranslator, to_openai_completion
from app.backends.registry import build_backends
from app.config import ModelSpec, ModelWeights, ProviderSpec, RouterConfig
from app.errors import (
    ContextWindowExceededError,
    RouterError,
    UnsupportedFeatureError,
    UpstreamAuthError,
    UpstreamBadRequestError,
    UpstreamNotFoundError,
    UpstreamRateLimitedError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from tests.conformance import assert_conforms
from tests.fakes.adapters import assert_unchained, one_provider_config, record_aiohttp_sessions
from tests.fakes.gemini_server import FakeGemini, camel_keys, payload
from tests.support.fake_servers import fake_server_fixtures

MODEL = "gemini-2.5-flash"
PROJECT, LOCATION = "demo-project", "us-central1"
SPEC = ModelSpec(
    provider="vertex_ai",
    model_id=MODEL,
    context_window=1_048_576,
    max_output_tokens=4096,
    capabilities=["vision", "tools", "json_mode"],
    weights=ModelWeights(cost=0.8, latency=0.8, quality=0.8),
    typical_latency_ms=800,
)
WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="

# NOTE: tests and the backend fixture share one loop: the SDK's aiohttp session belongs to the
# loop it was first used on.
pytestmark = pytest.mark.asyncio(loop_scope="module")


server, fake = fake_server_fixtures(lambda: FakeGemini())


def make(
    fake: FakeGemini,
    *,
    token: str = "test",
    timeout_s: float = 5.0,
    url: str | None = None,
    credentials: Any = "default",
) -> GeminiBackend:
    provider = ProviderSpec(
        kind="vertex_ai",
        project_env="GOOGLE_CLOUD_PROJECT",
        location=LOCATION,
        base_url=url or fake.url,
        timeout_s=timeout_s,
    )
    creds = Credentials(token=token) if credentials == "default" else credentials
    return GeminiBackend(
        "gemini-flash", SPEC, provider, project=PROJECT, location=LOCATION, credentials=creds
    )


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def shared(server: FakeGemini) -> AsyncIterator[GeminiBackend]:
    b = make(server)
    yield b
    await b.aclose()


@pytest.fixture
def backend(shared: GeminiBackend, fake: FakeGemini) -> GeminiBackend:
    return shared


def request(*messages: dict[str, Any], **body: Any) -> dict[str, Any]:
    msgs = list(messages) or [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "What is the capital of France?"},
    ]
    return {"model": MODEL, "messages": msgs, **body}


async def collect(stream: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    return [chunk async for chunk in stream]


async def chunks_then_error(
    stream: AsyncIterator[dict[str, Any]],
) -> tuple[list[dict[str, Any]], RouterError]:
    chunks: list[dict[str, Any]] = []
    with pytest.raises(RouterError) as err:
        async for chunk in stream:
            chunks.append(chunk)
    return chunks, err.value


def text_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def sent(fake: FakeGemini) -> dict[str, Any]:
    """The last request body as the fake read it (camelCase)."""
    return camel_keys(fake.requests[-1].body)


def b64(data: str) -> bytes:
    return base64.urlsafe_b64decode(data.replace("+", "-").replace("/", "_"))


# --- answers ------------------------------------------------------------------------------------
async def test_a_plain_answer_with_usage(backend: GeminiBackend, fake: FakeGemini) -> None:
    completion = await backend.complete(request(temperature=0.3))
    assert_conforms(completion, "CreateChatCompletionResponse")
    assert completion["model"] == MODEL and completion["object"] == "chat.completion"
    assert completion["choices"][0]["message"]["content"] == "Echo: What is the capital of France?"
    assert completion["choices"][0]["finish_reason"] == "stop"
    usage = completion["usage"]
    assert (
        usage["prompt_tokens"] > 0 and usage["prompt_tokens_details"]["cached_tokens"] == 0
    )  # short: no cache
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 12
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    [call] = fake.requests
    prefix = f"/v1beta1/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models"
    assert call.path == f"{prefix}/{MODEL}:generateContent"
    assert call.headers["authorization"] == "Bearer test"
    body = sent(fake)
    assert body["systemInstruction"] == {"parts": [{"text": "Be terse."}]}
    assert body["generationConfig"] == {"temperature": 0.3}


async def test_the_wire_body_is_what_the_translator_made(backend: GeminiBackend, fake: FakeGemini) -> None:
    openai_request = payload("openai_request")
    await backend.complete(openai_request)
    wire, expected = sent(fake), payload("request")
    # the SDK re-encodes bytes in the URL-safe base64 alphabet: compare the bytes
    wire_image = wire["contents"][0]["parts"][1]["inlineData"]
    expected_image = expected["contents"][0]["parts"][1]["inlineData"]
    assert b64(wire_image.pop("data")) == b64(expected_image.pop("data"))
    assert wire == expected


async def test_stream_text_equals_the_answer_and_ends_with_usage(
    backend: GeminiBackend, fake: FakeGemini
) -> None:
    words = " ".join(f"word{i}" for i in range(9))
    completion = await backend.complete(request({"role": "user", "content": words}))
    chunks = await collect(backend.stream(request({"role": "user", "content": words})))
    for chunk in chunks:
        assert_conforms(chunk, "CreateChatCompletionStreamResponse")
    assert fake.requests[-1].path.endswith(f"/models/{MODEL}:streamGenerateContent")
    assert len(chunks) > 4 and chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert text_of(chunks) == completion["choices"][0]["message"]["content"] == f"Echo: {words}"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == completion["usage"]
    assert len({c["id"] for c in chunks}) == 1


async def test_a_tool_call_round_trip(backend: GeminiBackend, fake: FakeGemini) -> None:
    ask = {"role": "user", "content": "Paris"}
    first = await backend.complete(request(ask, tools=[WEATHER], tool_choice="required"))
    assert_conforms(first, "CreateChatCompletionResponse")
    choice = first["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    [tool_call] = choice["message"]["tool_calls"]
    assert json.loads(tool_call["function"]["arguments"]) == {"city": "Paris"}
    assert sent(fake)["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    assert (
        sent(fake)["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"]
        == WEATHER["function"]["parameters"]
    )

    result = {"role": "tool", "tool_call_id": tool_call["id"], "content": '{"temp_c": 18}'}
    second = await backend.complete(request(ask, choice["message"], result, tools=[WEATHER]))
    assert second["choices"][0]["message"]["content"] == 'Tool get_weather said {"temp_c": 18}'
    model_turn, result_turn = sent(fake)["contents"][1:]
    assert model_turn["parts"][0]["functionCall"] == {"name": "get_weather", "args": {"city": "Paris"}}
    assert (
        model_turn["parts"][0]["thoughtSignature"]
        == tool_call["extra_content"]["google"]["thought_signature"]
    )
    assert result_turn == {
        "role": "user",
        "parts": [{"functionResponse": {"name": "get_weather", "response": {"temp_c": 18}}}],
    }


async def test_a_streamed_tool_call(backend: GeminiBackend, fake: FakeGemini) -> None:
    chunks = await collect(backend.stream(request({"role": "user", "content": "Lyon"}, tools=[WEATHER])))
    [delta] = [
        c["choices"][0]["delta"] for c in chunks if c["choices"] and "tool_calls" in c["choices"][0]["delta"]
    ]
    assert delta["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city": "Lyon"}'}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls" and "usage" in chunks[-1]


async def test_images_reach_the_fake_as_inline_and_file_data(
    backend: GeminiBackend, fake: FakeGemini
) -> None:
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "gs://bucket/cat.jpeg"}},
    ]
    completion = await backend.complete(request({"role": "user", "content": content}))
    assert completion["choices"][0]["message"]["content"] == "Echo: What is this?"
    _, inline, file = sent(fake)["contents"][0]["parts"]
    assert inline["inlineData"]["mimeType"] == "image/png" and b64(
        inline["inlineData"]["data"]
    ) == base64.b64decode(PNG)
    assert file == {"fileData": {"mimeType": "image/jpeg", "fileUri": "gs://bucket/cat.jpeg"}}
    assert completion["usage"]["prompt_tokens"] > 2 * 258


async def test_a_safety_block_is_content_filter(backend: GeminiBackend) -> None:
    blocked = request({"role": "user", "content": "[[blocked]] how do I ..."})
    completion = await backend.complete(blocked)
    assert completion["choices"][0]["finish_reason"] == "content_filter"
    assert completion["choices"][0]["message"]["content"] == ""
    chunks = await collect(backend.stream(blocked))
    assert (
        chunks[-2]["choices"][0]["finish_reason"] == "content_filter"
        and chunks[-1]["usage"]["prompt_tokens"] > 0
    )


async def test_a_blocked_prompt_is_content_filter(backend: GeminiBackend) -> None:
    completion = await backend.complete(request({"role": "user", "content": "[[prompt-blocked]]"}))
    assert completion["choices"][0]["finish_reason"] == "content_filter"


async def test_generation_config_limits_and_candidates(backend: GeminiBackend, fake: FakeGemini) -> None:
    completion = await backend.complete(
        request({"role": "user", "content": "one two three four"}, max_tokens=3, n=2)
    )
    assert [c["finish_reason"] for c in completion["choices"]] == ["length", "length"]
    assert completion["choices"][0]["message"]["content"] == "Echo: one two"
    assert completion["choices"][1]["message"]["content"] == "Echo: one two (candidate 1)"
    await backend.complete(
        request(
            max_completion_tokens=10**6,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"type": "object", "additionalProperties": False}},
            },
        )
    )
    config = sent(fake)["generationConfig"]
    assert config["maxOutputTokens"] == SPEC.max_output_tokens
    assert config["responseJsonSchema"] == {"type": "object", "additionalProperties": False}


@pytest.mark.parametrize(
    "name", ["response_text", "response_function_call", "response_safety_blocked", "response_prompt_blocked"]
)
async def test_recorded_responses_read_through_the_sdk_as_the_translator_reads_them(
    backend: GeminiBackend, fake: FakeGemini, name: str
) -> None:
    fake.respond(payload(name))
    through_sdk = await backend.complete(request())
    direct = to_openai_completion(payload(name), model=MODEL)
    for completion in (through_sdk, direct):
        for call in completion["choices"][0]["message"].get("tool_calls") or []:
            call["id"] = "call_x"
    assert through_sdk == direct


async def test_recorded_stream_events_read_through_the_sdk(backend: GeminiBackend, fake: FakeGemini) -> None:
    fake.respond(payload("stream_text"))
    chunks = await collect(backend.stream(request()))
    translator = StreamTranslator(MODEL, chunks[0]["id"], created=chunks[0]["created"])
    direct = [c for event in payload("stream_text") for c in translator.feed(event)] + translator.finish()
    assert chunks == direct


# --- faults -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fault", "cls"),
    [
        ({"status": 400}, UpstreamBadRequestError),
        ({"status": 400, "body": payload("error_400_token_limit")}, ContextWindowExceededError),
        ({"status": 401}, UpstreamAuthError),
        ({"status": 403}, UpstreamAuthError),
        ({"status": 404}, UpstreamNotFoundError),
        ({"status": 500}, UpstreamUnavailableError),
        ({"status": 503}, UpstreamUnavailableError),
    ],
)
@pytest.mark.parametrize("streaming", [False, True])
async def test_error_statuses_map_to_router_errors(
    backend: GeminiBackend, fake: FakeGemini, fault: dict[str, Any], cls: type, streaming: bool
) -> None:
    fake.inject(**fault)
    with pytest.raises(RouterError) as err:
        if streaming:
            await collect(backend.stream(request()))
        else:
            await backend.complete(request())
    assert type(err.value) is cls
    assert_unchained(err.value)  # the SDK's exception holds the request and its headers
    assert len(fake.requests) == 1  # the SDK does not retry behind the router's back


async def test_a_429_carries_retry_after_and_is_not_retried(backend: GeminiBackend, fake: FakeGemini) -> None:
    fake.inject(status=429, retry_after=2)
    with pytest.raises(UpstreamRateLimitedError) as err:
        await backend.complete(request())
    assert err.value.retry_after == 2.0 and err.value.retryable
    assert "Resource exhausted" in err.value.message and len(fake.requests) == 1
    chunks, error = await chunks_then_error(
        backend.stream(request({"role": "user", "content": "[[fault:429]] hi"}))
    )
    assert chunks == [] and isinstance(error, UpstreamRateLimitedError) and error.retry_after == 1.0


async def test_a_slow_first_byte_beyond_the_timeout(fake: FakeGemini) -> None:
    backend = make(fake, timeout_s=0.3)
    fake.inject(delay_s=1.0)
    with pytest.raises(UpstreamTimeoutError):  # an answer after 1 s would have succeeded: it timed out
        await backend.complete(request())
    fake.inject(delay_s=1.0)
    with pytest.raises(UpstreamTimeoutError):
        await collect(backend.stream(request()))
    await backend.aclose()


async def test_a_refused_connection_fails_fast(fake: FakeGemini) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = make(fake, url=f"http://127.0.0.1:{port}")
    started = time.monotonic()
    with pytest.raises(UpstreamUnavailableError) as err:
        await backend.complete(request())
    assert time.monotonic() - started < 0.9  # no implicit SDK sleep-and-retry
    assert_unchained(err.value)
    await backend.aclose()


async def test_a_stream_cut_after_two_events(backend: GeminiBackend, fake: FakeGemini) -> None:
    fake.inject(cut_after=2)
    chunks, error = await chunks_then_error(
        backend.stream(request({"role": "user", "content": "a b c d e f g h"}))
    )
    assert isinstance(error, UpstreamUnavailableError) and error.retryable
    assert_unchained(error)
    assert text_of(chunks) == "Echo: a b c"


async def test_a_malformed_event(backend: GeminiBackend, fake: FakeGemini) -> None:
    fake.inject(malformed_after=1)
    chunks, error = await chunks_then_error(
        backend.stream(request({"role": "user", "content": "a b c d e f g h"}))
    )
    assert isinstance(error, UpstreamUnavailableError) and "malformed" in error.message
    assert text_of(chunks) == "Echo: a"


async def test_an_error_event_mid_stream(backend: GeminiBackend, fake: FakeGemini) -> None:
    fake.respond([payload("stream_text")[0], payload("error_503")])
    chunks, error = await chunks_then_error(backend.stream(request()))
    assert isinstance(error, UpstreamUnavailableError) and "overloaded" in error.message
    assert_unchained(error)
    assert text_of(chunks) == "Tomorrow in Paris"


async def _wait_for(condition: Any, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the fake never saw the stream go away"
        await asyncio.sleep(0.02)


async def test_closing_a_stream_early_closes_the_upstream(backend: GeminiBackend, fake: FakeGemini) -> None:
    before = fake.streams_abandoned
    stream = backend.stream(request({"role": "user", "content": "[[slow]] " + "w " * 40}))
    first = [await stream.__anext__(), await stream.__anext__()]
    await stream.aclose()  # type: ignore[attr-defined]
    assert first[1]["choices"][0]["delta"]["content"].startswith("Echo:")
    await _wait_for(lambda: fake.streams_abandoned == before + 1, timeout=0.5)


async def test_cancelling_a_consumer_closes_the_upstream(backend: GeminiBackend, fake: FakeGemini) -> None:
    before = fake.streams_abandoned
    got_one = asyncio.Event()

    async def consume() -> None:
        async for _ in backend.stream(request({"role": "user", "content": "[[slow]] " + "w " * 40})):
            got_one.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got_one.wait(), 3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await _wait_for(lambda: fake.streams_abandoned == before + 1, timeout=0.5)


async def test_unsupported_features_fail_before_any_call(backend: GeminiBackend, fake: FakeGemini) -> None:
    with pytest.raises(UnsupportedFeatureError) as err:
        await backend.complete(request(logit_bias={"1": 5}))
    assert err.value.param == "logit_bias"
    with pytest.raises(UnsupportedFeatureError):
        await collect(backend.stream(request(modalities=["audio"])))
    assert fake.requests == []


# --- credentials ----------------------------------------------------------------------------------
async def test_a_refused_token_is_an_auth_error(fake: FakeGemini) -> None:
    backend = make(fake, token="denied")
    with pytest.raises(UpstreamAuthError) as err:
        await backend.complete(request())
    assert "Permission 'aiplatform.endpoints.predict' denied" in err.value.message and not err.value.retryable
    await backend.aclose()


async def test_credentials_that_cannot_refresh_are_an_auth_error(fake: FakeGemini) -> None:
    backend = make(fake, credentials=Credentials(token=None))
    with pytest.raises(UpstreamAuthError):
        await backend.complete(request())
    assert fake.requests == []
    await backend.aclose()


def no_adc(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Environment in which ADC discovery fails fast and offline."""
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing-key.json"))
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:1")
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:1")
    monkeypatch.setenv("NO_GCE_CHECK", "True")


async def test_without_adc_the_backend_says_why(
    fake: FakeGemini, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    no_adc(monkeypatch, tmp_path)
    backend = make(fake, credentials=None)
    assert backend.unavailable_reason() is None  # nothing is discovered before it is asked for
    reason = await backend.check_credentials()
    assert reason is not None and reason.startswith("no Google Application Default Credentials:")
    assert "missing-key.json" in reason and backend.unavailable_reason() == reason
    with pytest.raises(UpstreamAuthError) as err:
        await backend.complete(request())
    assert reason in err.value.message
    with pytest.raises(UpstreamAuthError):
        await collect(backend.stream(request()))
    assert fake.requests == []


async def test_adc_is_discovered_once_off_the_event_loop(
    fake: FakeGemini, monkeypatch: pytest.MonkeyPatch
) -> None:
    import google.auth

    threads: list[threading.Thread] = []

    def default(scopes: list[str]) -> tuple[Credentials, str]:
        assert scopes == ["https://www.googleapis.com/auth/cloud-platform"]
        threads.append(threading.current_thread())
        return Credentials(token="adc-token"), "other-project"

    monkeypatch.setattr(google.auth, "default", default)
    backend = make(fake, credentials=None)
    assert await backend.check_credentials() is None
    await backend.complete(request())
    await collect(backend.stream(request()))
    assert len(threads) == 1 and threads[0] is not threading.main_thread()
    assert fake.requests[-1].headers["authorization"] == "Bearer adc-token"
    assert f"/projects/{PROJECT}/" in fake.requests[-1].path  # the configured project, not ADC's
    await backend.aclose()


async def test_build_reads_the_project_from_the_environment() -> None:
    raw: dict[str, Any] = {
        "providers": {"vertex_ai": {"kind": "vertex_ai", "project_env": "GOOGLE_CLOUD_PROJECT"}},
        "models": {
            "gemini-flash": {
                "provider": "vertex_ai",
                "model_id": MODEL,
                "context_window": 1_048_576,
                "weights": {"cost": 0.8, "latency": 0.8, "quality": 0.8},
                "pricing": {"provider_id": "google"},
                "typical_latency_ms": 800,
            }
        },
    }
    config = RouterConfig.model_validate(raw)  # no cross-checks: the routing defaults name other models
    backend = build("gemini-flash", config.providers["vertex_ai"], config, {"GOOGLE_CLOUD_PROJECT": "p-123"})
    client = backend.client
    assert (client.project, client.location, backend.spec.model_id) == ("p-123", "us-central1", MODEL)
    assert backend.unavailable_reason() is None and backend.client._sdk is None  # cheap: nothing built yet
    raw["providers"]["vertex_ai"]["location"] = "europe-west4"
    config = RouterConfig.model_validate(raw)
    backend = build("gemini-flash", config.providers["vertex_ai"], config, {"GOOGLE_CLOUD_PROJECT": "p"})
    assert backend.client.location == "europe-west4"


async def test_two_models_of_one_provider_share_one_client(
    fake: FakeGemini, monkeypatch: pytest.MonkeyPatch
) -> None:
    import google.auth

    discovered: list[str] = []

    def default(scopes: list[str]) -> tuple[Credentials, str]:
        discovered.append("adc")
        return Credentials(token="adc-token"), "other-project"

    monkeypatch.setattr(google.auth, "default", default)
    sessions = record_aiohttp_sessions(monkeypatch)
    provider = {
        "kind": "vertex_ai",
        "project_env": "GOOGLE_CLOUD_PROJECT",
        "location": LOCATION,
        "base_url": fake.url,
        "timeout_s": 5,
    }
    config = one_provider_config(provider, {"flash": MODEL, "pro": "gemini-2.5-pro"})
    backends = build_backends(config, pytest.fail, env={"GOOGLE_CLOUD_PROJECT": PROJECT})
    a, b = backends["flash"], backends["pro"]
    assert isinstance(a, GeminiBackend) and isinstance(b, GeminiBackend)
    assert isinstance(a.client, GeminiClient) and a.client is b.client
    assert await a.check_credentials() is None and await b.check_credentials() is None
    answer = await a.complete(request())
    chunks = await collect(b.stream({**request(), "model": "gemini-2.5-pro"}))
    assert answer["model"] == MODEL and {c["model"] for c in chunks} == {"gemini-2.5-pro"}
    assert [r.path.split("/models/")[1].split(":")[0] for r in fake.requests] == [MODEL, "gemini-2.5-pro"]
    assert discovered == ["adc"]  # credentials found once for the provider
    assert len(sessions) == 1  # one connection pool for the provider
    await a.aclose()
    await b.aclose()  # closing the other model's backend, or the same one again, is harmless
    await a.aclose()
    assert all(session.closed for session in sessions)


async def test_the_fake_wants_a_bearer_token_and_google_error_bodies(fake: FakeGemini) -> None:
    import httpx

    path = (
        f"/v1beta1/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/{MODEL}:generateContent"
    )
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    async with httpx.AsyncClient(base_url=fake.url) as http:
        missing = await http.post(path, json=body)
        denied = await http.post(path, json=body, headers={"Authorization": "Bearer denied"})
        v1 = await http.post(path.replace("v1beta1", "v1"), json=body, headers={"Authorization": "Bearer t"})
    assert (missing.status_code, missing.json()["error"]["status"]) == (401, "UNAUTHENTICATED")
    assert (denied.status_code, denied.json()["error"]["status"]) == (403, "PERMISSION_DENIED")
    assert v1.json()["candidates"][0]["content"]["parts"] == [{"text": "Echo: hi"}]
