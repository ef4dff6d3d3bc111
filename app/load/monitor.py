"""``LoadMonitor``: the live statistics, the in-flight board, the estimator and the spill guard,
as the service uses them.

- ``tracked(model, backend)`` puts a backend call behind ``TrackedBackend``.
- ``latency_check(...)`` gives the planner, per request, why a candidate would miss the
  request's latency need now (None: it meets it, or the request may not spill).
- ``poll(probe)`` reads the engines' own load (every ingress replica does, so each sees all).
- ``record_gauges(metrics)`` and ``snapshot()`` show it all (metrics, ``GET /v1/stats``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from app.config import RouterConfig
from app.load.board import LoadBoard
from app.load.estimate import Estimate, Estimator
from app.load.spill import LatencyNeed, SpillGuard, need_for
from app.load.stats import LiveStats
from app.load.tracked import TrackedBackend

# What an engine replica's ``load()`` returns: {"in_flight": int, "capacity": int}.
LoadProbe = Callable[[], Awaitable[Mapping[str, list[Mapping[str, Any]]]]]
STALE_POLLS = 3  # a report older than this many poll intervals is ignored


def configured_capacity(config: RouterConfig, model: str) -> int:
    """Requests ``model``'s engine pool serves at once before one queues, until the engines report
    theirs (and whenever their reports are stale): a vLLM model's ``target_ongoing_requests`` on
    each of its minimum replicas (the decode side's, when disaggregated), else the catalog's
    ``concurrency`` (the CPU engine: 1)."""
    vllm = config.serving.vllm
    settings = vllm.models.get(model) if vllm is not None and config.serving.engine == "vllm" else None
    if settings is None:
        return config.models[model].concurrency
    pd = settings.disaggregation
    return settings.target_ongoing_requests * (pd.decode_replicas if pd else settings.min_replicas)


class LoadMonitor:
    def __init__(
        self,
        config: RouterConfig,
        pools: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``pools``: self-hosted model -> the engine deployment serving it (default: each its own)."""
        self.config, self.settings, self.clock = config, config.load, clock
        if pools is None:
            pools = {m: m for m in config.models if config.is_self_hosted(m)}
        capacity: dict[str, int] = {}
        for model, pool in pools.items():
            concurrency = configured_capacity(config, model)
            capacity[pool] = min(capacity.get(pool, concurrency), concurrency)
        self.stats = LiveStats(config.models, self.settings.stats_half_life_s, clock)
        self.board = LoadBoard(
            pools, capacity, stale_after_s=STALE_POLLS * self.settings.poll_interval_s, clock=clock
        )
        self.estimator = Estimator(self.stats, self.board)
        self.guard = SpillGuard(self.settings.spill_band, self.settings.spill_cool_down_s, clock)

    def tracked(self, model: str, backend: Any) -> TrackedBackend:
        """``backend`` as routing should call it: feeding the statistics and the in-flight count."""
        return TrackedBackend(model, backend, self.stats, self.board, self.clock)

    def expected_output(self, max_tokens: int | None, task: str) -> float:
        """A request's expected answer length: what it asks for, else what answers of its kind took."""
        return float(max_tokens) if max_tokens else self.stats.answer_tokens(task)

    def estimate(self, model: str, output_tokens: float) -> Estimate:
        return self.estimator.estimate(model, output_tokens)

    def need(
        self, strategy: str, latency_ms: int | None, *, stated: bool, stream: bool, output_tokens: float
    ) -> LatencyNeed | None:
        return need_for(
            self.settings, strategy, latency_ms, stated=stated, stream=stream, output_tokens=output_tokens
        )

    def long_answer(self, output_tokens: float) -> bool:
        """Whether an answer this long is judged by its whole time rather than its first token."""
        return output_tokens >= self.settings.long_answer_tokens

    def latency_check(
        self, need: LatencyNeed, output_tokens: float, *, dry_run: bool = False
    ) -> Callable[[str], str | None]:
        """Why a model would miss ``need`` now, or None. A self-hosted model's answer goes
        through its hysteresis, whose state a dry run leaves as it is."""

        def check(model: str) -> str | None:
            estimate = self.estimate(model, output_tokens)
            seconds = estimate.total_s if need.whole_answer else estimate.first_token_s
            if self.board.tracks(model):
                if not self.guard.misses(model, seconds, need.seconds, update=not dry_run):
                    return None
                limit = self.guard.limit(model, need.seconds)
            elif seconds <= need.seconds:
                return None
            else:
                limit = need.seconds
            queue = f"~{estimate.queued} queued on {model}, " if estimate.in_flight is not None else ""
            return f"spill: {queue}est. {need.what} {seconds:.1f} s > {limit:.1f} s"

        return check

    async def poll(self, probe: LoadProbe) -> None:
        """The engines' own load, summed over each pool's replicas."""
        for pool, replicas in (await probe()).items():
            if not replicas:
                continue
            self.board.report(
                pool,
                in_flight=sum(int(r.get("in_flight", 0)) for r in replicas),
                capacity=sum(max(1, int(r.get("capacity", 1))) for r in replicas),
                replicas=len(replicas),
            )

    def snapshot(self, output_tokens: float | None = None) -> dict[str, Any]:
        """Per model: live statistics, load (self-hosted), estimates for a typical request."""
        out: dict[str, Any] = {}
        pools = self.board.snapshot()
        for model in self.config.models:
            tokens = output_tokens if output_tokens is not None else self.stats.answer_tokens("general")
            estimate = self.estimate(model, tokens)
            entry: dict[str, Any] = {
                "live": self.stats.snapshot(model),
                "estimate": {
                    "output_tokens": round(tokens),
                    "first_token_s": round(estimate.first_token_s, 3),
                    "total_s": round(estimate.total_s, 3),
                },
            }
            if self.board.tracks(model):
                pool = self.board.pools[model]
                entry["load"] = {
                    "pool": pool,
                    "in_flight": self.board.in_flight(model),
                    "queued": estimate.queued,
                    "spilling": self.guard.spilling(model),
                    **pools[pool],
                }
            out[model] = entry
        return out

    def record_gauges(self, record: Callable[..., None]) -> None:
        now = self.clock()
        tokens = self.stats.answer_tokens("general")
        for model, stats in self.stats.models.items():
            record("router_model_ttft_seconds", stats.ttft_s.value(now), model=model)
            record("router_model_output_tokens_per_second", stats.tokens_per_s.value(now), model=model)
            record("router_model_latency_seconds", stats.latency_s.value(now), model=model)
            record("router_model_error_rate", stats.error_rate.value(now), model=model)
            estimate = self.estimate(model, tokens)
            record("router_model_est_first_token_seconds", estimate.first_token_s, model=model)
            if self.board.tracks(model):
                record("router_model_in_flight", float(self.board.in_flight(model)), model=model)
                record("router_model_capacity", float(self.board.capacity(model)), model=model)
                record("router_model_spilling", 1.0 if self.guard.spilling(model) else 0.0, model=model)
