"""Issue #14, item 4: on the local profile, every request field is honoured or refused with a 400
naming it, never answered with a 200 that ignores it.

The real FastAPI app over a ``RouterService`` whose self-hosted models are the real CPU engine
(in-process, on the tiny demo model; no Ray) and whose cloud models have no credentials, as on a
laptop. Driven by the official ``openai`` SDK and by the real ``langchain-openai``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import openai
import pytest
from fastapi.testclient import TestClient
from langchain_core.messages import AIMessage
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field

from app.api.routes import create_app
from app.config import load_config, parse_config
from app.engine.demo_model import build_demo_model
from app.engine.transformers_engine import TransformersChatEngine
from tests.conformance import assert_conforms
from tests.fakes.engine_handle import local_backends
from tests.support.wiring import make_service

pytestmark = pytest.mark.slow  # the real CPU engine / property-based fuzzing: `make test-fast` skips it

CONFIG = Path(__file__).parents[2] / "deployments/configs/router.yaml"
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 12},
        "days": {"type": "integer"},
        "unit": {"enum": ["celsius", "fahrenheit"]},
        "hourly": {"type": "boolean"},
    },
    "required": ["city", "days", "unit"],
    "additionalProperties": False,
}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": WEATHER_SCHEMA,
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}},
    },
}


class Weather(BaseModel):
    """Get the weather in a city."""

    city: str = Field(description="The city.")
    days: int


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> TransformersChatEngine:
    path = build_demo_model(tmp_path_factory.mktemp("models") / "demo")
    eng = TransformersChatEngine(str(path), served_name="demo", torch_threads=1, default_max_tokens=64)
    eng.start()
    return eng


def make_client(engine: TransformersChatEngine, raw: dict[str, Any] | None = None):
    config = parse_config(raw, source="variant.yaml") if raw is not None else load_config(CONFIG)
    backends, handle = local_backends(config, engine)
    return TestClient(create_app(make_service(config, backends))), handle


@pytest.fixture(scope="module")
def local(engine):
    client, handle = make_client(engine)
    with client:
        yield client, handle


@pytest.fixture
def client(local) -> TestClient:
    return local[0]


@pytest.fixture
def handle(local):
    return local[1]


@pytest.fixture
def sdk(client) -> openai.OpenAI:
    return openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=client, max_retries=0)


@pytest.fixture
def llm(client) -> ChatOpenAI:
    return ChatOpenAI(
        model="auto",
        base_url="http://testserver/v1",
        api_key="unused",
        http_client=client,
        max_retries=0,
        max_tokens=96,
        temperature=0,
    )


def chat(client: TestClient, **body: Any):
    return client.post(
        "/v1/chat/completions", json={"model": "auto", "messages": ASK, "max_tokens": 48, **body}
    )


def sse(response) -> list[dict[str, Any]]:
    lines = [line[6:] for line in response.text.split("\n") if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


# --- tools ----------------------------------------------------------------------------------
def test_tool_choice_required_returns_a_call_matching_the_tool_schema(sdk, handle):
    raw = sdk.chat.completions.with_raw_response.create(
        model="auto", messages=ASK, tools=[WEATHER_TOOL], tool_choice="required", max_tokens=96, temperature=0
    )
    assert raw.headers["x-router-model"] == "mistral-7b-instruct"  # the local profile's self-hosted model
    assert_conforms(raw.http_response.json(), "CreateChatCompletionResponse")
    answer = raw.parse()
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert choice.message.tool_calls
    for call in choice.message.tool_calls:
        assert call.type == "function" and call.id.startswith("call_")
        assert call.function.name == "get_weather"
        jsonschema.validate(json.loads(call.function.arguments), WEATHER_SCHEMA)
    assert handle.calls[-1]["tool_choice"] == "required"


def test_a_named_function_is_called_even_among_several_tools(sdk):
    answer = sdk.chat.completions.create(
        model="auto",
        messages=ASK,
        tools=[TIME_TOOL, WEATHER_TOOL],
        parallel_tool_calls=False,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=96,
        temperature=0,
    )
    (call,) = answer.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and answer.choices[0].finish_reason == "tool_calls"
    jsonschema.validate(json.loads(call.function.arguments), WEATHER_SCHEMA)


def test_required_with_several_tools_calls_one_of_them(sdk):
    answer = sdk.chat.completions.create(
        model="auto",
        messages=ASK,
        tools=[TIME_TOOL, WEATHER_TOOL],
        tool_choice="required",
        parallel_tool_calls=False,
        max_tokens=96,
        temperature=1,
        seed=5,
    )
    (call,) = answer.choices[0].message.tool_calls
    assert call.function.name in ("get_time", "get_weather")
    assert isinstance(json.loads(call.function.arguments), dict)


def test_forced_tool_call_streams_as_tool_call_chunks(client):
    response = chat(
        client,
        tools=[WEATHER_TOOL],
        tool_choice="required",
        max_tokens=96,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = sse(response)
    for chunk in chunks:
        assert_conforms(chunk, "CreateChatCompletionStreamResponse")
    calls = [
        d["tool_calls"][0]
        for c in chunks
        if c["choices"]
        for d in [c["choices"][0]["delta"]]
        if d.get("tool_calls")
    ]
    assert calls and all(c["function"]["name"] == "get_weather" for c in calls)
    jsonschema.validate(json.loads(calls[0]["function"]["arguments"]), WEATHER_SCHEMA)
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes[-1] == "tool_calls" and chunks[-1]["usage"]["completion_tokens"] > 0


def test_tool_choice_auto_puts_the_tools_in_the_prompt_and_lets_the_model_answer(engine, sdk):
    from app.engine.request_fields import read_fields

    request = {"messages": ASK, "tools": [WEATHER_TOOL]}
    fields = read_fields(request, len(engine.tokenizer), engine.grammar)
    prompt = engine.tokenizer.decode(engine.prompt_ids(request, fields))
    assert "get_weather" in prompt and "<tool_call>" in prompt  # the demo template has no tools: described
    answer = sdk.chat.completions.create(model="auto", messages=ASK, tools=[WEATHER_TOOL], max_tokens=8)
    choice = answer.choices[0]  # the random demo model answers in text; a call would be parsed
    assert choice.message.content and choice.finish_reason in ("stop", "length")


def test_a_conversation_with_tool_results_goes_through(sdk):
    history = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
    ]  # fmt: skip
    answer = sdk.chat.completions.create(model="auto", messages=history, tools=[WEATHER_TOOL], max_tokens=6)
    assert answer.choices[0].message.content


# --- response_format ------------------------------------------------------------------------
def test_json_object_is_a_json_object(sdk):
    answer = sdk.chat.completions.create(
        model="auto", messages=ASK, max_tokens=40, temperature=0, response_format={"type": "json_object"}
    )
    assert answer.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(answer.choices[0].message.content), dict)


@pytest.mark.parametrize("temperature", [0, 1.2])
def test_json_schema_output_validates_against_the_schema(sdk, temperature):
    fmt = {
        "type": "json_schema",
        "json_schema": {"name": "weather", "schema": WEATHER_SCHEMA, "strict": True},
    }
    answer = sdk.chat.completions.create(
        model="auto", messages=ASK, max_tokens=48, temperature=temperature, seed=11, response_format=fmt
    )
    assert answer.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(answer.choices[0].message.content), WEATHER_SCHEMA)


def test_json_schema_streams_valid_json(client):
    fmt = {"type": "json_schema", "json_schema": {"name": "weather", "schema": WEATHER_SCHEMA}}
    chunks = sse(chat(client, response_format=fmt, stream=True))
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    jsonschema.validate(json.loads(text), WEATHER_SCHEMA)
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"


def test_recursive_schema_with_refs_and_any_of(sdk):
    schema = {
        "$defs": {"Node": {"type": "object", "properties": {
            "label": {"type": "string", "maxLength": 8},
            "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}, "maxItems": 2},
            "weight": {"anyOf": [{"type": "number"}, {"type": "null"}]}},
            "required": ["label", "children", "weight"], "additionalProperties": False}},
        "$ref": "#/$defs/Node",
    }  # fmt: skip
    fmt = {"type": "json_schema", "json_schema": {"name": "tree", "schema": schema, "strict": True}}
    answer = sdk.chat.completions.create(
        model="auto", messages=ASK, max_tokens=64, temperature=1, seed=3, response_format=fmt
    )
    jsonschema.validate(json.loads(answer.choices[0].message.content), schema)


# --- logprobs --------------------------------------------------------------------------------
def test_logprobs_are_the_models_own(engine, client, sdk):
    import torch

    raw = chat(client, max_tokens=5, temperature=0, logprobs=True, top_logprobs=3).json()
    assert_conforms(raw, "CreateChatCompletionResponse")
    answer = sdk.chat.completions.create(
        model="auto", messages=ASK, max_tokens=5, temperature=0, logprobs=True, top_logprobs=3
    )
    choice = answer.choices[0]
    content = choice.logprobs.content
    assert len(content) == 5 and "".join(t.token for t in content) == choice.message.content
    for item in content:
        assert item.logprob <= 0 and bytes(item.bytes).decode() == item.token
        assert (
            len(item.top_logprobs) == 3 and item.top_logprobs[0].logprob >= item.logprob
        )  # greedy: the top one
        assert [t.logprob for t in item.top_logprobs] == sorted(
            (t.logprob for t in item.top_logprobs), reverse=True
        )
    prompt = torch.tensor([engine.prompt_ids({"messages": ASK})])
    with torch.no_grad():
        first = torch.log_softmax(engine.model(prompt).logits[0, -1].float(), -1)
    assert first.max().item() == pytest.approx(content[0].logprob, abs=1e-4)


def test_logprobs_stream_with_their_tokens(client):
    chunks = sse(chat(client, max_tokens=6, temperature=0, logprobs=True, top_logprobs=1, stream=True))
    text, tokens = "", []
    for chunk in chunks:
        assert_conforms(chunk, "CreateChatCompletionStreamResponse")
        if chunk["choices"]:
            choice = chunk["choices"][0]
            text += choice["delta"].get("content") or ""
            tokens += [t["token"] for t in ((choice.get("logprobs") or {}).get("content") or [])]
    assert len(tokens) == 6 and "".join(tokens) == text


def test_logit_bias_and_penalties_are_applied(engine, sdk):
    import torch

    prompt = torch.tensor([engine.prompt_ids({"messages": ASK})])
    with torch.no_grad():
        greedy_first = int(engine.model(prompt).logits[0, -1].argmax())

    def first_and_text(**extra: Any) -> tuple[str, str]:
        answer = sdk.chat.completions.create(
            model="auto", messages=ASK, max_tokens=30, temperature=0, logprobs=True, **extra
        )
        return answer.choices[0].logprobs.content[0].token, answer.choices[0].message.content

    plain_first, plain = first_and_text()
    assert plain_first == engine.tokenizer.decode([greedy_first])
    banned_first, _ = first_and_text(logit_bias={str(greedy_first): -100})
    assert banned_first != plain_first
    assert first_and_text(frequency_penalty=2.0, presence_penalty=2.0)[1] != plain


# --- refusals --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"reasoning_effort": "high"}, "reasoning_effort"),
        ({"audio": {"voice": "alloy", "format": "mp3"}}, "audio"),
        ({"prediction": {"type": "content", "content": "x"}}, "prediction"),
        ({"functions": [{"name": "f", "parameters": {}}]}, "functions"),
        ({"some_vendor_extension": 1}, "some_vendor_extension"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"logit_bias": {"999999": 5}}, "logit_bias"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [{"type": "web_search"}]}, "tools[0]"),
        (
            {"tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "tool_choice",
        ),
        ({"response_format": {"type": "json_object"}, "tools": [WEATHER_TOOL]}, "response_format"),
        ({"response_format": {"type": "json_object"}, "stop": ["}"]}, "stop"),
        ({"response_format": {"type": "json_object"}, "max_tokens": 1}, "max_tokens"),
        ({"response_format": {"type": "yaml"}}, "response_format"),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"type": "string", "pattern": "^a+$"}},
                }
            },
            "response_format",
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {
                        "name": "x",
                        "schema": {
                            "type": "object",
                            "properties": {"when": {"type": "string", "format": "date-time"}},
                        },
                    },
                }
            },
            "response_format",
        ),
        (
            {
                "tools": [
                    {
                        "type": "function",
                        "function": {
                            "name": "f",
                            "strict": True,
                            "parameters": {
                                "type": "object",
                                "properties": {"n": {"type": "integer", "minimum": 1}},
                            },
                        },
                    }
                ],
                "tool_choice": "required",
            },
            "tools",
        ),
    ],
)
def test_what_the_engine_cannot_honour_is_a_400_naming_it(client, sdk, extra, param):
    response = chat(client, **extra)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as info:  # and the SDK says so too
        sdk.chat.completions.create(model="auto", messages=ASK, max_tokens=8, extra_body=extra)
    assert info.value.param == param


def test_harmless_fields_are_accepted(client):
    response = chat(
        client,
        max_tokens=4,
        user="u-1",
        metadata={"team": "a"},
        store=False,
        service_tier="auto",
        modalities=["text"],
        safety_identifier="s",
        prompt_cache_key="k",
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("extra", "param"),
    [({"response_format": {"type": "json_object"}}, "response_format"), ({"logprobs": True}, "logprobs")],
)
def test_a_model_without_the_capability_named_explicitly_is_a_400(client, extra, param):
    response = client.post("/v1/chat/completions", json={"model": "claude-haiku", "messages": ASK, **extra})
    assert response.status_code == 400 and response.json()["error"]["param"] == param


def test_route_shows_models_dropped_for_json_mode(client):
    plan = client.post(
        "/v1/route?assume_available=true",
        json={"model": "auto", "messages": ASK, "response_format": {"type": "json_object"}},
    ).json()
    assert ("claude-haiku", "no json_mode capability for response_format") in [
        (d["model"], d["reason"]) for d in plan["dropped"]
    ]


@pytest.mark.parametrize(
    ("capability", "extra", "param"),
    [
        ("json_mode", {"response_format": {"type": "json_object"}}, "response_format"),
        ("logprobs", {"logprobs": True}, "logprobs"),
        ("tools", {"tools": [WEATHER_TOOL], "tool_choice": "required"}, "tools"),
    ],
)
def test_local_profile_without_the_capability_is_a_400_not_a_silent_200(engine, capability, extra, param):
    import yaml

    raw = yaml.safe_load(CONFIG.read_text())
    for spec in raw["models"].values():
        spec["capabilities"] = [c for c in spec.get("capabilities", []) if c != capability]
    client, _ = make_client(engine, raw)
    with client:
        response = chat(client, **extra)
    assert response.status_code == 400 and response.json()["error"]["param"] == param


# --- LangChain ------------------------------------------------------------------------------
def test_langchain_invoke_stream_batch(llm):
    answer = llm.invoke("What is Kubernetes?")
    assert isinstance(answer, AIMessage) and answer.content
    assert answer.response_metadata["model_name"] == "mistral-7b-instruct"
    chunks = list(llm.stream("What is Kubernetes?", stream_usage=True))
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    assert merged.content and merged.usage_metadata["output_tokens"] > 0
    answers = llm.batch(["What is Kubernetes?", "Hi"])
    assert len(answers) == 2 and all(a.content for a in answers)


@pytest.mark.parametrize("tool_choice", ["any", "required", "Weather"])
def test_langchain_bind_tools_invoke_returns_a_tool_call(llm, tool_choice):
    answer = llm.bind_tools([Weather], tool_choice=tool_choice).invoke("What is the weather in Paris?")
    assert answer.tool_calls and answer.tool_calls[0]["name"] == "Weather"
    Weather.model_validate(answer.tool_calls[0]["args"])
    assert answer.response_metadata["finish_reason"] == "tool_calls"


def test_langchain_bind_tools_streams_a_tool_call(llm):
    chunks = list(llm.bind_tools([Weather], tool_choice="Weather").stream("What is the weather in Paris?"))
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    assert merged.tool_calls and merged.tool_calls[0]["name"] == "Weather"
    Weather.model_validate(merged.tool_calls[0]["args"])


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_langchain_structured_output_returns_the_model(llm, method):
    result = llm.with_structured_output(Weather, method=method).invoke("What is the weather in Paris?")
    assert isinstance(result, Weather)


def test_langchain_structured_output_json_mode_returns_json(llm):
    """JSON mode promises a JSON object, not a schema (the prompt has to ask for the keys), so a
    dict schema is what to check it with against a random-weight model."""
    schema = {"title": "weather", "type": "object", "properties": {"city": {"type": "string"}}}
    result = llm.with_structured_output(schema, method="json_mode").invoke("The weather in Paris, as JSON?")
    assert isinstance(result, dict)


def test_langchain_structured_output_include_raw(llm):
    result = llm.with_structured_output(Weather, include_raw=True).invoke("What is the weather in Paris?")
    assert result["parsing_error"] is None and isinstance(result["parsed"], Weather)
