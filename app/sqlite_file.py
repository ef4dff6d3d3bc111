"""One SQLite file used from asyncio: the plumbing the budget ledger and the feedback store share.

Threading: a ``SQLiteFile`` owns one connection, opened and used only by its own single worker
thread; the event loop never blocks on the file. A cancelled call still finishes its work in the
worker. Several ``SQLiteFile`` objects (in this or other processes) may open the same path: WAL
mode lets readers run beside the one writer, and writers wait up to ``busy_timeout_s`` for the
lock, then the call raises ``sqlite3.OperationalError``.

Durability: WAL with ``synchronous=FULL``; a transaction is on disk once ``transaction`` returns.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class SQLiteFile:
    """The file at ``path`` (created, with its parent directory, on first use), with the tables
    of ``schema`` (``;``-separated ``CREATE ... IF NOT EXISTS`` statements) created on open."""

    def __init__(
        self, path: str | Path, schema: str, *, busy_timeout_s: float = 30.0, thread_name: str = "sqlite"
    ) -> None:
        self.path = Path(path).expanduser()
        self.schema = schema
        self.busy_timeout_s = busy_timeout_s
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = ThreadPoolExecutor(1, thread_name_prefix=thread_name)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)`` on the worker thread; ``RuntimeError`` once closed."""
        if self._executor is None:
            raise RuntimeError(f"{self.path.name} is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._call, fn)

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            self._conn = self._open()
        return fn(self._conn)

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            conn.execute("PRAGMA synchronous = FULL")
            # Switching a new file to WAL (and the first read of it) can fail with "locked" without
            # waiting on the busy handler while another process does the same: retry until the timeout.
            deadline = time.monotonic() + self.busy_timeout_s
            statements = [sql for sql in self.schema.split(";") if sql.strip()]

            def create() -> None:
                for sql in statements:
                    conn.execute(sql)

            while True:
                try:
                    conn.execute("PRAGMA journal_mode = WAL")
                    transaction(conn, create)
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
        except BaseException:
            conn.close()
            raise
        return conn

    async def close(self) -> None:
        """Closes the connection (on its thread); later calls raise. Idempotent."""
        executor, self._executor = self._executor, None
        if executor is None:
            return

        def op() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        try:
            await asyncio.get_running_loop().run_in_executor(executor, op)
        finally:
            executor.shutdown(wait=False)


def transaction(conn: sqlite3.Connection, body: Callable[[], T], *, mode: str = "IMMEDIATE") -> T:
    """Run ``body`` in one transaction: committed if it returns, rolled back if it raises.
    ``IMMEDIATE`` takes the write lock before the first read, so a check and the write it guards
    see one state no other connection can change in between; ``DEFERRED`` gives a read snapshot."""
    conn.execute(f"BEGIN {mode}")
    try:
        result = body()
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    if conn.in_transaction:
        conn.execute("COMMIT")
    return result
