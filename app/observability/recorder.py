"""What happened to each request, and where it is recorded: the ``route_decision`` log line,
the metrics, the ``x-router-*`` headers, and for an answer its decision record for feedback.

``Outcome`` is filled in as a request goes (plan, failures, retries, time spent in backends);
``Recorder.finish`` prices its usage and writes the log line and the metrics once, whatever
way the request ended (answered, failed, or cancelled by the client), then hands an answered
request (status ok, a model answered) to ``on_answer``, which must not block or do I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from app.budget.pricing import CacheUse
from app.errors import RouterError
from app.observability.logs import debug_enabled, log_event, now
from app.observability.metrics import Metrics
from app.routing.analysis import Features
from app.routing.catalog import Catalog
from app.routing.planner import RoutePlan, Target

CLIENT_CLOSED = 499  # the status recorded for a request its client abandoned (nginx's convention)


@dataclass
class Outcome:
    """What happened to one request: the plan, who answered, what it cost."""

    request_id: str
    plan: RoutePlan
    started: float = field(default_factory=now)
    target: Target | None = None
    failures: list[tuple[str, str]] = field(default_factory=list)
    retries: int = 0
    backend_s: float = 0.0
    reservation: Any = None  # the budget reservation of the target being tried
    prompt: str | None = None  # only with logging.log_prompts on
    client: str | None = None  # the calling key's name, when auth is on
    cache: str = "miss"
    first_token_s: float | None = None
    usage: dict[str, Any] | None = None
    cost_usd: Decimal | None = None
    prompt_cache: CacheUse | None = None  # what provider prompt caching did for the answer
    status: str = "ok"

    @property
    def fallbacks(self) -> int:
        return len(self.failures)

    def headers(self) -> dict[str, str]:
        target = self.target or self.plan.primary
        return {
            "x-router-model": target.model,
            "x-router-provider": target.provider,
            "x-router-strategy": self.plan.strategy,
            "x-router-reason": target.reason.encode("ascii", "replace").decode(),
            "x-router-fallbacks": str(self.fallbacks),
            "x-router-cost-usd": f"{self._cost():.8f}",
            # A stream's headers leave before its cost is known: they carry what was reserved.
            "x-router-cost-kind": "actual" if self.cost_usd is not None else "reserved",
            "x-router-cache": self.cache,
            **self._prompt_cache_headers(),
        }

    def _prompt_cache_headers(self) -> dict[str, str]:
        """Known once the answer is: a completion's headers carry them, a stream's leave before."""
        use = self.prompt_cache
        if use is None:
            return {}
        return {
            "x-router-prompt-cache-read-tokens": str(use.read_tokens),
            "x-router-prompt-cache-write-tokens": str(use.write_tokens),
            "x-router-prompt-cache-saved-usd": f"{use.saved_usd:.8f}",
        }

    def _cost(self) -> Decimal:
        if self.cost_usd is not None:
            return self.cost_usd
        return self.reservation.amount if self.reservation is not None else Decimal(0)


class Recorder:
    def __init__(
        self, catalog: Catalog, metrics: Metrics, on_answer: Callable[[Outcome], None] | None = None
    ) -> None:
        self.catalog = catalog
        self.metrics = metrics
        self.on_answer = on_answer

    def finish(
        self,
        outcome: Outcome,
        target: Target | None,
        *,
        usage: dict[str, Any] | None = None,
        cost: Decimal | None = None,
        error: RouterError | None = None,
    ) -> None:
        outcome.target = target or outcome.target
        outcome.usage = usage
        if cost is not None:
            outcome.cost_usd = cost
        elif target is not None and usage:
            outcome.cost_usd = self.catalog.pricer.usage_cost(target.model, usage)
        self._metrics(outcome, error)
        self._log(outcome, error)
        answered = outcome.target is not None and outcome.status == "ok" and error is None
        if answered and self.on_answer is not None:
            self.on_answer(outcome)

    def _status(self, outcome: Outcome, error: RouterError | None) -> str:
        if outcome.status == "cancelled":
            return str(CLIENT_CLOSED)
        return str(error.status_code) if error is not None else "200"

    def _metrics(self, outcome: Outcome, error: RouterError | None) -> None:
        m, target = self.metrics, outcome.target
        model, provider = (target.model, target.provider) if target else ("none", "none")
        elapsed = now() - outcome.started
        m.record(
            "router_requests",
            model=model,
            provider=provider,
            strategy=outcome.plan.strategy,
            status=self._status(outcome, error),
        )
        m.record("router_request_duration_seconds", elapsed, model=model)
        m.record("router_overhead_seconds", max(0.0, elapsed - outcome.backend_s))
        if outcome.first_token_s is not None:
            m.record("router_time_to_first_token_seconds", outcome.first_token_s, model=model)
        if outcome.cost_usd is not None:
            m.record("router_cost_usd", float(outcome.cost_usd), model=model, provider=provider)
        if target is not None and outcome.status == "ok":
            m.record(
                "router_routed_requests",
                self_hosted=str(self.catalog.is_self_hosted(model)).lower(),
                prompt_size=prompt_size(outcome.plan.features.tokens),
            )
        if outcome.cache == "hit":
            m.record("router_cache_hits", model=model)
        use = outcome.prompt_cache
        if use is not None:
            for kind, count in (("read", use.read_tokens), ("write", use.write_tokens)):
                if count:
                    m.record("router_prompt_cache_tokens", float(count), model=model, kind=kind)
            if use.storage_usd:
                m.record("router_prompt_cache_storage_usd", float(use.storage_usd), model=model)
            if use.saved_usd > 0:
                m.record("router_prompt_cache_saved_usd", float(use.saved_usd), model=model)
            elif use.saved_usd < 0:
                m.record("router_prompt_cache_extra_usd", float(-use.saved_usd), model=model)
        for direction, key in (("in", "prompt_tokens"), ("out", "completion_tokens")):
            tokens = (outcome.usage or {}).get(key)
            if tokens:
                m.record("router_tokens", float(tokens), model=model, direction=direction)

    def _log(self, outcome: Outcome, error: RouterError | None) -> None:
        plan, target = outcome.plan, outcome.target
        fields: dict[str, Any] = {
            "request_id": outcome.request_id,
            "strategy": plan.strategy,
            "features": loggable(plan.features),
            "model": target.model if target else None,
            "provider": target.provider if target else None,
            "self_hosted": self.catalog.is_self_hosted(target.model) if target else None,
            "reason": target.reason if target else None,
            "quality": plan.quality.get(target.model) if target else None,
            "quality_margin": plan.margin,
            "spilled": list(plan.spilled) or None,
            "fallbacks": outcome.fallbacks,
            "failures": [m for m, _ in outcome.failures],
            "retries": outcome.retries,
            "status": outcome.status,
            "error": type(error).__name__ if error else None,
            "latency_ms": round((now() - outcome.started) * 1000, 2),
            "prompt_tokens": (outcome.usage or {}).get("prompt_tokens"),
            "completion_tokens": (outcome.usage or {}).get("completion_tokens"),
            "cost_usd": float(outcome.cost_usd) if outcome.cost_usd is not None else None,
            "cache": outcome.cache,
            "cache_affinity": plan.affinity is not None,
            "prompt_cache": _cache_fields(outcome.prompt_cache),
        }
        if outcome.prompt is not None:
            fields["prompt"] = outcome.prompt
        if debug_enabled():
            fields["candidates"] = [t.model for t in plan.targets]
            fields["dropped"] = [{"model": m, "why": why} for m, why in plan.dropped]
        log_event("route_decision", **fields)


def _cache_fields(use: CacheUse | None) -> dict[str, Any] | None:
    if use is None:
        return None
    return {
        "read_tokens": use.read_tokens,
        "write_tokens": use.write_tokens,
        "storage_usd": float(use.storage_usd),
        "saved_usd": float(use.saved_usd),
    }


def prompt_size(tokens: int) -> str:
    """The routing guide's prompt-size bands (under 50K, 50-100K, over 100K tokens), as a bounded label."""
    return "under_50k" if tokens < 50_000 else ("50k_to_100k" if tokens <= 100_000 else "over_100k")


def loggable(features: Features) -> dict[str, Any]:
    """Features without anything a client wrote (metadata values stay out)."""
    out = features.as_dict()
    out["metadata"] = sorted(features.metadata)
    return out
