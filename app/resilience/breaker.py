"""Circuit breakers, one per backend, as ``circuit_breaker`` in the config sets them.

    closed --(failure_threshold failures in a row)--> open
    open --(timeout_seconds pass)--> half_open: at most half_open_requests probes at a time
    half_open --(half_open_requests probes succeed)--> closed
    half_open --(a probe fails)--> open again

A call is ``allow()``-ed first, then ends in exactly one of ``success()``, ``failure()`` or
``release()`` (neither: the client cancelled, or the request itself was at fault). Time comes
from an injected clock, so tests step through states without sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from app.config import CircuitBreakerConfig

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
STATE_VALUES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}  # the metric's encoding


@dataclass
class CircuitBreaker:
    settings: CircuitBreakerConfig
    clock: Callable[[], float] = time.monotonic
    state: str = CLOSED
    failures: int = 0
    opened_at: float = 0.0
    probes_in_flight: int = 0
    probe_successes: int = 0

    def _tick(self) -> None:
        if self.state == OPEN and self.clock() - self.opened_at >= self.settings.timeout_seconds:
            self.state, self.probes_in_flight, self.probe_successes = HALF_OPEN, 0, 0

    def current(self) -> str:
        self._tick()
        return self.state

    def would_allow(self) -> bool:
        """Whether a call could be admitted now, without taking a probe slot (for planning)."""
        if not self.settings.enabled:
            return True
        self._tick()
        return self.state == CLOSED or (
            self.state == HALF_OPEN and self.probes_in_flight < self.settings.half_open_requests
        )

    def allow(self) -> bool:
        """Admit a call, taking a probe slot when half-open."""
        if not self.would_allow():
            return False
        if self.state == HALF_OPEN and self.settings.enabled:
            self.probes_in_flight += 1
        return True

    def success(self) -> None:
        if not self.settings.enabled:
            return
        if self.state == HALF_OPEN:
            self.probes_in_flight = max(0, self.probes_in_flight - 1)
            self.probe_successes += 1
            if self.probe_successes >= self.settings.half_open_requests:
                self.state, self.failures = CLOSED, 0
        else:
            self.failures = 0

    def failure(self) -> None:
        if not self.settings.enabled:
            return
        if self.state == HALF_OPEN:
            self._open()
            return
        self.failures += 1
        if self.state == CLOSED and self.failures >= self.settings.failure_threshold:
            self._open()

    def release(self) -> None:
        """The call ended without saying anything about the backend's health."""
        if self.state == HALF_OPEN:
            self.probes_in_flight = max(0, self.probes_in_flight - 1)

    def _open(self) -> None:
        self.state, self.opened_at, self.probes_in_flight, self.probe_successes = OPEN, self.clock(), 0, 0

    def describe(self) -> dict[str, object]:
        return {"state": self.current(), "consecutive_failures": self.failures}


class BreakerBoard:
    """The breakers of every backend, made on first use."""

    def __init__(self, settings: CircuitBreakerConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self._breakers: dict[str, CircuitBreaker] = {}

    def __getitem__(self, model: str) -> CircuitBreaker:
        breaker = self._breakers.get(model)
        if breaker is None:
            breaker = self._breakers[model] = CircuitBreaker(self.settings, self.clock)
        return breaker

    def unavailable_reason(self, model: str) -> str | None:
        return None if self[model].would_allow() else f"circuit breaker {self[model].current()}"

    def states(self) -> dict[str, str]:
        return {model: breaker.current() for model, breaker in self._breakers.items()}
