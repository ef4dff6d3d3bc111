"""One stream's life after its first content: relaying it, and ending it exactly once.

The executor picks the target (retries, fallbacks and the first-byte timeout happen before any
content reaches the client) and leaves the breaker's verdict to this runner. From then on,
``StreamRun`` owns the stream: however it ends, ``_end`` runs once and only once, and is the one
place that decides what the end means:

    ended cleanly            -> breaker success, settle and record, cache the answer
    upstream error           -> breaker failure, settle what was streamed, record the error
    client left (cancelled)  -> breaker release (a client says nothing of a backend), settle, record
    client left before reading anything (``abandon``) -> the same as cancelled, upstream closed
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from app.cache.service import ResponseCache
from app.cache.store import chunks_to_completion
from app.errors import RouterError
from app.observability.logs import now
from app.observability.recorder import Outcome
from app.resilience.breaker import BreakerBoard
from app.streams import close_stream, relayed

Settle = Callable[..., Awaitable[None]]


class StreamRun:
    def __init__(
        self,
        outcome: Outcome,
        head: list[dict[str, Any]],
        upstream: AsyncIterator[dict[str, Any]],
        body: Mapping[str, Any],
        *,
        breakers: BreakerBoard,
        cache: ResponseCache,
        settle: Settle,
        on_failure: Callable[[str], None],
    ) -> None:
        assert outcome.target is not None
        self.outcome, self.target = outcome, outcome.target
        self.head, self.upstream, self.body = head, upstream, body
        self.breakers, self.cache, self.settle, self.on_failure = breakers, cache, settle, on_failure
        self.usage: dict[str, Any] | None = None
        self.streamed: list[str] = []
        self.kept: list[dict[str, Any]] | None = [] if cache.key(body, self.target.model) else None
        self._ended = False

    async def chunks(self) -> AsyncIterator[dict[str, Any]]:
        """The stream as the client gets it: the head read before, then the rest as it comes."""
        try:
            for chunk in self.head:
                yield self._relay(chunk)
            while True:
                waited = now()
                try:
                    chunk = await self.upstream.__anext__()
                except StopAsyncIteration:
                    break
                finally:
                    self.outcome.backend_s += now() - waited
                yield self._relay(chunk)
        except RouterError as exc:
            await self._end("error", exc)
            raise
        except (GeneratorExit, asyncio.CancelledError):
            await self._end("cancelled")
            raise
        else:
            await self._end("ok")
        finally:
            await close_stream(self.upstream)

    async def abandon(self) -> None:
        """The client left before reading anything: close the upstream and record that."""
        await close_stream(self.upstream)
        await self._end("cancelled")

    def _relay(self, chunk: dict[str, Any]) -> dict[str, Any]:
        self.usage = relayed(chunk, self.target.model, self.streamed) or self.usage
        if self.kept is not None:
            self.kept.append(copy.deepcopy(chunk))
        return chunk

    async def _end(self, status: str, error: RouterError | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        model, breaker = self.target.model, self.breakers[self.target.model]
        {"ok": breaker.success, "error": breaker.failure, "cancelled": breaker.release}[status]()
        self.outcome.status = status
        await self.settle(self.outcome, self.target, self.usage, "".join(self.streamed), error=error)
        if status == "error":
            self.on_failure(model)
        elif status == "ok" and self.kept is not None:
            await self.cache.put(self.body, model, chunks_to_completion(self.kept))
