"""When a new request would get its first token and its whole answer, per model.

    first token = queue wait + live time to first token
    whole answer = first token + expected output tokens / live output speed

Only a self-hosted model queues: with ``n`` requests in flight on an engine pool that serves
``c`` at once, a new request waits for ``max(0, n + 1 - c)`` of them, each taking the model's
live end-to-end latency spread over the ``c`` slots. That counts the running ones as if they had
just started: a little pessimistic, which errs towards spilling early rather than late.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.load.board import LoadBoard
from app.load.stats import LiveStats


@dataclass(frozen=True)
class Estimate:
    first_token_s: float
    total_s: float
    queued: int = 0  # requests ahead of this one waiting for a free slot
    in_flight: int | None = None  # None: a model that does not queue here (cloud)


class Estimator:
    def __init__(self, stats: LiveStats, board: LoadBoard) -> None:
        self.stats = stats
        self.board = board

    def estimate(self, model: str, output_tokens: float) -> Estimate:
        ttft = self.stats.ttft_s(model)
        generate = output_tokens / self.stats.tokens_per_s(model)
        if not self.board.tracks(model):
            return Estimate(ttft, ttft + generate)
        in_flight, capacity = self.board.in_flight(model), self.board.capacity(model)
        queued = max(0, in_flight + 1 - capacity)
        first = queued * self.stats.latency_s(model) / capacity + ttft
        return Estimate(first, first + generate, queued, in_flight)

    def unloaded(self, model: str, output_tokens: float) -> Estimate:
        """The same with no queue: what the model does at its best now."""
        ttft = self.stats.ttft_s(model)
        return Estimate(ttft, ttft + output_tokens / self.stats.tokens_per_s(model))
