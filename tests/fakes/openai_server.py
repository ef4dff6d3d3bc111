"""A fake OpenAI (and OpenAI-compatible) server speaking the real chat-completions wire format.

``POST /v1/chat/completions`` answers JSON or SSE (``data: {...}`` chunks, a usage chunk when
``stream_options.include_usage`` is set, then ``data: [DONE]``), with Bearer auth and OpenAI's
error bodies. Answers are deterministic: ``"Hello from fake OpenAI: <n> messages."``, or a tool
call of the first tool when tools are offered and the last message is not a tool result.

Client disconnects (for the cancellation tests): ``event_interval_s`` paces stream events;
``streams_finished`` / ``streams_abandoned`` count streams that reached their end or stopped
before it (the client went away, or a cut); ``disconnected_before_answer`` counts requests whose
client closed the connection during a fault's ``delay_s``, before any answer was sent.

Prompt caching as OpenAI reports it: a prompt whose leading messages, or leading messages then
a message's leading content parts (with the tools and the ``prompt_cache_key``), were sent within
``CACHE_TTL_S`` (by ``clock``) reports the longest such prefix as
``prompt_tokens_details.cached_tokens``, when it has at least 1024 tokens, rounded down to 1024 +
a multiple of 128 (tokens here: JSON characters / 4, plus 4 per message).
``prefix_cache`` maps key -> expiry; ``reset`` empties it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.server import FakeServer, sse_event, watched

ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", None),
}
CACHE_TTL_S = 600.0
CACHE_MIN_TOKENS, CACHE_STEP = 1024, 128


def openai_error(status: int, message: str | None = None) -> dict[str, Any]:
    kind, code = ERROR_TYPES.get(status, ("server_error", None))
    return {
        "error": {
            "message": message or f"fake OpenAI error {status}",
            "type": kind,
            "param": None,
            "code": code,
        }
    }


class FakeOpenAI(FakeServer):
    def __init__(self, api_key: str | None = "test-openai-key", name: str = "fake-openai") -> None:
        super().__init__(name=name)
        self.api_key = api_key
        self.event_interval_s = 0.0
        self.streams_finished = 0
        self.streams_abandoned = 0
        self.disconnected_before_answer = 0
        self.clock: Callable[[], float] = time.monotonic
        self.prefix_cache: dict[str, float] = {}

    def reset(self) -> None:
        super().reset()
        self.prefix_cache.clear()
        self.clock = time.monotonic

    def routes(self) -> list[Route]:
        return [
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
            Route("/v1/models", self.models, methods=["GET"]),
        ]

    async def models(self, request: Request) -> Response:
        return JSONResponse(
            {"object": "list", "data": [{"id": "fake", "object": "model", "created": 0, "owned_by": "fake"}]}
        )

    def _authorized(self, request: Request) -> bool:
        return self.api_key is None or request.headers.get("authorization") == f"Bearer {self.api_key}"

    async def chat(self, request: Request) -> Response:
        body = await self.record(request)
        if not self._authorized(request):
            return JSONResponse(openai_error(401, "Incorrect API key provided."), status_code=401)
        fault = self.fault_for(body)
        if fault is not None:
            if fault.delay_s:
                if await self._wait_or_disconnect(request, fault.delay_s):
                    self.disconnected_before_answer += 1
                fault = dataclasses.replace(fault, delay_s=0.0)
            error = await self.error_response(fault, openai_error)
            if error is not None:
                return error
        if not isinstance(body, dict) or not body.get("messages"):
            return JSONResponse(openai_error(400, "'messages' is a required property"), status_code=400)
        message, finish = self.answer(body)
        usage = self.usage(body, message)
        if body.get("stream"):
            response = self.sse(self.stream_events(body, message, finish, usage), fault)
            response.body_iterator = watched(
                response.body_iterator, self.event_interval_s, self._stream_ended
            )
            return response
        completion = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "usage": usage,
            "system_fingerprint": "fp_fake",
        }
        return JSONResponse(completion)

    # --- client disconnects -------------------------------------------------------------
    @staticmethod
    async def _wait_or_disconnect(request: Request, seconds: float) -> bool:
        """Waits ``seconds``, or less if the client closes the connection first (then True)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while (left := deadline - loop.time()) > 0:
            receive = asyncio.ensure_future(request.receive())
            try:
                done, _ = await asyncio.wait({receive}, timeout=left)
            finally:
                if not receive.done():
                    receive.cancel()
            if done:
                if receive.result().get("type") == "http.disconnect":
                    return True
                await asyncio.sleep(min(0.01, max(0.0, deadline - loop.time())))  # not a disconnect
        return False

    def _stream_ended(self, finished: bool) -> None:
        if finished:
            self.streams_finished += 1
        else:
            self.streams_abandoned += 1

    def answer(self, body: dict[str, Any]) -> tuple[dict[str, Any], str]:
        messages = body["messages"]
        tools = body.get("tools") or []
        if tools and body.get("tool_choice") != "none" and messages[-1].get("role") != "tool":
            name = tools[0]["function"]["name"]
            call = {
                "id": f"call_{uuid.uuid4().hex[:24]}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps({"city": "Paris"})},
            }
            return {"role": "assistant", "content": None, "tool_calls": [call], "refusal": None}, "tool_calls"
        text = f"Hello from fake OpenAI: {len(messages)} messages."
        for stop in [body["stop"]] if isinstance(body.get("stop"), str) else body.get("stop") or []:
            if stop in text:
                return {"role": "assistant", "content": text[: text.index(stop)], "refusal": None}, "stop"
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        words = text.split(" ")
        if limit and limit < len(words):
            return {"role": "assistant", "content": " ".join(words[:limit]), "refusal": None}, "length"
        return {"role": "assistant", "content": text, "refusal": None}, "stop"

    def usage(self, body: dict[str, Any], message: dict[str, Any]) -> dict[str, Any]:
        prompt, cached = self.cache_usage(body)
        completion = len((message.get("content") or json.dumps(message.get("tool_calls"))).split())
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": 0},
        }

    def cache_usage(self, body: dict[str, Any]) -> tuple[int, int]:
        """(prompt tokens, cached tokens), see the module notes."""
        head = [body.get("prompt_cache_key"), body.get("model"), body.get("tools")]
        total = len(json.dumps(body.get("tools"))) // 4 if body.get("tools") else 0
        now, matched, keys = self.clock(), 0, []
        messages = body["messages"]
        for i, message in enumerate(messages):
            content = message.get("content")
            for j in range(len(content) - 1 if isinstance(content, list) else 0):  # leading parts
                key = hashlib.sha256(
                    json.dumps([head, messages[:i], content[: j + 1]], sort_keys=True).encode()
                )
                keys.append(key.hexdigest())
                if self.prefix_cache.get(keys[-1], 0.0) > now:
                    matched = total + len(json.dumps(content[: j + 1])) // 4 + 4
            total += len(json.dumps(content)) // 4 + 4
            key = hashlib.sha256(json.dumps([head, messages[: i + 1]], sort_keys=True).encode())
            keys.append(key.hexdigest())
            if self.prefix_cache.get(keys[-1], 0.0) > now:
                matched = total
        for key in keys:
            self.prefix_cache[key] = now + CACHE_TTL_S
        if matched < CACHE_MIN_TOKENS:
            return total, 0
        return total, CACHE_MIN_TOKENS + (matched - CACHE_MIN_TOKENS) // CACHE_STEP * CACHE_STEP

    @staticmethod
    def stream_events(body: dict, message: dict, finish: str, usage: dict) -> list[bytes]:
        base = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model"),
            "system_fingerprint": "fp_fake",
        }
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict, finish_reason: str | None = None) -> bytes:
            data = {
                **base,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            }
            if include_usage:
                data["usage"] = None
            return sse_event(data)

        events = [chunk({"role": "assistant", "content": ""})]
        if message.get("tool_calls"):
            call = message["tool_calls"][0]
            events.append(
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": call["id"],
                                "type": "function",
                                "function": {"name": call["function"]["name"], "arguments": ""},
                            }
                        ]
                    }
                )
            )
            args = call["function"]["arguments"]
            for part in (args[: len(args) // 2], args[len(args) // 2 :]):
                events.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]}))
        else:
            words = message["content"].split(" ")
            events += [chunk({"content": w if i == 0 else " " + w}) for i, w in enumerate(words)]
        events.append(chunk({}, finish))
        if include_usage:
            events.append(sse_event({**base, "choices": [], "usage": usage}))
        events.append(sse_event("[DONE]"))
        return events
