"""Live statistics per logical model, learned from real traffic.

Each figure is a ``DecayingMean``: samples lose half their weight every ``half_life_s``, and the
catalog's figure (``typical_latency_ms``, ``typical_tokens_per_s``) weighs as one sample that
never fades. So a model starts at its catalog figure, follows its traffic within a few requests,
and drifts back to the figure when it gets no traffic: a model that was slow during a burst and
then got none is tried again rather than shunned for ever.

A self-hosted model's time to first token is only sampled from requests that did not queue
(the queue is estimated apart, from the requests in flight), so that a burst's queueing is
not counted twice.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from app.config import ModelSpec

DEFAULT_ANSWER_TOKENS = 256.0  # the answer-length prior, before any answer was seen
MIN_DECODE_S = 0.005  # shorter decode spans say nothing about the output speed
MIN_RATE_TOKENS = 4  # nor do answers this short


class DecayingMean:
    def __init__(self, prior: float, half_life_s: float, prior_weight: float = 1.0) -> None:
        self.prior, self.prior_weight = prior, prior_weight
        self._decay = math.log(2) / half_life_s
        self._sum = self._weight = 0.0
        self._at: float | None = None

    def _faded(self, now: float) -> float:
        return math.exp(-self._decay * (now - self._at)) if self._at is not None else 0.0

    def add(self, value: float, now: float) -> None:
        fade = self._faded(now)
        self._sum, self._weight, self._at = self._sum * fade + value, self._weight * fade + 1.0, now

    def value(self, now: float) -> float:
        fade = self._faded(now)
        weight = self._weight * fade + self.prior_weight
        return (self._sum * fade + self.prior * self.prior_weight) / weight

    def samples(self, now: float) -> float:
        """The weight real samples still have (0: the prior alone)."""
        return self._weight * self._faded(now)


@dataclass
class ModelStats:
    ttft_s: DecayingMean
    tokens_per_s: DecayingMean
    latency_s: DecayingMean  # a whole answer, end to end
    error_rate: DecayingMean

    def as_dict(self, now: float) -> dict[str, float]:
        return {
            "ttft_s": round(self.ttft_s.value(now), 4),
            "tokens_per_s": round(self.tokens_per_s.value(now), 2),
            "latency_s": round(self.latency_s.value(now), 4),
            "error_rate": round(self.error_rate.value(now), 4),
            "samples": round(self.error_rate.samples(now), 2),  # attempts seen, faded like the rest
        }


class LiveStats:
    def __init__(
        self,
        models: Mapping[str, ModelSpec],
        half_life_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        self.half_life_s = half_life_s
        self.models: dict[str, ModelStats] = {}
        for name, spec in models.items():
            ttft = spec.typical_latency_ms / 1000
            rate = spec.typical_tokens_per_s
            self.models[name] = ModelStats(
                ttft_s=DecayingMean(ttft, half_life_s),
                tokens_per_s=DecayingMean(rate, half_life_s),
                latency_s=DecayingMean(ttft + DEFAULT_ANSWER_TOKENS / rate, half_life_s),
                error_rate=DecayingMean(0.0, half_life_s),
            )
        self._answer_tokens: dict[str, DecayingMean] = {}

    def ttft_s(self, model: str) -> float:
        return self.models[model].ttft_s.value(self.clock())

    def tokens_per_s(self, model: str) -> float:
        return self.models[model].tokens_per_s.value(self.clock())

    def latency_s(self, model: str) -> float:
        return self.models[model].latency_s.value(self.clock())

    def answer_tokens(self, task: str) -> float:
        """The expected length of an answer to a request of this kind (the analyzer's task)."""
        mean = self._answer_tokens.get(task)
        return mean.value(self.clock()) if mean is not None else DEFAULT_ANSWER_TOKENS

    def record_answer(
        self,
        model: str,
        *,
        total_s: float,
        completion_tokens: int,
        first_token_s: float | None,
        queued: bool,
    ) -> None:
        """One answered attempt. ``first_token_s`` is known for streams only; ``queued``: it
        waited behind other requests on a self-hosted engine."""
        now, stats = self.clock(), self.models[model]
        stats.error_rate.add(0.0, now)
        if not queued:
            stats.latency_s.add(total_s, now)
            if first_token_s is not None:
                stats.ttft_s.add(first_token_s, now)
        if first_token_s is not None:  # the decode span alone, queued or not
            self._add_rate(stats, completion_tokens - 1, total_s - first_token_s, now)
        elif not queued and completion_tokens >= MIN_RATE_TOKENS and total_s > MIN_DECODE_S:
            # A whole answer: its first token and its decoding are not seen apart, so both are
            # taken as the current estimates scaled to the time it took.
            ttft, rate = stats.ttft_s.value(now), stats.tokens_per_s.value(now)
            scale = total_s / (ttft + completion_tokens / rate)
            stats.ttft_s.add(ttft * scale, now)
            stats.tokens_per_s.add(rate / scale, now)

    def record_answer_length(self, task: str, completion_tokens: int) -> None:
        """How long an answer to this kind of request was (feeds ``answer_tokens``)."""
        if completion_tokens > 0:
            mean = self._answer_tokens.setdefault(task, DecayingMean(DEFAULT_ANSWER_TOKENS, self.half_life_s))
            mean.add(completion_tokens, self.clock())

    @staticmethod
    def _add_rate(stats: ModelStats, tokens: int, decoding_s: float, now: float) -> None:
        if tokens >= MIN_RATE_TOKENS and decoding_s > MIN_DECODE_S:
            stats.tokens_per_s.add(tokens / decoding_s, now)

    def record_error(self, model: str) -> None:
        self.models[model].error_rate.add(1.0, self.clock())

    def snapshot(self, model: str) -> dict[str, float]:
        return self.models[model].as_dict(self.clock())
