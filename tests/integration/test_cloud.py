"""The cloud path end to end: the real Serve app, each provider its local fake, driven by the
official openai SDK as a user's client would be. Adapters run as their own deployments here."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.integration.conftest import FAKE_ENV

pytestmark = pytest.mark.ray

WEATHER = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
EXPLICIT = [("gpt", "openai"), ("claude-sonnet", "anthropic"), ("gemini-pro", "vertex_ai")]


@pytest.fixture(scope="module")
def sdk(cloud_url):
    return openai.OpenAI(base_url=f"{cloud_url}/v1", api_key="unused", max_retries=0, timeout=60)


def ask(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_every_model_is_available_with_keys_and_credentials(cloud_url):
    health = httpx.get(f"{cloud_url}/health").json()
    assert {m: v["reason"] for m, v in health["models"].items() if not v["available"]} == {}
    assert health["status"] == "ok"


@pytest.mark.parametrize(("model", "provider"), EXPLICIT)
def test_explicit_cloud_model_answers(sdk, model, provider):
    raw = sdk.chat.completions.with_raw_response.create(
        model=model, messages=ask("Say hello."), max_tokens=50
    )
    completion = raw.parse()
    assert completion.model == model
    assert raw.headers["x-router-provider"] == provider
    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert float(raw.headers["x-router-cost-usd"]) > 0


@pytest.mark.parametrize(("model", "provider"), EXPLICIT)
def test_explicit_cloud_model_streams(sdk, model, provider):
    plain = sdk.chat.completions.create(model=model, messages=ask("Say hello."), max_tokens=50)
    chunks = list(
        sdk.chat.completions.create(
            model=model,
            messages=ask("Say hello."),
            max_tokens=50,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "stop"
    ]
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
    assert {c.model for c in chunks} == {model}


@pytest.mark.parametrize(("model", "provider"), EXPLICIT)
def test_tool_calls_round_trip_through_every_provider(sdk, model, provider):
    messages = ask("What is the weather in Paris?")
    first = sdk.chat.completions.create(model=model, messages=messages, tools=WEATHER, max_tokens=100)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments), dict)
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature_c": 18})},
    ]
    second = sdk.chat.completions.create(model=model, messages=messages, tools=WEATHER, max_tokens=100)
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content


@pytest.mark.parametrize(("model", "provider"), EXPLICIT)
def test_streamed_tool_calls(sdk, model, provider):
    chunks = list(
        sdk.chat.completions.create(
            model=model,
            messages=ask("What is the weather in Paris?"),
            tools=WEATHER,
            max_tokens=100,
            stream=True,
        )
    )
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert calls[0].function.name == "get_weather"
    arguments = "".join(tc.function.arguments or "" for tc in calls)
    assert isinstance(json.loads(arguments), dict)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "tool_calls"
    ]


def test_auto_routes_a_long_document_to_gemini_pro(sdk):
    document = "Revenue grew in every region this quarter. " * 15000
    raw = sdk.chat.completions.with_raw_response.create(
        model="auto", messages=ask(document + "\n\nSummarize the key points."), max_tokens=200
    )
    assert raw.headers["x-router-model"] == "gemini-pro"
    assert raw.parse().choices[0].message.content


def test_rules_route_complex_analysis_to_premium_cloud(sdk):
    prompt = (
        "Analyze the following code for security vulnerabilities, suggest fixes, and explain the potential "
        "impact of each vulnerability in detail.\n```python\nimport os\nos.system(input())\n```"
    )
    raw = sdk.chat.completions.with_raw_response.create(
        model="auto:rules", messages=ask(prompt), max_tokens=100
    )
    assert raw.headers["x-router-model"] == "claude-opus"
    assert raw.parse().model == "claude-opus"


def test_fast_strategy_uses_the_openai_compatible_binding(sdk, fakes):
    raw = sdk.chat.completions.with_raw_response.create(
        model="auto",
        messages=ask("Quick summary of this ticket"),
        max_tokens=20,
        extra_body={"routing_strategy": "fast"},
    )
    assert raw.headers["x-router-model"] == "mistral-7b-fast"
    assert raw.headers["x-router-provider"] == "kserve"
    assert raw.parse().choices[0].message.content.startswith("Hello from fake OpenAI")
    assert fakes["vllm"].requests[-1].body["model"] == "mistralai/Mistral-7B-Instruct-v0.3"


def test_a_failing_provider_falls_back_to_the_next_in_the_chain(sdk):
    document = "Revenue grew in every region this quarter. " * 15000 + "[[fault@fake-gemini:503]]"
    raw = sdk.chat.completions.with_raw_response.create(
        model="auto", messages=ask(document + "\nSummarize the key points."), max_tokens=100
    )
    assert raw.headers["x-router-model"] == "claude-sonnet"
    assert raw.headers["x-router-fallbacks"] == "1"


def test_an_explicit_model_rate_limited_upstream_is_a_429_with_retry_after(sdk):
    with pytest.raises(openai.RateLimitError) as excinfo:
        sdk.chat.completions.create(model="claude-haiku", messages=ask("hi [[fault@fake-anthropic:429]]"))
    assert excinfo.value.response.headers["retry-after"] == "1"
    assert excinfo.value.body["code"] == "upstream_rate_limited"


def test_no_key_reaches_any_response(cloud_url, sdk):
    seen = [
        httpx.get(f"{cloud_url}/health").text,
        httpx.get(f"{cloud_url}/v1/models").text,
        sdk.chat.completions.with_raw_response.create(model="gpt", messages=ask("hi")).text,
        httpx.post(
            f"{cloud_url}/v1/chat/completions",
            json={"model": "gpt", "messages": ask("[[fault@fake-openai:401]]")},
        ).text,
    ]
    for secret in FAKE_ENV.values():
        if secret != FAKE_ENV["TEST_GCP_PROJECT"]:
            assert not any(secret in text for text in seen)
