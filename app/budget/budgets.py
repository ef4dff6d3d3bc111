"""Daily budgets per provider and in total, enforced by reservations in the shared ledger.

Before a call, the request's worst case is reserved against its provider's budget and the
total; the ledger refuses atomically when a limit would be passed, and routing moves on. After
the call the real cost replaces the reservation; a failed call releases it. Alerts fire once per
budget and day, from the ledger's spend, at the config's thresholds. A budget past a
``switch_to_self_hosted_only`` threshold takes its provider's models out of routing until the
reset (the total's: every cloud model).

NOTE: the total budget caps cloud spend. Self-hosted spend counts toward the total but is capped
only by its own budget, so that when the total is spent the router still answers from
self-hosted models, as the ``switch_to_self_hosted_only`` alert action intends.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from app.budget.alerts import AlertSender
from app.budget.ledger import Ledger, LedgerSettings, build_ledger, day_of
from app.budget.money import KeySpend
from app.budget.pricing import CACHE_COUNTERS, Pricer
from app.config import LedgerConfig, RouterConfig
from app.errors import BudgetExhaustedError, BudgetReason
from app.observability.metrics import Metrics

TOTAL = "total"


STATE_DIR_ENV = "HYBRID_ROUTER_STATE_DIR"  # overrides the SQLite ledger's folder (tests, containers)


def ledger_settings(config: LedgerConfig, env: Mapping[str, str] | None = None) -> LedgerSettings:
    """Where the config's ledger lives: its SQLite file (moved by ``$HYBRID_ROUTER_STATE_DIR``) or
    its Redis URL, which must be in the environment (``ValueError`` if not)."""
    env = os.environ if env is None else env
    path = Path(config.path).expanduser()
    if env.get(STATE_DIR_ENV):
        path = Path(env[STATE_DIR_ENV]) / path.name
    redis_url = env.get(config.redis_url_env)
    if config.backend == "redis" and not redis_url:
        raise ValueError(f"ledger.backend is redis but {config.redis_url_env} is not set")
    return LedgerSettings(
        backend=config.backend, path=str(path), redis_url=redis_url, key_prefix=config.key_prefix
    )


def ledger_for(config: LedgerConfig, env: Mapping[str, str] | None = None) -> Ledger:
    """The ledger the config names; a Redis ledger needs its URL in the environment."""
    return build_ledger(ledger_settings(config, env))


@dataclass
class Reservation:
    id: str
    model: str
    day: str
    keys: list[str]
    amount: Decimal


class Budgets:
    def __init__(
        self,
        config: RouterConfig,
        pricer: Pricer,
        ledger: Ledger,
        metrics: Metrics,
        alerts: AlertSender,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.rules = config.cost_rules
        self.pricer = pricer
        self.ledger = ledger
        self.metrics = metrics
        self.alerts = alerts
        self.now = now
        self.limits = {k: Decimal(str(v)) for k, v in self.rules.daily_budgets.items()}
        self._snapshot: dict[str, KeySpend] = {}
        self._snapshot_day = ""
        self._refreshing: asyncio.Lock | None = None
        self._refresh_task: asyncio.Task[None] | None = None
        self._stale = False
        self._day_at: tuple[int, str] = (-1, "")

    def today(self) -> str:
        """Today in the budgets' time zone; worked out once per wall-clock second (routing asks
        for it for every candidate model of every request)."""
        now = self.now()
        second = int(now.timestamp())
        if self._day_at[0] != second:
            self._day_at = (second, day_of(now, self.rules.timezone))
        return self._day_at[1]

    def keys_for(self, model: str) -> list[str]:
        return [self.config.budget_key(model), TOTAL]

    def _limits_for(self, model: str) -> dict[str, Decimal]:
        keys = self.keys_for(model)
        if self.config.is_self_hosted(model):
            keys = keys[:1]  # see the module's NOTE on the total budget
        return {k: self.limits[k] for k in keys if k in self.limits}

    # --- the request path ----------------------------------------------------------------
    async def reserve(
        self,
        model: str,
        prompt_tokens: int,
        max_tokens: int | None,
        client: tuple[str, Decimal | None] | None = None,
    ) -> Reservation:
        """Reserves the worst case, or raises ``BudgetExhaustedError`` (routing then moves on).
        ``client`` is the calling key's budget key and daily limit, reserved against too."""
        amount = self.pricer.worst_case(model, prompt_tokens, max_tokens)
        day, keys, limits = self.today(), self.keys_for(model), self._limits_for(model)
        if client is not None:
            keys = [*keys, client[0]]
            if client[1] is not None:
                limits = {**limits, client[0]: client[1]}
        pending = asyncio.ensure_future(
            self.ledger.reserve(day, dict.fromkeys(keys, amount), limits, ttl_s=self.rules.reservation_ttl_s)
        )
        try:
            rid = await asyncio.shield(pending)
        except asyncio.CancelledError:
            # NOTE: the ledger may commit after the caller is gone; give back what it reserved.
            granted = await pending
            if granted is not None:
                await self.ledger.release(granted, day)
            raise
        if rid is None:
            await self.refresh()
            raise BudgetExhaustedError(
                f"{model}: the daily budget left for {'/'.join(limits)} cannot cover this "
                f"request's worst case (${amount:.6f})."
            )
        return Reservation(rid, model, day, keys, amount)

    async def settle(
        self, reservation: Reservation, cost: Decimal, counters: Mapping[str, Decimal] | None = None
    ) -> None:
        """Records the real cost (durably, before returning), with ``counters`` (``prompt_cache.*``)
        in the same write; spend state and alerts follow in the background, so the answer does
        not wait for them."""
        actual = {**dict.fromkeys(reservation.keys, cost), **(counters or {})}
        await self.ledger.settle(reservation.id, reservation.day, actual)
        self._schedule_refresh()

    def _schedule_refresh(self) -> None:
        if self._refresh_task is not None and not self._refresh_task.done():
            self._stale = True
            return
        self._stale = False
        self._refresh_task = asyncio.get_running_loop().create_task(self._refresh_until_fresh())

    async def _refresh_until_fresh(self) -> None:
        await self.refresh()
        while self._stale:
            self._stale = False
            await self.refresh()

    async def settled(self) -> None:
        """Waits for the background refresh (tests, shutdown)."""
        while self._refresh_task is not None and not self._refresh_task.done():
            await asyncio.shield(self._refresh_task)

    async def release(self, reservation: Reservation) -> None:
        await self.ledger.release(reservation.id, reservation.day)

    async def close(self) -> None:
        await self.settled()
        await self.alerts.drain()
        await self.ledger.close()

    def cannot_cover(self, model: str, prompt_tokens: int, output_tokens: int) -> str | None:
        """Why today's budgets, as last read, leave no room for this request's worst case on this
        model (estimated at base rates, for planning; the reservation is exact), or None."""
        if self._snapshot_day != self.today():
            return None
        amount = Decimal(str(self.pricer.rates(model).estimate(prompt_tokens, output_tokens)))
        for key, limit in self._limits_for(model).items():
            entry = self._snapshot.get(key)
            if entry is not None and entry.spent + entry.reserved + amount > limit:
                return BudgetReason(f"budget: {key} daily budget cannot cover this request (${amount:.6f})")
        return None

    def unavailable_reason(self, model: str) -> str | None:
        """Set while a budget of this model is past a switch-to-self-hosted threshold today."""
        if self.config.is_self_hosted(model) or self._snapshot_day != self.today():
            return None
        for key in self.keys_for(model):
            level = self._switch_level(key)
            if level is not None:
                return BudgetReason(
                    f"budget: {key} daily budget at {level:.0%} (self-hosted only until the reset)"
                )
        return None

    # --- state, alerts, reporting ---------------------------------------------------------
    def _ratio(self, key: str) -> float | None:
        limit = self.limits.get(key)
        if not limit:
            return None
        spent = self._snapshot.get(key, KeySpend(Decimal(0), Decimal(0))).spent
        return float(spent / limit)

    def _switch_level(self, key: str) -> float | None:
        ratio = self._ratio(key)
        if ratio is None:
            return None
        switches = [a.threshold for a in self.rules.alerts if a.action == "switch_to_self_hosted_only"]
        return ratio if any(ratio >= t for t in switches) else None

    async def refresh(self) -> None:
        """Reads today's spend from the ledger, updates the gauges and fires due alerts."""
        self._refreshing = self._refreshing or asyncio.Lock()
        async with self._refreshing:
            day = self.today()
            self._snapshot, self._snapshot_day = await self.ledger.spend(day), day
            self.record_gauges()
            for key, limit in self.limits.items():
                spent = self._snapshot.get(key, KeySpend(Decimal(0), Decimal(0))).spent
                await self._alerts(day, key, spent, limit)

    def record_gauges(self) -> None:
        """Spend and limit per budget, from the last read (a new day reads as nothing spent)."""
        today = self._snapshot_day == self.today()
        for key, limit in self.limits.items():
            spent = self._snapshot.get(key, KeySpend(Decimal(0), Decimal(0))).spent if today else Decimal(0)
            self.metrics.record("router_budget_spend_usd", float(spent), provider=key)
            self.metrics.record("router_budget_limit_usd", float(limit), provider=key)

    async def _alerts(self, day: str, key: str, spent: Decimal, limit: Decimal) -> None:
        for rule in self.rules.alerts:
            if spent >= limit * Decimal(str(rule.threshold)) and await self.ledger.mark_alert(
                day, key, rule.name
            ):
                self.alerts.fire(
                    {
                        "budget": key,
                        "alert": rule.name,
                        "action": rule.action,
                        "threshold": rule.threshold,
                        "spent_usd": float(spent),
                        "limit_usd": float(limit),
                        "day": day,
                    }
                )

    def report(self) -> dict[str, Any]:
        """``GET /v1/budget``: spend, limit, alert level and routing mode per budget, today."""
        day = self.today()
        counted = {k for k in self._snapshot if k.startswith(CACHE_COUNTERS)}
        keys = sorted(
            set(self.limits)
            | (set(self._snapshot) - counted)
            | {self.config.budget_key(m) for m in self.config.models}
        )
        budgets = {}
        for key in keys:
            entry = (
                self._snapshot.get(key, KeySpend(Decimal(0), Decimal(0)))
                if self._snapshot_day == day
                else KeySpend(Decimal(0), Decimal(0))
            )
            ratio = self._ratio(key) if self._snapshot_day == day else 0.0
            fired = [a.name for a in self.rules.alerts if ratio is not None and ratio >= a.threshold]
            switched = (
                self._switch_level(key) is not None and self._snapshot_day == day and key != "self_hosted"
            )
            budgets[key] = {
                "spent_usd": float(entry.spent),
                "reserved_usd": float(entry.reserved),
                "limit_usd": float(self.limits[key]) if key in self.limits else None,
                "used": round(ratio, 4) if ratio is not None else None,
                "alerts": fired,
                "mode": "self_hosted_only" if switched else "normal",
            }
        today = self._snapshot_day == day
        cache = {
            k.removeprefix(CACHE_COUNTERS): float(self._snapshot[k].spent) for k in sorted(counted) if today
        }
        return {"day": day, "timezone": self.rules.timezone, "budgets": budgets, "prompt_cache": cache}
