"""The budget ledger in an SQLite file, shared by every process that opens the same path.

Atomicity: ``reserve``, ``settle`` and ``release`` each run as one ``BEGIN IMMEDIATE``
transaction, which takes the database's write lock before reading, so the limit check and the
insert of the reservation see and change one state that no other connection (in this or any other
process) can change in between. Readers are not blocked (WAL mode); writers wait up to
``busy_timeout_s`` for the lock, then the call raises ``sqlite3.OperationalError``.

Durability: WAL with ``synchronous=FULL``; a call returns only after its transaction committed, so
spend survives a process killed at any point (and a power loss).

Threading (``app.sqlite_file``): each ledger object owns one connection, opened and used only by
its own single worker thread; the event loop never blocks on the file. A cancelled call still
finishes its transaction in the worker (a reservation made that way lapses after its ttl). A
refused ``reserve`` still commits: it may have deleted expired reservations.

Expiry uses ``clock()`` (``time.time`` by default: wall time, comparable across processes).
Expired reservations are deleted at the next ``reserve``; finished ids (the idempotence record)
are purged ``retention_s`` after they finished.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

from app.budget.money import DEFAULT_RETENTION_S, KeySpend, amount_nanos, from_nanos, limit_nanos
from app.sqlite_file import SQLiteFile, transaction

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spend (
    day TEXT NOT NULL, key TEXT NOT NULL, nanos INTEGER NOT NULL, PRIMARY KEY (day, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reservations (
    id TEXT NOT NULL, key TEXT NOT NULL, day TEXT NOT NULL, nanos INTEGER NOT NULL,
    expires_at REAL NOT NULL, PRIMARY KEY (id, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS reservations_by_day_key ON reservations (day, key, expires_at);
CREATE INDEX IF NOT EXISTS reservations_by_expiry ON reservations (expires_at);
CREATE TABLE IF NOT EXISTS finished (id TEXT PRIMARY KEY, finished_at REAL NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS finished_by_time ON finished (finished_at);
CREATE TABLE IF NOT EXISTS alerts (
    day TEXT NOT NULL, key TEXT NOT NULL, alert TEXT NOT NULL, PRIMARY KEY (day, key, alert)
) WITHOUT ROWID;
"""

_ADD_SPEND = (
    "INSERT INTO spend (day, key, nanos) VALUES (?, ?, ?) "
    "ON CONFLICT (day, key) DO UPDATE SET nanos = nanos + excluded.nanos"
)


class SQLiteLedger:
    """``Ledger`` on an SQLite file (created, with its parent directory, on first use)."""

    def __init__(
        self,
        path: str | Path,
        *,
        busy_timeout_s: float = 30.0,
        retention_s: float = DEFAULT_RETENTION_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = SQLiteFile(path, _SCHEMA, busy_timeout_s=busy_timeout_s, thread_name="ledger-sqlite")
        self.path = self._db.path
        self.busy_timeout_s = busy_timeout_s
        self.retention_s = retention_s
        self.clock = clock

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._db.run(fn)

    # --- the Ledger API ---------------------------------------------------------------------

    async def reserve(
        self, day: str, amounts: Mapping[str, Decimal], limits: Mapping[str, Decimal], *, ttl_s: float
    ) -> str | None:
        wanted = {key: amount_nanos(amount) for key, amount in amounts.items()}
        caps = {key: limit_nanos(limits[key]) for key in wanted if key in limits}
        reservation_id = uuid.uuid4().hex

        def op(conn: sqlite3.Connection) -> str | None:
            def body() -> str | None:
                now = self.clock()
                conn.execute("DELETE FROM reservations WHERE expires_at <= ?", (now,))
                for key, cap in caps.items():
                    spent = _scalar(conn, "SELECT nanos FROM spend WHERE day = ? AND key = ?", (day, key))
                    reserved = _scalar(
                        conn, "SELECT SUM(nanos) FROM reservations WHERE day = ? AND key = ?", (day, key)
                    )
                    if spent + reserved + wanted[key] > cap:
                        return None
                conn.executemany(
                    "INSERT INTO reservations (id, key, day, nanos, expires_at) VALUES (?, ?, ?, ?, ?)",
                    [(reservation_id, key, day, nanos, now + ttl_s) for key, nanos in wanted.items()],
                )
                return reservation_id

            return transaction(conn, body)

        return await self._run(op)

    async def settle(self, reservation_id: str, day: str, actual: Mapping[str, Decimal]) -> None:
        await self._finish(reservation_id, day, {key: amount_nanos(value) for key, value in actual.items()})

    async def release(self, reservation_id: str, day: str) -> None:
        await self._finish(reservation_id, day, {})

    async def _finish(self, reservation_id: str, day: str, actual: dict[str, int]) -> None:
        """Settle (``actual`` non-empty) or release, once per id."""

        def op(conn: sqlite3.Connection) -> None:
            def body() -> None:
                now = self.clock()
                conn.execute("DELETE FROM finished WHERE finished_at < ?", (now - self.retention_s,))
                first = conn.execute(
                    "INSERT OR IGNORE INTO finished (id, finished_at) VALUES (?, ?)", (reservation_id, now)
                ).rowcount
                if not first:
                    return
                conn.execute("DELETE FROM reservations WHERE id = ?", (reservation_id,))
                conn.executemany(_ADD_SPEND, [(day, key, nanos) for key, nanos in actual.items()])

            transaction(conn, body)

        await self._run(op)

    async def record(self, day: str, actual: Mapping[str, Decimal]) -> None:
        rows = [(day, key, amount_nanos(value)) for key, value in actual.items()]

        def op(conn: sqlite3.Connection) -> None:
            transaction(conn, lambda: conn.executemany(_ADD_SPEND, rows))

        await self._run(op)

    async def spend(self, day: str) -> dict[str, KeySpend]:
        def op(conn: sqlite3.Connection) -> dict[str, KeySpend]:
            def body() -> dict[str, KeySpend]:
                spent = dict(conn.execute("SELECT key, nanos FROM spend WHERE day = ?", (day,)).fetchall())
                reserved = dict(
                    conn.execute(
                        "SELECT key, SUM(nanos) FROM reservations WHERE day = ? AND expires_at > ?"
                        " GROUP BY key",
                        (day, self.clock()),
                    ).fetchall()
                )
                return {
                    key: KeySpend(from_nanos(spent.get(key, 0)), from_nanos(reserved.get(key, 0)))
                    for key in sorted(spent.keys() | reserved.keys())
                }

            return transaction(conn, body, mode="DEFERRED")  # one consistent snapshot

        return await self._run(op)

    async def mark_alert(self, day: str, key: str, alert: str) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            def body() -> bool:
                sql = "INSERT OR IGNORE INTO alerts (day, key, alert) VALUES (?, ?, ?)"
                return conn.execute(sql, (day, key, alert)).rowcount == 1

            return transaction(conn, body)

        return await self._run(op)

    async def reset(self, day: str, keys: list[str]) -> None:
        def op(conn: sqlite3.Connection) -> None:
            def body() -> None:
                for table in ("spend", "alerts"):
                    conn.executemany(
                        f"DELETE FROM {table} WHERE day = ? AND key = ?",  # noqa: S608 - a table name of ours
                        [(day, k) for k in keys],
                    )

            transaction(conn, body)

        await self._run(op)

    async def close(self) -> None:
        await self._db.close()


def _scalar(conn: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> int:
    row = conn.execute(sql, params).fetchone()
    return int(row[0]) if row is not None and row[0] is not None else 0
