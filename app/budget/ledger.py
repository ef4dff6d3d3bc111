"""The budget ledger: the shared, durable record of each day's spend per budget key.

Every ingress replica uses one ledger store at once (an SQLite file on a shared volume, or Redis).
Keys are budget keys ("anthropic", "vertex_ai", "self_hosted", ..., plus "total"); days are
"YYYY-MM-DD" strings that the caller computes in its configured time zone (``day_of``).

The request flow: ``reserve`` the request's worst-case cost against every key it touches, call the
model, then ``settle`` the reservation with the real cost, or ``release`` it if the call failed.

Contracts every backend keeps:

* Atomicity: ``reserve`` checks ``spent + reserved + amount <= limit`` for all limited keys and
  adds the reservation to all keys as one indivisible step, across every client and process that
  shares the store. So at reservation time spent+reserved never exceeds a limit, and as long as
  each actual cost is at most its reservation, spent never exceeds a limit either. (If an actual
  cost exceeds its reservation, the overspend is at most the sum of those excesses.)
* Expiry: a reservation lives ``ttl_s`` seconds; after that it no longer counts, so a replica
  killed mid-request leaks budget only until then. ``ttl_s`` must exceed a request's deadline, or
  a still-running request's reservation lapses early.
* Idempotence: a reservation id is finished once; the first ``settle`` or ``release`` wins and
  any later ``settle``/``release`` of that id is a no-op. Settling an expired (or unknown) id
  still records the actual spend (once).
* Exactness: money is ``Decimal`` at the API, stored as integer nano-dollars (1e-9 USD). Amounts
  are rounded up to the next nano-dollar (never under-counting spend), limits down. Negative or
  non-finite amounts are rejected (``ValueError``).
* Durability: every write is committed before the call returns.

Store errors (a locked file past its timeout, Redis unreachable) propagate to the caller, which
decides whether to fail open or closed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Literal, Protocol, TypeVar
from zoneinfo import ZoneInfo

from app.budget.money import DEFAULT_RETENTION_S, KeySpend
from app.config import DEFAULT_KEY_PREFIX, DEFAULT_LEDGER_PATH

T = TypeVar("T")


class Ledger(Protocol):
    async def reserve(
        self, day: str, amounts: Mapping[str, Decimal], limits: Mapping[str, Decimal], *, ttl_s: float
    ) -> str | None:
        """Atomically reserve ``amounts`` on ``day``: if for every key with a limit
        ``spent + reserved + amount <= limit``, add the reservation to every key (keys without a
        limit unconditionally) and return its id (uuid hex); else change nothing and return None.
        The reservation stops counting ``ttl_s`` seconds from now."""
        ...

    async def settle(self, reservation_id: str, day: str, actual: Mapping[str, Decimal]) -> None:
        """Remove the reservation and add ``actual`` to ``day``'s spend (pass the day given to
        ``reserve``). Idempotent: only the first settle/release of an id has an effect. An expired
        or unknown id still gets its actual spend recorded."""
        ...

    async def release(self, reservation_id: str, day: str) -> None:
        """Remove the reservation and record nothing (the call failed). Idempotent as ``settle``."""
        ...

    async def record(self, day: str, actual: Mapping[str, Decimal]) -> None:
        """Add ``actual`` to ``day``'s spend with no reservation (not idempotent)."""
        ...

    async def spend(self, day: str) -> dict[str, KeySpend]:
        """Every key with spend recorded on ``day`` (even zero) or a live reservation there, with
        its spend and live reservations; ``{}`` for a day with neither."""
        ...

    async def mark_alert(self, day: str, key: str, alert: str) -> bool:
        """True only for the first caller per (day, key, alert), across all clients."""
        ...

    async def reset(self, day: str, keys: list[str]) -> None:
        """An operator's reset: ``day``'s recorded spend of ``keys`` goes back to zero and their
        alert marks are cleared (so alerts can fire again). Live reservations stay: requests in
        flight still settle, and their spend is then recorded."""
        ...

    async def close(self) -> None:
        """Release the connection; the ledger is unusable afterwards."""
        ...


def day_of(now: datetime, tz: str) -> str:
    """The "YYYY-MM-DD" day that the aware datetime ``now`` falls on in time zone ``tz``."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("day_of needs an aware datetime")
    return now.astimezone(ZoneInfo(tz)).date().isoformat()


@dataclass(frozen=True)
class LedgerSettings:
    """Where the ledger lives: the config's ``ledger`` section resolved against the environment
    (``budgets.ledger_settings``). ``path`` is the SQLite file (backend "sqlite"); ``redis_url`` and
    ``key_prefix`` address Redis (backend "redis"); ``retention_s`` is how long a day's data and
    finished reservation ids are kept (Redis key TTL; SQLite purge of finished ids)."""

    backend: Literal["sqlite", "redis"] = "sqlite"
    path: str = DEFAULT_LEDGER_PATH
    redis_url: str | None = None
    key_prefix: str = DEFAULT_KEY_PREFIX
    retention_s: int = DEFAULT_RETENTION_S

    def open(self, what: str, sqlite: Callable[[str, int], T], redis: Callable[[str, str, int], T]) -> T:
        """``sqlite(path, retention_s)`` or ``redis(url, key_prefix, retention_s)``, whichever the
        backend is: the one dispatch for every store that lives where the ledger does."""
        if self.backend == "sqlite":
            return sqlite(str(Path(self.path).expanduser()), self.retention_s)
        if self.backend == "redis":
            if not self.redis_url:
                raise ValueError(f"the redis {what} needs redis_url")
            return redis(self.redis_url, self.key_prefix, self.retention_s)
        raise ValueError(f"unknown {what} backend {self.backend!r}")


def build_ledger(settings: LedgerSettings) -> Ledger:
    """The ledger backend that ``settings`` names (no I/O until first use)."""
    from app.budget.ledger_redis import RedisLedger
    from app.budget.ledger_sqlite import SQLiteLedger

    def sqlite(path: str, retention: int) -> Ledger:
        return SQLiteLedger(path, retention_s=retention)

    def redis(url: str, prefix: str, retention: int) -> Ledger:
        return RedisLedger(url, prefix, retention_s=retention)

    return settings.open("ledger backend", sqlite, redis)
