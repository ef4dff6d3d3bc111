"""What the HTTP routes show besides answers: a plan, budgets, the model list, health.

``RouterViews`` is the read side of ``RouterService``: the routes ask it, and it reads the
service's catalog, budgets, quota and breakers, so routes never reach into those themselves.
Reading changes nothing (gauges are refreshed by the service's own loop, not by ``/health``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.openai_wire import requested_max_tokens
from app.routing.planner import RoutePlan
from app.security.quota import client_key
from app.service import RouterService, request_margin


class RouterViews:
    def __init__(self, service: RouterService) -> None:
        self.service = service

    def route(self, plan: RoutePlan, body: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /v1/route``'s answer: the plan, its worst-case cost, quality and features."""
        primary = plan.primary
        worst = self.service.catalog.pricer.worst_case(
            primary.model, plan.features.tokens, requested_max_tokens(body)
        )
        return {
            "model": primary.model,
            "provider": primary.provider,
            "strategy": plan.strategy,
            "reason": primary.reason,
            "estimated_cost_usd": {"worst_case": float(worst)},
            "fallbacks": [t.as_dict() for t in plan.fallbacks],
            "quality": plan.quality,
            "quality_margin": plan.margin,
            "features": plan.features.as_dict(),
            "dropped": [{"model": m, "reason": why} for m, why in plan.dropped],
        }

    async def budget(self, client: str | None, admin: bool) -> dict[str, Any]:
        """Every budget for an admin (or with auth off); a client key sees only its own spend."""
        budgets = self.service.budgets
        await budgets.refresh()
        report = budgets.report()
        if client is not None and not admin:
            own = client_key(client)
            report["budgets"] = {k: v for k, v in report["budgets"].items() if k == own}
            report["budgets"].setdefault(own, {"spent_usd": 0.0, "reserved_usd": 0.0, "mode": "normal"})
            report["budgets"][own]["limit_usd"] = _float(self.service.quota.daily_limit(client))
        return report

    def models(self) -> list[dict[str, Any]]:
        return [self.auto_entry(), *(self.model_entry(name) for name in self.service.catalog.models)]

    def model(self, requested: str) -> dict[str, Any]:
        """One model, as the SDK's ``models.retrieve``: a name, an alias or ``auto[:strategy]``,
        resolved as a chat request's ``model`` is (an unknown or ambiguous name is a 404)."""
        kind, name = self.service.selection({"model": requested})
        if kind == "model":
            return self.model_entry(name)
        entry = self.auto_entry()
        if requested.strip().lower() != "auto":
            margin = request_margin({"model": requested})
            entry["id"] = f"auto:{margin:g}" if margin is not None else f"auto:{name}"
        return entry

    def auto_entry(self) -> dict[str, Any]:
        return {
            "id": "auto",
            "object": "model",
            "created": 0,
            "owned_by": "hybrid-router",
            "strategies": self.service.strategies.names(),
        }

    def model_entry(self, name: str) -> dict[str, Any]:
        """A logical model as an OpenAI Model object, plus what the router knows of it."""
        spec = self.service.catalog.models[name]
        reason = self.service.availability(name)
        return {
            "id": name,
            "object": "model",
            "created": 0,
            "owned_by": spec.provider,
            "provider_model": spec.model_id,
            "context_window": spec.context_window,
            "capabilities": list(spec.capabilities),
            "aliases": list(spec.aliases),
            "available": reason is None,
            "unavailable_reason": reason,
        }

    def stats(self, output_tokens: int | None = None) -> dict[str, Any]:
        """``GET /v1/stats``: per model, the live statistics, the load of self-hosted engines and
        the estimated first token and answer time of a new request (``output_tokens`` long, or
        as long as answers have been) as routing sees them now."""
        return {"object": "router.stats", "models": self.service.load.snapshot(output_tokens)}

    def health(self) -> dict[str, Any]:
        """Overall status: ``ok`` when every model is up, ``degraded`` when some are, ``down`` when none."""
        service = self.service
        models = {name: service.availability(name) for name in service.catalog.models}
        up = [m for m, reason in models.items() if reason is None]
        self_hosted = [m for m in models if service.catalog.is_self_hosted(m)]
        self_hosted_up = [m for m in up if m in self_hosted]
        status = "ok" if len(up) == len(models) else ("degraded" if up else "down")
        report: dict[str, Any] = {
            "status": status,
            "self_hosted_available": bool(self_hosted_up),
            "models": {
                m: {"available": r is None, "reason": r, "breaker": service.breakers[m].current()}
                for m, r in models.items()
            },
        }
        if self_hosted and not self_hosted_up:
            report["notice"] = "All self-hosted models are down: requests go to cloud models."
        return report


def _float(value: Any) -> float | None:
    return float(value) if value is not None else None
