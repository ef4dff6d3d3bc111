"""Runs a plan: its targets in order, each behind its circuit breaker, with retries and a deadline.

    for target in plan (skipping windows no larger than one that was already too small):
        for attempt in 1..retries.attempts:
            breaker admits?  no -> next target
            call within what is left of the request's deadline
            success            -> breaker.success(), done (a stream's caller reports it at its end)
            timeout            -> breaker.failure(); next target (a stalled target is not waited on twice)
            retryable error    -> breaker.failure(); wait backoff (or Retry-After) and retry,
                                  unless the wait does not fit: next target
            context too long   -> next target with a larger window
            budget can't cover -> next target (its provider's budget is spent)
            other client error -> returned as it is (or next target, if the config says so)
            cancelled          -> breaker.release(), cancellation goes on

A client's cancellation says nothing about a backend, so it never counts as a failure.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from app.config import ResilienceConfig
from app.errors import (
    BudgetExhaustedError,
    ContextWindowExceededError,
    InvalidRequestError,
    RouterError,
    UpstreamAuthError,
    UpstreamBadRequestError,
    UpstreamError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from app.observability.logs import log_event
from app.observability.metrics import Metrics
from app.resilience.breaker import BreakerBoard
from app.resilience.retry import RetryPolicy
from app.routing.catalog import Catalog
from app.routing.planner import RoutePlan, Target

T = TypeVar("T")
Attempt = Callable[[Target], Awaitable[T]]
CLIENT_ERRORS = (InvalidRequestError, UpstreamBadRequestError, UpstreamAuthError)


class Tracker(Protocol):
    """What the executor reports into (the service's ``Outcome``)."""

    request_id: str
    failures: list[tuple[str, str]]
    retries: int


class DeadlineExceeded(UpstreamTimeoutError):
    code = "deadline_exceeded"
    retryable = False


class Executor:
    def __init__(
        self,
        catalog: Catalog,
        breakers: BreakerBoard,
        settings: ResilienceConfig,
        *,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        metrics: Metrics | None = None,
    ) -> None:
        self.catalog = catalog
        self.breakers = breakers
        self.settings = settings
        self.retry = retry or RetryPolicy(settings.retries)
        self.clock = clock
        self.sleep = sleep
        self.metrics = metrics

    async def run(
        self, plan: RoutePlan, attempt: Attempt[T], tracker: Tracker, *, defer_success: bool = False
    ) -> tuple[Target, T]:
        """The first target's answer, with that target. With ``defer_success`` (streams) the
        caller reports the breaker outcome itself once the stream ends: success, failure or release."""
        deadline = self.clock() + self.settings.deadline_s
        too_small = 0
        last: RouterError | None = None
        for target in plan.targets:
            if self.catalog.models[target.model].context_window <= too_small:
                continue
            if last is not None:
                self._fallback(tracker, last, target)
            try:
                return target, await self._target(target, attempt, tracker, deadline, defer_success)
            except DeadlineExceeded:
                raise
            except BudgetExhaustedError as exc:  # this provider's budget is spent: the next may do
                last = self._failed(tracker, target, exc)
            except ContextWindowExceededError as exc:
                too_small = self.catalog.models[target.model].context_window
                last = self._failed(tracker, target, exc)
            except RouterError as exc:
                if not (
                    exc.retryable
                    or (self.settings.fallback_on_client_errors and isinstance(exc, CLIENT_ERRORS))
                ):
                    raise
                last = self._failed(tracker, target, exc)
        raise self._exhausted(tracker, last)

    async def _target(
        self, target: Target, attempt: Attempt[T], tracker: Tracker, deadline: float, defer_success: bool
    ) -> T:
        breaker = self.breakers[target.model]
        for n in range(self.retry.attempts):
            remaining = deadline - self.clock()
            if remaining <= 0:
                raise DeadlineExceeded(f"The request's deadline of {self.settings.deadline_s:g} s passed.")
            if not breaker.allow():
                raise UpstreamUnavailableError(f"{target.model}: circuit breaker {breaker.current()}")
            try:
                async with asyncio.timeout(remaining):
                    result = await attempt(target)
            except asyncio.CancelledError:
                breaker.release()
                raise
            except TimeoutError:
                breaker.failure()
                raise DeadlineExceeded(
                    f"The request's deadline of {self.settings.deadline_s:g} s passed."
                ) from None
            except RouterError as exc:
                if not exc.retryable:
                    breaker.release()
                    raise
                breaker.failure()
                if isinstance(exc, UpstreamTimeoutError):
                    raise  # a stalled target is better left for the next one than waited on again
                wait = self.retry.delay(n, exc.retry_after, deadline - self.clock())
                if n + 1 >= self.retry.attempts or wait is None:
                    raise
                tracker.retries += 1
                if self.metrics is not None:
                    self.metrics.record("router_retries", model=target.model)
                log_event(
                    "retry",
                    request_id=tracker.request_id,
                    model=target.model,
                    reason=type(exc).__name__,
                    wait_s=round(wait, 3),
                )
                await self.sleep(wait)
                continue
            except Exception as exc:  # a bug below must not pass as the backend's health
                breaker.release()
                raise UpstreamError(f"{target.model} failed ({type(exc).__name__})") from exc
            if not defer_success:
                breaker.success()
            return result
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

    def _failed(self, tracker: Tracker, target: Target, exc: RouterError) -> RouterError:
        # The failure is kept under the model's name, so a message that starts with it says it once.
        tracker.failures.append((target.model, exc.message.removeprefix(f"{target.model}: ")))
        return exc

    def _fallback(self, tracker: Tracker, cause: RouterError, to: Target) -> None:
        source = tracker.failures[-1][0] if tracker.failures else "?"
        log_event(
            "fallback",
            request_id=tracker.request_id,
            from_model=source,
            to_model=to.model,
            reason=type(cause).__name__,
            detail=cause.message,
        )
        if self.metrics is not None:
            self.metrics.record(
                "router_fallbacks", from_model=source, to_model=to.model, reason=type(cause).__name__
            )

    @staticmethod
    def _exhausted(tracker: Tracker, last: RouterError | None) -> RouterError:
        if last is not None and (
            len(tracker.failures) == 1 or isinstance(last, ContextWindowExceededError | BudgetExhaustedError)
        ):
            return last  # a prompt no window could take is the client's 400; no budget left, a 429
        tried = "; ".join(f"{m}: {why}" for m, why in tracker.failures)
        return UpstreamUnavailableError(
            f"Every model in the plan failed ({tried}).", code="all_backends_failed"
        )
