"""OpenAI / OpenAI-compatible translation on recorded payloads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.backends.openai_translate import error_from_openai, from_openai, to_openai
from app.errors import (
    ContentFilterError,
    ContextWindowExceededError,
    UpstreamAuthError,
    UpstreamRateLimitedError,
    UpstreamUnavailableError,
)

PAYLOADS = Path(__file__).parents[1] / "fakes/payloads/openai"


def payload(name: str) -> dict:
    return json.loads((PAYLOADS / name).read_text())


def test_native_openai_gets_max_completion_tokens():
    kwargs = to_openai({"model": "gpt-5.5", "messages": [], "max_tokens": 50}, native=True, stream=False)
    assert kwargs["max_completion_tokens"] == 50 and "max_tokens" not in kwargs


def test_compatible_servers_keep_max_tokens_and_unknown_fields():
    request = {"model": "m", "messages": [], "max_tokens": 50, "top_k": 5, "guided_json": {"type": "object"}}
    kwargs = to_openai(request, native=False, stream=False)
    assert kwargs["max_tokens"] == 50 and kwargs["top_k"] == 5 and kwargs["guided_json"] == {"type": "object"}


def test_streams_always_ask_for_usage():
    request = {"model": "m", "messages": [], "stream": True, "stream_options": {"include_usage": False}}
    kwargs = to_openai(request, native=False, stream=True)
    assert kwargs["stream"] is True and kwargs["stream_options"] == {"include_usage": True}
    assert "stream" not in to_openai(request, native=False, stream=False)


def test_tool_call_response_keeps_calls_and_names_the_logical_model():
    response = from_openai(payload("response_tool_call.json"), model="gpt")
    assert response["model"] == "gpt"
    call = response["choices"][0]["message"]["tool_calls"][0]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert response["choices"][0]["finish_reason"] == "tool_calls"
    assert response["usage"]["total_tokens"] == 99


@pytest.mark.parametrize(
    ("name", "error_class", "status", "retryable", "retry_after"),
    [
        ("error_400_context.json", ContextWindowExceededError, 400, False, None),
        ("error_vllm_400.json", ContextWindowExceededError, 400, False, None),
        ("error_400_content_policy.json", ContentFilterError, 400, False, None),
        ("error_401.json", UpstreamAuthError, 502, False, None),
        ("error_429.json", UpstreamRateLimitedError, 429, True, 2.0),
        ("error_500.json", UpstreamUnavailableError, 503, True, None),
    ],
)
def test_error_bodies_map_onto_the_error_tree(name, error_class, status, retryable, retry_after):
    recorded = payload(name)
    error = error_from_openai("gpt", recorded["status"], recorded["body"], recorded["headers"])
    assert type(error) is error_class
    assert (error.status_code, error.retryable, error.retry_after) == (status, retryable, retry_after)
    assert error.message.startswith("gpt: ")


def test_a_non_json_error_body_still_maps():
    error = error_from_openai("vllm", 503, "upstream connect error", {})
    assert isinstance(error, UpstreamUnavailableError) and "upstream connect error" in error.message


def test_an_error_without_a_status_takes_the_body_code_and_any_header_case():
    body = {"error": {"message": "slow down", "type": "rate_limit", "code": 429}}
    error = error_from_openai("vllm", None, body, {"Retry-After": "4"})
    assert isinstance(error, UpstreamRateLimitedError) and error.retry_after == 4.0
    no_status = error_from_openai("gpt", None, {"error": {"message": "boom"}})
    assert isinstance(no_status, UpstreamUnavailableError)
