"""The feedback store in the ledger's Redis, under the ledger's key prefix.

Layout, per prefix ``P`` (every key shares the hash tag ``{feedback}``, so the rating script's
keys sit in one cluster slot):

* ``P:{feedback}:decision:<request id>``  its client's JSON, a newline, the decision's JSON
                                          (``SET NX``: first write wins)
* ``P:{feedback}:rating:<request id>``    the decision's client's JSON, a newline, then
                                          ``{"decision": <its JSON>, "rating": <the rating's JSON>}``
* ``P:{feedback}:rated``                  sorted set request id -> rated_at (the export's order)

Atomicity: ``add_rating`` is one Lua script (no other command runs in between): the duplicate
and owner checks and the write are one step for every client. ``save_decisions`` is one
pipelined round trip of ``SET NX EX``.

Retention: decision and rating keys expire ``retention_s`` after they were written; ``prune``
trims the index of ratings older than that (the export skips an indexed rating whose key is gone).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import redis.asyncio as aioredis

from app.budget.money import DEFAULT_RETENTION_S
from app.feedback.store import Added, Decision, Rating, TrainingRow

# Each value is "<the owner's JSON>\n<the record's JSON>" (JSON never holds a raw newline), so the
# script compares owners without decoding a record. KEYS: decision, rating, rated. ARGV: limited
# ('1'/'0'), the owner's JSON, the rating's JSON, retention_s, rated_at, request id.
# Returns {status, the decision's JSON}.
_ADD_RATING = """
local function split(value)
  local i = string.find(value, '\\n', 1, true)
  return string.sub(value, 1, i - 1), string.sub(value, i + 1)
end
local function owns(client) return ARGV[1] == '0' or client == ARGV[2] end
local rated = redis.call('GET', KEYS[2])
if rated then
  if owns((split(rated))) then return {'duplicate', ''} end
  return {'unknown', ''}
end
local stored = redis.call('GET', KEYS[1])
if not stored then return {'unknown', ''} end
local client, decision = split(stored)
if not owns(client) then return {'unknown', ''} end
local row = client .. '\\n{"decision":' .. decision .. ',"rating":' .. ARGV[3] .. '}'
redis.call('SET', KEYS[2], row, 'EX', ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[6])
redis.call('EXPIRE', KEYS[3], ARGV[4])
return {'recorded', decision}
"""


class RedisFeedbackStore:
    """``FeedbackStore`` on Redis at ``url``, its keys under ``prefix``."""

    def __init__(
        self, url: str, prefix: str = "hybrid-router", *, retention_s: float = DEFAULT_RETENTION_S
    ) -> None:
        self.prefix = f"{prefix}:{{feedback}}"
        self.retention_s: float = int(retention_s)
        # NOTE: decode_responses: every reply is str (redis-py's types say bytes | str).
        self.client: aioredis.Redis = aioredis.from_url(url, decode_responses=True)
        self._add = self.client.register_script(_ADD_RATING)

    def _decision_key(self, request_id: str) -> str:
        return f"{self.prefix}:decision:{request_id}"

    def _rating_key(self, request_id: str) -> str:
        return f"{self.prefix}:rating:{request_id}"

    @property
    def _rated(self) -> str:
        return f"{self.prefix}:rated"

    async def save_decisions(self, decisions: Sequence[Decision]) -> None:
        if not decisions:
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for d in decisions:
                value = f"{json.dumps(d.client)}\n{d.to_json()}"
                pipe.set(self._decision_key(d.request_id), value, nx=True, ex=int(self.retention_s))
            await pipe.execute()

    async def decision(self, request_id: str) -> Decision | None:
        value = await self.client.get(self._decision_key(request_id))
        return Decision.from_json(str(value).partition("\n")[2]) if value is not None else None

    async def add_rating(self, rating: Rating, *, owner: str | None) -> Added:
        rid = rating.request_id
        limited = "0" if owner is None else "1"
        rated_at = repr(rating.rated_at)
        args: list[Any] = [limited, json.dumps(owner), rating.to_json(), self.retention_s, rated_at, rid]
        keys = [self._decision_key(rid), self._rating_key(rid), self._rated]
        status, decision = await self._add(keys=keys, args=args)
        return Added(status, Decision.from_json(decision) if decision else None)

    async def training_rows(self, *, since: float = 0.0, batch: int = 500) -> AsyncIterator[TrainingRow]:
        # Keyset paging by score: each page starts at the last score seen, skipping the ids
        # already read at that score (ties), so ratings added or pruned meanwhile shift nothing.
        low: float = since
        seen_at_low: set[str] = set()
        while True:
            wanted = batch + len(seen_at_low)
            entries: list[tuple[str, float]] = await self.client.zrangebyscore(
                self._rated, low, "+inf", start=0, num=wanted, withscores=True
            )  # type: ignore[assignment]  # with scores: (member, score) pairs
            pairs = [(str(rid), float(score)) for rid, score in entries]
            fresh = [rid for rid, score in pairs if not (score == low and rid in seen_at_low)]
            if fresh:
                texts = await self.client.mget([self._rating_key(rid) for rid in fresh])
                for text in texts:
                    if text is not None:  # expired since it was indexed
                        yield _row(str(text))
            if len(entries) < wanted:
                return
            top = pairs[-1][1]
            at_top = {rid for rid, score in pairs if score == top}
            seen_at_low = (seen_at_low | at_top) if top == low else at_top
            low = top

    async def prune(self, now: float) -> None:
        await self.client.zremrangebyscore(self._rated, "-inf", f"({now - self.retention_s!r}")

    async def close(self) -> None:
        await self.client.aclose()


def _row(value: str) -> TrainingRow:
    stored = json.loads(value.partition("\n")[2])
    return TrainingRow(Decision(**stored["decision"]), Rating(**stored["rating"]))
