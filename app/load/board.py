"""Requests in flight per self-hosted engine, as every ingress replica sees them.

A *pool* is one engine deployment; several logical models may share it (the CPU engine serves
every self-hosted model of the local profile). Two sources meet here:

- this replica's own count, exact and immediate: it rises the moment a request is sent;
- the engines' own reports (``load()`` on every engine replica, polled by the ingress), which
  count every ingress replica's requests but are up to a poll interval old.

The board takes the larger of the two, and a report older than ``stale_after_s`` is ignored.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Reported:
    in_flight: int
    capacity: int  # requests all its replicas serve at once before one queues
    replicas: int
    at: float


class LoadBoard:
    def __init__(
        self,
        pools: Mapping[str, str],
        capacity: Mapping[str, int],
        *,
        stale_after_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``pools``: self-hosted model -> its pool; ``capacity``: pool -> the configured
        capacity, used until the engines report theirs."""
        self.pools = dict(pools)
        self.configured = dict(capacity)
        self.stale_after_s = stale_after_s
        self.clock = clock
        self._local: dict[str, int] = dict.fromkeys(self.configured, 0)
        self._reported: dict[str, Reported] = {}

    def tracks(self, model: str) -> bool:
        return model in self.pools

    def started(self, model: str) -> None:
        pool = self.pools[model]
        self._local[pool] = self._local.get(pool, 0) + 1

    def finished(self, model: str) -> None:
        pool = self.pools[model]
        self._local[pool] = max(0, self._local.get(pool, 0) - 1)

    def report(self, pool: str, in_flight: int, capacity: int, replicas: int) -> None:
        self._reported[pool] = Reported(in_flight, capacity, replicas, self.clock())

    def _fresh(self, pool: str) -> Reported | None:
        reported = self._reported.get(pool)
        if reported is None or self.clock() - reported.at > self.stale_after_s:
            return None
        return reported

    def in_flight(self, model: str) -> int:
        pool = self.pools[model]
        reported = self._fresh(pool)
        return max(self._local.get(pool, 0), reported.in_flight if reported else 0)

    def capacity(self, model: str) -> int:
        return self._capacity(self.pools[model])

    def _capacity(self, pool: str) -> int:
        reported = self._fresh(pool)
        return max(1, reported.capacity if reported else self.configured.get(pool, 1))

    def snapshot(self) -> dict[str, dict[str, int | bool | None]]:
        out: dict[str, dict[str, int | bool | None]] = {}
        for pool in self.configured:
            reported = self._fresh(pool)
            out[pool] = {
                "in_flight_here": self._local.get(pool, 0),
                "in_flight_reported": reported.in_flight if reported else None,
                "capacity": self._capacity(pool),
                "replicas": reported.replicas if reported else None,
                "reported": reported is not None,
            }
        return out
