"""Tests for tests/conformance.py (OpenAI schema conformance helper)."""

from __future__ import annotations

import copy
import json

import jsonschema
import pytest
import referencing
import referencing.jsonschema

from tests import conformance
from tests.conformance import assert_conforms

CHAT_COMPLETION = {
    "id": "chatcmpl-abc123",
    "object": "chat.completion",
    "created": 1741569952,
    "model": "qwen2.5-7b-instruct",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello! How can I help?", "refusal": None},
            "finish_reason": "stop",
            "logprobs": None,
        }
    ],
    "usage": {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29},
}

FIRST_CHUNK = {
    "id": "chatcmpl-abc123",
    "object": "chat.completion.chunk",
    "created": 1741569952,
    "model": "qwen2.5-7b-instruct",
    "choices": [
        {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
    ],
}
CONTENT_CHUNK = {
    **FIRST_CHUNK,
    "choices": [{"index": 0, "delta": {"content": "Hello"}, "logprobs": None, "finish_reason": None}],
    "usage": None,  # what OpenAI sends on non-final chunks when include_usage is set
}
LAST_CHOICE_CHUNK = {
    **FIRST_CHUNK,
    "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}],
}
USAGE_CHUNK = {
    **FIRST_CHUNK,
    "choices": [],
    "usage": {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29},
}

ERROR_BODY = {
    "error": {
        "message": "messages: field required",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
}

MODELS_LIST = {
    "object": "list",
    "data": [{"id": "auto", "object": "model", "created": 0, "owned_by": "hybrid-router"}],
}


# --- the cases the router relies on ------------------------------------------------


def test_valid_chat_completion_passes():
    assert_conforms(CHAT_COMPLETION, "CreateChatCompletionResponse")


def test_chat_completion_without_choices_fails_with_readable_message():
    body = {k: v for k, v in CHAT_COMPLETION.items() if k != "choices"}
    with pytest.raises(AssertionError) as excinfo:
        assert_conforms(body, "CreateChatCompletionResponse")
    message = str(excinfo.value)
    assert "'choices' is a required property" in message
    assert "CreateChatCompletionResponse" in message
    assert "validator: 'required'" in message
    assert "at $:" in message


@pytest.mark.parametrize(
    "chunk",
    [FIRST_CHUNK, CONTENT_CHUNK, LAST_CHOICE_CHUNK, USAGE_CHUNK],
    ids=["first", "content-usage-null", "finish", "usage-only"],
)
def test_valid_stream_chunks_pass(chunk):
    assert_conforms(chunk, "CreateChatCompletionStreamResponse")


def test_error_body_passes():
    assert_conforms(ERROR_BODY, "ErrorResponse")


def test_models_list_passes():
    assert_conforms(MODELS_LIST, "ListModelsResponse")
    assert_conforms(MODELS_LIST["data"][0], "Model")


# --- the schema really is checked -------------------------------------------------


def test_nested_failure_reports_instance_path():
    body = copy.deepcopy(CHAT_COMPLETION)
    del body["choices"][0]["message"]["refusal"]
    expected = r"at \$\.choices\[0\]\.message: 'refusal' is a required property"
    with pytest.raises(AssertionError, match=expected):
        assert_conforms(body, "CreateChatCompletionResponse")


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b.update(object="chat.completion.chunk"),
        lambda b: b["choices"][0].update(finish_reason="eos"),
        lambda b: b["choices"][0].pop("logprobs"),  # required (nullable) in non-stream choices
        lambda b: b["choices"][0].update(finish_reason=None),  # non-stream finish_reason is not nullable
        lambda b: b["usage"].pop("total_tokens"),
        lambda b: b.update(created="1741569952"),
    ],
    ids=[
        "object",
        "finish_reason-enum",
        "logprobs-missing",
        "finish_reason-null",
        "usage-total",
        "created-type",
    ],
)
def test_invalid_chat_completion_variants_fail(mutate):
    body = copy.deepcopy(CHAT_COMPLETION)
    mutate(body)
    with pytest.raises(AssertionError):
        assert_conforms(body, "CreateChatCompletionResponse")


@pytest.mark.parametrize(
    "chunk",
    [
        {**FIRST_CHUNK, "object": "chat.completion"},
        {**FIRST_CHUNK, "choices": [{"index": 0, "delta": {}}]},  # finish_reason required (may be null)
        {**FIRST_CHUNK, "choices": [{"index": 0, "delta": {}, "finish_reason": "eos"}]},
        {**USAGE_CHUNK, "usage": {"prompt_tokens": 1}},
    ],
    ids=["object", "finish_reason-missing", "finish_reason-enum", "usage-incomplete"],
)
def test_invalid_chunks_fail(chunk):
    with pytest.raises(AssertionError):
        assert_conforms(chunk, "CreateChatCompletionStreamResponse")


def test_invalid_error_and_models_fail():
    with pytest.raises(AssertionError, match="'param' is a required property"):
        assert_conforms({"error": {"message": "x", "type": "t", "code": None}}, "ErrorResponse")
    with pytest.raises(AssertionError, match="'owned_by' is a required property"):
        assert_conforms(
            {"object": "list", "data": [{"id": "a", "object": "model", "created": 0}]}, "ListModelsResponse"
        )


def test_oneof_failure_lists_alternatives():
    with pytest.raises(AssertionError) as excinfo:
        assert_conforms(
            {"model": "auto", "messages": [{"role": "robot", "content": "hi"}]}, "CreateChatCompletionRequest"
        )
    message = str(excinfo.value)
    assert "at $.messages[0]" in message
    assert "alternatives:" in message
    for role in ("developer", "system", "user", "assistant", "tool", "function"):
        assert f"['{role}']" in message


def test_request_with_every_message_role_passes():
    request = {
        "model": "auto",
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "system", "content": [{"type": "text", "text": "You are helpful."}]},
            {"role": "user", "content": "Hi"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "content": "42", "tool_call_id": "call_1"},
            {"role": "function", "content": None, "name": "f"},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.2,
        "max_tokens": None,
    }
    assert_conforms(request, "CreateChatCompletionRequest")


def test_unknown_schema_name_is_a_key_error():
    with pytest.raises(KeyError, match="NoSuchSchema"):
        assert_conforms({}, "NoSuchSchema")


# --- the spec's own examples, and the one documented adaptation -----------------------


def _subset() -> dict:
    return json.loads(conformance.SUBSET_PATH.read_text(encoding="utf-8"))


def test_subset_is_self_contained_openapi_31():
    doc = _subset()
    assert doc["openapi"].startswith("3.1.")
    assert set(doc["paths"]) == {"/chat/completions", "/models"}
    assert set(doc["paths"]["/chat/completions"]) == {"post"}
    assert set(doc["paths"]["/models"]) == {"get"}
    refs = set()

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref":
                    refs.add(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(doc)
    for ref in refs:
        section, name = ref.removeprefix("#/components/").split("/")
        assert name in doc["components"][section], ref
    assert conformance.SUBSET_PATH.stat().st_size < 1_000_000


def test_spec_examples_conform():
    schemas = _subset()["components"]["schemas"]
    response = json.loads(schemas["CreateChatCompletionResponse"]["x-oaiMeta"]["example"])
    assert_conforms(response, "CreateChatCompletionResponse")
    assert_conforms(json.loads(schemas["Model"]["x-oaiMeta"]["example"]), "Model")
    stream = schemas["CreateChatCompletionStreamResponse"]["x-oaiMeta"]["example"]
    chunks = [json.loads(line) for line in stream.splitlines() if line.startswith("{")]
    assert len(chunks) >= 3
    for chunk in chunks:
        assert_conforms(chunk, "CreateChatCompletionStreamResponse")


def test_adaptation_is_only_leftover_nullable_and_is_needed():
    """The 3.1 spec carries 3.0-style ``nullable: true``; conformance.py reads it as
    3.0 did.  Pin where, and show that a strict 3.1 reading rejects the spec's own
    chunk example (finish_reason: null), i.e. the adaptation is necessary."""
    touched = conformance.adaptations()
    prefix = "#/components/schemas/CreateChatCompletionStreamResponse/properties/"
    assert prefix + "choices/items/properties/finish_reason" in touched
    assert prefix + "usage" in touched
    assert all(p.startswith("#/components/schemas/") for p in touched)
    # nothing in the non-streaming response, error or models schemas needed adapting
    untouched = ("CreateChatCompletionResponse", "ErrorResponse", "Error", "ListModelsResponse", "Model")
    assert not [p for p in touched if p.split("/")[3] in untouched]

    doc = _subset()
    registry = referencing.Registry().with_resource(
        "urn:strict", referencing.jsonschema.DRAFT202012.create_resource(doc)
    )
    strict = jsonschema.Draft202012Validator(
        {"$ref": "urn:strict#/components/schemas/CreateChatCompletionStreamResponse"}, registry=registry
    )
    assert not strict.is_valid(FIRST_CHUNK)  # strict 3.1: finish_reason null is "not a string"
    assert conformance.validator_for(doc, "CreateChatCompletionStreamResponse").is_valid(FIRST_CHUNK)


def test_openapi_30_nullable_translation():
    doc = {
        "openapi": "3.0.3",
        "info": {"title": "t", "version": "1"},
        "paths": {},
        "components": {
            "schemas": {
                "Thing": {
                    "type": "object",
                    "required": ["a", "b", "c"],
                    "properties": {
                        "a": {"type": "string", "nullable": True, "enum": ["x"]},
                        "b": {"$ref": "#/components/schemas/Inner"},
                        "c": {"type": "integer", "nullable": False},
                        "nullable": {"type": "string"},  # a property that happens to be called "nullable"
                    },
                },
                "Inner": {"type": "object", "nullable": True, "properties": {"n": {"type": "integer"}}},
            }
        },
    }
    validator = conformance.validator_for(doc, "Thing")
    assert validator.is_valid({"a": None, "b": None, "c": 1, "nullable": "s"})
    assert validator.is_valid({"a": "x", "b": {"n": 1}, "c": 1})
    assert not validator.is_valid({"a": "y", "b": None, "c": 1})
    assert not validator.is_valid({"a": None, "b": None, "c": None})
    assert not validator.is_valid({"a": None, "b": {"n": "1"}, "c": 1})
    assert not validator.is_valid({"a": None, "b": None, "c": 1, "nullable": None})
    assert type(validator).__name__ == "Draft4Validator"


def test_unsupported_openapi_version_rejected():
    with pytest.raises(ValueError, match="unsupported OpenAPI version"):
        conformance.validator_for({"openapi": "2.0", "components": {"schemas": {"X": {}}}}, "X")


def test_validators_are_cached():
    assert conformance._subset_validator("ErrorResponse") is conformance._subset_validator("ErrorResponse")
