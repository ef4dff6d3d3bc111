"""The Anthropic translator, pure: recorded Messages API payloads and constructed requests."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.backends.anthropic_translate import (
    FINISH_REASONS,
    StreamTranslator,
    error_from_anthropic,
    from_anthropic,
    to_anthropic,
)
from app.errors import (
    ContextWindowExceededError,
    InvalidRequestError,
    RouterError,
    UnsupportedFeatureError,
    UpstreamAuthError,
    UpstreamBadRequestError,
    UpstreamNotFoundError,
    UpstreamRateLimitedError,
    UpstreamUnavailableError,
)
from tests.conformance import assert_conforms
from tests.fakes.anthropic_server import payload

MODEL = "claude-sonnet-4-6"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
SKY = "https://upload.wikimedia.org/wikipedia/commons/a/a7/Camponotus_flavomarginatus_ant.jpg"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a given city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
CALL = {
    "id": "toolu_01A09q90qw90lq917835lq9",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'},
}


def convert(messages: list[dict[str, Any]], max_output_tokens: int = 4096, **body: Any) -> dict[str, Any]:
    return to_anthropic({"model": MODEL, "messages": messages, **body}, max_output_tokens=max_output_tokens)


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def unsupported(exc: pytest.ExceptionInfo[RouterError], param: str) -> None:
    assert isinstance(exc.value, UnsupportedFeatureError)
    assert (exc.value.status_code, exc.value.code, exc.value.param) == (400, "unsupported_feature", param)


def feed_all(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    translator = StreamTranslator(MODEL, created=1)
    chunks = [chunk for event in events for chunk in translator.feed(event)]
    assert translator.done
    return chunks


def recorded_stream(name: str) -> list[dict[str, Any]]:
    return [item["data"] for item in payload(name)]


# --- requests --------------------------------------------------------------------------
def test_the_recorded_request_is_what_an_openai_request_becomes() -> None:
    body = {
        "model": MODEL,
        "max_tokens": 1024,
        "messages": [
            {"role": "system", "content": "You are a concise travel assistant."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in one sentence."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is the weather in Paris? Here is a photo of the sky."},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                ],
            },
            {
                "role": "assistant",
                "content": "I'll check the current weather in Paris for you.",
                "tool_calls": [CALL],
            },
            {"role": "tool", "tool_call_id": CALL["id"], "content": "18 degrees, light rain"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "And is the sky in my photo consistent with that?"},
                    {"type": "image_url", "image_url": {"url": SKY, "detail": "high"}},
                ],
            },
        ],
        "stop": "\n\nHuman:",
        "tools": [WEATHER],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "user": "user-8d2f",
        "temperature": 0.2,  # dropped: API version 2026-10-21 has no sampling parameters
        "frequency_penalty": 0.5,  # unknown to Anthropic: ignored
        "seed": 7,
        "stream_options": {"include_usage": True},
    }
    assert to_anthropic(body, max_output_tokens=64000) == payload("request.json")


def test_system_and_developer_messages_are_lifted_and_joined() -> None:
    kwargs = convert(
        [
            {"role": "system", "content": "Be brief."},
            user("hi"),
            {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
        ]
    )
    assert kwargs["system"] == "Be brief.\n\nUse French."
    assert kwargs["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert "system" not in convert([user("hi")])


def test_consecutive_same_role_messages_merge_into_one_turn() -> None:
    kwargs = convert(
        [
            user("a"),
            user("b"),
            {"role": "assistant", "content": "c"},
            {"role": "assistant", "content": [{"type": "text", "text": "d"}]},
            user("e"),
        ]
    )
    assert [(t["role"], [b["text"] for b in t["content"]]) for t in kwargs["messages"]] == [
        ("user", ["a", "b"]),
        ("assistant", ["c", "d"]),
        ("user", ["e"]),
    ]


def test_tool_results_become_one_user_turn_with_results_first() -> None:
    second = {**CALL, "id": "toolu_2", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}
    kwargs = convert(
        [
            user("weather?"),
            {"role": "assistant", "content": None, "tool_calls": [CALL, second]},
            user("also, be brief"),  # out of order: the API wants results first
            {"role": "tool", "tool_call_id": CALL["id"], "content": "18C"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": [{"type": "text", "text": "25C"}]},
        ]
    )
    assistant, answer = kwargs["messages"][1:]
    assert assistant == {
        "role": "assistant",
        "content": [
            {
                "type": "tool_use",
                "id": CALL["id"],
                "name": "get_weather",
                "input": {"city": "Paris", "unit": "celsius"},
            },
            {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Rome"}},
        ],
    }
    assert answer == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": CALL["id"], "content": "18C"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "25C"},
            {"type": "text", "text": "also, be brief"},
        ],
    }


def test_tools_become_input_schemas() -> None:
    bare = {"type": "function", "function": {"name": "now", "strict": True}}
    kwargs = convert([user("x")], tools=[WEATHER, bare])
    assert kwargs["tools"] == [
        {
            "name": "get_weather",
            "description": "Get the current weather in a given city",
            "input_schema": WEATHER["function"]["parameters"],
        },
        {"name": "now", "input_schema": {"type": "object", "properties": {}}, "strict": True},
    ]
    assert "tool_choice" not in kwargs
    assert "tools" not in convert([user("x")], tool_choice="auto")


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("none", None, {"type": "none"}),
        ("auto", None, {"type": "auto"}),
        ("required", None, {"type": "any"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            None,
            {"type": "tool", "name": "get_weather"},
        ),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            False,
            {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        ),
        ("none", False, {"type": "none"}),
        (None, True, None),
    ],
)
def test_tool_choice(choice: Any, parallel: bool | None, expected: dict[str, Any] | None) -> None:
    body = {k: v for k, v in (("tool_choice", choice), ("parallel_tool_calls", parallel)) if v is not None}
    assert convert([user("x")], tools=[WEATHER], **body).get("tool_choice") == expected


def test_unknown_tool_kinds_and_choices_are_unsupported() -> None:
    with pytest.raises(RouterError) as exc:
        convert([user("x")], tools=[{"type": "custom", "custom": {"name": "grammar"}}])
    unsupported(exc, "tools")
    with pytest.raises(RouterError) as exc:
        convert([user("x")], tools=[WEATHER], tool_choice={"type": "allowed_tools", "allowed_tools": {}})
    unsupported(exc, "tool_choice")


@pytest.mark.parametrize(("arguments", "expected"), [('{"a": 1}', {"a": 1}), ("", {}), ({"a": 2}, {"a": 2})])
def test_tool_call_arguments_are_parsed(arguments: Any, expected: dict[str, Any]) -> None:
    call = {"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    kwargs = convert([user("x"), {"role": "assistant", "tool_calls": [call]}])
    assert kwargs["messages"][1]["content"] == [
        {"type": "tool_use", "id": "toolu_1", "name": "f", "input": expected}
    ]


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]"])
def test_bad_tool_call_arguments_are_a_400_naming_the_field(arguments: str) -> None:
    call = {"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    with pytest.raises(InvalidRequestError) as exc:
        convert([user("x"), {"role": "assistant", "tool_calls": [call]}])
    assert exc.value.status_code == 400
    assert exc.value.param == "messages[1].tool_calls[0].function.arguments"


def test_images_from_data_urls_and_http_urls() -> None:
    parts = [
        {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{PNG}"}},
        {"type": "image_url", "image_url": SKY},
        {"type": "text", "text": ""},
    ]
    blocks = convert([{"role": "user", "content": parts}])["messages"][0]["content"]
    assert blocks == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": SKY}},
    ]


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("data:image/bmp;base64,Qk0=", UnsupportedFeatureError),
        ("ftp://example.com/a.png", InvalidRequestError),
        ("data:image/png,plain", InvalidRequestError),
    ],
)
def test_bad_images_are_a_400(url: str, error: type[RouterError]) -> None:
    with pytest.raises(error) as exc:
        convert([user("a"), {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}])
    assert exc.value.status_code == 400 and exc.value.param == "messages[1].content[0]"


def test_pdf_files_become_documents() -> None:
    part = {
        "type": "file",
        "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0="},
    }
    blocks = convert([{"role": "user", "content": [part]}])["messages"][0]["content"]
    assert blocks == [
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
        }
    ]
    with pytest.raises(RouterError) as exc:
        convert([{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}])
    unsupported(exc, "messages[0].content[0]")


@pytest.mark.parametrize(("stop", "expected"), [("END", ["END"]), (["a", "b"], ["a", "b"]), (None, None)])
def test_stop_becomes_stop_sequences(stop: Any, expected: list[str] | None) -> None:
    assert convert([user("x")], stop=stop).get("stop_sequences") == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, 4096),
        ({"max_tokens": 100}, 100),
        ({"max_completion_tokens": 50, "max_tokens": 100}, 50),
        ({"max_tokens": 100_000}, 4096),
    ],
)
def test_max_tokens_is_always_set_and_never_above_the_model(body: dict[str, Any], expected: int) -> None:
    assert convert([user("x")], **body)["max_tokens"] == expected


def test_sampling_parameters_are_dropped_for_the_current_api_version() -> None:
    kwargs = convert([user("x")], temperature=0.7, top_p=0.9)
    assert not {"temperature", "top_p", "top_k"} & set(kwargs)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"temperature": 1.7}, {"temperature": 1.0}),
        ({"temperature": 0.3, "top_p": 0.5}, {"temperature": 0.3}),
        ({"top_p": 0.5}, {"top_p": 0.5}),
        ({}, {}),
    ],
)
def test_sampling_when_asked_clamps_temperature_and_sends_one_parameter(
    body: dict[str, Any], expected: dict[str, float]
) -> None:
    kwargs = to_anthropic(
        {"model": MODEL, "messages": [user("x")], **body}, max_output_tokens=10, sampling=True
    )
    assert {k: kwargs[k] for k in ("temperature", "top_p") if k in kwargs} == expected


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"audio": {"voice": "alloy", "format": "wav"}, "modalities": ["text", "audio"]}, "audio"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
                        ],
                    }
                ]
            },
            "messages[0].content[0]",
        ),
    ],
)
def test_features_anthropic_lacks_are_a_400_naming_the_param(body: dict[str, Any], param: str) -> None:
    with pytest.raises(RouterError) as exc:
        to_anthropic({"model": MODEL, "messages": [user("x")], **body}, max_output_tokens=10)
    unsupported(exc, param)


def test_harmless_openai_defaults_are_accepted() -> None:
    kwargs = convert([user("x")], n=1, logprobs=False, top_logprobs=None, modalities=["text"], store=False)
    assert kwargs == {
        "model": MODEL,
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}],
    }


def test_response_format() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "required": ["a"],
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "a", "schema": schema, "strict": True}}
    assert convert([user("x")], response_format=fmt)["output_config"] == {
        "format": {"type": "json_schema", "schema": schema}
    }
    assert "output_config" not in convert([user("x")], response_format={"type": "text"})
    with pytest.raises(UnsupportedFeatureError) as exc:  # no JSON mode at Anthropic: never dropped silently
        convert([user("x JSON")], response_format={"type": "json_object"})
    assert exc.value.param == "response_format"


def test_user_becomes_metadata_and_unknown_roles_are_a_400() -> None:
    assert convert([user("x")], user="u-1")["metadata"] == {"user_id": "u-1"}
    with pytest.raises(InvalidRequestError) as exc:
        convert([{"role": "function", "name": "f", "content": "x"}])
    assert exc.value.param == "messages[0].role"


# --- responses -------------------------------------------------------------------------
def test_a_recorded_text_response() -> None:
    completion = from_anthropic(payload("response_text.json"), model="claude-sonnet", created=1)
    assert_conforms(completion, "CreateChatCompletionResponse")
    assert completion["model"] == "claude-sonnet"
    assert completion["choices"] == [
        {
            "index": 0,
            "logprobs": None,
            "finish_reason": "stop",
            "message": {"role": "assistant", "content": "The capital of France is Paris.", "refusal": None},
        }
    ]
    assert completion["usage"] == {
        "prompt_tokens": 21 + 2048,
        "completion_tokens": 10,
        "total_tokens": 2079,
        "prompt_tokens_details": {"cached_tokens": 2048, "cache_write_tokens": 0},
    }


def test_a_recorded_tool_use_response() -> None:
    completion = from_anthropic(payload("response_tool_use.json"), model=MODEL)
    assert_conforms(completion, "CreateChatCompletionResponse")
    choice = completion["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "I'll check the current weather in Paris for you."
    [call] = choice["message"]["tool_calls"]
    assert call["id"] == "toolu_01A09q90qw90lq917835lq9" and call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris", "unit": "celsius"}
    assert completion["usage"]["prompt_tokens"] == 402 + 1536
    assert completion["usage"]["prompt_tokens_details"] == {"cached_tokens": 0, "cache_write_tokens": 1536}


def test_tool_use_alone_has_null_content_and_thinking_is_left_out() -> None:
    message = {
        **payload("response_tool_use.json"),
        "content": [
            {"type": "thinking", "thinking": "The user wants weather.", "signature": "EqQBCgIYAhIM"},
            payload("response_tool_use.json")["content"][1],
        ],
    }
    message["usage"] = {**message["usage"], "output_tokens_details": {"thinking_tokens": 40}}
    completion = from_anthropic(message, model=MODEL)
    assert completion["choices"][0]["message"]["content"] is None
    assert completion["usage"]["completion_tokens_details"] == {"reasoning_tokens": 40}


@pytest.mark.parametrize(
    ("stop_reason", "finish"), [*FINISH_REASONS.items(), (None, "stop"), ("new_reason", "stop")]
)
def test_every_stop_reason(stop_reason: str | None, finish: str) -> None:
    message = {**payload("response_text.json"), "stop_reason": stop_reason}
    assert from_anthropic(message, model=MODEL)["choices"][0]["finish_reason"] == finish


def test_the_documented_stop_reasons_map_as_specified() -> None:
    assert {
        k: FINISH_REASONS[k] for k in ("end_turn", "stop_sequence", "max_tokens", "tool_use", "refusal")
    } == {
        "end_turn": "stop",
        "stop_sequence": "stop",
        "max_tokens": "length",
        "tool_use": "tool_calls",
        "refusal": "content_filter",
    }


# --- streams ---------------------------------------------------------------------------
def test_a_recorded_text_stream() -> None:
    chunks = feed_all(recorded_stream("stream_text.json"))
    for chunk in chunks:
        assert_conforms(chunk, "CreateChatCompletionStreamResponse")
    assert {c["id"] for c in chunks} == {"msg_01XFDUDYJgAACzvnptvVoYEL"}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == payload("response_text.json")["content"][0]["text"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == from_anthropic(payload("response_text.json"), model=MODEL)["usage"]


def test_a_recorded_tool_use_stream() -> None:
    chunks = feed_all(recorded_stream("stream_tool_use.json"))
    for chunk in chunks:
        assert_conforms(chunk, "CreateChatCompletionStreamResponse")
    calls = [d for c in chunks if c["choices"] for d in c["choices"][0]["delta"].get("tool_calls", [])]
    assert calls[0] == {
        "index": 0,
        "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert all(set(c) == {"index", "function"} and c["index"] == 0 for c in calls[1:])
    assert json.loads("".join(c["function"]["arguments"] for c in calls)) == {
        "city": "Paris",
        "unit": "celsius",
    }
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["prompt_tokens_details"] == {"cached_tokens": 0, "cache_write_tokens": 1536}
    assert chunks[-1]["usage"]["completion_tokens"] == 89


def test_each_tool_block_gets_its_own_index() -> None:
    events = recorded_stream("stream_tool_use.json")
    second = [
        {
            **e,
            "index": 2,
            **({"content_block": {**e["content_block"], "id": "toolu_2"}} if "content_block" in e else {}),
        }
        for e in events[6:11]
    ]
    chunks = feed_all([*events[:11], *second, *events[11:]])
    starts = [
        d for c in chunks if c["choices"] for d in c["choices"][0]["delta"].get("tool_calls", []) if "id" in d
    ]
    assert [(s["index"], s["id"]) for s in starts] == [(0, "toolu_01T1x1fJ34qAmk2tNTrN7Up6"), (1, "toolu_2")]


def test_input_tokens_from_message_start_and_output_tokens_from_message_delta() -> None:
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "usage": {
                "input_tokens": 30,
                "cache_read_input_tokens": 100,
                "cache_creation_input_tokens": 7,
                "output_tokens": 1,
            },
        },
    }
    delta = {"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 64}}
    chunks = feed_all([start, delta, {"type": "message_stop"}])
    assert chunks[1]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 137,
        "completion_tokens": 64,
        "total_tokens": 201,
        "prompt_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 7},
    }


def test_pings_thinking_and_unknown_events_yield_nothing() -> None:
    translator = StreamTranslator(MODEL)
    translator.feed({"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 1}}})
    quiet = [
        {"type": "ping"},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}},
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "signature_delta", "signature": "Eq=="},
        },
        {"type": "content_block_stop", "index": 0},
        {"type": "brand_new_event"},
    ]
    assert [translator.feed(e) for e in quiet] == [[]] * len(quiet)
    assert not translator.done


def test_message_stop_without_message_delta_still_finishes() -> None:
    chunks = feed_all(
        [
            {"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 2}}},
            {"type": "message_stop"},
        ]
    )
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None, "stop"]
    assert chunks[-1]["usage"]["prompt_tokens"] == 2


def test_an_error_event_raises_the_mapped_error_after_the_chunks_before_it() -> None:
    translator = StreamTranslator(MODEL)
    events = recorded_stream("stream_error_midway.json")
    chunks = [c for e in events[:-1] for c in translator.feed(e)]
    assert chunks[-1]["choices"][0]["delta"] == {"content": "Hello"}
    with pytest.raises(UpstreamUnavailableError) as exc:
        translator.feed(events[-1])
    assert exc.value.retryable and "Overloaded" in exc.value.message


# --- errors ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "status", "headers", "error", "http", "retryable", "retry_after"),
    [
        ("error_400.json", 400, {}, UpstreamBadRequestError, 400, False, None),
        ("error_400_context.json", 400, {}, ContextWindowExceededError, 400, False, None),
        ("error_401.json", 401, {}, UpstreamAuthError, 502, False, None),
        ("error_429.json", 429, {"retry-after": "7"}, UpstreamRateLimitedError, 429, True, 7.0),
        ("error_500.json", 500, {}, UpstreamUnavailableError, 503, True, None),
        ("error_529.json", 529, {}, UpstreamUnavailableError, 503, True, None),
        ("error_529.json", 529, {"Retry-After": "3"}, UpstreamUnavailableError, 503, True, 3.0),
    ],
)
def test_recorded_error_bodies(
    name: str,
    status: int,
    headers: dict[str, str],
    error: type[RouterError],
    http: int,
    retryable: bool,
    retry_after: float | None,
) -> None:
    body = payload(name)
    mapped = error_from_anthropic("anthropic", status, body, headers)
    assert type(mapped) is error
    assert (mapped.status_code, mapped.retryable, mapped.retry_after) == (http, retryable, retry_after)
    assert mapped.message == f"anthropic: {body['error']['message']}"
    as_text = error_from_anthropic("anthropic", status, json.dumps(body), headers)
    assert type(as_text) is error  # the body as text


@pytest.mark.parametrize(
    ("status", "kind", "error"),
    [
        (404, "not_found_error", UpstreamNotFoundError),
        (402, "billing_error", UpstreamAuthError),
        (403, "permission_error", UpstreamAuthError),
        (413, "request_too_large", ContextWindowExceededError),
        (504, "timeout_error", UpstreamUnavailableError),
        # errors inside a 200 stream: the status comes from the type
        (200, "overloaded_error", UpstreamUnavailableError),
        (200, "rate_limit_error", UpstreamRateLimitedError),
        (200, "invalid_request_error", UpstreamBadRequestError),
        (200, "api_error", UpstreamUnavailableError),
        (200, "unheard_of_error", UpstreamUnavailableError),
    ],
)
def test_error_types(status: int, kind: str, error: type[RouterError]) -> None:
    body = {"type": "error", "error": {"type": kind, "message": "something"}}
    assert type(error_from_anthropic("claude-x", status, body)) is error


@pytest.mark.parametrize("body", [None, "<html>502 Bad Gateway</html>", {"unexpected": True}])
def test_bodies_that_are_not_anthropic_errors(body: Any) -> None:
    mapped = error_from_anthropic("anthropic", 502, body)
    assert isinstance(mapped, UpstreamUnavailableError) and mapped.message.startswith("anthropic: ")


def test_an_error_without_a_status_takes_it_from_the_type() -> None:
    body = {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
    mapped = error_from_anthropic("claude-x", None, body, {"Retry-After": "5"})
    assert type(mapped) is UpstreamRateLimitedError and mapped.retry_after == 5.0
    assert mapped.message == "claude-x: slow down"
