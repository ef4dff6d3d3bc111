"""OpenAI chat requests to Anthropic's Messages API and back: pure functions, no I/O.

- ``to_anthropic`` turns an OpenAI chat request into ``messages.create`` keyword arguments;
  a feature Anthropic lacks is an ``UnsupportedFeatureError`` (400, ``param`` names it),
  unknown OpenAI fields are ignored.
- ``from_anthropic`` turns a Messages API response into a ``chat.completion``.
- ``StreamTranslator`` turns Messages API stream events into ``chat.completion.chunk`` dicts.
- ``error_from_anthropic(provider, status, body, headers=None)`` turns an Anthropic error body
  into a ``RouterError``.

Decisions, each a NOTE where it is made:
- Sampling: the current API version (``2026-10-21``, what the anthropic 2.x SDK sends) removed
  ``temperature``/``top_p``/``top_k`` and answers 400 to them, so they are dropped unless
  ``sampling=True`` (for the ``2023-06-01`` API and older models).
- ``response_format``: ``json_schema`` becomes ``output_config.format`` (structured outputs);
  ``json_object`` has no Anthropic counterpart and is a 400 naming it (never dropped: the client
  would get text it takes for JSON); ``text`` is the default anyway. The catalog leaves Claude
  models without ``json_mode``, so routing sends JSON requests elsewhere.
- Prompt caching: ``cache_control`` the client set (on a content part, a message or a tool) is
  carried over; with ``cache_min_tokens`` breakpoints are also placed on long stable prefixes
  (``anthropic_cache``). Usage maps cache reads and writes to ``prompt_tokens_details``
  (``cached_tokens``, ``cache_write_tokens``), both counted in ``prompt_tokens``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from app import openai_wire as wire
from app.backends import anthropic_cache
from app.backends.cloud import error_for_status, header, retry_after_seconds
from app.errors import InvalidRequestError, RouterError, UnsupportedFeatureError
from app.openai_wire import Json

PROVIDER = "anthropic"

FINISH_REASONS = {
    "end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop", "max_tokens": "length",
    "model_context_window_exceeded": "length", "tool_use": "tool_calls", "refusal": "content_filter",
}  # fmt: skip
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
# Error type -> HTTP status, for errors that arrive inside a 200 stream (Anthropic's docs).
ERROR_STATUS = {
    "invalid_request_error": 400, "authentication_error": 401, "billing_error": 402, "permission_error": 403,
    "not_found_error": 404, "request_too_large": 413, "rate_limit_error": 429, "api_error": 500,
    "timeout_error": 504, "overloaded_error": 529,
}  # fmt: skip
TOOL_CHOICES = {"none": "none", "auto": "auto", "required": "any"}


# --- request ---------------------------------------------------------------------------
def to_anthropic(
    request: Json, *, max_output_tokens: int, sampling: bool = False, cache_min_tokens: int | None = None
) -> Json:
    """``messages.create`` kwargs for an OpenAI chat request (``model`` is the provider's id).

    Raises ``UnsupportedFeatureError`` for what Anthropic cannot do and ``InvalidRequestError``
    for a malformed request (bad tool-call arguments, an unknown role). ``sampling=True`` sends
    ``temperature``/``top_p``, which only API version 2023-06-01 takes (see the module notes).
    ``cache_min_tokens`` (None: off) places ``cache_control`` breakpoints on prefixes at least
    that long (``anthropic_cache``); the client's own breakpoints are kept either way.
    """
    _reject_unsupported(request)
    system, turns = _turns(request.get("messages") or [])
    max_tokens = _max_tokens(request, max_output_tokens)
    kwargs: Json = {"model": request["model"], "max_tokens": max_tokens, "messages": turns}
    kwargs["system"] = system
    if sampling:  # NOTE: off by default: API version 2026-10-21 answers 400 to sampling fields
        kwargs.update(_sampling(request))
    stop = request.get("stop")
    if stop:
        kwargs["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    kwargs.update(_tools(request))
    if request.get("user"):
        kwargs["metadata"] = {"user_id": str(request["user"])}
    fmt = request.get("response_format") or {}
    if fmt.get("type") == "json_object":  # NOTE: a 400, see the module notes
        raise UnsupportedFeatureError(
            "Anthropic models have no JSON mode; send response_format json_schema", param="response_format"
        )
    if fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema") or {"type": "object"}
        kwargs["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    if cache_min_tokens is not None:
        anthropic_cache.place_breakpoints(kwargs, cache_min_tokens)
    anthropic_cache.finish_system(kwargs)
    return kwargs


def _reject_unsupported(request: Json) -> None:
    if (request.get("n") or 1) > 1:
        raise UnsupportedFeatureError("Anthropic models return one choice; n must be 1", param="n")
    if request.get("logprobs"):
        raise UnsupportedFeatureError("Anthropic models return no log probabilities", param="logprobs")
    if request.get("top_logprobs"):
        raise UnsupportedFeatureError("Anthropic models return no log probabilities", param="top_logprobs")
    if request.get("audio") or "audio" in (request.get("modalities") or ()):
        raise UnsupportedFeatureError("Anthropic models do not produce audio", param="audio")


def _max_tokens(request: Json, max_output_tokens: int) -> int:
    """The client's limit (``max_completion_tokens``, then ``max_tokens``), else the model's own;
    never above the model's (the API answers 400 to more)."""
    asked = request.get("max_completion_tokens") or request.get("max_tokens")
    return min(int(asked), max_output_tokens) if asked else max_output_tokens


def _sampling(request: Json) -> Json:
    """``temperature`` (OpenAI 0..2 clamped to Anthropic's 0..1) or else ``top_p``.

    NOTE: only one of the two is sent: Claude 4.1 and later answer 400 to both together.
    """
    if request.get("temperature") is not None:
        return {"temperature": min(float(request["temperature"]), 1.0)}
    if request.get("top_p") is not None:
        return {"top_p": float(request["top_p"])}
    return {}


def _tools(request: Json) -> Json:
    """``tools`` and ``tool_choice`` (with ``disable_parallel_tool_use``); nothing without tools."""
    tools = request.get("tools") or []
    if not tools:
        return {}
    out: Json = {"tools": [_tool(t) for t in tools]}
    choice = request.get("tool_choice")
    if isinstance(choice, str) and choice in TOOL_CHOICES:
        out["tool_choice"] = {"type": TOOL_CHOICES[choice]}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        out["tool_choice"] = {"type": "tool", "name": choice["function"]["name"]}
    elif choice is not None:
        raise UnsupportedFeatureError("tool_choice: none, auto, required or a function", param="tool_choice")
    if request.get("parallel_tool_calls") is False and out.get("tool_choice", {}).get("type") != "none":
        out["tool_choice"] = {"type": "auto", **out.get("tool_choice", {}), "disable_parallel_tool_use": True}
    return out


def _tool(tool: Json) -> Json:
    if tool.get("type") != "function":
        raise UnsupportedFeatureError("only function tools can be sent to Anthropic models", param="tools")
    fn = tool["function"]
    schema = fn.get("parameters") or {"type": "object", "properties": {}}
    out: Json = {"name": fn["name"], "input_schema": schema}
    if fn.get("description"):
        out["description"] = fn["description"]
    if fn.get("strict"):
        out["strict"] = True
    return anthropic_cache.carry(tool, out)


# --- messages --------------------------------------------------------------------------
def _turns(messages: list[Json]) -> tuple[list[Json], list[Json]]:
    """The system prompt as text blocks (one per system or developer message, or per part of one
    whose parts carry ``cache_control``) and the alternating turns.

    Consecutive same-role messages merge into one turn; ``tool`` messages become ``user`` turns
    of ``tool_result`` blocks. NOTE: in a user turn the tool results are put first, as the
    API requires of a turn that answers tool calls.
    """
    system: list[Json] = []
    turns: list[Json] = []
    for i, message in enumerate(messages):
        role = message.get("role")
        if role in ("system", "developer"):
            system += _system_blocks(message)
            continue
        role, blocks = _blocks(message, i)
        if blocks:
            anthropic_cache.carry(message, blocks[-1])
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:
        if turn["role"] == "user":
            turn["content"].sort(key=lambda b: b.get("type") != "tool_result")
    return system, turns


def _system_blocks(message: Json) -> list[Json]:
    content = message.get("content")
    if isinstance(content, list) and any("cache_control" in p for p in content if isinstance(p, dict)):
        parts = [p for p in content if isinstance(p, dict) and p.get("text")]
        blocks = [anthropic_cache.carry(p, {"type": "text", "text": p["text"]}) for p in parts]
    else:
        text = wire.text_of(content, separator="")
        blocks = [{"type": "text", "text": text}] if text else []
    if blocks:
        anthropic_cache.carry(message, blocks[-1])
    return blocks


def _blocks(message: Json, i: int) -> tuple[str, list[Json]]:
    role = message.get("role")
    if role == "user":
        return "user", _content_blocks(message.get("content"), f"messages[{i}].content")
    if role == "assistant":
        blocks = _content_blocks(message.get("content"), f"messages[{i}].content")
        calls = message.get("tool_calls") or []
        uses = [_tool_use(c, f"messages[{i}].tool_calls[{j}]") for j, c in enumerate(calls)]
        return "assistant", blocks + uses
    if role == "tool":
        content = wire.text_of(message.get("content"), separator="")
        return "user", [
            {"type": "tool_result", "tool_use_id": message.get("tool_call_id"), "content": content}
        ]
    raise InvalidRequestError(f"unsupported message role {role!r}", param=f"messages[{i}].role")


def _content_blocks(content: Any, param: str) -> list[Json]:
    """Text, image and PDF parts as Anthropic blocks (empty text is left out: the API refuses it)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for j, part in enumerate(content):
        kind = part.get("type")
        if kind in ("text", "refusal") and part.get(kind):
            blocks.append(anthropic_cache.carry(part, {"type": "text", "text": part[kind]}))
        elif kind == "image_url":
            blocks.append(anthropic_cache.carry(part, _image(part["image_url"], f"{param}[{j}]")))
        elif kind == "file":
            blocks.append(anthropic_cache.carry(part, _document(part.get("file") or {}, f"{param}[{j}]")))
        elif kind in ("input_audio", "audio"):
            raise UnsupportedFeatureError("Anthropic models do not take audio input", param=f"{param}[{j}]")
    return blocks


def _image(image: Json | str, param: str) -> Json:
    url = image if isinstance(image, str) else image.get("url", "")
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    media_type, data = _data_url(url, param)
    if media_type not in IMAGE_TYPES:
        raise UnsupportedFeatureError(f"image type {media_type!r} is not {sorted(IMAGE_TYPES)}", param=param)
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _document(file: Json, param: str) -> Json:
    if not file.get("file_data"):  # an OpenAI file id means nothing to Anthropic
        raise UnsupportedFeatureError("only PDF files sent inline as data URLs are supported", param=param)
    media_type, data = _data_url(file["file_data"], param)
    if media_type != "application/pdf":
        raise UnsupportedFeatureError("only PDF files sent inline as data URLs are supported", param=param)
    return {"type": "document", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _data_url(url: str, param: str) -> tuple[str, str]:
    """(media type, base64 data) of a ``data:<type>;base64,<data>`` URL."""
    head, sep, data = url.partition(",")
    if not (head.startswith("data:") and head.endswith(";base64") and sep):
        raise InvalidRequestError("expected an http(s) URL or a base64 data URL", param=param)
    return head[len("data:") : -len(";base64")], data


def _tool_use(call: Json, param: str) -> Json:
    fn, where = call.get("function") or {}, f"{param}.function.arguments"
    raw = fn.get("arguments") or "{}"
    try:
        arguments = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        raise InvalidRequestError("tool call arguments are not valid JSON", param=where) from None
    if not isinstance(arguments, dict):
        raise InvalidRequestError("tool call arguments must be a JSON object", param=where)
    return {"type": "tool_use", "id": call.get("id"), "name": fn.get("name"), "input": arguments}


# --- responses -------------------------------------------------------------------------
def from_anthropic(message: Json, *, model: str, created: int | None = None) -> Json:
    """A ``chat.completion`` for a Messages API response; ``model`` names the answering model."""
    blocks = message.get("content") or []
    calls = [_tool_call(b) for b in blocks if b.get("type") == "tool_use"]
    text = "".join(b.get("text", "") for b in blocks if b.get("type") == "text")
    reply: Json = {"role": "assistant", "content": text if text or not calls else None, "refusal": None}
    if calls:
        reply["tool_calls"] = calls
    finish = finish_reason(message.get("stop_reason"))
    return wire.completion(
        message.get("id") or wire.new_id(),
        model,
        [wire.choice(0, reply, finish)],
        created=created,
        usage=usage_from_anthropic(message.get("usage") or {}),
    )


def _tool_call(block: Json) -> Json:
    arguments = json.dumps(block.get("input") or {}, ensure_ascii=False)
    return {
        "id": block["id"],
        "type": "function",
        "function": {"name": block["name"], "arguments": arguments},
    }


def finish_reason(stop_reason: str | None) -> str:
    return FINISH_REASONS.get(stop_reason or "end_turn", "stop")


def usage_from_anthropic(usage: Json) -> Json:
    """OpenAI usage; the prompt counts fresh, cache-read and cache-written input tokens."""
    fresh = usage.get("input_tokens") or 0
    read = usage.get("cache_read_input_tokens") or 0
    written = usage.get("cache_creation_input_tokens") or 0
    prompt, completion = fresh + read + written, usage.get("output_tokens") or 0
    out: Json = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": read, "cache_write_tokens": written},
    }
    thinking = (usage.get("output_tokens_details") or {}).get("thinking_tokens")
    if thinking is not None:
        out["completion_tokens_details"] = {"reasoning_tokens": thinking}
    return out


# --- streams ---------------------------------------------------------------------------
class StreamTranslator:
    """Messages API stream events in, ``chat.completion.chunk`` dicts out.

    Yields a role chunk (at ``message_start``), content and tool-call deltas (one OpenAI tool
    ``index`` per ``tool_use`` block; id and name on its first delta, then argument fragments),
    a finish chunk (at ``message_delta``), and at ``message_stop`` one usage chunk with
    ``choices: []``. Thinking, citations and pings yield nothing; an ``error`` event raises the
    mapped ``RouterError`` (its message names ``provider``). ``done`` is true once
    ``message_stop`` was fed.
    """

    def __init__(
        self, model: str, id: str | None = None, created: int | None = None, provider: str = PROVIDER
    ) -> None:
        self.model = model
        self.provider = provider
        self.id = id
        self.created = int(time.time()) if created is None else created
        self.usage: Json = {}
        self.finished = False
        self.done = False
        self._tools: dict[int, int] = {}  # Anthropic block index -> OpenAI tool-call index

    def feed(self, event: Json) -> list[Json]:
        handler = getattr(self, f"_on_{event.get('type')}", None)
        return handler(event) if handler is not None else []

    def _chunk(self, delta: Json, finish: str | None = None) -> Json:
        self.id = self.id or wire.new_id()  # one id for the whole stream
        return wire.chunk(self.id, self.model, self.created, delta, finish_reason=finish)

    def _on_message_start(self, event: Json) -> list[Json]:
        message = event.get("message") or {}
        self.id = self.id or message.get("id")
        self.usage = dict(message.get("usage") or {})
        return [self._chunk({"role": "assistant", "content": ""})]

    def _on_content_block_start(self, event: Json) -> list[Json]:
        block = event.get("content_block") or {}
        if block.get("type") == "text" and block.get("text"):
            return [self._chunk({"content": block["text"]})]
        if block.get("type") != "tool_use":
            return []
        index = self._tools[event["index"]] = len(self._tools)
        function = {"name": block["name"], "arguments": ""}
        call = {"index": index, "id": block["id"], "type": "function", "function": function}
        return [self._chunk({"tool_calls": [call]})]

    def _on_content_block_delta(self, event: Json) -> list[Json]:
        delta = event.get("delta") or {}
        if delta.get("type") == "text_delta" and delta.get("text"):
            return [self._chunk({"content": delta["text"]})]
        partial = delta.get("partial_json") if delta.get("type") == "input_json_delta" else None
        if partial and event.get("index") in self._tools:
            call = {"index": self._tools[event["index"]], "function": {"arguments": delta["partial_json"]}}
            return [self._chunk({"tool_calls": [call]})]
        return []

    def _on_message_delta(self, event: Json) -> list[Json]:
        self.usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
        self.finished = True
        stop = (event.get("delta") or {}).get("stop_reason")
        return [self._chunk({}, finish_reason(stop))]

    def _on_message_stop(self, event: Json) -> list[Json]:
        chunks = [] if self.finished else [self._chunk({}, "stop")]
        self.done = True
        self.id = self.id or wire.new_id()
        usage_chunk = wire.usage_chunk(self.id, self.model, self.created, usage_from_anthropic(self.usage))
        return [*chunks, usage_chunk]

    def _on_error(self, event: Json) -> list[Json]:
        raise error_from_anthropic(self.provider, None, event)


# --- errors ----------------------------------------------------------------------------
def error_from_anthropic(
    provider: str, status: int | None, body: Any, headers: Mapping[str, str] | None = None
) -> RouterError:
    """The router error for an Anthropic error answer (``{"type": "error", "error": {...}}``).

    ``body`` is that dict, its JSON text, any other text (a proxy's HTML page) or None.

    A status that is None or below 400 (an ``error`` event inside a 200 stream) is taken from
    the error type. 529 (overloaded) and other 5xx are retryable ``UpstreamUnavailableError``s;
    ``retry-after`` becomes ``retry_after``.
    """
    kind, message = _error_fields(body)
    if status is None or status < 400:
        status = ERROR_STATUS.get(kind or "", 500)
    if status == 402:  # billing: an account problem on the router's side, like a refused key
        status = 403
    retry_after = retry_after_seconds(header(headers, "retry-after"))
    return error_for_status(provider, status, message, vendor_code=kind, retry_after=retry_after)


def _error_fields(body: object) -> tuple[str | None, str]:
    if isinstance(body, str):
        text = body
        try:
            body = json.loads(text)
        except ValueError:
            return None, text.strip()[:300] or "error without a body"
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None, "error without a body"
    return error.get("type"), str(error.get("message") or error.get("type") or "error")
