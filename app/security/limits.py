"""Request limits: the body's size while it arrives (413), and what a parsed request may ask for
(400 naming the ``param``), before any analysis or model call is spent on it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import RequestLimits
from app.errors import InvalidRequestError, PayloadTooLargeError, error_body, error_headers


class BodySizeLimit:
    """Refuses bodies over ``max_bytes`` with a 413, by Content-Length or while reading a chunked body."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None:
            if declared.isdigit() and int(declared) > self.max_bytes:
                await self._refuse(send)
                return
            await self.app(scope, receive, send)
            return
        # NOTE: a body without a length (chunked) is read here first, up to the limit, so that an
        # oversized one is refused before the app parses anything; the app then reads the copy.
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await self._refuse(send)
                return
            if not message.get("more_body"):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)

    def _message(self) -> str:
        return (
            f"The request body is larger than the router accepts ({self.max_bytes:,} bytes; "
            "the router config's limits.max_body_bytes)."
        )

    async def _refuse(self, send: Send) -> None:
        error = PayloadTooLargeError(self._message())
        body = json.dumps(error_body(error)).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        headers += [(k.encode(), v.encode()) for k, v in error_headers(error).items()]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def check_request(body: Mapping[str, Any], limits: RequestLimits) -> None:
    """Raises ``InvalidRequestError`` (400, with ``param``) for a request over the limits; the
    message names the config setting (``limits.<name>``) that sets each one."""
    messages = body.get("messages") or []
    if len(messages) > limits.max_messages:
        raise InvalidRequestError(
            f"At most {limits.max_messages} messages are accepted ({_setting('max_messages')}).",
            param="messages",
        )
    for i, message in enumerate(messages):
        if _text_size(message.get("content")) > limits.max_message_chars:
            raise InvalidRequestError(
                f"Message {i} is longer than {limits.max_message_chars:,} characters "
                f"({_setting('max_message_chars')}).",
                param=f"messages[{i}].content",
            )
    for field in ("max_tokens", "max_completion_tokens"):
        value = body.get(field)
        if value is not None and value > limits.max_tokens_ceiling:
            raise InvalidRequestError(
                f"{field} may be at most {limits.max_tokens_ceiling} ({_setting('max_tokens_ceiling')}).",
                param=field,
            )
    n = body.get("n")
    if n is not None and n > limits.n_ceiling:
        why = " (the self-hosted engines answer one choice per request)" if limits.n_ceiling == 1 else ""
        raise InvalidRequestError(
            f"n may be at most {limits.n_ceiling}{why}; {_setting('n_ceiling')}.", param="n"
        )


def _setting(name: str) -> str:
    return f"the router config's limits.{name} sets this"


def _text_size(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(len(str(part.get("text") or "")) for part in content if isinstance(part, dict))
    return 0
