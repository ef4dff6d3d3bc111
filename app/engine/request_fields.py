"""Which OpenAI request fields the CPU engine honours, and how: checked before generating.

Every field is honoured or refused with a 400 naming it (``UnsupportedFeatureError``, or
``InvalidRequestError`` for a bad value), never dropped:

- honoured: ``messages``, ``max_tokens`` / ``max_completion_tokens``, ``temperature``, ``top_p``,
  ``n`` (1), ``stop``, ``seed``, ``stream`` / ``stream_options``, ``presence_penalty``,
  ``frequency_penalty``, ``logit_bias`` (this model's token ids), ``logprobs`` / ``top_logprobs``,
  ``response_format`` (``text``, ``json_object``, ``json_schema``: constrained decoding),
  ``tools`` / ``tool_choice`` / ``parallel_tool_calls``;
- accepted, with nothing to do: ``user``, ``metadata``, ``safety_identifier``, ``prompt_cache_key``,
  ``prompt_cache_retention``, ``store: false``, ``service_tier`` ``auto``/``default``,
  ``modalities: ["text"]``;
- anything else (``audio``, ``prediction``, ``web_search_options``, ``reasoning_effort``,
  ``verbosity``, ``functions``, unknown fields...) is refused.

Tools: ``tool_choice`` ``auto`` lets the model answer or call tools in its own format (parsed
from its output: ``<tool_call>`` blocks, Mistral's ``[TOOL_CALLS]``, Llama's ``<|python_tag|>``
or a bare JSON call); ``required`` and a named function constrain the output to a call
(``{"name", "arguments"}`` or the named function's arguments), as vLLM does.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from app.engine.json_grammar import Grammar, SchemaError
from app.errors import InvalidRequestError, UnsupportedFeatureError

HONOURED = frozenset({
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n", "stop", "seed",
    "stream", "stream_options", "presence_penalty", "frequency_penalty", "logit_bias", "logprobs",
    "top_logprobs", "response_format", "tools", "tool_choice", "parallel_tool_calls",
})  # fmt: skip
NO_EFFECT = frozenset({"user", "metadata", "safety_identifier", "prompt_cache_key", "prompt_cache_retention"})
TOOL_MARKERS = ("<tool_call>", "[TOOL_CALLS]", "<|python_tag|>")
TOOL_TOKENS = frozenset({*TOOL_MARKERS, "</tool_call>", "[ARGS]", "[CALL_ID]"})
MAX_TOP_LOGPROBS = 20

TOOLS_PROMPT = (
    "You can call these tools (JSON Schema function signatures):\n<tools>\n{tools}\n</tools>\n"
    "To call a tool, answer with one <tool_call></tool_call> block per call, each holding a JSON "
    'object with the function\'s "name" and its "arguments":\n'
    '<tool_call>\n{{"name": "<function name>", "arguments": {{<arguments as JSON>}}}}\n</tool_call>'
)


@dataclass
class Fields:
    """What a request asks of the engine beyond plain text."""

    logprobs: bool = False
    top_logprobs: int = 0
    presence: float = 0.0
    frequency: float = 0.0
    logit_bias: dict[int, float] = field(default_factory=dict)
    grammar: Grammar | None = None  # constrained decoding
    tools: list[dict[str, Any]] = field(default_factory=list)  # the ``function`` objects
    tool_mode: str = "none"  # none | auto | required | named
    named: str | None = None
    parallel: bool = True

    @property
    def tool_names(self) -> list[str]:
        return [t["name"] for t in self.tools]


def read_fields(request: dict[str, Any], vocab_size: int, grammar_for: Any) -> Fields:
    """Check every field of ``request``; ``grammar_for(schema, strict)`` compiles (and caches)."""
    for key, value in request.items():
        if key in HONOURED or key in NO_EFFECT or value is None:
            continue
        _no_op_value(key, value)
    fields = Fields()
    _logprobs(request, fields)
    _penalties(request, fields, vocab_size)
    _tools(request, fields)
    _response_format(request, fields, grammar_for)
    if fields.grammar is not None and request.get("stop"):
        raise UnsupportedFeatureError(
            "stop sequences cannot be combined with JSON-constrained output (response_format or a forced "
            "tool call) on the self-hosted engine: they could cut the JSON short.",
            param="stop",
        )
    return fields


def _no_op_value(key: str, value: Any) -> None:
    """Fields that change nothing here when they ask for nothing special; refused otherwise."""
    if key == "store" and value is False:
        return
    if key == "service_tier" and value in ("auto", "default"):
        return
    if key == "modalities" and value == ["text"]:
        return
    raise UnsupportedFeatureError(f"The self-hosted engine does not support `{key}`.", param=key)


def _number(request: dict[str, Any], key: str, low: float, high: float) -> float:
    value = request.get(key)
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise InvalidRequestError(f"`{key}` must be a number from {low} to {high}.", param=key)
    return float(value)


def _logprobs(request: dict[str, Any], fields: Fields) -> None:
    logprobs, top = request.get("logprobs"), request.get("top_logprobs")
    if logprobs is not None and not isinstance(logprobs, bool):
        raise InvalidRequestError("`logprobs` must be a boolean.", param="logprobs")
    if top is not None:
        if isinstance(top, bool) or not isinstance(top, int) or not 0 <= top <= MAX_TOP_LOGPROBS:
            raise InvalidRequestError(
                f"`top_logprobs` must be an integer from 0 to {MAX_TOP_LOGPROBS}.", param="top_logprobs"
            )
        if not logprobs:
            raise InvalidRequestError("`top_logprobs` needs `logprobs: true`.", param="top_logprobs")
    fields.logprobs, fields.top_logprobs = bool(logprobs), int(top or 0)


def _penalties(request: dict[str, Any], fields: Fields, vocab_size: int) -> None:
    fields.presence = _number(request, "presence_penalty", -2, 2)
    fields.frequency = _number(request, "frequency_penalty", -2, 2)
    bias = request.get("logit_bias")
    if bias is None:
        return
    if not isinstance(bias, dict):
        raise InvalidRequestError("`logit_bias` must map token ids to numbers.", param="logit_bias")
    for key, value in bias.items():
        try:
            token = int(key)
        except (TypeError, ValueError):
            token = -1
        if not 0 <= token < vocab_size:
            raise InvalidRequestError(
                f"`logit_bias`: {key!r} is not a token id of this model (0 to {vocab_size - 1}).",
                param="logit_bias",
            )
        if isinstance(value, bool) or not isinstance(value, int | float) or not -100 <= value <= 100:
            raise InvalidRequestError(
                "`logit_bias` values must be numbers from -100 to 100.", param="logit_bias"
            )
        fields.logit_bias[token] = float(value)


def _tools(request: dict[str, Any], fields: Fields) -> None:
    tools, choice = request.get("tools"), request.get("tool_choice")
    parallel = request.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise InvalidRequestError("`parallel_tool_calls` must be a boolean.", param="parallel_tool_calls")
    fields.parallel = parallel is not False
    if not tools:
        if choice not in (None, "none"):
            raise InvalidRequestError("`tool_choice` needs `tools`.", param="tool_choice")
        return
    if not isinstance(tools, list):
        raise InvalidRequestError("`tools` must be a list.", param="tools")
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise UnsupportedFeatureError(
                "The self-hosted engine takes only function tools.", param=f"tools[{i}]"
            )
        function = tool.get("function")
        if (
            not isinstance(function, dict)
            or not isinstance(function.get("name"), str)
            or not function["name"]
        ):
            raise InvalidRequestError("Each tool needs `function.name`.", param=f"tools[{i}].function")
        fields.tools.append(function)
    if choice is None or choice == "auto":
        fields.tool_mode = "auto"
    elif choice in ("none", "required"):
        fields.tool_mode = choice
    elif isinstance(choice, dict) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        if name not in fields.tool_names:
            raise InvalidRequestError(
                f"`tool_choice` names {name!r}, which is not in `tools`.", param="tool_choice"
            )
        fields.tool_mode, fields.named = "named", name
    else:
        raise UnsupportedFeatureError(
            "`tool_choice` must be none, auto, required or a function on the self-hosted engine.",
            param="tool_choice",
        )


def _parameters(function: dict[str, Any]) -> Any:
    return function.get("parameters") or {"type": "object", "properties": {}}


def _response_format(request: dict[str, Any], fields: Fields, grammar_for: Any) -> None:
    fmt = request.get("response_format")
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if fields.tool_mode in ("required", "named"):
        # The call itself is constrained; a JSON answer format has no answer to apply to.
        fields.grammar = _tool_grammar(fields, grammar_for)
        return
    if fmt is None or kind == "text":
        return
    if fields.tool_mode == "auto":
        raise UnsupportedFeatureError(
            "The self-hosted engine cannot combine `response_format` with `tool_choice: auto` (it constrains "
            "the whole output); use tool_choice `required`, a named function or `none`.",
            param="response_format",
        )
    if kind == "json_object":
        fields.grammar = grammar_for({"type": "object"}, True)
        return
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise InvalidRequestError(
                "`response_format.json_schema.schema` must be a JSON Schema object.", param="response_format"
            )
        try:
            fields.grammar = grammar_for(schema, True)
        except SchemaError as exc:
            raise UnsupportedFeatureError(f"response_format: {exc}", param="response_format") from None
        return
    raise UnsupportedFeatureError(f"response_format type {kind!r} is not supported.", param="response_format")


def _tool_grammar(fields: Fields, grammar_for: Any) -> Grammar:
    """The JSON a forced call must be: the named function's arguments, or ``{"name", "arguments"}``
    for one of the tools (a list of them when parallel calls are allowed)."""
    functions = [f for f in fields.tools if fields.named in (None, f["name"])]
    strict = any(f.get("strict") is True for f in functions)
    if fields.tool_mode == "named":
        schema = _parameters(functions[0])
    else:
        calls = [
            {
                "type": "object",
                "properties": {"name": {"const": f["name"]}, "arguments": _parameters(f)},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
            for f in functions
        ]
        call = calls[0] if len(calls) == 1 else {"anyOf": calls}
        schema = {"type": "array", "items": call, "minItems": 1} if fields.parallel else call
    try:
        return grammar_for(schema, strict)
    except SchemaError as exc:
        raise UnsupportedFeatureError(f"tools: {exc}", param="tools") from None


# --- prompts ---------------------------------------------------------------------------------
def template_messages(messages: list[dict[str, Any]], *, text_calls: bool) -> list[dict[str, Any]]:
    """Messages as chat templates take them: content parts joined, tool-call arguments as objects
    (Hugging Face's convention), or written out as ``<tool_call>`` blocks when ``text_calls``."""
    out = []
    for message in messages:
        message = dict(message)
        content = message.get("content")
        if isinstance(content, list):
            message["content"] = "".join(
                p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
            )
        calls = message.get("tool_calls")
        if calls:
            converted = [_call_for_template(c) for c in calls]
            if text_calls:
                blocks = "\n".join(
                    f"<tool_call>\n{json.dumps(c['function'])}\n</tool_call>" for c in converted
                )
                message["content"] = ((message.get("content") or "") + "\n" + blocks).strip()
                message.pop("tool_calls")
            else:
                message["tool_calls"] = converted
        if message.get("content") is None:
            message["content"] = ""
        out.append(message)
    return out


def _call_for_template(call: Any) -> dict[str, Any]:
    if not isinstance(call, dict):
        return call
    function = dict(call.get("function") or {})
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            function["arguments"] = json.loads(arguments)
        except ValueError:
            pass
    return {**call, "function": function}


def with_tools_prompt(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``messages`` with the tools described in the system message, for templates that have no
    place for them."""
    listing = "\n".join(json.dumps({"type": "function", "function": t}) for t in tools)
    prompt = TOOLS_PROMPT.format(tools=listing)
    if messages and messages[0].get("role") in ("system", "developer"):
        first = dict(messages[0])
        first["content"] = f"{first.get('content') or ''}\n\n{prompt}".strip()
        return [first, *messages[1:]]
    return [{"role": "system", "content": prompt}, *messages]


# --- tool calls out ---------------------------------------------------------------------------
def new_call(name: str, arguments: Any) -> dict[str, Any]:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    return {
        "id": f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {"name": name, "arguments": text},
    }


def forced_calls(text: str, fields: Fields) -> list[dict[str, Any]]:
    """The calls in a constrained output (the grammar guarantees its shape)."""
    if fields.tool_mode == "named":
        return [new_call(fields.named or "", text.strip())]
    value = json.loads(text)
    return [new_call(c["name"], c["arguments"]) for c in (value if isinstance(value, list) else [value])]


def parse_tool_calls(text: str, names: list[str]) -> tuple[str | None, list[dict[str, Any]]]:
    """(content, calls) from a free answer; no calls (and the whole text as content) unless every
    call in it parses and names one of ``names``."""
    start = min((i for i in (text.find(m) for m in TOOL_MARKERS) if i >= 0), default=-1)
    calls: list[dict[str, Any]] | None = None
    if start >= 0:
        calls = _marked_calls(text[start:], names)
        content = text[:start].strip()
    else:
        stripped = text.strip()
        if stripped[:1] in ("{", "["):
            calls, content = _json_calls(stripped, names), ""
    if not calls:
        return text, []
    return content or None, calls


def _marked_calls(text: str, names: list[str]) -> list[dict[str, Any]] | None:
    if text.startswith("<tool_call>"):
        bodies = re.findall(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", text, flags=re.DOTALL)
        calls: list[dict[str, Any]] = []
        for body in bodies:
            found = _json_calls(body, names)
            if not found:
                return None
            calls.extend(found)
        return calls
    if text.startswith("[TOOL_CALLS]"):
        rest = text[len("[TOOL_CALLS]") :].strip()
        match = re.fullmatch(r"([\w.\-]+)(?:\[CALL_ID\]\w+)?\[ARGS\](.*)", rest, flags=re.DOTALL)
        if match:
            return _json_calls(
                json.dumps({"name": match.group(1), "arguments": _loads(match.group(2))}), names
            )
        return _json_calls(rest, names)
    return _json_calls(text[len("<|python_tag|>") :].strip(), names)


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _json_calls(text: str, names: list[str]) -> list[dict[str, Any]] | None:
    value = _loads(text)
    items = value if isinstance(value, list) else [value]
    calls = []
    for item in items:
        if not isinstance(item, dict) or item.get("name") not in names:
            return None
        arguments = item.get("arguments", item.get("parameters", {}))
        if isinstance(arguments, str):
            arguments = _loads(arguments)
        if not isinstance(arguments, dict):
            return None
        calls.append(new_call(item["name"], arguments))
    return calls or None


class ToolCallSniffer:
    """Streams the content of a ``tool_choice: auto`` answer while it cannot be a tool call, and
    holds back what may be one until the end."""

    def __init__(self) -> None:
        self.text, self.sent, self.held = "", 0, False

    def feed(self, delta: str) -> str:
        """Content that can go to the client now."""
        self.text += delta
        if self.held:
            return ""
        stripped = self.text.lstrip()
        if self.sent == 0 and (not stripped or stripped[0] in "{["):
            return ""  # maybe a bare JSON call: wait
        start = min((i for i in (self.text.find(m, self.sent) for m in TOOL_MARKERS) if i >= 0), default=-1)
        end = start if start >= 0 else len(self.text) - _holdback(self.text)
        self.held = start >= 0
        out = self.text[self.sent : end]
        self.sent = max(self.sent, end)
        return out

    def finish(self, names: list[str]) -> tuple[str, list[dict[str, Any]]]:
        """The content still to send, and the calls."""
        content, calls = parse_tool_calls(self.text, names)
        if not calls:
            return self.text[self.sent :], []
        rest = content or ""
        sent = self.text[: self.sent].strip()
        return (rest[len(sent) :] if rest.startswith(sent) else ""), calls


def _holdback(text: str) -> int:
    best = 0
    for marker in TOOL_MARKERS:
        for k in range(min(len(marker) - 1, len(text)), best, -1):
            if text.endswith(marker[:k]):
                best = k
                break
    return best
