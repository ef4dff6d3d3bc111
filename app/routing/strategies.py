"""Strategies: features in, an ordered preference of models out, each with a reason.

A strategy only says what it would like, best first; the planner then drops what cannot serve
the request (too small a context window, a missing capability, unavailable, over budget) and
adds fallback chains. Built-in strategies are registered by name; custom ones are decision
trees from the config, walked by ``CustomTreeStrategy``.

``auto`` decides by predicted quality (``app.routing.quality``): among the models that fit the
request, the cheapest whose predicted quality is within the margin of the best. Requests too
long for the self-hosted models, or with a tight latency need, keep the keyword tree's context
and latency branches. ``rules`` is the keyword decision tree alone, for comparison.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from app.config import BUILTIN_STRATEGIES, CustomStrategy
from app.errors import NotFoundError
from app.routing.analysis import Features
from app.routing.catalog import Catalog
from app.routing.conditions import matches


@dataclass(frozen=True)
class Preference:
    """Models a strategy wants, best first, with why; ``allowed`` bounds every pick, fallbacks too."""

    picks: list[tuple[str, str]]
    allowed: Callable[[str], bool] = field(default=lambda _m: True)
    rest: list[str] = field(default_factory=list)  # the rest of the allowed models, best first
    rest_reason: str = "next best"
    # Picks that depend on which models fit the request: the planner calls it with the predicted
    # quality of those models (allowed, fitting, available, in budget) and puts its answer first.
    rank: Callable[[dict[str, float]], list[tuple[str, str]]] | None = None


StrategyFn = Callable[[Features, Catalog], Preference]


def _both(first: Callable[[str], bool], second: Callable[[str], bool]) -> Callable[[str], bool]:
    return lambda m: first(m) and second(m)


def _output_tokens(features: Features, catalog: Catalog) -> int:
    """The most a request may cost: its ``max_tokens``, else the configured default."""
    return features.max_tokens or catalog.config.routing.default_max_tokens


def _expected_output(features: Features, catalog: Catalog) -> float:
    """How long its answer is expected to be, for latency: asked for, or learned per task."""
    return catalog.load.expected_output(features.max_tokens, features.task)


def _balanced_rest(features: Features, catalog: Catalog, allowed: Callable[[str], bool]) -> list[str]:
    return catalog.by_balance(
        catalog.names(allowed),
        catalog.config.routing.balanced_weights,
        features.complexity,
        _expected_output(features, catalog),
    )


def context_or_latency_branch(features: Features, catalog: Catalog) -> tuple[list[str], str] | None:
    """The keyword tree's branches that ``auto`` keeps: prompt size, then a tight latency need."""
    t, targets = catalog.config.routing.thresholds, catalog.config.routing.auto
    approx = "" if features.tokens_exact else "~"
    if features.tokens > t.long_context_tokens:
        return (
            targets.long_context,
            f"{approx}{features.tokens:,} tokens > {t.long_context_tokens:,}: long context",
        )
    if features.tokens >= t.medium_context_tokens:
        return targets.medium_context, (
            f"{approx}{features.tokens:,} tokens >= {t.medium_context_tokens:,}: "
            "moderate context, cheap cloud"
        )
    if features.latency_ms is not None and features.latency_ms < t.low_latency_ms:
        soonest = catalog.by_latency(targets.low_latency, _expected_output(features, catalog))
        return soonest, f"latency need {features.latency_ms} ms < {t.low_latency_ms} ms"
    return None


def auto_branch(features: Features, catalog: Catalog) -> tuple[list[str], str]:
    """The routing guide's keyword decision tree (``rules``), step by step; returns the branch's
    models and the reason."""
    t, targets = catalog.config.routing.thresholds, catalog.config.routing.auto
    kept = context_or_latency_branch(features, catalog)
    if kept is not None and not kept[1].startswith("latency"):
        return kept
    if features.task == "code_generation":
        return targets.code_generation, "code generation task"
    if features.complexity >= t.high_complexity:
        return (
            targets.high_complexity,
            f"complexity {features.complexity:.2f} >= {t.high_complexity}: premium",
        )
    if kept is not None:
        return kept
    return targets.default, "simple request: cost-effective self-hosted default"


def margin_of(features: Features, catalog: Catalog) -> float:
    return features.quality_margin if features.quality_margin is not None else catalog.config.quality.margin


def rank_by_quality(
    features: Features, catalog: Catalog, label: str
) -> Callable[[dict[str, float]], list[tuple[str, str]]]:
    """Given the predicted quality of the models that fit (and may serve now), the cheapest whose
    quality is within the margin of the best (its configured fallback chain follows it). A
    code-generation request looks at code-capable models (the catalog's code model among them)
    when any fits."""
    margin = margin_of(features, catalog)
    output = _output_tokens(features, catalog)

    def rank(quality: dict[str, float]) -> list[tuple[str, str]]:
        pool = list(quality)
        if features.task == "code_generation":
            pool = [m for m in pool if catalog.has_capability(m, "code")] or pool
        if not pool:
            return []
        best = max(quality[m] for m in pool)
        near = catalog.by_cost([m for m in pool if quality[m] >= best - margin], features.tokens, output)
        choice = near[0]
        return [
            (
                choice,
                f"{label}: cheapest with predicted quality {quality[choice]:.2f}, "
                f"within {margin:g} of the best ({best:.2f})",
            )
        ]

    return rank


def _auto_preference(
    features: Features, catalog: Catalog, allowed: Callable[[str], bool], label: str
) -> Preference:
    rest = _balanced_rest(features, catalog, allowed)
    kept = context_or_latency_branch(features, catalog)
    if kept is not None:
        models, why = kept
        return Preference(
            [(m, f"{label}: {why}") for m in models], allowed, rest, f"{label}: next best by balanced score"
        )
    return Preference(
        [],
        allowed,
        rest,
        f"{label}: next best by balanced score",
        rank=rank_by_quality(features, catalog, label),
    )


def auto(features: Features, catalog: Catalog) -> Preference:
    return _auto_preference(features, catalog, lambda _m: True, "auto")


def self_hosted_only(features: Features, catalog: Catalog) -> Preference:
    return _auto_preference(features, catalog, catalog.is_self_hosted, "self_hosted_only")


def cloud_only(features: Features, catalog: Catalog) -> Preference:
    return _auto_preference(features, catalog, lambda m: not catalog.is_self_hosted(m), "cloud_only")


def rules(features: Features, catalog: Catalog) -> Preference:
    models, why = auto_branch(features, catalog)
    allowed: Callable[[str], bool] = lambda _m: True  # noqa: E731
    return Preference(
        picks=[(m, f"rules: {why}") for m in models],
        allowed=allowed,
        rest=_balanced_rest(features, catalog, allowed),
        rest_reason="rules: next best by balanced score",
    )


def _ranked(label: str, why: str, order: list[str]) -> Preference:
    return Preference(picks=[(m, f"{label}: {why}") for m in order])


def fast(features: Features, catalog: Catalog) -> Preference:
    """Soonest by the live estimate: the first token, or the whole answer when it is long."""
    order = catalog.by_latency(catalog.names(), _expected_output(features, catalog))
    return _ranked("fast", "lowest latency now", order)


def quality(features: Features, catalog: Catalog) -> Preference:
    return _ranked("quality", "highest quality", catalog.by_quality(catalog.names()))


def cost(features: Features, catalog: Catalog) -> Preference:
    order = catalog.by_cost(catalog.names(), features.tokens, _output_tokens(features, catalog))
    return _ranked("cost", "cheapest for this request", order)


def long_context(features: Features, catalog: Catalog) -> Preference:
    threshold = catalog.config.routing.thresholds.long_context_tokens
    big = catalog.names(lambda m: catalog.models[m].context_window >= threshold)
    order = catalog.by_context(big)
    rest = catalog.by_context(catalog.names(lambda m: m not in big))
    return Preference(
        picks=[(m, f"long_context: {catalog.models[m].context_window:,}-token window") for m in order],
        rest=rest,
        rest_reason="long_context: next largest window",
    )


def balanced(features: Features, catalog: Catalog) -> Preference:
    w = catalog.config.routing.balanced_weights
    why = (
        f"best weighted score (cost {w.cost}, latency {w.latency}, quality {w.quality}; "
        f"complexity {features.complexity:.2f})"
    )
    return _ranked("balanced", why, _balanced_rest(features, catalog, lambda _m: True))


# The names are the config's one list (the config validates strategy names without importing
# routing); each name's function is the one defined above under that name.
BUILTIN: dict[str, StrategyFn] = {name: globals()[name] for name in BUILTIN_STRATEGIES}


class StrategyRegistry:
    """Strategies by name: the built-ins plus the config's decision trees."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.custom = dict(catalog.config.strategies)

    def names(self) -> list[str]:
        return [*BUILTIN, *self.custom]

    def __contains__(self, name: str) -> bool:
        return name in BUILTIN or name in self.custom

    def resolve(self, name: str) -> str | None:
        """The strategy ``name`` means, compared case-insensitively (``AUTO``, ``Cost``), or None."""
        if name in self:
            return name
        return next((n for n in self.names() if n.lower() == name.strip().lower()), None)

    def prefer(self, name: str, features: Features) -> Preference:
        """NOTE: custom strategies may hand over to each other; the config rejects loops at load."""
        if name in BUILTIN:
            return BUILTIN[name](features, self.catalog)
        if name not in self.custom:
            raise NotFoundError(
                f"Unknown routing strategy {name!r}; expected one of {self.names()}.",
                param="routing_strategy",
                code="strategy_not_found",
            )
        return self._walk(name, self.custom[name], features)

    def _walk(self, name: str, strategy: CustomStrategy, features: Features) -> Preference:
        catalog = self.catalog
        for i, rule in enumerate(strategy.decision_tree):
            if not matches(rule.condition, features):
                continue
            action, label = rule.action, f"{name}: rule {i + 1}"
            provider = action.provider
            allowed = (lambda m, p=provider: catalog.provider_name(m) == p) if provider else (lambda _m: True)
            if action.strategy:
                inner = self.prefer(action.strategy, features)
                bound = _both(allowed, inner.allowed)
                picks = [(m, f"{label} -> {why}") for m, why in inner.picks if bound(m)]
                return Preference(
                    picks, bound, [m for m in inner.rest if bound(m)], inner.rest_reason, inner.rank
                )
            models = action.models or _balanced_rest(features, catalog, allowed)
            return Preference(
                picks=[(m, f"{label} matched {dict(rule.condition) or 'always'}") for m in models],
                allowed=allowed,
                rest=_balanced_rest(features, catalog, allowed) if provider else [],
                rest_reason=f"{label}: next best of provider {provider}",
            )
        inner = self.prefer(strategy.otherwise, features)
        return Preference(
            [(m, f"{name}: no rule matched -> {why}") for m, why in inner.picks],
            inner.allowed,
            inner.rest,
            inner.rest_reason,
            inner.rank,
        )
