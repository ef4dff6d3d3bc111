"""The JSON-Schema recognizer behind the CPU engine's constrained decoding, and the tool-call
parsing of free answers: pure Python, no model."""

from __future__ import annotations

import json
import random
import string

import jsonschema
import pytest

from app.engine.json_grammar import MAX_WS, SchemaError, compile_schema, json_object_grammar
from app.engine.request_fields import ToolCallSniffer, parse_tool_calls

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 2, "maxLength": 6},
        "age": {"type": "integer"},
        "score": {"type": "number"},
        "nick": {"type": ["string", "null"]},
        "tags": {"type": "array", "items": {"enum": ["a", "bb", 3, None]}, "minItems": 1, "maxItems": 3},
        "ok": {"type": "boolean"},
        "kind": {"const": "person"},
    },
    "required": ["name", "age", "tags", "kind"],
    "additionalProperties": False,
}
TREE = {
    "$defs": {"Node": {"type": "object", "properties": {
        "v": {"anyOf": [{"type": "number"}, {"type": "null"}]},
        "kids": {"type": "array", "items": {"$ref": "#/$defs/Node"}}},
        "required": ["v", "kids"]}},
    "anyOf": [{"$ref": "#/$defs/Node"}, {"type": "string", "maxLength": 3}],
}  # fmt: skip
CHARS = string.printable + "é✓"


def feed(grammar, text: str):
    state = grammar.initial()
    for ch in text:
        state = grammar.advance(state, ch)
        if not state:
            return None
    return state


def random_document(grammar, rng: random.Random, budget: int) -> str:
    """What the constrained decoder does, one character per token: any allowed character that
    leaves enough budget to close, stopping at random once complete."""
    state, text = grammar.initial(), ""
    while not grammar.closed(state):
        if grammar.complete(state) and rng.random() < 0.2:
            break
        options = [
            (ch, nxt)
            for ch in CHARS
            if (nxt := grammar.advance(state, ch)) and grammar.min_close(nxt) <= budget - len(text) - 1
        ]
        if not options and grammar.complete(state):
            break  # the decoder allows only end-of-text here
        assert options, f"stuck after {text!r}"
        ch, state = rng.choice(options)
        text += ch
    return text


@pytest.mark.parametrize(
    "schema",
    [PERSON, TREE, {"type": "object"}, {"type": "array"}, True],
    ids=["person", "tree", "object", "array", "anything"],
)
def test_every_walk_ends_in_a_document_the_schema_accepts_within_its_budget(schema):
    grammar = compile_schema(schema)
    rng = random.Random(7)
    shortest = grammar.min_close(grammar.initial())
    for trial in range(60):
        budget = shortest + trial
        text = random_document(grammar, rng, budget)
        assert len(text) <= budget
        jsonschema.validate(json.loads(text), schema if schema is not True else {})


@pytest.mark.parametrize(
    "text",
    [
        '{"name":"Al","age":3,"tags":["a"],"kind":"person"}',
        (
            '{"name": "Alice", "age": -12, "score": 1.5e-3, "nick": null, "tags": [3, null, "bb"],'
            ' "ok": true, "kind": "person"}'
        ),
        '{\n  "name": "\\u00e9t\\"",\n  "age": 0,\n  "tags": ["a"],\n  "kind": "person"\n}',
    ],
)
def test_valid_documents_are_accepted_and_closed(text):
    grammar = compile_schema(PERSON)
    state = feed(grammar, text)
    assert state is not None and grammar.closed(state) and grammar.min_close(state) == 0


@pytest.mark.parametrize(
    "text",
    [
        '{"age":3',  # properties come in the schema's order
        '{"name":"A"',  # minLength 2
        '{"name":"Abcdefg"',  # maxLength 6
        '{"name":"Al","age":3.5',  # an integer
        '{"name":"Al","age":01',  # no leading zeros
        '{"name":"Al","age":3,"tags":[]',  # minItems 1
        '{"name":"Al","age":3,"tags":["c"',  # enum
        '{"name":"Al","age":3,"tags":["a"]}',  # kind is required
        '{"name":"Al","age":3,"tags":["a"],"kind":"person","extra":1',  # additionalProperties false
        '{"name":"A\nb"',  # control characters must be escaped
        " {",  # the document starts at once
        "{" + " " * (MAX_WS + 1),  # no endless whitespace
    ],
)
def test_invalid_prefixes_are_refused(text):
    assert feed(compile_schema(PERSON), text) is None


def test_min_close_is_the_length_of_the_shortest_completion():
    grammar = compile_schema(PERSON)
    for prefix in [
        "",
        "{",
        '{"na',
        '{"name":"x',
        '{"name":"xy","age":-',
        '{"name":"xy","age":1,"n',
        '{"name":"ab",',
    ]:
        state = feed(grammar, prefix)
        rest = grammar.shortest(state)
        assert len(rest) == grammar.min_close(state)
        jsonschema.validate(json.loads(prefix + rest), PERSON)


def test_json_mode_is_any_object():
    grammar = json_object_grammar()
    assert feed(grammar, "[") is None and feed(grammar, '"x"') is None
    state = feed(grammar, '{"a": [1, {"b": null}], "c": {"d": "e"}, "f": -0.5E+2}')
    assert state is not None and grammar.closed(state)


def test_top_level_number_may_end_or_go_on():
    grammar = compile_schema({"type": "number"})
    state = feed(grammar, "12")
    assert grammar.complete(state) and not grammar.closed(state) and feed(grammar, "12.5e3")


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "pattern": "^a$"},
        {"type": "string", "format": "email"},
        {"type": "integer", "minimum": 1},
        {"type": "array", "uniqueItems": True},
        {"allOf": [{"type": "string"}, {"maxLength": 2}]},
        {"$ref": "https://example.com/schema.json"},
        {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}},
        {
            "type": "object",
            "properties": {"a": {"$ref": "#/$defs/A"}},
            "required": ["a"],
            "$defs": {"A": {"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}, "required": ["a"]}},
        },
        False,
        {"type": "date"},
    ],
)
def test_what_cannot_be_enforced_is_refused_in_strict_mode(schema):
    with pytest.raises(SchemaError):
        compile_schema(schema)


def test_lenient_mode_enforces_the_structure_and_skips_assertions():
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}, "required": ["n"]}
    grammar = compile_schema(schema, strict=False)
    assert feed(grammar, '{"n":"x"') is None
    assert grammar.closed(feed(grammar, '{"n":0}'))


# --- tool calls in free answers -----------------------------------------------------------------
NAMES = ["get_weather", "get_time"]


@pytest.mark.parametrize(
    ("text", "content", "calls"),
    [
        (
            '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
            None,
            [("get_weather", {"city": "Paris"})],
        ),
        (
            (
                'Let me check.\n<tool_call>{"name": "get_weather", "arguments": {"city": "A"}}</tool_call>\n'
                '<tool_call>{"name": "get_time", "arguments": {}}</tool_call>'
            ),
            "Let me check.",
            [("get_weather", {"city": "A"}), ("get_time", {})],
        ),
        (
            '[TOOL_CALLS] [{"name": "get_time", "arguments": {"zone": "UTC"}}]',
            None,
            [("get_time", {"zone": "UTC"})],
        ),
        ('[TOOL_CALLS]get_time[ARGS]{"zone": "UTC"}', None, [("get_time", {"zone": "UTC"})]),
        (
            '<|python_tag|>{"name": "get_time", "parameters": {"zone": "CET"}}',
            None,
            [("get_time", {"zone": "CET"})],
        ),
        (
            '  {"name": "get_weather", "arguments": "{\\"city\\": \\"Rome\\"}"}',
            None,
            [("get_weather", {"city": "Rome"})],
        ),
        ('{"name": "unknown_tool", "arguments": {}}', '{"name": "unknown_tool", "arguments": {}}', []),
        ('<tool_call>{"name": "get_weather", "arguments": {"city": </tool_call>', None, []),
        ("Just text.", "Just text.", []),
    ],
)
def test_parse_tool_calls(text, content, calls):
    got_content, got_calls = parse_tool_calls(text, NAMES)
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in got_calls] == calls
    if calls:
        assert got_content == content and all(c["id"].startswith("call_") for c in got_calls)
    else:
        assert got_content == text


def test_sniffer_streams_text_and_holds_back_calls():
    sniffer = ToolCallSniffer()
    out = "".join(
        sniffer.feed(d)
        for d in [
            "Sure",
            ", checking <tool",
            "_call>",
            '{"name": "get_time", ',
            '"arguments": {}}</tool_call>',
        ]
    )
    assert out == "Sure, checking "
    rest, calls = sniffer.finish(NAMES)
    assert rest == "" and calls[0]["function"]["name"] == "get_time"

    plain = ToolCallSniffer()
    out = "".join(plain.feed(d) for d in ["Hello <to", "day> all"])
    rest, calls = plain.finish(NAMES)
    assert out + rest == "Hello <today> all" and not calls

    bare = ToolCallSniffer()
    assert bare.feed('  {"name": "get_time",') == "" and bare.feed(' "arguments": {}}') == ""
    assert bare.finish(NAMES)[1][0]["function"]["name"] == "get_time"
