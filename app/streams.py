"""Stream plumbing shared by the service: reading a backend's stream up to its first content,
closing streams, the client-facing ``Relay``, replaying chunks, and estimating the usage of a
stream that ended without reporting it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from app.errors import UpstreamError
from app.routing.tokens import encoding


class Relay:
    """The client's chunk stream. Closing it before the first read still closes the upstream and
    records the request (an async generator that never started would run none of its code)."""

    def __init__(
        self, chunks: AsyncIterator[dict[str, Any]], on_unread_close: Callable[[], Awaitable[None]]
    ) -> None:
        self._chunks = chunks
        self._on_unread_close = on_unread_close
        self._started = False

    def __aiter__(self) -> Relay:
        return self

    async def __anext__(self) -> dict[str, Any]:
        self._started = True
        return await self._chunks.__anext__()

    async def aclose(self) -> None:
        if not self._started:
            self._started = True
            await self._on_unread_close()
        await close_stream(self._chunks)


async def replay(chunks: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    for chunk in chunks:
        yield chunk


def relayed(chunk: dict[str, Any], model: str, streamed: list[str]) -> dict[str, Any] | None:
    """Names the answering model on a chunk, keeps its text, and returns its usage if any."""
    chunk["model"] = model
    for choice in chunk.get("choices") or ():
        text = (choice.get("delta") or {}).get("content")
        if text:
            streamed.append(text)
    usage: dict[str, Any] | None = chunk.get("usage")
    return usage


def estimate_usage(prompt_tokens: int, streamed: str) -> dict[str, int]:
    """Usage for a stream that ended without its usage chunk: the prompt, and what was sent."""
    completion = len(encoding().encode_ordinary(streamed)) if streamed else 0
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
    }


def has_content(chunk: Mapping[str, Any]) -> bool:
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        if delta.get("content") or delta.get("tool_calls") or choice.get("finish_reason"):
            return True
    return bool(chunk.get("usage"))


async def read_until_content(upstream: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chunks up to and including the first with content; raises if the stream fails or is empty."""
    head: list[dict[str, Any]] = []
    async for chunk in upstream:
        head.append(chunk)
        if has_content(chunk):
            return head
    raise UpstreamError("the backend's stream ended before any content")


async def close_stream(upstream: AsyncIterator[dict[str, Any]]) -> None:
    aclose = getattr(upstream, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # noqa: BLE001, S110 - closing a broken stream must not mask the real error
            pass
