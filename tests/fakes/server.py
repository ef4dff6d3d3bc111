"""The base of the fake provider servers: a real HTTP server on loopback, with fault injection.

A fake runs its Starlette app under uvicorn in a background thread. Faults come from a queue
(``fake.inject(status=429, retry_after=2)`` applies to the next request) or from a marker in
the request's text, so tests that cannot reach the fake's object (Serve replicas) can steer it:

    [[fault:429]]            answer 429 (with Retry-After: 1)
    [[fault:503]]            any status
    [[fault:delay=0.5]]      wait before the first byte
    [[fault:cut=2]]          stream: drop the connection after 2 chunks
    [[fault:malformed=1]]    stream: send a broken event after 1 chunk
    [[fault@fake-gemini:503]] only the fake of that name takes the fault (names: fake-openai,
                              fake-vllm, fake-anthropic, fake-gemini)

Every request is recorded (path, headers, JSON body) in ``fake.requests``.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

MARKER = re.compile(r"\[\[fault(?:@([\w-]+))?:(?:(\d{3})|([a-z_]+)=([0-9.]+))\]\]")


@dataclass
class Fault:
    status: int | None = None
    retry_after: float | None = None
    body: dict[str, Any] | None = None
    delay_s: float = 0.0
    cut_after: int | None = None
    malformed_after: int | None = None


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: Any


class StreamCut(Exception):
    """Raised inside a streaming body to drop the connection mid-stream."""


@dataclass
class FakeServer:
    """Subclasses build ``routes()``; this class runs them and keeps faults and records."""

    name: str = "fake"
    requests: list[Recorded] = field(default_factory=list)
    faults: deque[Fault] = field(default_factory=deque)
    port: int = 0
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeServer:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        app = Starlette(routes=self.routes())
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=f"{self.name}-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} fake did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def routes(self) -> list[Any]:
        raise NotImplementedError  # each provider's fake defines its endpoints

    # --- faults ------------------------------------------------------------------------
    def inject(self, **fault: Any) -> None:
        self.faults.append(Fault(**fault))

    def reset(self) -> None:
        self.faults.clear()
        self.requests.clear()

    async def record(self, request: Request) -> Any:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        self.requests.append(Recorded(request.url.path, dict(request.headers), body))
        return body

    def fault_for(self, body: Any) -> Fault | None:
        if self.faults:
            return self.faults.popleft()
        text = json.dumps(body) if body is not None else ""
        match = next((m for m in MARKER.finditer(text) if m.group(1) in (None, self.name)), None)
        if not match:
            return None
        if match.group(2):
            status = int(match.group(2))
            return Fault(status=status, retry_after=1 if status == 429 else None)
        key, value = match.group(3), float(match.group(4))
        return {
            "delay": Fault(delay_s=value),
            "cut": Fault(cut_after=int(value)),
            "malformed": Fault(malformed_after=int(value)),
        }.get(key)

    async def error_response(
        self, fault: Fault, body_for: Callable[[int], dict[str, Any]]
    ) -> Response | None:
        """The fault's error answer (after its delay), or None when the fault is not a status."""
        if fault.delay_s:
            await asyncio.sleep(fault.delay_s)
        if fault.status is None:
            return None
        headers = {"retry-after": str(fault.retry_after)} if fault.retry_after is not None else {}
        return JSONResponse(fault.body or body_for(fault.status), status_code=fault.status, headers=headers)

    def sse(
        self,
        events: list[bytes],
        fault: Fault | None,
        malformed: bytes = b'data: {"this is": not json\n\n',
    ) -> StreamingResponse:
        """Streams pre-encoded SSE events, applying a cut or a malformed event from ``fault``."""

        async def body() -> AsyncIterator[bytes]:
            for i, event in enumerate(events):
                if fault is not None and fault.cut_after is not None and i == fault.cut_after:
                    raise StreamCut(f"{self.name}: stream cut after {i} events")
                if fault is not None and fault.malformed_after is not None and i == fault.malformed_after:
                    yield malformed
                yield event
                await asyncio.sleep(0)

        return StreamingResponse(body(), media_type="text/event-stream")


async def watched(
    body: AsyncIterator[Any], interval_s: float, on_end: Callable[[bool], None]
) -> AsyncIterator[Any]:
    """A response body paced by ``interval_s``; ``on_end(finished)`` says whether it reached its end
    or its client left first (the cancellation tests read this)."""
    finished = False
    try:
        async for part in body:
            yield part
            if interval_s:
                await asyncio.sleep(interval_s)
        finished = True
    finally:
        on_end(finished)


def sse_event(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return head + b"data: " + payload.encode() + b"\n\n"


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            return " ".join(str(p.get("text", "")) for p in content or [] if isinstance(p, dict))
    return ""
