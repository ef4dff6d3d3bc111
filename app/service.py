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
from dataclasses import replace
from decimal import Decimal
from typing import Any

from app.backends.base import Backend, backend_request
from app.budget.alerts import AlertSender
from app.budget.budgets import Budgets, Reservation, ledger_for
from app.budget.pricing import Pricer, TokenUsage
from app.cache.service import ResponseCache, store_for
from app.cache.store import completion_to_chunks
from app.config import BUILTIN_STRATEGIES, RouterConfig
from app.errors import (
    InvalidRequestError,
    LastingReason,
    ModelNotFoundError,
    RouterError,
    UpstreamTimeoutError,
)
from app.feedback.backends import store_for as feedback_store_for
from app.feedback.service import FeedbackService
from app.load.monitor import LoadMonitor, LoadProbe
from app.load.tracked import TrackedBackend
from app.observability.logs import log_event, now
from app.observability.metrics import Metrics
from app.observability.metrics import metrics as default_metrics
from app.observability.recorder import Outcome, Recorder
from app.openai_wire import requested_max_tokens
from app.resilience.breaker import STATE_VALUES, BreakerBoard
from app.resilience.executor import Attempt, Executor, T
from app.routing.affinity import Prefix, PrefixAffinity, prefix_of, shared_for
from app.routing.analysis import Analyzer, Features, instruction_text
from app.routing.catalog import Catalog
from app.routing.planner import Planner, Preferred, RoutePlan, Target, always_available
from app.routing.strategies import StrategyRegistry
from app.security.limits import check_request
from app.security.quota import Quota, client_key
from app.stream_run import StreamRun
from app.streams import Relay, close_stream, estimate_usage, read_until_content, replay

PROMPT_LOG_CHARS = 4_000  # how much of the latest user turn a log line carries with log_prompts
BUDGET_REREAD_S = 15.0  # how often a replica re-reads today's spend from the shared ledger
GAUGE_REFRESH_S = 2.5  # how often the breaker, backend-up and budget gauges are set again
NEAR_BOUNDARY = 0.10  # an estimated token count this close to a decision boundary is counted exactly


class RouterService:
    def __init__(
        self,
        config: RouterConfig,
        backends: Mapping[str, Backend],
        pricer: Pricer | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        metrics: Metrics | None = None,
        budgets: Budgets | None = None,
        cache: ResponseCache | None = None,
        feedback: FeedbackService | None = None,
        pools: Mapping[str, str] | None = None,
        load_probe: LoadProbe | None = None,
        affinity: PrefixAffinity | None = None,
    ) -> None:
        """``pools`` maps self-hosted models to the engine deployment serving them (models sharing
        one count their requests in flight together); ``load_probe`` reads the engines' own load."""
        self.config = config
        self.load = LoadMonitor(config, pools, clock)
        self.load_probe = load_probe
        self.catalog = Catalog(config, pricer, self.load)
        self.strategies = StrategyRegistry(self.catalog)
        self.planner = Planner(self.catalog, self.strategies)
        self.analyzer = Analyzer(config.routing.thresholds)
        self.backends = dict(backends)
        self.metrics = metrics or default_metrics()
        # Answers' decisions are kept (beside the ledger) for clients' ratings: POST /v1/feedback.
        self.feedback = feedback or FeedbackService(
            feedback_store_for(config.ledger), keep_text=config.logging.log_prompts
        )
        self.recorder = Recorder(self.catalog, self.metrics, on_answer=self.feedback.note)
        self.budgets = budgets or Budgets(
            config,
            self.catalog.pricer,
            ledger_for(config.ledger),
            self.metrics,
            AlertSender(config.cost_rules.webhook, self.metrics),
        )
        self._background: list[asyncio.Task[None]] = []
        self.quota = Quota(config.auth, self.budgets.ledger)
        self.cache = cache or ResponseCache(store_for(config.cache), config.cache.ttl_s)
        self.breakers = BreakerBoard(config.circuit_breaker, clock)
        self.affinity = affinity or PrefixAffinity(config, clock, shared_for(config))
        self.executor = Executor(
            self.catalog, self.breakers, config.resilience, clock=clock, sleep=sleep, metrics=self.metrics
        )
        t = config.routing.thresholds
        self._boundaries = sorted(
            {t.long_context_tokens, t.medium_context_tokens, t.long_prompt_signal_tokens}
            | {m.context_window for m in config.models.values()}
        )

    async def start(self) -> None:
        """Slow checks a backend wants before traffic (Vertex AI's credential discovery), at once."""
        checks = [b.check_credentials() for b in self.backends.values() if hasattr(b, "check_credentials")]
        await asyncio.gather(self.budgets.refresh(), *checks, return_exceptions=True)
        loop = asyncio.get_running_loop()
        self._background.append(loop.create_task(self._housekeeping()))
        if self.load_probe is not None:
            self._background.append(loop.create_task(self._poll_load(self.load_probe)))
        self.feedback.start()

    async def _housekeeping(self) -> None:
        """On the event loop, so that breaker state is only touched there: the gauges every
        ``GAUGE_REFRESH_S`` (Ray stops exporting a gauge not set for a few seconds), and today's
        spend from the shared ledger every ``BUDGET_REREAD_S`` (other replicas' spend, and the
        midnight reset, reach this replica's routing)."""
        since_reread = 0.0
        while True:
            await asyncio.sleep(GAUGE_REFRESH_S)
            since_reread += GAUGE_REFRESH_S
            if since_reread >= BUDGET_REREAD_S:
                since_reread = 0.0
                try:
                    await self.budgets.refresh()
                except Exception as exc:  # noqa: BLE001 - a failed read keeps the last state
                    log_event("budget_refresh_failed", error_type=type(exc).__name__)
            self.refresh_gauges()

    async def _poll_load(self, probe: LoadProbe) -> None:
        """The engines' own requests in flight, every ``load.poll_interval_s``: what every other
        ingress replica sent them too."""
        while True:
            try:
                await self.load.poll(probe)
            except Exception as exc:  # noqa: BLE001 - a failed poll leaves the last report to age out
                log_event("load_poll_failed", error_type=type(exc).__name__)
            await asyncio.sleep(self.config.load.poll_interval_s)

    def check(self, body: Mapping[str, Any]) -> None:
        """The request limits (``limits:``): a 400 naming the parameter, or a 413, when over."""
        check_request(body, self.config.limits)

    async def close(self) -> None:
        for task in self._background:
            task.cancel()
        closers = [b.aclose() for b in self.backends.values() if hasattr(b, "aclose")]
        await asyncio.gather(
            *closers,
            self.budgets.close(),
            self.cache.close(),
            self.feedback.close(),
            self.affinity.close(),
            return_exceptions=True,
        )

    def _backend(self, model: str) -> TrackedBackend:
        """``model``'s backend, feeding the live statistics and the in-flight count as it is called."""
        return self.load.tracked(model, self.backends[model])

    # --- availability -------------------------------------------------------------------
    def availability(self, model: str) -> str | None:
        backend = self.backends.get(model)
        if backend is None:
            return LastingReason("no backend is configured for it")
        return (
            backend.unavailable_reason()
            or self.breakers.unavailable_reason(model)
            or self.budgets.unavailable_reason(model)
        )

    def _fits(self, features: Features) -> Callable[[str], str | None]:
        """Availability for this request: the model's, and whether its budgets can cover it."""
        output = features.max_tokens or self.config.routing.default_max_tokens

        def check(model: str) -> str | None:
            return self.availability(model) or self.budgets.cannot_cover(model, features.tokens, output)

        return check

    # --- planning -----------------------------------------------------------------------
    def selection(self, body: Mapping[str, Any]) -> tuple[str, str]:
        """('model', name) for an explicit model, ('strategy', name) for routing. ``auto`` and
        strategy names are case-insensitive, as model names are."""
        requested = str(body.get("model", "")).strip()
        field_strategy = body.get("routing_strategy")
        if requested.lower() == "auto" or requested.lower().startswith("auto:"):
            named = requested.partition(":")[2].strip() or None
            if named is not None and _as_margin(named) is not None:
                named = None  # ``auto:<margin>``: the default strategy with this margin
            named = self._strategy(named, "model") if named else None
            field = self._strategy(str(field_strategy), "routing_strategy") if field_strategy else None
            if named and field and named != field:
                raise InvalidRequestError(
                    f"model {requested!r} and routing_strategy {field_strategy!r} disagree.",
                    param="routing_strategy",
                )
            return "strategy", named or field or self.config.routing.default_strategy
        model = self.catalog.resolve(requested)
        if model is None:
            shared = self.catalog.sharing(requested)
            if shared:
                raise ModelNotFoundError(
                    f"The model {requested!r} is ambiguous: it is the provider model id of the logical "
                    f"models {', '.join(shared)}; name one of them (GET /v1/models lists them).",
                    param="model",
                    code="model_ambiguous",
                )
            raise ModelNotFoundError(
                f"The model {requested!r} does not exist; GET /v1/models lists the models, "
                f"or use 'auto' or 'auto:<strategy>' ({', '.join(BUILTIN_STRATEGIES)}).",
                param="model",
            )
        return "model", model

    def _strategy(self, name: str, param: str) -> str:
        found = self.strategies.resolve(name)
        if found is None:
            raise ModelNotFoundError(
                f"Unknown routing strategy {name!r}; expected one of {self.strategies.names()}.",
                param=param,
                code="strategy_not_found",
            )
        return found

    async def features(self, body: Mapping[str, Any]) -> Features:
        features = self.analyzer.analyze(body)
        if not features.tokens_exact and self._near_boundary(features.tokens):
            # NOTE: exact counting of a huge prompt takes up to ~0.3 s: keep it off the event loop.
            tokens = await asyncio.to_thread(self.analyzer.count_exactly, body)
            features = self.analyzer.with_exact_tokens(features, tokens)
        return features

    def _near_boundary(self, tokens: int) -> bool:
        return any(abs(tokens - b) <= b * NEAR_BOUNDARY for b in self._boundaries)

    async def plan(
        self, body: Mapping[str, Any], *, assume_available: bool = False, dry_run: bool = False
    ) -> RoutePlan:
        """``dry_run``: only to show the decision (``/v1/route``); spill-over state stays as it is."""
        kind, name = self.selection(body)
        features = await self.features(body)
        margin = request_margin(body)
        if margin is not None:
            features = replace(features, quality_margin=margin)
        availability = always_available if assume_available else self._fits(features)
        prefix = prefix_of(body) if self.config.routing.cache_affinity else None
        if kind == "model":
            plan = self.planner.plan_explicit(name, features, availability)
        else:
            output = self.load.expected_output(features.max_tokens, features.task)
            latency = self._latency_check(features, name, output, dry_run)
            preferred = await self._preferred(prefix, features, output) if prefix is not None else None
            plan = self.planner.plan(features, name, availability, latency, preferred)
        return replace(plan, prefix=prefix)

    async def _preferred(self, prefix: Prefix, features: Features, output: float) -> Preferred | None:
        """Cache affinity: the model that recently answered this prefix, worth it over another
        model when reading the prefix from its cache costs no more than the other without one."""
        seen = await self.affinity.recall(prefix)
        if seen is None:
            return None
        pricer, cached = self.catalog.pricer, min(prefix.tokens, features.tokens)
        with_cache = TokenUsage(
            input_tokens=features.tokens, cache_read_tokens=cached, output_tokens=int(output)
        )
        without = TokenUsage(input_tokens=features.tokens, output_tokens=int(output))

        def worth(other: str) -> bool:
            return pricer.cost(seen.model, with_cache) <= pricer.cost(other, without)

        age = self.load.clock() - seen.at
        why = f"cache affinity: its ~{prefix.tokens:,}-token prefix went to {seen.model} {age:.0f} s ago"
        return Preferred(seen.model, why, worth)

    def _latency_check(
        self, features: Features, strategy: str, output: float, dry_run: bool
    ) -> Callable[[str], str | None] | None:
        """Spill-over for this request (``output``: its expected answer tokens): why a candidate
        would miss its latency need now."""
        need = self.load.need(
            strategy,
            features.latency_ms,
            stated=features.latency_stated,
            stream=features.stream,
            output_tokens=output,
        )
        return self.load.latency_check(need, output, dry_run=dry_run) if need is not None else None

    # --- execution ----------------------------------------------------------------------
    def _request_for(self, body: Mapping[str, Any], target: Target) -> dict[str, Any]:
        """The body for ``target``: its own model id, and a completion size it can produce."""
        spec = self.catalog.models[target.model]
        return backend_request(dict(body), spec.model_id, spec.max_output_tokens)

    async def _planned(self, body: Mapping[str, Any], request_id: str, client: str | None) -> Outcome:
        """The request's outcome with its plan, once the client's rate limits admit it; a request
        refused on the way is counted too."""
        try:
            outcome = Outcome(request_id, await self.plan(body), client=client)
            features = outcome.plan.features
            await self.quota.admit(client, features.tokens + (features.max_tokens or 0))
        except RouterError as exc:
            strategy = str(body.get("routing_strategy") or body.get("model") or "none")[:40]
            self.metrics.record(
                "router_requests",
                model="none",
                provider="none",
                strategy=strategy if strategy in self.strategies else "other",
                status=str(exc.status_code),
            )
            raise
        if outcome.plan.spilled:
            to_model = outcome.plan.primary.model
            for model in outcome.plan.spilled:
                self.metrics.record("router_spills", from_model=model, to_model=to_model)
        if self.config.logging.log_prompts:  # the operator asked for prompts in the logs
            outcome.prompt = instruction_text(list(body.get("messages") or []))[:PROMPT_LOG_CHARS]
        return outcome

    async def _cached(self, body: Mapping[str, Any], outcome: Outcome) -> dict[str, Any] | None:
        """A stored answer of the plan's primary model, recorded as a free hit."""
        hit = await self.cache.get(body, outcome.plan.primary.model)
        if hit is not None:
            outcome.cache = "hit"
            self.recorder.finish(outcome, outcome.plan.primary, usage=hit.get("usage"), cost=Decimal(0))
        return hit

    async def complete(
        self, body: Mapping[str, Any], request_id: str, client: str | None = None
    ) -> tuple[dict[str, Any], Outcome]:
        outcome = await self._planned(body, request_id, client)
        hit = await self._cached(body, outcome)
        if hit is not None:
            return hit, outcome

        async def attempt(target: Target) -> dict[str, Any]:
            request = self._request_for(body, target)
            reservation = await self._reserve(target, request, outcome)
            started = now()
            try:
                return await self._backend(target.model).complete(request)
            except BaseException:
                await self.budgets.release(reservation)
                raise
            finally:
                outcome.backend_s += now() - started

        target, response = await self._execute(outcome, attempt)
        response["model"] = target.model
        await self._settle(outcome, target, response.get("usage"))
        await self.cache.put(body, target.model, response)
        return response, outcome

    async def stream(
        self, body: Mapping[str, Any], request_id: str, client: str | None = None
    ) -> tuple[AsyncIterator[dict[str, Any]], Outcome]:
        """Returns the chunk stream once a target has produced content, and the outcome so far."""
        outcome = await self._planned(body, request_id, client)
        hit = await self._cached(body, outcome)
        if hit is not None:
            return replay(completion_to_chunks(hit)), outcome
        first_byte = self.config.resilience.first_byte_timeout_s

        async def attempt(target: Target) -> tuple[list[dict[str, Any]], AsyncIterator[dict[str, Any]]]:
            request = self._request_for(body, target)
            reservation = await self._reserve(target, request, outcome)
            started = now()
            upstream = self._backend(target.model).stream(request)
            try:
                async with asyncio.timeout(first_byte):
                    return await read_until_content(upstream), upstream
            except TimeoutError:
                await close_stream(upstream)
                await self.budgets.release(reservation)
                raise UpstreamTimeoutError(f"{target.model}: no content within {first_byte:g} s") from None
            except BaseException:
                await close_stream(upstream)
                await self.budgets.release(reservation)
                raise
            finally:
                outcome.backend_s += now() - started

        target, (head, upstream) = await self._execute(outcome, attempt, defer_success=True)
        outcome.target = target
        outcome.first_token_s = now() - outcome.started
        run = StreamRun(
            outcome,
            head,
            upstream,
            body,
            breakers=self.breakers,
            cache=self.cache,
            settle=self._settle,
            on_failure=lambda model: self.refresh_gauges([model]),
        )
        return Relay(run.chunks(), run.abandon), outcome

    async def _reserve(self, target: Target, request: Mapping[str, Any], outcome: Outcome) -> Reservation:
        limit = requested_max_tokens(request)
        client = (
            (client_key(outcome.client), self.quota.daily_limit(outcome.client)) if outcome.client else None
        )
        reservation = await self.budgets.reserve(target.model, outcome.plan.features.tokens, limit, client)
        outcome.reservation = reservation
        return reservation

    async def _settle(
        self,
        outcome: Outcome,
        target: Target,
        usage: dict[str, Any] | None,
        streamed: str = "",
        error: RouterError | None = None,
    ) -> None:
        """Records what the answer cost: its usage, or for a stream that ended without one (cut, or
        its client left) the prompt plus what was streamed, so that no spend goes unrecorded."""
        if usage is None and outcome.status != "ok":
            usage = estimate_usage(outcome.plan.features.tokens, streamed)
        cost = self.catalog.pricer.usage_cost(target.model, usage) if usage else Decimal(0)
        outcome.prompt_cache = self.catalog.pricer.cache_use(target.model, usage) if usage else None
        if usage and outcome.status == "ok":
            tokens = int(usage.get("completion_tokens") or 0)
            self.load.stats.record_answer_length(outcome.plan.features.task, tokens)
            if outcome.plan.prefix is not None:
                self.affinity.remember(outcome.plan.prefix, target.model)
        if outcome.reservation is not None:
            counters = outcome.prompt_cache.ledger_entries() if outcome.prompt_cache else None
            await self.budgets.settle(outcome.reservation, cost, counters)
        self.recorder.finish(outcome, target, usage=usage, cost=cost, error=error)

    async def _execute(
        self, outcome: Outcome, attempt: Attempt[T], *, defer_success: bool = False
    ) -> tuple[Target, T]:
        """Runs the plan; a request that ends without an answer is recorded here, once."""
        try:
            return await self.executor.run(outcome.plan, attempt, outcome, defer_success=defer_success)
        except RouterError as exc:
            outcome.status = "error"
            self.recorder.finish(outcome, None, error=exc)
            self.refresh_gauges(m for m, _ in outcome.failures)
            raise
        except asyncio.CancelledError:
            outcome.status = "cancelled"
            self.recorder.finish(outcome, None)
            raise

    def refresh_gauges(self, models: Any = None) -> None:
        """Breaker state and up/down per model (all models when none are named), and the budget
        gauges: Ray stops exporting a gauge that is not set again within a few seconds."""
        if models is None:
            self.budgets.record_gauges()
            self.load.record_gauges(self.metrics.record)
        for model in models if models is not None else self.catalog.models:
            spec = self.catalog.models[model]
            self.metrics.record(
                "router_breaker_state", STATE_VALUES[self.breakers[model].current()], model=model
            )
            up = 0.0 if self.availability(model) else 1.0
            self.metrics.record(
                "router_backend_up",
                up,
                model=model,
                provider=spec.provider,
                self_hosted=str(self.catalog.is_self_hosted(model)).lower(),
            )


def _as_margin(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0 <= value <= 1 else None


def request_margin(body: Mapping[str, Any]) -> float | None:
    """The request's quality margin: ``auto:<margin>`` as the model, or the ``quality_margin`` field."""
    requested = str(body.get("model", "")).strip()
    named = _as_margin(requested.partition(":")[2]) if requested.lower().startswith("auto:") else None
    field_margin = body.get("quality_margin")
    if named is not None and field_margin is not None and float(field_margin) != named:
        raise InvalidRequestError(
            f"model {requested!r} and quality_margin {field_margin!r} disagree.", param="quality_margin"
        )
    return named if named is not None else (float(field_margin) if field_margin is not None else None)
