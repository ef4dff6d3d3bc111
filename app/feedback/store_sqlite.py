"""The feedback store in the ledger's SQLite file, in tables of its own.

Atomicity: ``add_rating`` is one ``BEGIN IMMEDIATE`` transaction (the file's write lock is taken
before the checks), so the look-ups of the rating and the decision and the insert see one state
that no other connection, in any process, changes in between. ``save_decisions`` is one
transaction of ``INSERT OR IGNORE`` (first write wins). Plumbing (one connection on its own
worker thread, WAL, ``synchronous=FULL``): ``app.sqlite_file``.

A rating row carries its decision's JSON and its owner (the decision's client), so that it is
exported, and refused as a duplicate, after its decision was pruned.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

from app.budget.money import DEFAULT_RETENTION_S
from app.feedback.store import Added, Decision, Rating, TrainingRow, owns
from app.sqlite_file import SQLiteFile, transaction

# Rows can hold a prompt (kilobytes): rowid tables, not WITHOUT ROWID.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback_decisions (
    request_id TEXT PRIMARY KEY, created_at REAL NOT NULL, client TEXT, record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_decisions_by_time ON feedback_decisions (created_at);
CREATE TABLE IF NOT EXISTS feedback_ratings (
    request_id TEXT PRIMARY KEY, rated_at REAL NOT NULL, owner TEXT, rating TEXT NOT NULL,
    decision TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_ratings_by_time ON feedback_ratings (rated_at, request_id);
"""


class SQLiteFeedbackStore:
    """``FeedbackStore`` on the SQLite file at ``path`` (created on first use)."""

    def __init__(
        self, path: str | Path, *, retention_s: float = DEFAULT_RETENTION_S, busy_timeout_s: float = 30.0
    ) -> None:
        self._db = SQLiteFile(path, _SCHEMA, busy_timeout_s=busy_timeout_s, thread_name="feedback-sqlite")
        self.path = self._db.path
        self.retention_s = retention_s

    async def save_decisions(self, decisions: Sequence[Decision]) -> None:
        if not decisions:
            return
        batch = list(decisions)
        sql = (
            "INSERT OR IGNORE INTO feedback_decisions (request_id, created_at, client, record) "
            "VALUES (?, ?, ?, ?)"
        )

        def op(conn: sqlite3.Connection) -> None:
            # Encoded here, on the worker thread: off the event loop.
            rows = [(d.request_id, d.created_at, d.client, d.to_json()) for d in batch]
            transaction(conn, lambda: conn.executemany(sql, rows))

        await self._db.run(op)

    async def decision(self, request_id: str) -> Decision | None:
        def op(conn: sqlite3.Connection) -> Decision | None:
            sql = "SELECT record FROM feedback_decisions WHERE request_id = ?"
            row = conn.execute(sql, (request_id,)).fetchone()
            return Decision.from_json(row[0]) if row is not None else None

        return await self._db.run(op)

    async def add_rating(self, rating: Rating, *, owner: str | None) -> Added:
        rid = rating.request_id

        def op(conn: sqlite3.Connection) -> Added:
            def body() -> Added:
                sql = "SELECT owner FROM feedback_ratings WHERE request_id = ?"
                rated = conn.execute(sql, (rid,)).fetchone()
                if rated is not None:
                    return Added("duplicate" if owns(owner, rated[0]) else "unknown")
                found = conn.execute(
                    "SELECT client, record FROM feedback_decisions WHERE request_id = ?", (rid,)
                ).fetchone()
                if found is None or not owns(owner, found[0]):
                    return Added("unknown")
                conn.execute(
                    "INSERT INTO feedback_ratings (request_id, rated_at, owner, rating, decision) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (rid, rating.rated_at, found[0], rating.to_json(), found[1]),
                )
                return Added("recorded", Decision.from_json(found[1]))

            return transaction(conn, body)

        return await self._db.run(op)

    async def training_rows(self, *, since: float = 0.0, batch: int = 500) -> AsyncIterator[TrainingRow]:
        after: tuple[float, str] = (since, "")  # every id sorts after "": rated_at >= since
        while True:
            rows = await self._db.run(_page(after, batch))
            for _request_id, _rated_at, rating, decision in rows:
                yield TrainingRow(Decision.from_json(decision), Rating.from_json(rating))
            if len(rows) < batch:
                return
            after = (rows[-1][1], rows[-1][0])

    async def prune(self, now: float) -> None:
        cutoff = now - self.retention_s

        def op(conn: sqlite3.Connection) -> None:
            def body() -> None:
                conn.execute("DELETE FROM feedback_decisions WHERE created_at < ?", (cutoff,))
                conn.execute("DELETE FROM feedback_ratings WHERE rated_at < ?", (cutoff,))

            transaction(conn, body)

        await self._db.run(op)

    async def close(self) -> None:
        await self._db.close()


Page = list[tuple[str, float, str, str]]  # request_id, rated_at, rating JSON, decision JSON


def _page(after: tuple[float, str], batch: int) -> Callable[[sqlite3.Connection], Page]:
    """One page of ratings after ``(rated_at, request_id)``, in that order (keyset paging: rows
    added or pruned meanwhile shift nothing)."""

    def op(conn: sqlite3.Connection) -> Page:
        return conn.execute(
            "SELECT request_id, rated_at, rating, decision FROM feedback_ratings "
            "WHERE (rated_at, request_id) > (?, ?) ORDER BY rated_at, request_id LIMIT ?",
            (*after, batch),
        ).fetchall()

    return op
