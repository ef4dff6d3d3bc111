"""Decision records on their way to the feedback store, off the request path.

``note`` runs as a request's answer is recorded: it builds the record and keeps it in memory, with
no I/O and no await. A background task (``start``) writes what is pending in batches, every
``flush_every_s`` or as soon as ``batch`` records wait, prunes the store hourly, and ``close``
writes the rest. A record stays pending until its batch is stored, so ``saved`` (flush if the id
is pending) makes a just-answered request ratable at once on this replica.

Bounds: at most ``max_pending`` records wait (the oldest are dropped, and counted in a log line);
a batch the store refuses ``MAX_ATTEMPTS`` times in a row is dropped, so that one bad record
cannot hold back the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from app.feedback.store import Decision, FeedbackStore, is_request_id
from app.observability.logs import log_event
from app.observability.recorder import Outcome, loggable

FLUSH_EVERY_S = 1.0
FLUSH_BATCH = 200
MAX_PENDING = 10_000
MAX_ATTEMPTS = 3
PRUNE_EVERY_S = 3600.0


class DecisionLog:
    def __init__(
        self,
        store: FeedbackStore,
        *,
        clock: Callable[[], float] = time.time,
        flush_every_s: float = FLUSH_EVERY_S,
        batch: int = FLUSH_BATCH,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self.store = store
        self.clock = clock
        self.flush_every_s = flush_every_s
        self.batch = batch
        self.max_pending = max_pending
        self._pending: dict[str, Decision] = {}  # by request id, oldest first
        self._dropped = 0
        self._failures = 0
        self._lock: asyncio.Lock | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    def note(self, outcome: Outcome) -> None:
        """Keeps the decision of an answered request for the next flush. The first answer under a
        request id wins; an id the router cannot have issued is ignored."""
        target, rid = outcome.target, outcome.request_id
        if target is None or rid in self._pending or not is_request_id(rid):
            return
        if len(self._pending) >= self.max_pending:
            del self._pending[next(iter(self._pending))]
            self._dropped += 1
        self._pending[rid] = Decision(
            request_id=rid,
            model=target.model,
            strategy=outcome.plan.strategy,
            created_at=self.clock(),
            features=loggable(outcome.plan.features),
            client=outcome.client,
            prompt=outcome.prompt,  # set only with logging.log_prompts on
        )
        if len(self._pending) >= self.batch and self._wake is not None:
            self._wake.set()

    def pending(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        """Starts the background flusher on the running loop (once)."""
        if self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        assert self._wake is not None
        next_prune = self.clock()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_every_s)
            self._wake.clear()
            await self._flush_logged()
            if self.clock() >= next_prune:
                next_prune = self.clock() + PRUNE_EVERY_S
                try:
                    await self.store.prune(self.clock())
                except Exception as exc:  # noqa: BLE001 - the next hour tries again
                    log_event("feedback_prune_failed", logging.WARNING, error_type=type(exc).__name__)

    async def flush(self) -> None:
        """Stores every pending record (raises the store's error; the records stay pending)."""
        self._lock = self._lock or asyncio.Lock()
        async with self._lock:
            if self._dropped:
                log_event("feedback_decisions_dropped", logging.WARNING, dropped=self._dropped)
                self._dropped = 0
            batch = list(self._pending.values())
            if not batch:
                return
            try:
                await self.store.save_decisions(batch)
            except Exception:
                self._failures += 1
                if self._failures < MAX_ATTEMPTS:
                    raise
                self._failures = 0
                self._forget(batch)
                log_event(
                    "feedback_decisions_dropped", logging.WARNING, dropped=len(batch), reason="store_error"
                )
                raise
            self._failures = 0
            self._forget(batch)

    def _forget(self, batch: list[Decision]) -> None:
        for decision in batch:
            if self._pending.get(decision.request_id) is decision:
                del self._pending[decision.request_id]

    async def _flush_logged(self) -> None:
        try:
            await self.flush()
        except Exception as exc:  # noqa: BLE001 - kept pending; the next flush tries again
            log_event(
                "feedback_flush_failed",
                logging.WARNING,
                error_type=type(exc).__name__,
                pending=self.pending(),
            )

    async def saved(self, request_id: str) -> None:
        """Returns once ``request_id``'s record, if this replica holds it, is in the store."""
        if request_id in self._pending:
            await self.flush()

    async def close(self) -> None:
        """Stops the flusher, writes what is pending (a failure is logged), closes the store."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            await self._flush_logged()
        finally:
            await self.store.close()
