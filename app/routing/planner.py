"""The planner: a strategy's preference in, a ``RoutePlan`` out.

A plan is a primary target plus an ordered fallback chain, each with a human-readable reason.
Candidates come in this order: the strategy's quality ranking of the models that fit (``auto``),
its picks, each pick's configured fallback chain, then the rest of the models the strategy allows.
Every plan carries the predicted quality of each model that fits the request. A candidate is
dropped, with the reason kept for debugging, when the request would overflow its context window,
when it lacks a capability the request needs (images, tools, JSON output, log-probabilities), or
when ``availability`` says it cannot serve now.

Cache affinity (``app.routing.affinity``): a ``Preferred`` model (the one that recently answered
the request's long prefix) moves to the front when the strategy allows it, it fits and can serve,
and it is worth it over the strategy's first choice; its reason says so.

Spill-over (``app.load``): with a ``latency`` check, candidates that would miss the request's
latency need now (a busy self-hosted model) are passed over for the first one that meets it,
whose reason then says why; the passed-over ones stay in the plan as its last fallbacks. When no
candidate meets the need, the plan keeps its order: spilling would not help.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from app.errors import (
    BudgetExhaustedError,
    BudgetReason,
    ContextWindowExceededError,
    LastingReason,
    NoHealthyBackendError,
    UnsupportedFeatureError,
)
from app.routing.affinity import Prefix
from app.routing.analysis import Features
from app.routing.catalog import Catalog
from app.routing.strategies import Preference, StrategyRegistry, margin_of

# Returns None when the model can serve now, else why not.
Availability = Callable[[str], "str | None"]
# Returns None when the model meets the request's latency need now, else why not (spill-over).
LatencyCheck = Callable[[str], "str | None"]
ESTIMATE_MARGIN = 1.05  # headroom on an estimated (not exact) token count


def always_available(_model: str) -> str | None:
    return None


NEED_WORDS = {
    "vision": "image input",
    "tools": "tool calling",
    "json_mode": "JSON output",
    "logprobs": "log probabilities",
}


def needs(features: Features) -> list[tuple[str, str, str]]:
    """(capability, request parameter, why a model without it is unfit) for each the request needs."""
    out = []
    if features.has_images:
        out.append(("vision", "messages", "no vision capability for image input"))
    if features.has_tools:
        out.append(("tools", "tools", "no tool-calling capability"))
    if features.needs_json:
        out.append(("json_mode", "response_format", "no json_mode capability for response_format"))
    if features.needs_logprobs:
        out.append(("logprobs", "logprobs", "no logprobs capability"))
    return out


@dataclass(frozen=True)
class Preferred:
    """A model this request should go to where it may, and why (cache affinity)."""

    model: str
    reason: str
    worth: Callable[[str], bool]  # given the strategy's first choice: whether to prefer ``model``


@dataclass(frozen=True)
class Target:
    model: str
    provider: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"model": self.model, "provider": self.provider, "reason": self.reason}


@dataclass(frozen=True)
class RoutePlan:
    strategy: str
    targets: list[Target]
    features: Features
    dropped: list[tuple[str, str]] = field(default_factory=list)
    quality: dict[str, float] = field(default_factory=dict)  # predicted, per model that fits the request
    margin: float | None = None  # the quality margin the decision used (quality-ranked strategies only)
    spilled: tuple[str, ...] = ()  # models passed over because they would miss the latency need
    prefix: Prefix | None = None  # the request's long stable prefix, by hash (set by the service)
    affinity: str | None = None  # the model cache affinity put first, if it did

    @property
    def primary(self) -> Target:
        return self.targets[0]

    @property
    def fallbacks(self) -> list[Target]:
        return self.targets[1:]


class Planner:
    def __init__(self, catalog: Catalog, strategies: StrategyRegistry) -> None:
        self.catalog = catalog
        self.strategies = strategies

    def plan(
        self,
        features: Features,
        strategy: str,
        availability: Availability = always_available,
        latency: LatencyCheck | None = None,
        preferred: Preferred | None = None,
    ) -> RoutePlan:
        preference = self.strategies.prefer(strategy, features)
        quality = self.catalog.quality.predict(features.quality_inputs, self.fitting(features))
        ranked: list[tuple[str, str]] = []
        if preference.rank is not None:
            ranked = preference.rank(
                {m: q for m, q in quality.items() if preference.allowed(m) and availability(m) is None}
            )
        candidates = self._candidates(preference, ranked)
        plan = self._choose(strategy, features, candidates, availability, latency, preferred)
        margin = margin_of(features, self.catalog) if preference.rank is not None else None
        return replace(plan, quality=quality, margin=margin)

    def plan_explicit(
        self, model: str, features: Features, availability: Availability = always_available
    ) -> RoutePlan:
        """A model named by the client: no routing, and no silent switch to another model."""
        plan = self._choose("explicit", features, [(model, "requested by the client")], availability)
        return replace(
            plan, quality=self.catalog.quality.predict(features.quality_inputs, self.fitting(features))
        )

    def fitting(self, features: Features) -> list[str]:
        """The models that can take this request whatever their health: window and capabilities."""
        return [m for m in self.catalog.models if self.unfit_reason(m, features) is None]

    def _candidates(self, preference: Preference, ranked: list[tuple[str, str]]) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        seen: set[str] = set()

        def add(model: str, reason: str) -> None:
            if model not in seen and preference.allowed(model):
                seen.add(model)
                out.append((model, reason))

        for model, reason in [*ranked, *preference.picks]:
            add(model, reason)
        for model, _ in list(out):
            for fallback in self.catalog.fallbacks(model):
                add(fallback, f"fallback for {model}")
        for model in preference.rest:
            add(model, preference.rest_reason)
        return out

    def unfit_reason(self, model: str, features: Features) -> str | None:
        """Why ``model`` cannot take this request whatever its health, or None."""
        spec = self.catalog.models[model]
        output = min(
            features.max_tokens or self.catalog.config.routing.default_max_tokens, spec.max_output_tokens
        )
        prompt = features.tokens if features.tokens_exact else int(features.tokens * ESTIMATE_MARGIN)
        if prompt + output > spec.context_window:
            return (
                f"context window {spec.context_window:,} < {prompt:,} prompt + {output:,} completion tokens"
            )
        for capability, _param, why in needs(features):
            if capability not in spec.capabilities:
                return why
        return None

    def _choose(
        self,
        strategy: str,
        features: Features,
        candidates: list[tuple[str, str]],
        availability: Availability,
        latency: LatencyCheck | None = None,
        preferred: Preferred | None = None,
    ) -> RoutePlan:
        limit = 1 + self.catalog.config.routing.max_fallbacks
        reorder = latency is not None or preferred is not None
        targets: list[Target] = []
        dropped: list[tuple[str, str]] = []
        for model, reason in candidates:
            why_not = self.unfit_reason(model, features) or availability(model)
            if why_not:
                dropped.append((model, why_not))
            elif reorder or len(targets) < limit:
                targets.append(Target(model, self.catalog.provider_name(model), reason))
        if not targets:
            raise self._no_target_error(features, candidates, dropped, availability)
        affinity: str | None = None
        if preferred is not None:
            targets, affinity = self._prefer(targets, preferred)
        spilled: tuple[str, ...] = ()
        if latency is not None:
            targets, spilled = self._spill(targets, latency, limit)
        return RoutePlan(
            strategy,
            targets[:limit],
            features,
            dropped,
            spilled=spilled,
            affinity=affinity,
        )

    @staticmethod
    def _prefer(targets: list[Target], preferred: Preferred) -> tuple[list[Target], str | None]:
        """``preferred`` first, where it may serve and is worth it over the first choice."""
        index = next((i for i, t in enumerate(targets) if t.model == preferred.model), None)
        if index is None or (index > 0 and not preferred.worth(targets[0].model)):
            return targets, None
        target = targets[index]
        why = target.reason if index == 0 else f"no dearer than {targets[0].model}"
        lead = replace(target, reason=f"{preferred.reason}; {why}")
        return [lead, *targets[:index], *targets[index + 1 :]], target.model

    @staticmethod
    def _spill(
        targets: list[Target], latency: LatencyCheck, limit: int
    ) -> tuple[list[Target], tuple[str, ...]]:
        """The first target that meets the latency need leads, saying why the ones before it were
        passed over; they follow it in order. Targets after it are not checked."""
        passed: list[tuple[Target, str]] = []
        for i, target in enumerate(targets):
            why = latency(target.model)
            if why is None:
                if not passed:
                    return targets, ()
                lead = replace(target, reason=f"{passed[0][1]}; {target.reason}")
                rest = targets[i + 1 : i + 1 + max(0, limit - 1 - len(passed))]
                return [lead, *rest, *(t for t, _ in passed)], tuple(t.model for t, _ in passed)
            passed.append((target, why))
        return targets, ()

    def _no_target_error(
        self,
        features: Features,
        candidates: list[tuple[str, str]],
        dropped: list[tuple[str, str]],
        availability: Availability,
    ) -> Exception:
        """Why no candidate can serve, as the error a client can act on.

        The request is judged against the models that could ever serve it here: those not out for
        a lasting reason (a missing provider key). When none of them has the window or the
        capability it needs, the client must change the request: a 400, whatever the content that
        made the prompt long. Only a cause that may clear (a replica down, a breaker open) makes a
        retryable 503; one that will not is a 503 with ``x-should-retry: false``.
        """
        names = [m for m, _ in candidates] or list(self.catalog.models)
        unfit = {m: self.unfit_reason(m, features) for m in names}
        off = {m: why for m in names if isinstance(why := availability(m), LastingReason)}
        usable = [m for m in names if m not in off] or names

        def fits_window(model: str) -> bool:
            return not (unfit[model] or "").startswith("context window")

        def unavailable(models: list[str], what: str) -> str:
            out = [f"{m} ({off[m]})" for m in models if m in off and m not in usable]
            return f" {what} unavailable here: {', '.join(out[:6])}." if out else ""

        fitting = [m for m in usable if fits_window(m)]
        if not fitting:
            largest = max(self.catalog.models[m].context_window for m in usable)
            larger = [m for m in names if fits_window(m)]
            return ContextWindowExceededError(
                f"The request needs about {features.tokens:,} prompt tokens plus its completion, more than "
                f"the largest context window it may use ({largest:,} tokens)."
                f"{unavailable(larger, 'Larger windows are')}",
                param="messages",
            )
        capable = [m for m in fitting if unfit[m] is None]
        if not capable:
            wanted = needs(features)
            have = [set(self.catalog.models[m].capabilities) for m in fitting]
            missing = [n for n in wanted if not any(n[0] in c for c in have)]
            able = [m for m in names if fits_window(m) and unfit[m] is None]
            hint = unavailable(able, "The models that do are")
            if missing:  # no model has this one
                capability, param, _ = missing[0]
                return UnsupportedFeatureError(
                    f"No model this request may use supports {NEED_WORDS[capability]} (`{param}`).{hint}",
                    param=param,
                )
            words = " and ".join(f"{NEED_WORDS[c]} (`{p}`)" for c, p, _ in wanted)
            return UnsupportedFeatureError(
                f"No model this request may use supports {words} together.{hint}", param=wanted[0][1]
            )
        detail = "; ".join(f"{m}: {why}" for m, why in dropped[:6])
        if any(isinstance(why, BudgetReason) for _, why in dropped):
            return BudgetExhaustedError(
                f"Daily budgets leave no model that can serve this request ({detail})."
            )
        return NoHealthyBackendError(
            f"No model can serve this request now ({detail}).",
            retry_helps=any(m not in off for m in capable),
        )
