"""Cross-checks of a router config: every name it mentions exists, and rules between fields hold."""

from __future__ import annotations

from app.config.schema import BUILTIN_STRATEGIES, RouterConfig


def check_references(
    config: RouterConfig, *, declared: dict[str, set[str]] | None = None, pruned: list[str] | None = None
) -> list[tuple[str, str]]:
    """Every name a config mentions must exist; returns (path, problem) pairs.

    ``declared`` and ``pruned`` come from a file with schema errors, checked without its invalid
    values (``pruned``): a name the file declares counts as existing, and a rule that needs a
    value left out is not checked."""
    from app.routing.conditions import check_condition  # local: routing depends on config

    declared = declared or {}
    pruned = pruned or []

    def intact(*sections: str) -> bool:
        return not any(_overlaps(section, pruned) for section in sections)

    problems: list[tuple[str, str]] = []
    models = set(config.models) | declared.get("models", set())
    providers = set(config.providers) | declared.get("providers", set())
    builtin = {s.lower() for s in BUILTIN_STRATEGIES}
    strategies = set(BUILTIN_STRATEGIES) | set(config.strategies) | declared.get("strategies", set())

    def need_models(path: str, names: list[str]) -> None:
        for i, name in enumerate(names):
            if name not in models:
                problems.append((f"{path}.{i}", f"unknown model {name!r}; expected one of {sorted(models)}"))

    for name, provider in config.providers.items():
        if provider.kind == "openai_compatible" and not provider.base_url:
            problems.append(
                (f"providers.{name}.base_url", "an openai_compatible provider needs its base_url")
            )
        if provider.self_hosted and provider.kind != "openai_compatible":
            problems.append(
                (f"providers.{name}.self_hosted", "only openai_compatible providers take this flag")
            )
    for name, spec in config.models.items():
        if spec.provider not in providers:
            problems.append(
                (
                    f"models.{name}.provider",
                    f"unknown provider {spec.provider!r}; expected one of {sorted(providers)}",
                )
            )
        elif (
            spec.provider in config.providers
            and config.providers[spec.provider].is_self_hosted
            and spec.pricing.source != "fixed"
        ):
            problems.append((f"models.{name}.pricing", "self-hosted models need a fixed price"))
        if (
            spec.quality_role is not None
            and spec.quality_role not in config.quality.roles
            and intact("quality")
        ):
            problems.append(
                (
                    f"models.{name}.quality_role",
                    f"unknown role {spec.quality_role!r}; expected one of {sorted(config.quality.roles)}",
                )
            )
    for branch, names in config.routing.auto.model_dump().items():
        need_models(f"routing.auto.{branch}", names)
    for name, chain in config.routing.fallbacks.items():
        if name not in models:
            problems.append(
                (f"routing.fallbacks.{name}", f"unknown model {name!r}; expected one of {sorted(models)}")
            )
        need_models(f"routing.fallbacks.{name}", chain)
    if config.routing.default_strategy not in strategies:
        problems.append(("routing.default_strategy", f"unknown strategy {config.routing.default_strategy!r}"))
    for sname, strategy in config.strategies.items():
        base = f"strategies.{sname}"
        if sname.lower() in builtin:
            problems.append(
                (base, "a custom strategy cannot reuse a built-in strategy's name (names ignore case)")
            )
        if strategy.otherwise not in strategies:
            problems.append((f"{base}.otherwise", f"unknown strategy {strategy.otherwise!r}"))
        for i, rule in enumerate(strategy.decision_tree):
            rpath = f"{base}.decision_tree.{i}"
            problems += [(f"{rpath}.condition.{k}", msg) for k, msg in check_condition(rule.condition)]
            need_models(f"{rpath}.action.models", rule.action.models)
            if rule.action.provider and rule.action.provider not in providers:
                problems.append((f"{rpath}.action.provider", f"unknown provider {rule.action.provider!r}"))
            if rule.action.strategy and rule.action.strategy not in strategies:
                problems.append((f"{rpath}.action.strategy", f"unknown strategy {rule.action.strategy!r}"))
    for sname in config.load.spill:
        if sname not in strategies:
            problems.append((f"load.spill.{sname}", f"unknown strategy {sname!r}"))
    problems += _alias_clashes(config)
    budget_keys = {p.budget_key or n for n, p in config.providers.items()} | {"total"}
    budget_keys |= declared.get("providers", set()) | declared.get("budget_keys", set())
    for key in config.cost_rules.daily_budgets:
        if key not in budget_keys:
            problems.append(
                (
                    f"cost_rules.daily_budgets.{key}",
                    f"unknown budget key; expected one of {sorted(budget_keys)}",
                )
            )
    problems += _delegation_cycles(config)
    models_ok = intact("models", "providers") and not [p for p in problems if p[0].startswith("models.")]
    in_app = [m for m in config.models if config.provider_of(m).runs_in_this_app] if models_ok else []
    if config.serving.engine == "cpu" and config.serving.cpu is None and in_app and intact("serving"):
        problems.append(("serving.cpu", "the cpu engine needs its settings (model, demo_fallback)"))
    if config.serving.engine == "vllm" and models_ok and intact("serving"):
        served = set(config.serving.vllm.models) if config.serving.vllm else set()
        for name in sorted(set(in_app) - served):
            problems.append((f"serving.vllm.models.{name}", "a self-hosted model needs its vLLM settings"))
        for name in sorted(served - set(in_app)):
            problems.append((f"serving.vllm.models.{name}", "not a self-hosted model of the catalog"))
        problems += _scale_down_after_spill(config)
    return problems


def _scale_down_after_spill(config: RouterConfig) -> list[tuple[str, str]]:
    """Replicas must not leave while traffic still spills off them: when a burst ends, spill-over
    stops after ``load.spill_cool_down_s``, and only then is the load back on the replicas."""
    cool_down = config.load.spill_cool_down_s
    models = config.serving.vllm.models if config.serving.vllm else {}
    return [
        (
            f"serving.vllm.models.{name}.downscale_delay_s",
            f"must exceed load.spill_cool_down_s ({cool_down:g} s), so that traffic returns to the "
            "replicas before they are removed",
        )
        for name, settings in models.items()
        if settings.downscale_delay_s <= cool_down
    ]


def _delegation_cycles(config: RouterConfig) -> list[tuple[str, str]]:
    """Custom strategies that hand over to each other in a loop would never decide."""
    edges = {
        name: {s.otherwise} | {r.action.strategy for r in s.decision_tree if r.action.strategy}
        for name, s in config.strategies.items()
    }
    problems = []
    for start in edges:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in edges.get(node, ()):
                if nxt == start:
                    problems.append(
                        (f"strategies.{start}", "delegates in a loop: " + " -> ".join([*path, nxt]))
                    )
                    stack.clear()
                    break
                if nxt in edges and nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    return problems


def _alias_clashes(config: RouterConfig) -> list[tuple[str, str]]:
    """Names resolve case-insensitively, so clashes are found that way too."""
    seen: dict[str, str] = {name.lower(): name for name in config.models}
    problems = []
    for name, spec in config.models.items():
        for i, alias in enumerate(spec.aliases):
            owner = seen.setdefault(alias.lower(), name)
            if owner != name:
                problems.append((f"models.{name}.aliases.{i}", f"{alias!r} already names {owner!r}"))
    strategies: dict[str, str] = {}
    for strategy in config.strategies:
        if strategy.lower() in seen:
            problems.append((f"strategies.{strategy}", f"{strategy!r} is also a model name"))
        other = strategies.setdefault(strategy.lower(), strategy)
        if other != strategy:
            problems.append((f"strategies.{strategy}", f"{strategy!r} and {other!r} differ only in case"))
    return problems


def _overlaps(path: str, pruned: list[str]) -> bool:
    return any(path == p or path.startswith(p + ".") or p.startswith(path + ".") for p in pruned)
