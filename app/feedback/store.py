"""Feedback storage: the records that let clients' ratings of answers train routing later.

* ``Decision``: one answered chat request as routing saw it (who answered, by which strategy, the
  request's routing features; the prompt text only when ``logging.log_prompts`` is on).
* ``Rating``: one client's score of one answer, in [0, 1].
* ``TrainingRow``: a rating with its decision, as a training command reads it (``as_dict``).

A ``FeedbackStore`` keeps them where the budget ledger lives (the config's ``ledger`` section): the
same SQLite file, in tables of its own, or the same Redis (``app.feedback.backends`` opens it).
Contracts every backend keeps:

* First write wins: ``save_decisions`` never replaces a decision already stored under its request
  id (ids can come from clients, so a later request cannot take over an earlier one's rating).
* ``add_rating`` is one atomic step across every client of the store: it records the rating only
  if the request id has a decision the rater may rate and no rating yet; otherwise it changes
  nothing and says why. A rater limited to its own requests (``owner``) sees another client's
  decision, and its rating, as unknown: ids do not leak.
* Retention: a decision is kept ``retention_s`` after it was made, a rating ``retention_s`` after
  it was given (it carries a copy of its decision, so it outlives it). ``prune`` drops the rest.
* Durability: a write is committed before the call returns. Store errors propagate.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal, Protocol

REQUEST_ID_CHARS = 64  # the longest request id the router keeps (longer ones are cut to this)


@dataclass(frozen=True)
class Decision:
    """An answered request: ``created_at`` is unix time (s); ``client`` the caller's key name
    (None with auth off); ``features`` is ``loggable(plan.features)``, no text a client wrote."""

    request_id: str
    model: str
    strategy: str
    created_at: float
    features: dict[str, Any]
    client: str | None = None
    prompt: str | None = None

    def to_json(self) -> str:
        return _dumps(self)

    @classmethod
    def from_json(cls, text: str) -> Decision:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class Rating:
    """A score in [0, 1] of the answer to ``request_id``, given at ``rated_at`` (unix time) by the
    key ``client`` (None with auth off); ``comment`` only where the service keeps text."""

    request_id: str
    score: float
    rated_at: float
    client: str | None = None
    comment: str | None = None

    def to_json(self) -> str:
        return _dumps(self)

    @classmethod
    def from_json(cls, text: str) -> Rating:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class Added:
    """What ``add_rating`` did: ``recorded`` (with the rated decision), ``duplicate`` (the id has a
    rating already) or ``unknown`` (no decision under the id, or one the rater may not rate)."""

    status: Literal["recorded", "duplicate", "unknown"]
    decision: Decision | None = None


@dataclass(frozen=True)
class TrainingRow:
    decision: Decision
    rating: Rating

    def as_dict(self) -> dict[str, Any]:
        """``request_id, model, strategy, features, score, created_at`` (the answer's time),
        ``rated_at``, and ``prompt`` / ``comment`` only where they were stored."""
        d, r = self.decision, self.rating
        row: dict[str, Any] = {
            "request_id": d.request_id,
            "model": d.model,
            "strategy": d.strategy,
            "features": d.features,
            "score": r.score,
            "created_at": d.created_at,
            "rated_at": r.rated_at,
        }
        if d.prompt is not None:
            row["prompt"] = d.prompt
        if r.comment is not None:
            row["comment"] = r.comment
        return row


class FeedbackStore(Protocol):
    retention_s: float

    async def save_decisions(self, decisions: Sequence[Decision]) -> None:
        """Stores every decision whose request id has none yet (one round trip for the batch)."""
        ...

    async def decision(self, request_id: str) -> Decision | None: ...

    async def add_rating(self, rating: Rating, *, owner: str | None) -> Added:
        """Atomically records ``rating`` (see the module's contracts). ``owner`` None: any
        decision may be rated; a name: only decisions whose ``client`` is that name."""
        ...

    def training_rows(self, *, since: float = 0.0, batch: int = 500) -> AsyncIterator[TrainingRow]:
        """Every stored rating given at or after ``since`` (unix time), oldest first, with its
        decision; read ``batch`` at a time."""
        ...

    async def prune(self, now: float) -> None:
        """Drops decisions and ratings older than ``retention_s`` at ``now`` (unix time)."""
        ...

    async def close(self) -> None: ...


def owns(owner: str | None, client: str | None) -> bool:
    """Whether a rater limited to ``owner`` (None: no limit) may rate a decision of ``client``."""
    return owner is None or owner == client


def is_request_id(text: str) -> bool:
    """Whether ``text`` can be a request id the router issued: 1 to ``REQUEST_ID_CHARS`` printable
    characters from an HTTP header (latin-1), as ``RequestIdMiddleware`` keeps them."""
    if not 0 < len(text) <= REQUEST_ID_CHARS or not text.isprintable():
        return False
    return text.isascii() or all(ord(c) < 256 for c in text)


def _dumps(record: Decision | Rating) -> str:
    # Field by field (dataclasses.asdict deep-copies: slow). ASCII JSON: a lone surrogate in a
    # prompt becomes an escape that every store can keep.
    return json.dumps({f.name: getattr(record, f.name) for f in fields(record)}, separators=(",", ":"))
