"""Builders shared by the budget and response-cache tests: config variants of the default
YAML, a settable clock, scripted backends with chosen usage, a log collector, and a
``RouterService`` wired to its own ledger, metrics and alert sender."""

from __future__ import annotations

import asyncio
import copy
import random
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import prometheus_client
import yaml

from app.budget.alerts import AlertSender
from app.budget.budgets import Budgets
from app.budget.ledger import Ledger
from app.budget.pricing import Pricer
from app.cache.service import ResponseCache
from app.config import RouterConfig, parse_config
from app.feedback.service import FeedbackService
from app.observability.metrics import Metrics
from app.service import RouterService
from tests.fakes.backends import ScriptedBackend
from tests.support.wiring import log_records, no_wait

CONFIG_PATH = Path(__file__).parents[2] / "deployments" / "configs" / "router.yaml"
HAIKU = "claude-haiku"
MISTRAL = "mistral-7b-instruct"
ANTHROPIC_MODELS = ("claude-haiku", "claude-sonnet", "claude-opus")
# A custom strategy that always prefers claude-haiku, then the self-hosted default.
HAIKU_FIRST = "haiku_first"
HAIKU_FIRST_STRATEGY = {
    "description": "claude-haiku first, self-hosted mistral next",
    "decision_tree": [{"condition": {}, "action": {"models": [HAIKU, MISTRAL]}}],
    "otherwise": "auto",
}
NO_WEBHOOK: dict[str, str] = {}  # an AlertSender env without BUDGET_ALERT_WEBHOOK_URL


@cache
def _default_raw() -> dict[str, Any]:
    return yaml.safe_load(CONFIG_PATH.read_text(encoding="utf-8"))


def make_config(
    *,
    budgets: Mapping[str, float] | None = None,
    timezone: str | None = None,
    reservation_ttl_s: float | None = None,
    cache: Mapping[str, Any] | None = None,
    ledger: Mapping[str, Any] | None = None,
    sections: Mapping[str, Any] | None = None,
) -> RouterConfig:
    """The default YAML with ``haiku_first`` added and the given sections changed (``sections``:
    whole top-level sections replaced, e.g. ``{"auth": {"enabled": True}}``)."""
    raw = copy.deepcopy(_default_raw())
    raw.setdefault("strategies", {})[HAIKU_FIRST] = copy.deepcopy(HAIKU_FIRST_STRATEGY)
    rules = raw["cost_rules"]
    if budgets:
        rules["daily_budgets"].update(budgets)
    if timezone:
        rules["timezone"] = timezone
    if reservation_ttl_s is not None:
        rules["reservation_ttl_s"] = reservation_ttl_s
    if cache is not None:
        raw["cache"].update(cache)
    if ledger is not None:
        raw["ledger"].update(ledger)
    raw.update(copy.deepcopy(dict(sections or {})))
    return parse_config(raw, source="test-budgets.yaml")


class FakeNow:
    """A wall clock for ``Budgets(now=...)`` that tests move by hand (aware datetimes)."""

    def __init__(self, start: datetime = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)) -> None:
        self.value = start

    def __call__(self) -> datetime:
        return self.value

    def set(self, value: datetime) -> None:
        self.value = value

    def advance(self, **delta: float) -> None:
        self.value += timedelta(**delta)


class FakeMonotonic:
    """A monotonic clock (``MemoryCache(clock=...)``) that tests move by hand."""

    def __init__(self) -> None:
        self.value = 1000.0

    def __call__(self) -> float:
        return self.value


class CostedBackend(ScriptedBackend):
    """A scripted backend whose usage is chosen: ``prompt_tokens`` (default: the word count) and
    ``completion_tokens`` (default: the words it answers with); ``jitter_s`` adds a random await
    before answering, so concurrent requests interleave."""

    def __init__(
        self,
        name: str,
        *,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        jitter_s: float = 0.0,
        text: str = "Hello from the fake backend",
    ) -> None:
        super().__init__(name, text=text)
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.jitter_s = jitter_s

    def _usage(self, request: dict[str, Any]) -> dict[str, int]:
        usage = super()._usage(request)
        if self.prompt_tokens is not None:
            usage["prompt_tokens"] = self.prompt_tokens
        if self.completion_tokens is not None:
            usage["completion_tokens"] = self.completion_tokens
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return usage

    async def complete(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.jitter_s:
            await asyncio.sleep(random.uniform(0, self.jitter_s))
        return await super().complete(request)


def scripted_backends(config: RouterConfig, **overrides: ScriptedBackend) -> dict[str, ScriptedBackend]:
    fakes: dict[str, ScriptedBackend] = {name: ScriptedBackend(name) for name in config.models}
    fakes.update(overrides)
    return fakes


def new_metrics() -> Metrics:
    return Metrics(prometheus_client.CollectorRegistry())


def make_budgets(
    config: RouterConfig,
    ledger: Ledger,
    now: FakeNow,
    *,
    metrics: Metrics | None = None,
    env: Mapping[str, str] | None = None,
) -> Budgets:
    metrics = metrics or new_metrics()
    alerts = AlertSender(config.cost_rules.webhook, metrics, env=NO_WEBHOOK if env is None else env)
    return Budgets(config, Pricer(config.models), ledger, metrics, alerts, now=now)


def make_service(
    config: RouterConfig,
    backends: Mapping[str, Any],
    ledger: Ledger,
    now: FakeNow,
    *,
    env: Mapping[str, str] | None = None,
    cache: ResponseCache | None = None,
    feedback: FeedbackService | None = None,
) -> RouterService:
    """A service with its own metrics registry, budgets over ``ledger``, (by default) no
    response cache, and ``feedback`` (by default the store beside the config's ledger)."""
    metrics = new_metrics()
    budgets = make_budgets(config, ledger, now, metrics=metrics, env=env)
    return RouterService(
        config,
        backends,
        budgets.pricer,
        metrics=metrics,
        budgets=budgets,
        cache=cache if cache is not None else ResponseCache(None, 1),
        feedback=feedback,
        sleep=no_wait,
    )


# One wiring for every test module: see tests/support/wiring.py.
collect_events = log_records


def events_named(records: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [r for r in records if r.get("event") == name]


def dollars(value: str | float | Decimal) -> Decimal:
    return Decimal(str(value))
