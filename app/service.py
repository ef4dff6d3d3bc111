"""The router service: analyze, plan, execute, account. No HTTP and no Ray in here.

``RouterService`` turns a chat request body (a plain dict) into a plan and runs it against the
backends, trying the plan's fallbacks in order when a target fails with a retryable error.
For streams, a target counts as answering only once it has produced content: a failure
before that moves on to the next target, so the client sees one clean stream.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from app.backends.base import Backend, backend_request
from app.budget.pricing import Pricer
from app.config import BUILTIN_STRATEGIES, RouterConfig
from app.errors import InvalidRequestError, ModelNotFoundError, RouterError, UpstreamError, UpstreamTimeoutError
from app.observability.logs import debug_enabled, log_event, now
from app.resilience.breaker import BreakerBoard
from app.resilience.executor import Executor
from app.routing.analysis import Analyzer, Features
from app.routing.catalog import Catalog
from app.routing.planner import Planner, RoutePlan, Target, always_available
from app.routing.strategies import StrategyRegistry

NEAR_BOUNDARY = 0.10  # an estimated token count this close to a decision boundary is counted exactly


@dataclass
class Outcome:
    """What happened to one request: the plan, who answered, what it cost."""

    request_id: str
    plan: RoutePlan
    started: float = field(default_factory=now)
    target: Target | None = None
    failures: list[tuple[str, str]] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    cost_usd: Decimal | None = None
    status: str = "ok"
    retries: int = 0

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
            "x-router-cost-usd": f"{self.cost_usd:.8f}" if self.cost_usd is not None else "0",
            "x-router-cache": "miss",
        }


class RouterService:
    def __init__(
        self,
        config: RouterConfig,
        backends: Mapping[str, Backend],
        pricer: Pricer | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.config = config
        self.catalog = Catalog(config, pricer)
        self.strategies = StrategyRegistry(self.catalog)
        self.planner = Planner(self.catalog, self.strategies)
        self.analyzer = Analyzer(config.routing.thresholds)
        self.backends = dict(backends)
        self.breakers = BreakerBoard(config.circuit_breaker, clock)
        self.executor = Executor(self.catalog, self.breakers, config.resilience, clock=clock, sleep=sleep)
        t = config.routing.thresholds
        self._boundaries = sorted(
            {t.long_context_tokens, t.medium_context_tokens, t.long_prompt_signal_tokens}
            | {m.context_window for m in config.models.values()}
        )

    async def start(self) -> None:
        """Slow checks a backend wants before traffic (Vertex AI's credential discovery), at once."""
        checks = [b.check_credentials() for b in self.backends.values() if hasattr(b, "check_credentials")]
        await asyncio.gather(*checks, return_exceptions=True)

    async def close(self) -> None:
        closers = [b.aclose() for b in self.backends.values() if hasattr(b, "aclose")]
        await asyncio.gather(*closers, return_exceptions=True)

    # --- availability -------------------------------------------------------------------
    def availability(self, model: str) -> str | None:
        backend = self.backends.get(model)
        if backend is None:
            return "no backend is configured for it"
        return backend.unavailable_reason() or self.breakers.unavailable_reason(model)

    # --- planning -----------------------------------------------------------------------
    def selection(self, body: Mapping[str, Any]) -> tuple[str, str]:
        """('model', name) for an explicit model, ('strategy', name) for routing."""
        requested = str(body.get("model", "")).strip()
        field_strategy = body.get("routing_strategy")
        if requested == "auto" or requested.startswith("auto:"):
            named = requested.partition(":")[2] or None
            if named and field_strategy and named != field_strategy:
                raise InvalidRequestError(
                    f"model {requested!r} and routing_strategy {field_strategy!r} disagree.", param="routing_strategy"
                )
            strategy = named or field_strategy or self.config.routing.default_strategy
            if strategy not in self.strategies:
                raise ModelNotFoundError(
                    f"Unknown routing strategy {strategy!r}; expected one of {self.strategies.names()}.",
                    param="routing_strategy" if field_strategy else "model",
                    code="strategy_not_found",
                )
            return "strategy", strategy
        model = self.catalog.resolve(requested)
        if model is None:
            raise ModelNotFoundError(
                f"The model {requested!r} does not exist; GET /v1/models lists the models, "
                f"or use 'auto' or 'auto:<strategy>' ({', '.join(BUILTIN_STRATEGIES)}).",
                param="model",
            )
        return "model", model

    async def features(self, body: Mapping[str, Any]) -> Features:
        features = self.analyzer.analyze(body)
        if not features.tokens_exact and self._near_boundary(features.tokens):
            # NOTE: exact counting of a huge prompt takes up to ~0.3 s: keep it off the event loop.
            tokens = await asyncio.to_thread(self.analyzer.count_exactly, body)
            features = self.analyzer.with_exact_tokens(features, tokens)
        return features

    def _near_boundary(self, tokens: int) -> bool:
        return any(abs(tokens - b) <= b * NEAR_BOUNDARY for b in self._boundaries)

    async def plan(self, body: Mapping[str, Any], *, assume_available: bool = False) -> RoutePlan:
        kind, name = self.selection(body)
        features = await self.features(body)
        availability = always_available if assume_available else self.availability
        if kind == "model":
            return self.planner.plan_explicit(name, features, availability)
        return self.planner.plan(features, name, availability)

    # --- execution ----------------------------------------------------------------------
    def _request_for(self, body: Mapping[str, Any], target: Target) -> dict[str, Any]:
        """The body for ``target``: its own model id, and a completion size it can produce."""
        spec = self.catalog.models[target.model]
        request = backend_request(dict(body), spec.model_id)
        for key in ("max_tokens", "max_completion_tokens"):
            if key in request and request[key] > spec.max_output_tokens:
                request[key] = spec.max_output_tokens
        return request

    async def complete(self, body: Mapping[str, Any], request_id: str) -> tuple[dict[str, Any], Outcome]:
        outcome = Outcome(request_id, await self.plan(body))

        async def attempt(target: Target) -> dict[str, Any]:
            return await self.backends[target.model].complete(self._request_for(body, target))

        try:
            target, response = await self.executor.run(outcome.plan, attempt, outcome)
        except RouterError as exc:
            outcome.status = "error"
            self.record(outcome, None, error=exc)
            raise
        response["model"] = target.model
        self.record(outcome, target, usage=response.get("usage"))
        return response, outcome

    async def stream(self, body: Mapping[str, Any], request_id: str) -> tuple[AsyncIterator[dict[str, Any]], Outcome]:
        """Returns the chunk stream once a target has produced content, and the outcome so far."""
        outcome = Outcome(request_id, await self.plan(body))
        first_byte = self.config.resilience.first_byte_timeout_s

        async def attempt(target: Target) -> tuple[list[dict[str, Any]], AsyncIterator[dict[str, Any]]]:
            upstream = self.backends[target.model].stream(self._request_for(body, target))
            try:
                async with asyncio.timeout(first_byte):
                    return await _read_until_content(upstream), upstream
            except TimeoutError:
                await _close(upstream)
                raise UpstreamTimeoutError(f"{target.model}: no content within {first_byte:g} s") from None
            except BaseException:
                await _close(upstream)
                raise

        try:
            target, (head, upstream) = await self.executor.run(outcome.plan, attempt, outcome)
        except RouterError as exc:
            outcome.status = "error"
            self.record(outcome, None, error=exc)
            raise
        outcome.target = target
        return self._relay(head, upstream, outcome), outcome

    async def _relay(
        self, head: list[dict[str, Any]], upstream: AsyncIterator[dict[str, Any]], outcome: Outcome
    ) -> AsyncIterator[dict[str, Any]]:
        assert outcome.target is not None
        model, usage = outcome.target.model, None
        try:
            for chunk in head:
                chunk["model"] = model
                usage = chunk.get("usage") or usage
                yield chunk
            async for chunk in upstream:
                chunk["model"] = model
                usage = chunk.get("usage") or usage
                yield chunk
        except RouterError as exc:
            # NOTE: a stream that breaks after content is a failure of its backend.
            self.breakers[model].failure()
            outcome.status = "error"
            self.record(outcome, outcome.target, usage=usage, error=exc)
            raise
        except (GeneratorExit, asyncio.CancelledError):
            outcome.status = "cancelled"
            self.record(outcome, outcome.target, usage=usage)
            raise
        else:
            self.record(outcome, outcome.target, usage=usage)
        finally:
            await _close(upstream)

    # --- accounting ---------------------------------------------------------------------
    def record(
        self,
        outcome: Outcome,
        target: Target | None,
        *,
        usage: dict[str, Any] | None = None,
        error: RouterError | None = None,
    ) -> None:
        outcome.target = target or outcome.target
        outcome.usage = usage
        if target is not None and usage:
            outcome.cost_usd = self.catalog.pricer.cost(
                target.model,
                input_tokens=int(usage.get("prompt_tokens") or 0),
                output_tokens=int(usage.get("completion_tokens") or 0),
            )
        self.log_decision(outcome, error)

    def log_decision(self, outcome: Outcome, error: RouterError | None = None) -> None:
        plan, target = outcome.plan, outcome.target
        fields: dict[str, Any] = {
            "request_id": outcome.request_id,
            "strategy": plan.strategy,
            "features": _loggable(plan.features),
            "model": target.model if target else None,
            "provider": target.provider if target else None,
            "self_hosted": self.catalog.is_self_hosted(target.model) if target else None,
            "reason": target.reason if target else None,
            "fallbacks": outcome.fallbacks,
            "failures": [m for m, _ in outcome.failures],
            "retries": outcome.retries,
            "status": outcome.status,
            "error": type(error).__name__ if error else None,
            "latency_ms": round((now() - outcome.started) * 1000, 2),
            "prompt_tokens": (outcome.usage or {}).get("prompt_tokens"),
            "completion_tokens": (outcome.usage or {}).get("completion_tokens"),
            "cost_usd": float(outcome.cost_usd) if outcome.cost_usd is not None else None,
            "cache": "miss",
        }
        if debug_enabled():
            fields["candidates"] = [t.model for t in plan.targets]
            fields["dropped"] = [{"model": m, "why": why} for m, why in plan.dropped]
        log_event("route_decision", **fields)


def _loggable(features: Features) -> dict[str, Any]:
    """Features without anything a client wrote (metadata values stay out)."""
    out = features.as_dict()
    out["metadata"] = sorted(features.metadata)
    return out


def _has_content(chunk: Mapping[str, Any]) -> bool:
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        if delta.get("content") or delta.get("tool_calls") or choice.get("finish_reason"):
            return True
    return bool(chunk.get("usage"))


async def _read_until_content(upstream: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chunks up to and including the first with content; raises if the stream fails or is empty."""
    head: list[dict[str, Any]] = []
    async for chunk in upstream:
        head.append(chunk)
        if _has_content(chunk):
            return head
    raise UpstreamError("the backend's stream ended before any content")


async def _close(upstream: AsyncIterator[dict[str, Any]]) -> None:
    aclose = getattr(upstream, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # noqa: BLE001 - closing a broken stream must not mask the real error
            pass
