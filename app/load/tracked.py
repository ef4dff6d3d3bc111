"""The backend wrapper that feeds the live statistics and the in-flight counts.

Every call to a model's backend goes through ``TrackedBackend``: it counts the request in flight
on its engine pool (self-hosted models) from the call to its end, times its first content and
its end, and records the answer, or the failure of the backend (a client's own error or a
cancelled request says nothing about the backend, and is not counted).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from app.errors import RouterError
from app.load.board import LoadBoard
from app.load.stats import LiveStats
from app.streams import has_content


def backend_failed(exc: RouterError) -> bool:
    """A failure of the backend itself (5xx, timeouts, 429), not of the request."""
    return exc.status_code >= 500 or exc.status_code == 429


def completion_tokens(usage: Any) -> int:
    return int((usage or {}).get("completion_tokens") or 0) if isinstance(usage, dict) else 0


class TrackedBackend:
    def __init__(
        self,
        model: str,
        backend: Any,
        stats: LiveStats,
        board: LoadBoard,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model, self.backend = model, backend
        self.stats, self.board, self.clock = stats, board, clock

    def _start(self) -> bool:
        """Counts the request in; whether it has to queue behind others."""
        if not self.board.tracks(self.model):
            return False
        queued = self.board.in_flight(self.model) >= self.board.capacity(self.model)
        self.board.started(self.model)
        return queued

    def _end(self) -> None:
        if self.board.tracks(self.model):
            self.board.finished(self.model)

    def _failed(self, exc: RouterError) -> None:
        if backend_failed(exc):
            self.stats.record_error(self.model)

    def _answered(self, started: float, usage: Any, first_token_s: float | None, queued: bool) -> None:
        self.stats.record_answer(
            self.model,
            total_s=self.clock() - started,
            completion_tokens=completion_tokens(usage),
            first_token_s=first_token_s,
            queued=queued,
        )

    async def complete(self, request: dict[str, Any]) -> dict[str, Any]:
        queued, started = self._start(), self.clock()
        try:
            response: dict[str, Any] = await self.backend.complete(request)
        except RouterError as exc:
            self._failed(exc)
            raise
        finally:
            self._end()
        self._answered(started, response.get("usage"), None, queued)
        return response

    async def stream(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        queued, started = self._start(), self.clock()
        first: float | None = None
        usage: Any = None
        try:
            async with contextlib.aclosing(self.backend.stream(request)) as chunks:
                async for chunk in chunks:
                    if first is None and has_content(chunk):
                        first = self.clock() - started
                    usage = chunk.get("usage") or usage
                    yield chunk
        except RouterError as exc:
            self._failed(exc)
            raise
        finally:
            self._end()
        self._answered(started, usage, first, queued)
