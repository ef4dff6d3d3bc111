"""The router's Prometheus metrics, prefixed ``router_``.

Inside a Serve replica they go through ``ray.serve.metrics``, so every replica's series reach
Ray's metrics port (exported there as ``ray_router_...``) and aggregate; outside Ray (tests,
scripts) the same calls record to a private ``prometheus_client`` registry. Labels are bounded:
model, provider, strategy, status, reason: never request ids or user text.
"""

from __future__ import annotations

import functools
from typing import Any

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120)
OVERHEAD_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1)

# name -> (kind, description, labels)
SERIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "router_requests": (
        "counter",
        "Chat requests by answering model, provider, strategy and status.",
        ("model", "provider", "strategy", "status"),
    ),
    "router_routed_requests": (
        "counter",
        "Answered requests by where they ran and prompt size (under_50k, 50k_to_100k, over_100k tokens).",
        ("self_hosted", "prompt_size"),
    ),
    "router_cost_usd": ("counter", "Spend in USD by model and provider.", ("model", "provider")),
    "router_fallbacks": (
        "counter",
        "Targets that failed and handed over to the next.",
        ("from_model", "to_model", "reason"),
    ),
    "router_retries": ("counter", "Retries of a target after a retryable error.", ("model",)),
    "router_tokens": ("counter", "Tokens by model and direction (in, out).", ("model", "direction")),
    "router_cache_hits": ("counter", "Answers served from the response cache.", ("model",)),
    "router_prompt_cache_tokens": (
        "counter",
        "Prompt tokens read from (kind=read) or written to (kind=write) a provider's prompt cache.",
        ("model", "kind"),
    ),
    "router_prompt_cache_saved_usd": (
        "counter",
        "USD provider prompt caching saved, net per answer (answers where it saved).",
        ("model",),
    ),
    "router_prompt_cache_extra_usd": (
        "counter",
        "USD provider prompt caching cost on top, net per answer (first sightings: writes, storage).",
        ("model",),
    ),
    "router_prompt_cache_storage_usd": (
        "counter",
        "USD of context-cache storage (Gemini explicit caches), included in router_cost_usd.",
        ("model",),
    ),
    "router_request_duration_seconds": ("histogram", "Whole request time by model.", ("model",)),
    "router_time_to_first_token_seconds": ("histogram", "Time to the first streamed content.", ("model",)),
    "router_overhead_seconds": ("histogram", "Time spent in the router itself, apart from backends.", ()),
    "router_budget_spend_usd": ("gauge", "Spend so far today per budget (provider or total).", ("provider",)),
    "router_budget_limit_usd": ("gauge", "Daily budget limit per provider (or total).", ("provider",)),
    "router_budget_alerts": (
        "counter",
        "Budget alerts fired, once per budget and alert a day.",
        ("provider", "alert"),
    ),
    "router_breaker_state": ("gauge", "Circuit breaker state: 0 closed, 1 half-open, 2 open.", ("model",)),
    "router_backend_up": (
        "gauge",
        "1 when the model can take requests now, else 0.",
        ("model", "provider", "self_hosted"),
    ),
    # Load-aware routing (app.load): the live statistics routing decides with, per model.
    "router_model_ttft_seconds": ("gauge", "Live time to first token (decaying average).", ("model",)),
    "router_model_output_tokens_per_second": (
        "gauge",
        "Live output tokens per second while decoding (decaying average).",
        ("model",),
    ),
    "router_model_latency_seconds": ("gauge", "Live end-to-end latency of unqueued answers.", ("model",)),
    "router_model_error_rate": ("gauge", "Live share of attempts the backend failed.", ("model",)),
    "router_model_est_first_token_seconds": (
        "gauge",
        "Estimated first-token time of a new request now, queueing included.",
        ("model",),
    ),
    "router_model_in_flight": ("gauge", "Requests in flight on a self-hosted model's engine.", ("model",)),
    "router_model_capacity": (
        "gauge",
        "Requests a self-hosted model's engine serves at once before one queues.",
        ("model",),
    ),
    "router_model_spilling": ("gauge", "1 while a self-hosted model spills its excess, else 0.", ("model",)),
    "router_spills": (
        "counter",
        "Requests passed over a model that would miss their latency need, by that model and the one chosen.",
        ("from_model", "to_model"),
    ),
}


_METHODS = {"counter": "inc", "gauge": "set", "histogram": "observe"}


def in_serve_replica() -> bool:
    try:
        from ray.serve.context import _get_internal_replica_context
    except ImportError:  # pragma: no cover - ray is a dependency
        return False
    return _get_internal_replica_context() is not None  # type: ignore[no-untyped-call]


class _Series:
    """One series on either backend, with ``inc`` / ``set`` / ``observe`` taking a label dict."""

    def __init__(
        self, name: str, kind: str, description: str, labels: tuple[str, ...], registry: Any
    ) -> None:
        self.kind = kind
        self.labels = labels
        buckets = OVERHEAD_BUCKETS if name == "router_overhead_seconds" else LATENCY_BUCKETS
        if registry is None:
            from ray.serve import metrics as serve_metrics

            make = {"counter": serve_metrics.Counter, "gauge": serve_metrics.Gauge}
            if kind == "histogram":
                # NOTE: Ray annotates tag_keys as a 1-tuple; any tuple of names is what it takes.
                self._ray: Any = serve_metrics.Histogram(name, description, list(buckets), tag_keys=labels)  # type: ignore[arg-type]
            else:
                self._ray = make[kind](name, description, tag_keys=labels)  # type: ignore[arg-type]
            self._prom = None
        else:
            import prometheus_client as prom

            cls = {"counter": prom.Counter, "gauge": prom.Gauge, "histogram": prom.Histogram}[kind]
            extra = {"buckets": buckets} if kind == "histogram" else {}
            self._prom = cls(name, description, labels, registry=registry, **extra)
            self._ray = None

    def record(self, value: float, labels: dict[str, str]) -> None:
        if self.kind == "counter" and value <= 0:
            return  # nothing to add (Ray's counters refuse zero)
        method = _METHODS[self.kind]
        if self._ray is not None:
            getattr(self._ray, method)(value, tags=labels or None)
            return
        assert self._prom is not None
        child = self._prom.labels(**labels) if self.labels else self._prom
        getattr(child, method)(value)


class Metrics:
    """All router series; ``registry`` is None inside Serve, a ``CollectorRegistry`` elsewhere."""

    def __init__(self, registry: Any = None) -> None:
        self.registry = registry
        self._series = {
            name: _Series(name, kind, description, labels, registry)
            for name, (kind, description, labels) in SERIES.items()
        }

    def record(self, name: str, value: float = 1.0, **labels: Any) -> None:
        self._series[name].record(value, {k: str(v) for k, v in labels.items()})

    def sample(self, name: str, **labels: str) -> float | None:
        """A recorded value (outside Serve only), for tests and scripts."""
        return self.registry.get_sample_value(name, labels) if self.registry is not None else None


@functools.cache
def metrics() -> Metrics:
    """This process's metrics: Ray's inside a Serve replica, a private registry elsewhere."""
    if in_serve_replica():
        return Metrics(None)
    import prometheus_client

    return Metrics(prometheus_client.CollectorRegistry())
