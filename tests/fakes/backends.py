"""A scripted backend that implements the real ``Backend`` protocol, for tests without Ray.

Each call consumes the next scripted outcome: ``"ok"``, a ``RouterError`` to raise before any
content, or ``("cut", n)`` to send ``n`` content chunks and then fail mid-stream.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from app.errors import UpstreamUnavailableError

Outcome = Any


class ScriptedBackend:
    def __init__(
        self, name: str, text: str = "Hello from the fake backend", outcomes: list[Outcome] | None = None
    ):
        self.name = name
        self.words = text.split(" ")
        self.outcomes = list(outcomes or [])
        self.calls: list[dict[str, Any]] = []
        self.down: str | None = None
        self.closed_streams = 0

    def unavailable_reason(self) -> str | None:
        return self.down

    def _next(self) -> Outcome:
        return self.outcomes.pop(0) if self.outcomes else "ok"

    def _usage(self, request: dict[str, Any]) -> dict[str, int]:
        prompt = sum(len(str(m.get("content", "")).split()) for m in request["messages"])
        return {
            "prompt_tokens": prompt,
            "completion_tokens": len(self.words),
            "total_tokens": prompt + len(self.words),
        }

    async def complete(self, request: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(request)
        outcome = self._next()
        if isinstance(outcome, Exception):
            raise outcome
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": " ".join(self.words)},
                    "finish_reason": "stop",
                }
            ],
            "usage": self._usage(request),
        }

    async def stream(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        self.calls.append(request)
        outcome = self._next()
        base = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
        }
        try:
            yield {
                **base,
                "model": request["model"],
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}],
            }
            if isinstance(outcome, Exception):
                raise outcome
            cut = outcome[1] if isinstance(outcome, tuple) else None
            for i, word in enumerate(self.words):
                if cut is not None and i == cut:
                    raise UpstreamUnavailableError(f"{self.name}: stream cut after {cut} chunks")
                text = word if i == 0 else " " + word
                yield {
                    **base,
                    "model": request["model"],
                    "choices": [{"index": 0, "delta": {"content": text}}],
                }
            yield {
                **base,
                "model": request["model"],
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            }
            yield {**base, "model": request["model"], "choices": [], "usage": self._usage(request)}
        finally:
            self.closed_streams += 1
