"""Feedback as the router uses it: decisions noted as requests are answered, ratings checked and
recorded. No HTTP in here: ``POST /v1/feedback`` is a thin route over ``FeedbackService.rate``.

What a rating keeps: the score, the rater's key name and the time. A ``comment`` is kept only
with ``logging.log_prompts`` on (it may quote the prompt); otherwise it is accepted and dropped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from app.errors import FeedbackExistsError, InvalidRequestError, RequestNotFoundError
from app.feedback.decisions import DecisionLog
from app.feedback.store import FeedbackStore, Rating, is_request_id
from app.observability.logs import log_event
from app.observability.recorder import Outcome

THUMBS = {"up": 1.0, "down": 0.0}
COMMENT_CHARS = 1_000


class FeedbackService:
    def __init__(
        self, store: FeedbackStore, *, keep_text: bool = False, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.keep_text = keep_text
        self.clock = clock
        self.decisions = DecisionLog(store, clock=clock)

    def note(self, outcome: Outcome) -> None:
        """The decision of an answered request, for later ratings (no I/O: see ``DecisionLog``)."""
        self.decisions.note(outcome)

    def start(self) -> None:
        self.decisions.start()

    async def close(self) -> None:
        await self.decisions.close()

    async def rate(
        self,
        request_id: str,
        *,
        score: float | None = None,
        rating: str | None = None,
        comment: str | None = None,
        client: str | None = None,
        admin: bool = True,
    ) -> dict[str, Any]:
        """Records one rating of the answer to ``request_id``: ``score`` in [0, 1] or ``rating``
        "up" (1.0) / "down" (0.0), exactly one of them. ``client`` is the rater's key name (None
        with auth off); unless ``admin``, a client may rate only its own requests.

        Raises ``InvalidRequestError`` (400, ``param`` names the field), ``RequestNotFoundError``
        (404: no answer under that id, or another client's) or ``FeedbackExistsError`` (409)."""
        value = score_of(score, rating)
        if comment is not None and len(comment) > COMMENT_CHARS:
            raise InvalidRequestError(f"comment is longer than {COMMENT_CHARS} characters.", param="comment")
        if not is_request_id(request_id):
            raise _not_found(self.store.retention_s)
        await self.decisions.saved(request_id)
        kept = _clean(comment) if comment and self.keep_text else None
        added = await self.store.add_rating(
            Rating(request_id, value, self.clock(), client, kept), owner=None if admin else client
        )
        if added.status == "duplicate":
            raise FeedbackExistsError(
                "The answer under this request id has been rated already.", param="request_id"
            )
        if added.status != "recorded" or added.decision is None:
            raise _not_found(self.store.retention_s)
        model = added.decision.model
        log_event(
            "feedback", request_id=request_id, model=model, strategy=added.decision.strategy, score=value
        )
        return {"request_id": request_id, "score": value, "model": model, "recorded": True}


def score_of(score: float | None, rating: str | None) -> float:
    """The score a request states, or ``InvalidRequestError`` naming the field at fault."""
    if score is not None and rating is not None:
        raise InvalidRequestError("Send either score or rating, not both.", param="rating")
    if rating is not None:
        if rating not in THUMBS:
            raise InvalidRequestError("rating must be 'up' or 'down'.", param="rating")
        return THUMBS[rating]
    if score is None:
        raise InvalidRequestError("Send a score (0 to 1) or a rating ('up' or 'down').", param="score")
    number = isinstance(score, int | float) and not isinstance(score, bool)
    if not number or not math.isfinite(score) or not 0 <= score <= 1:
        raise InvalidRequestError("score must be a number from 0 to 1.", param="score")
    return float(score)


def _not_found(retention_s: float) -> RequestNotFoundError:
    return RequestNotFoundError(
        f"No answer to rate under this request id (the x-request-id of a chat answer of yours, kept "
        f"{retention_s / 86_400:g} days; an answer becomes ratable about a second after it ends).",
        param="request_id",
    )


def _clean(text: str) -> str:
    """``text`` with anything no store can encode (lone surrogates) replaced."""
    return text.encode("utf-8", "replace").decode("utf-8")
