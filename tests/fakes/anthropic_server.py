"""A fake Anthropic Messages API speaking the real wire format, JSON and SSE.

``POST /v1/messages`` checks what the real API checks first (the key as ``x-api-key`` or
``Authorization: Bearer``, the ``anthropic-version`` header, ``max_tokens``, roles, tool
results answering the previous turn's tool calls, no sampling parameters under API version
2026-10-21) and answers with Anthropic's error bodies from ``payloads/anthropic/``.

Answers are deterministic: ``"Hello from fake Anthropic: <n> messages, system=<first word>."``
(stop sequences and ``max_tokens`` honoured), or, when tools are offered and the last turn
holds no tool result, a text block then a ``tool_use`` of the first tool with
``{"city": "Paris"}``.

Usage is realistic, prompt caching included, keyed as Anthropic keys it: the prompt (tools, then
system, then messages) up to each ``cache_control`` breakpoint whose prefix has at least
``min_cacheable_tokens`` tokens (here: JSON characters / 4). The longest such prefix cached within
the last ``CACHE_TTL_S`` (5 minutes, by ``clock``) is read (``cache_read_input_tokens``); the
tokens from there up to the last eligible breakpoint are written (``cache_creation_input_tokens``);
each use refreshes an entry's lifetime. ``prefix_cache`` maps key -> expiry; ``reset`` empties it.

Streams send ``message_start``, ``content_block_start``, ``ping``, deltas, ``content_block_stop``,
``message_delta``, ``message_stop``, each as ``event: <type>``. Besides the base class's faults:
``event_interval_s`` paces events, ``error_event_after`` (one shot) replaces event k with an
``error`` event, and ``streams_unfinished`` lists the message ids of streams that stopped
before their end (a client that went away, or a cut).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.server import FakeServer, sse_event, watched

PAYLOADS = Path(__file__).parent / "payloads" / "anthropic"
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
SAMPLING = ("temperature", "top_p", "top_k")
NO_SAMPLING_SINCE = "2026-10-21"
# Anthropic's SDK skips SSE events without an ``event:`` line, so a broken event must carry one.
MALFORMED = (
    b'event: content_block_delta\ndata: {"type": "content_block_delta", "index": 0, "delta": {"type": \n\n'
)
TOOL_ARGUMENTS = {"city": "Paris"}
CACHE_TTL_S = 300.0


def fake_tokens(value: Any) -> int:
    """The fake's token count: JSON characters / 4 (at least 1)."""
    return max(1, len(json.dumps(value, sort_keys=True)) // 4)


def payload(name: str) -> Any:
    return json.loads((PAYLOADS / name).read_text(encoding="utf-8"))


def anthropic_error(status: int, message: str | None = None) -> dict[str, Any]:
    """Anthropic's error body for ``status``: the recorded one, or one built the same way."""
    path = PAYLOADS / f"error_{status}.json"
    if message is None and path.exists():
        return payload(path.name)
    kind = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {
        "type": "error",
        "error": {"type": kind, "message": message or f"fake Anthropic error {status}"},
        "request_id": f"req_{uuid.uuid4().hex[:24]}",
    }


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse(anthropic_error(status, message), status_code=status)


class FakeAnthropic(FakeServer):
    def __init__(self, api_key: str = "test-anthropic-key", name: str = "fake-anthropic") -> None:
        super().__init__(name=name)
        self.api_key = api_key
        self.event_interval_s = 0.0
        self.error_event_after: int | None = None
        self.streams_unfinished: list[str] = []
        self.min_cacheable_tokens = 1024
        self.clock: Callable[[], float] = time.monotonic
        self.prefix_cache: dict[str, float] = {}

    def reset(self) -> None:
        super().reset()
        self.prefix_cache.clear()
        self.clock = time.monotonic

    def routes(self) -> list[Route]:
        return [Route("/v1/messages", self.messages, methods=["POST"])]

    async def messages(self, request: Request) -> Response:
        body = await self.record(request)
        refused = self._refusal(request, body)
        if refused is not None:
            return refused
        fault = self.fault_for(body)
        if fault is not None:
            error = await self.error_response(fault, anthropic_error)
            if error is not None:
                return error
        message = self.answer(body)
        headers = {"request-id": f"req_{uuid.uuid4().hex[:24]}"}
        if body.get("stream"):
            response = self.sse(self.stream_events(message), fault, malformed=MALFORMED)
            message_id = message["id"]

            def ended(finished: bool) -> None:
                if not finished:
                    self.streams_unfinished.append(message_id)

            response.body_iterator = watched(response.body_iterator, self.event_interval_s, ended)
            response.headers.update(headers)
            return response
        return JSONResponse(message, headers=headers)

    # --- what the real API refuses ------------------------------------------------------
    def _refusal(self, request: Request, body: Any) -> Response | None:
        auth = request.headers.get("authorization", "")
        key = request.headers.get("x-api-key") or (
            auth[len("Bearer ") :] if auth.startswith("Bearer ") else None
        )
        if key != self.api_key:
            return JSONResponse(payload("error_401.json"), status_code=401)
        version = request.headers.get("anthropic-version")
        if not version:
            return error_response(400, "anthropic-version: header is required")
        if not isinstance(body, dict):
            return error_response(400, "There was an issue with the request body: it is not JSON")
        for field in ("model", "max_tokens", "messages"):
            if field not in body:
                return error_response(400, f"{field}: Field required")
        if version >= NO_SAMPLING_SINCE:
            for field in SAMPLING:
                if field in body:
                    return error_response(400, f"{field}: Extra inputs are not permitted")
        problem = self._check_turns(body["messages"])
        return error_response(400, problem) if problem else None

    @staticmethod
    def _check_turns(messages: list[dict[str, Any]]) -> str | None:
        if not messages:
            return "messages: at least one message is required"
        pending: set[str] = set()
        for i, message in enumerate(messages):
            role, content = message.get("role"), message.get("content")
            if role not in ("user", "assistant"):
                return f'messages.{i}.role: Input should be "user" or "assistant"'
            blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
            results = {b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"}
            if results - pending or (pending and role == "user" and pending - results):
                return (
                    f"messages.{i}: each `tool_result` block must have a corresponding `tool_use` block "
                    "in the previous message, and each `tool_use` a `tool_result` right after it"
                )
            pending = {b["id"] for b in blocks if b.get("type") == "tool_use"}
        return None

    # --- answers ------------------------------------------------------------------------
    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        """The whole Message this request gets (also the source of its stream)."""
        messages = body["messages"]
        last = messages[-1].get("content")
        answered_tool = isinstance(last, list) and any(b.get("type") == "tool_result" for b in last)
        wants_tools = body.get("tools") and (body.get("tool_choice") or {}).get("type") != "none"
        stop_sequence = None
        if wants_tools and not answered_tool:
            tool = {
                "type": "tool_use",
                "id": f"toolu_{uuid.uuid4().hex[:24]}",
                "name": body["tools"][0]["name"],
                "input": dict(TOOL_ARGUMENTS),
            }
            content, stop_reason = [{"type": "text", "text": "Let me check that."}, tool], "tool_use"
        else:
            text, stop_reason, stop_sequence = self._text(body)
            content = [{"type": "text", "text": text}]
        return {
            "id": f"msg_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": stop_sequence,
            "stop_details": None,
            "usage": self.usage(body, content),
        }

    @staticmethod
    def _text(body: dict[str, Any]) -> tuple[str, str, str | None]:
        system = body.get("system") or ""
        if isinstance(system, list):
            system = " ".join(b.get("text", "") for b in system)
        first = system.split()[0] if system.split() else "none"
        text = f"Hello from fake Anthropic: {len(body['messages'])} messages, system={first}."
        for stop in body.get("stop_sequences") or []:
            if stop in text:
                return text[: text.index(stop)], "stop_sequence", stop
        words = text.split(" ")
        if body["max_tokens"] < len(words):
            return " ".join(words[: body["max_tokens"]]), "max_tokens", None
        return text, "end_turn", None

    def usage(self, body: dict[str, Any], content: list[dict[str, Any]]) -> dict[str, Any]:
        read, written, prompt = self.cache_usage(body)
        fresh = prompt + 3 * len(body["messages"]) - read - written
        output = sum(len(json.dumps(b).split()) for b in content)
        return {
            "input_tokens": fresh,
            "cache_creation_input_tokens": written,
            "cache_read_input_tokens": read,
            "cache_creation": {"ephemeral_5m_input_tokens": written, "ephemeral_1h_input_tokens": 0},
            "output_tokens": output,
            "service_tier": "standard",
            "inference_geo": "not_available",
        }

    def cache_usage(self, body: dict[str, Any]) -> tuple[int, int, int]:
        """(tokens read from the cache, tokens written to it, prompt tokens), see the module notes."""
        blocks = prompt_blocks(body)
        now = self.clock()
        cumulative, total, eligible = [], 0, []
        for i, (block, marked) in enumerate(blocks):
            total += fake_tokens(block)
            cumulative.append(total)
            if marked and total >= self.min_cacheable_tokens:
                eligible.append(i)
        keys = {i: prefix_key(body["model"], [b for b, _ in blocks[: i + 1]]) for i in eligible}
        hits = [i for i in eligible if self.prefix_cache.get(keys[i], 0.0) > now]
        read = cumulative[hits[-1]] if hits else 0
        written = cumulative[eligible[-1]] - read if eligible else 0
        for key in keys.values():
            self.prefix_cache[key] = now + CACHE_TTL_S
        return read, written, total

    # --- streams ------------------------------------------------------------------------
    def stream_events(self, message: dict[str, Any]) -> list[bytes]:
        usage = message["usage"]
        start = {
            **message,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {**usage, "output_tokens": 1},
        }
        events = [("message_start", {"type": "message_start", "message": start})]
        for index, block in enumerate(message["content"]):
            events += self._block_events(index, block)
            if index == 0:
                events.insert(2, ("ping", {"type": "ping"}))
        final_usage = {
            k: usage[k]
            for k in (
                "input_tokens",
                "cache_creation_input_tokens",
                "cache_read_input_tokens",
                "output_tokens",
            )
        }
        delta = {
            "stop_reason": message["stop_reason"],
            "stop_sequence": message["stop_sequence"],
            "stop_details": None,
        }
        events.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": final_usage}))
        events.append(("message_stop", {"type": "message_stop"}))
        if self.error_event_after is not None:
            k, self.error_event_after = self.error_event_after, None
            events[k:] = [("error", anthropic_error(529))]
        return [sse_event(data, event=name) for name, data in events]

    @staticmethod
    def _block_events(index: int, block: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        if block["type"] == "tool_use":
            start = {**block, "input": {}}
            args = json.dumps(block["input"])
            parts = ["", args[: len(args) // 2], args[len(args) // 2 :]]
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in parts]
        else:
            start = {"type": "text", "text": ""}
            words = block["text"].split(" ")
            deltas = [{"type": "text_delta", "text": w if i == 0 else " " + w} for i, w in enumerate(words)]
        return [
            ("content_block_start", {"type": "content_block_start", "index": index, "content_block": start}),
            *[
                ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
                for d in deltas
            ],
            ("content_block_stop", {"type": "content_block_stop", "index": index}),
        ]


def prompt_blocks(body: dict[str, Any]) -> list[tuple[dict[str, Any], bool]]:
    """The prompt in Anthropic's cache order (tools, system, messages) as (block without its
    ``cache_control``, whether it carried one); message blocks carry their role."""
    out: list[tuple[dict[str, Any], bool]] = []

    def add(where: str, block: Any) -> None:
        block = {"type": "text", "text": block} if isinstance(block, str) else block
        plain = {k: v for k, v in block.items() if k != "cache_control"}
        out.append(({"at": where, **plain}, "cache_control" in block))

    for tool in body.get("tools") or []:
        add("tools", tool)
    system = body.get("system")
    for block in [system] if isinstance(system, str) else system or []:
        add("system", block)
    for message in body["messages"]:
        content = message.get("content")
        for block in [content] if isinstance(content, str) else content or []:
            add(message["role"], block)
    return out


def prefix_key(model: str, blocks: list[dict[str, Any]]) -> str:
    return hashlib.sha256(json.dumps([model, blocks], sort_keys=True).encode()).hexdigest()
