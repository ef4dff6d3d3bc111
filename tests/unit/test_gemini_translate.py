"""The Gemini translators, pure: recorded Vertex payloads and constructed OpenAI requests."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from app.backends.gemini_translate import (
    StreamTranslator,
    error_from_gemini,
    to_gemini_request,
    to_openai_completion,
    to_openai_usage,
)
from app.errors import (
    ContentFilterError,
    ContextWindowExceededError,
    InvalidRequestError,
    UnsupportedFeatureError,
    UpstreamAuthError,
    UpstreamBadRequestError,
    UpstreamNotFoundError,
    UpstreamRateLimitedError,
    UpstreamUnavailableError,
)
from tests.conformance import assert_conforms

PAYLOADS = Path(__file__).parents[1] / "fakes" / "payloads" / "gemini"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def payload(name: str) -> Any:
    return json.loads((PAYLOADS / f"{name}.json").read_text(encoding="utf-8"))


def chat(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"model": "gemini-2.5-flash", "messages": list(messages), **fields}


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def call(id: str, name: str, arguments: str, **extra: Any) -> dict[str, Any]:
    return {"id": id, "type": "function", "function": {"name": name, "arguments": arguments}, **extra}


WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


# --- request: messages ------------------------------------------------------------------------
def test_recorded_request_translates_to_the_recorded_gemini_body() -> None:
    assert to_gemini_request(payload("openai_request")) == payload("request")


def test_system_and_developer_messages_become_the_system_instruction() -> None:
    body = to_gemini_request(
        chat(
            {"role": "system", "content": "Be brief."},
            user("Hi"),
            {"role": "developer", "content": [{"type": "text", "text": "No emoji."}]},
        )
    )
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}, {"text": "No emoji."}]}
    assert body["contents"] == [{"role": "user", "parts": [{"text": "Hi"}]}]


def test_roles_map_to_user_and_model_and_same_role_turns_merge() -> None:
    body = to_gemini_request(
        chat(
            user("a"),
            user([{"type": "text", "text": "b"}]),
            {"role": "assistant", "content": "c"},
            {"role": "assistant", "content": [{"type": "text", "text": "d"}]},
            user("e"),
        )
    )
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "a"}, {"text": "b"}]},
        {"role": "model", "parts": [{"text": "c"}, {"text": "d"}]},
        {"role": "user", "parts": [{"text": "e"}]},
    ]


def test_an_empty_assistant_turn_is_dropped() -> None:
    body = to_gemini_request(chat(user("a"), {"role": "assistant", "content": None}, user("b")))
    assert body["contents"] == [{"role": "user", "parts": [{"text": "a"}, {"text": "b"}]}]


def test_a_request_without_user_or_assistant_messages_is_a_400() -> None:
    with pytest.raises(InvalidRequestError) as err:
        to_gemini_request(chat({"role": "system", "content": "only a system prompt"}))
    assert err.value.param == "messages"


def test_unknown_role_is_a_400_naming_it() -> None:
    with pytest.raises(InvalidRequestError) as err:
        to_gemini_request(chat(user("a"), {"role": "narrator", "content": "b"}))
    assert err.value.param == "messages[1].role"


# --- request: media ----------------------------------------------------------------------------
def test_a_data_url_image_becomes_inline_data() -> None:
    body = to_gemini_request(
        chat(user([{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]))
    )
    assert body["contents"][0]["parts"] == [{"inlineData": {"mimeType": "image/png", "data": PNG}}]


@pytest.mark.parametrize(
    ("url", "mime"),
    [
        ("https://example.com/cat.JPG?size=large", "image/jpeg"),
        ("http://example.com/a/b.webp", "image/webp"),
        ("gs://bucket/scans/page.png", "image/png"),
        ("https://example.com/no-extension", "image/jpeg"),
    ],
)
def test_image_urls_become_file_data_with_a_guessed_type(url: str, mime: str) -> None:
    body = to_gemini_request(chat(user([{"type": "image_url", "image_url": {"url": url}}])))
    assert body["contents"][0]["parts"] == [{"fileData": {"mimeType": mime, "fileUri": url}}]


def test_bad_image_urls_are_400s_naming_the_part() -> None:
    with pytest.raises(InvalidRequestError) as err:
        to_gemini_request(
            chat(
                user(
                    [
                        {"type": "text", "text": "x"},
                        {"type": "image_url", "image_url": {"url": "ftp://x/y.png"}},
                    ]
                )
            )
        )
    assert err.value.param == "messages[0].content[1].image_url.url"
    with pytest.raises(InvalidRequestError):
        to_gemini_request(
            chat(user([{"type": "image_url", "image_url": {"url": "data:image/png;base64,not base64!"}}]))
        )


def test_audio_input_is_inline_data_and_unknown_formats_are_unsupported() -> None:
    part: dict[str, Any] = {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
    assert to_gemini_request(chat(user([part])))["contents"][0]["parts"] == [
        {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}}
    ]
    part["input_audio"]["format"] = "pcm16"
    with pytest.raises(UnsupportedFeatureError) as err:
        to_gemini_request(chat(user([part])))
    assert err.value.param == "messages[0].content[0].input_audio.format"
    assert err.value.status_code == 400


def test_files_are_inline_data_and_file_ids_are_unsupported() -> None:
    pdf = {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}}
    assert to_gemini_request(chat(user([pdf])))["contents"][0]["parts"] == [
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}}
    ]
    with pytest.raises(UnsupportedFeatureError) as err:
        to_gemini_request(chat(user([{"type": "file", "file": {"file_id": "file-abc"}}])))
    assert err.value.param == "messages[0].content[0].file.file_id"


def test_system_messages_take_only_text() -> None:
    image = {"type": "image_url", "image_url": {"url": "https://x/y.png"}}
    with pytest.raises(UnsupportedFeatureError) as err:
        to_gemini_request(chat({"role": "system", "content": [image]}, user("a")))
    assert err.value.param == "messages[0].content[0]"


# --- request: tools -------------------------------------------------------------------------------
def test_tools_become_one_tool_with_function_declarations() -> None:
    body = to_gemini_request(
        chat(user("a"), tools=[WEATHER_TOOL, {"type": "function", "function": {"name": "now"}}])
    )
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Weather.",
                    "parametersJsonSchema": WEATHER_TOOL["function"]["parameters"],
                },
                {"name": "now"},
            ]
        }
    ]


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        ("none", {"mode": "NONE"}),
        ("auto", {"mode": "AUTO"}),
        ("required", {"mode": "ANY"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"mode": "ANY", "allowedFunctionNames": ["get_weather"]},
        ),
    ],
)
def test_tool_choice_maps_to_function_calling_config(choice: Any, config: dict[str, Any]) -> None:
    body = to_gemini_request(chat(user("a"), tools=[WEATHER_TOOL], tool_choice=choice))
    assert body["toolConfig"] == {"functionCallingConfig": config}


def test_non_function_tools_and_tool_choices_are_unsupported() -> None:
    with pytest.raises(UnsupportedFeatureError) as err:
        to_gemini_request(chat(user("a"), tools=[{"type": "custom", "custom": {"name": "x"}}]))
    assert err.value.param == "tools[0].type"
    with pytest.raises(UnsupportedFeatureError) as err:
        to_gemini_request(chat(user("a"), tools=[WEATHER_TOOL], tool_choice={"type": "allowed_tools"}))
    assert err.value.param == "tool_choice"
    with pytest.raises(InvalidRequestError) as err:
        to_gemini_request(chat(user("a"), tools=[{"type": "function", "function": {"description": "x"}}]))
    assert err.value.param == "tools[0].function.name"


def test_tool_calls_and_results_round_trip_with_names_recovered() -> None:
    body = to_gemini_request(
        chat(
            user("weather?"),
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    call("call_1", "get_weather", '{"city": "Paris"}'),
                    call("call_2", "get_time", ""),
                ],
            },
            {"role": "tool", "tool_call_id": "call_2", "content": "12:00"},
            {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": '{"temp": 18}'}]},
        )
    )
    assert body["contents"][1:] == [
        {
            "role": "model",
            "parts": [
                {"text": "Checking."},
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                {"functionCall": {"name": "get_time", "args": {}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_time", "response": {"result": "12:00"}}},
                {"functionResponse": {"name": "get_weather", "response": {"temp": 18}}},
            ],
        },
    ]


@pytest.mark.parametrize(
    ("content", "response"),
    [
        ("[1, 2]", {"result": [1, 2]}),
        ("42", {"result": 42}),
        ("", {"result": ""}),
        ('{"ok": true}', {"ok": True}),
    ],
)
def test_tool_results_that_are_not_json_objects_are_wrapped(content: str, response: Any) -> None:
    body = to_gemini_request(
        chat(
            user("a"),
            {"role": "assistant", "tool_calls": [call("c", "f", "{}")]},
            {"role": "tool", "tool_call_id": "c", "content": content},
        )
    )
    assert body["contents"][-1]["parts"] == [{"functionResponse": {"name": "f", "response": response}}]


def test_a_tool_result_for_an_unknown_call_is_a_400() -> None:
    with pytest.raises(InvalidRequestError) as err:
        to_gemini_request(chat(user("a"), {"role": "tool", "tool_call_id": "nope", "content": "x"}))
    assert err.value.param == "messages[1].tool_call_id"


def test_tool_call_arguments_must_be_json() -> None:
    with pytest.raises(InvalidRequestError) as err:
        to_gemini_request(chat(user("a"), {"role": "assistant", "tool_calls": [call("c", "f", "{oops")]}))
    assert err.value.param == "messages[1].tool_calls[0].function.arguments"


def test_thought_signatures_travel_in_extra_content() -> None:
    signed = call("c", "f", "{}", extra_content={"google": {"thought_signature": "c2ln"}})
    body = to_gemini_request(chat(user("a"), {"role": "assistant", "tool_calls": [signed]}))
    assert body["contents"][1]["parts"] == [
        {"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "c2ln"}
    ]


def test_gemini_3_gets_the_documented_sentinel_for_unsigned_calls() -> None:
    request = chat(
        user("a"), {"role": "assistant", "tool_calls": [call("c", "f", "{}"), call("d", "g", "{}")]}
    )
    request["model"] = "gemini-3.1-pro-preview"
    parts = to_gemini_request(request)["contents"][1]["parts"]
    assert parts[0]["thoughtSignature"] == "skip_thought_signature_validator"
    assert "thoughtSignature" not in parts[1]  # only the first call of a turn carries one
    request["model"] = "gemini-2.5-pro"
    assert "thoughtSignature" not in to_gemini_request(request)["contents"][1]["parts"][0]


# --- request: generation config and unsupported features -----------------------------------------------
def test_generation_config_maps_every_sampling_field() -> None:
    body = to_gemini_request(
        chat(
            user("a"),
            temperature=0.0,
            top_p=0.5,
            max_tokens=100,
            stop="END",
            n=3,
            seed=1,
            presence_penalty=0.5,
            frequency_penalty=-0.5,
            logprobs=True,
            top_logprobs=4,
        )
    )
    assert body["generationConfig"] == {
        "temperature": 0.0,
        "topP": 0.5,
        "maxOutputTokens": 100,
        "stopSequences": ["END"],
        "candidateCount": 3,
        "seed": 1,
        "presencePenalty": 0.5,
        "frequencyPenalty": -0.5,
        "responseLogprobs": True,
        "logprobs": 4,
    }


def test_max_completion_tokens_wins_and_defaults_are_left_out() -> None:
    body = to_gemini_request(chat(user("a"), max_tokens=10, max_completion_tokens=20, n=1))
    assert body["generationConfig"] == {"maxOutputTokens": 20}
    assert "generationConfig" not in to_gemini_request(
        chat(user("a"), stream=True, user="u1", metadata={"a": "b"})
    )


@pytest.mark.parametrize(
    ("fmt", "config"),
    [
        ({"type": "text"}, None),
        ({"type": "json_object"}, {"responseMimeType": "application/json"}),
        (
            {
                "type": "json_schema",
                "json_schema": {"name": "x", "strict": True, "schema": {"type": "object"}},
            },
            {"responseMimeType": "application/json", "responseJsonSchema": {"type": "object"}},
        ),
    ],
)
def test_response_format(fmt: dict[str, Any], config: dict[str, Any] | None) -> None:
    assert to_gemini_request(chat(user("a"), response_format=fmt)).get("generationConfig") == config


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"audio": {"voice": "alloy", "format": "mp3"}}, "audio"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"web_search_options": {}}, "web_search_options"),
        ({"response_format": {"type": "grammar"}}, "response_format"),
    ],
)
def test_features_gemini_lacks_are_400s_naming_the_param(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(UnsupportedFeatureError) as err:
        to_gemini_request(chat(user("a"), **fields))
    assert (err.value.param, err.value.status_code, err.value.code) == (param, 400, "unsupported_feature")


def test_top_logprobs_without_logprobs_is_a_400() -> None:
    with pytest.raises(InvalidRequestError) as err:
        to_gemini_request(chat(user("a"), top_logprobs=2))
    assert err.value.param == "top_logprobs"


def test_unknown_openai_fields_are_ignored() -> None:
    assert to_gemini_request(
        chat(
            user("a"),
            reasoning_effort="low",
            store=True,
            parallel_tool_calls=False,
            prediction={"type": "content", "content": "x"},
            service_tier="auto",
        )
    ) == {"contents": [{"role": "user", "parts": [{"text": "a"}]}]}


def test_the_request_is_not_modified() -> None:
    request = payload("openai_request")
    before = copy.deepcopy(request)
    to_gemini_request(request)
    assert request == before


# --- responses ----------------------------------------------------------------------------------------
def test_text_response_with_usage_including_cached_and_thinking_tokens() -> None:
    out = to_openai_completion(payload("response_text"), model="gemini-2.5-flash")
    assert_conforms(out, "CreateChatCompletionResponse")
    assert out["id"] == "chatcmpl-9_jLaIyOH8W-2PgPsLyGuAk" and out["created"] == 1758188487
    assert out["choices"] == [
        {
            "index": 0,
            "finish_reason": "stop",
            "logprobs": None,
            "message": {
                "role": "assistant",
                "content": "Tomorrow in Paris: 16 °C, light rain in the afternoon.",
                "refusal": None,
            },
        }
    ]
    assert out["usage"] == {
        "prompt_tokens": 1312,
        "completion_tokens": 63,
        "total_tokens": 1375,
        "prompt_tokens_details": {"cached_tokens": 1024},
        "completion_tokens_details": {"reasoning_tokens": 48},
    }


def test_function_calls_become_tool_calls_with_fresh_ids() -> None:
    out = to_openai_completion(payload("response_function_call"), model="m")
    assert_conforms(out, "CreateChatCompletionResponse")
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    calls = choice["message"]["tool_calls"]
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [
        {"city": "Paris", "unit": "celsius"},
        {"city": "Lyon"},
    ]
    assert all(c["id"].startswith("call_") and c["type"] == "function" for c in calls)
    assert calls[0]["id"] != calls[1]["id"]
    assert calls[0]["extra_content"]["google"]["thought_signature"].startswith("CiQB")
    assert "extra_content" not in calls[1]


def test_thought_parts_are_left_out_and_text_parts_joined() -> None:
    response = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"text": "Let me think...", "thought": True},
                        {"text": "Hello"},
                        {"text": ", world"},
                    ],
                },
                "finishReason": "STOP",
            }
        ]
    }
    assert to_openai_completion(response, model="m")["choices"][0]["message"]["content"] == "Hello, world"


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("IMAGE_SAFETY", "content_filter"),
        ("OTHER", "stop"),
        ("MALFORMED_FUNCTION_CALL", "stop"),
        ("FINISH_REASON_UNSPECIFIED", "stop"),
    ],
)
def test_every_finish_reason(reason: str, expected: str) -> None:
    response = {
        "candidates": [{"content": {"role": "model", "parts": [{"text": "x"}]}, "finishReason": reason}]
    }
    assert to_openai_completion(response, model="m")["choices"][0]["finish_reason"] == expected


def test_a_safety_blocked_candidate_is_an_empty_content_filter_choice() -> None:
    out = to_openai_completion(payload("response_safety_blocked"), model="m")
    assert_conforms(out, "CreateChatCompletionResponse")
    assert out["choices"][0]["finish_reason"] == "content_filter"
    assert out["choices"][0]["message"]["content"] == ""
    assert out["usage"]["prompt_tokens"] == 14 and out["usage"]["completion_tokens"] == 0


def test_a_blocked_prompt_is_a_content_filter_completion_not_an_error() -> None:
    out = to_openai_completion(payload("response_prompt_blocked"), model="m")
    assert_conforms(out, "CreateChatCompletionResponse")
    assert out["choices"] == [
        {
            "index": 0,
            "finish_reason": "content_filter",
            "logprobs": None,
            "message": {"role": "assistant", "content": "", "refusal": None},
        }
    ]
    assert out["usage"]["prompt_tokens"] == 9


def test_one_choice_per_candidate() -> None:
    response = {
        "candidates": [
            {"index": 0, "content": {"role": "model", "parts": [{"text": "a"}]}, "finishReason": "STOP"},
            {
                "index": 1,
                "content": {"role": "model", "parts": [{"text": "b"}]},
                "finishReason": "MAX_TOKENS",
            },
        ]
    }
    choices = to_openai_completion(response, model="m", id="x", created=1)["choices"]
    assert [(c["index"], c["message"]["content"], c["finish_reason"]) for c in choices] == [
        (0, "a", "stop"),
        (1, "b", "length"),
    ]


def test_logprobs_results_map_to_openai_logprobs() -> None:
    response = {
        "candidates": [
            {
                "content": {"parts": [{"text": "Hi"}]},
                "finishReason": "STOP",
                "logprobsResult": {
                    "topCandidates": [
                        {
                            "candidates": [
                                {"token": "Hi", "logProbability": -0.1},
                                {"token": "Hey", "logProbability": -2.5},
                            ]
                        }
                    ],
                    "chosenCandidates": [{"token": "Hi", "logProbability": -0.1}],
                },
            }
        ]
    }
    out = to_openai_completion(response, model="m", id="x", created=1)
    assert_conforms(out, "CreateChatCompletionResponse")
    assert out["choices"][0]["logprobs"] == {
        "refusal": None,
        "content": [
            {
                "token": "Hi",
                "logprob": -0.1,
                "bytes": [72, 105],
                "top_logprobs": [
                    {"token": "Hi", "logprob": -0.1, "bytes": [72, 105]},
                    {"token": "Hey", "logprob": -2.5, "bytes": [72, 101, 121]},
                ],
            }
        ],
    }


def test_usage_treats_absent_counts_as_zero() -> None:
    assert to_openai_usage({}) == {
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "total_tokens": 0,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


# --- streams ------------------------------------------------------------------------------------------------
def run_stream(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    translator = StreamTranslator("gemini-2.5-flash", "chatcmpl-1", created=1)
    chunks = [c for event in events for c in translator.feed(event)] + translator.finish()
    for chunk in chunks:
        assert_conforms(chunk, "CreateChatCompletionStreamResponse")
    return chunks


def test_stream_events_become_role_text_finish_and_one_usage_chunk() -> None:
    chunks = run_stream(payload("stream_text"))
    deltas = [c["choices"][0]["delta"] for c in chunks[:-1]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    text = "".join(d.get("content", "") for d in deltas)
    assert (
        text == to_openai_completion(payload("response_text"), model="m")["choices"][0]["message"]["content"]
    )
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None, None, None, None, "stop"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == to_openai_usage(
        payload("response_text")["usageMetadata"]
    )
    assert {c["id"] for c in chunks} == {"chatcmpl-1"} and all(
        c["object"] == "chat.completion.chunk" for c in chunks
    )


def test_streamed_function_calls_are_whole_tool_call_deltas() -> None:
    chunks = run_stream(payload("stream_function_call"))
    calls = [
        c["choices"][0]["delta"]["tool_calls"]
        for c in chunks
        if c["choices"] and "tool_calls" in c["choices"][0]["delta"]
    ]
    assert len(calls) == 1 and calls[0][0]["index"] == 0
    assert calls[0][0]["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert calls[0][0]["id"].startswith("call_")
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["completion_tokens"] == 63


def test_streamed_candidates_keep_their_own_indexes() -> None:
    events = [
        {
            "candidates": [
                {"index": 0, "content": {"parts": [{"text": "a"}]}},
                {"index": 1, "content": {"parts": [{"text": "b"}]}},
            ]
        },
        {
            "candidates": [
                {"index": 0, "content": {"parts": [{"text": "c"}]}, "finishReason": "STOP"},
                {"index": 1, "content": {"parts": [{"text": "d"}]}, "finishReason": "MAX_TOKENS"},
            ]
        },
    ]
    chunks = run_stream(events)
    by_index: dict[int, str] = {}
    for chunk in chunks[:-1]:
        choice = chunk["choices"][0]
        by_index[choice["index"]] = by_index.get(choice["index"], "") + choice["delta"].get("content", "")
    assert by_index == {0: "ac", 1: "bd"}
    assert [
        c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]
    ] == ["stop", "length"]


def test_a_stream_blocked_for_safety_or_at_the_prompt_ends_with_content_filter() -> None:
    chunks = run_stream([payload("response_safety_blocked")])
    assert chunks[-2]["choices"][0]["finish_reason"] == "content_filter"
    chunks = run_stream([payload("response_prompt_blocked")])
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None, "content_filter"]
    assert chunks[-1]["usage"]["prompt_tokens"] == 9


def test_a_stream_that_ends_before_finishing_is_an_upstream_failure() -> None:
    translator = StreamTranslator("m", "x")
    translator.feed(payload("stream_text")[0])
    with pytest.raises(UpstreamUnavailableError):
        translator.finish()
    with pytest.raises(UpstreamUnavailableError):
        translator.feed(["not", "an", "event"])  # type: ignore[arg-type]


# --- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "cls", "status", "retryable", "retry_after"),
    [
        ("error_400", UpstreamBadRequestError, 400, False, None),
        ("error_400_token_limit", ContextWindowExceededError, 400, False, None),
        ("error_401", UpstreamAuthError, 502, False, None),
        ("error_403", UpstreamAuthError, 502, False, None),
        ("error_404", UpstreamNotFoundError, 502, True, None),
        ("error_429", UpstreamRateLimitedError, 429, True, 2.0),
        ("error_500", UpstreamUnavailableError, 503, True, None),
        ("error_503", UpstreamUnavailableError, 503, True, None),
        ("error_504", UpstreamUnavailableError, 503, True, None),
    ],
)
def test_every_recorded_error_body(
    name: str, cls: type, status: int, retryable: bool, retry_after: float | None
) -> None:
    body = payload(name)
    err = error_from_gemini("gemini-flash", body["error"]["code"], body)
    assert type(err) is cls
    assert (err.status_code, err.retryable, err.retry_after) == (status, retryable, retry_after)
    assert err.message == f"gemini-flash: {body['error']['message']}"


def test_retry_after_comes_from_retry_info_else_the_header() -> None:
    body = payload("error_429")
    body["error"]["details"][1]["retryDelay"] = "0.750s"
    assert error_from_gemini("g", 429, body, {"Retry-After": "9"}).retry_after == 0.75
    del body["error"]["details"]
    assert error_from_gemini("g", 429, body, {"Retry-After": "9"}).retry_after == 9.0
    assert error_from_gemini("g", 429, body).retry_after is None


def test_a_safety_400_is_a_content_filter_error() -> None:
    body = {
        "error": {
            "code": 400,
            "message": "The request was blocked by safety filters.",
            "status": "INVALID_ARGUMENT",
        }
    }
    assert isinstance(error_from_gemini("g", 400, body), ContentFilterError)


def test_odd_error_bodies_still_map() -> None:
    assert isinstance(error_from_gemini("g", 502, "<html>Bad Gateway</html>"), UpstreamUnavailableError)
    assert isinstance(
        error_from_gemini("g", None, {"error": {"code": 429, "message": "slow down"}}),
        UpstreamRateLimitedError,
    )
    assert error_from_gemini("g", 500, None).message == "g: HTTP 500"
