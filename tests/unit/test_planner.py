"""The planner: what never gets into a plan, fallback chains, and the errors when nothing can serve."""

from __future__ import annotations

import pytest

from app.errors import (
    ContextWindowExceededError,
    NoHealthyBackendError,
    NotFoundError,
    RouterError,
    UnsupportedFeatureError,
)

from .conftest import BUILTIN_STRATEGIES, make_features

SELF_HOSTED = {"mistral-7b-instruct", "mistral-7b-fast", "codellama-13b"}

# Request shapes, to run every strategy against.
SHAPES = {
    "simple": make_features(task="simple_qa", complexity=0.2),
    "code generation": make_features(task="code_generation", complexity=0.3),
    "complex": make_features(complexity=0.9),
    "urgent": make_features(latency_ms=100),
    "long": make_features(tokens=150_000, tokens_exact=False, task="summarization"),
}


def models_of(plan) -> list[str]:
    return [t.model for t in plan.targets]


def down(*names: str, why: str = "circuit breaker open"):
    def availability(model: str) -> str | None:
        return why if model in names else None

    return availability


def plan_or_none(router, features, strategy, availability=None):
    """The plan, or None when the strategy legitimately cannot serve (a 4xx client error)."""
    try:
        if availability is None:
            return router.planner.plan(features, strategy)
        return router.planner.plan(features, strategy, availability)
    except RouterError as exc:
        assert 400 <= exc.status_code < 500, exc
        return None


# --- what never gets into a plan ---------------------------------------------------------------------


@pytest.mark.parametrize("strategy", BUILTIN_STRATEGIES)
@pytest.mark.parametrize("task", ["simple_qa", "code_generation"])
def test_no_target_too_small_for_the_prompt(router, strategy, task):
    features = make_features(tokens=40_000, task=task)
    plan = plan_or_none(router, features, strategy)
    if plan is None:
        assert strategy == "self_hosted_only"
        return
    assert not set(models_of(plan)) & SELF_HOSTED, models_of(plan)
    for target in plan.targets:
        assert (
            router.catalog.models[target.model].context_window
            >= 40_000 + router.config.routing.default_max_tokens
        )


def test_the_completion_counts_against_the_window(router):
    # 30K prompt + 1K completion fits mistral's 32,768-token window; + 4K does not
    assert (
        router.planner.plan(make_features(tokens=30_000, max_tokens=1_000), "rules").primary.model
        == "mistral-7b-instruct"
    )
    plan = router.planner.plan(make_features(tokens=30_000, max_tokens=4_000), "rules")
    assert "mistral-7b-instruct" not in models_of(plan)
    assert "context window" in dict(plan.dropped)["mistral-7b-instruct"]


def test_a_completion_larger_than_a_models_output_limit_is_clamped_not_overflowed(router):
    # A model whose output limit is below the request's max_tokens can still serve it, with
    # max_tokens clamped to that limit (see RouterService), so the window check uses the clamped size.
    features = make_features(tokens=30_000, max_tokens=4_000)
    plan = router.planner.plan(features, "rules")
    for target in plan.targets:
        spec = router.catalog.models[target.model]
        assert spec.context_window >= 30_000 + min(4_000, spec.max_output_tokens), target
    assert "mistral-7b-fast" in models_of(plan)  # 30,000 + 2,048 fits its 32,768 window
    assert "mistral-7b-instruct" not in models_of(plan)  # 30,000 + 4,000 does not


def test_estimated_counts_get_headroom(router):
    exact = router.planner.plan(make_features(tokens=1_000_000, tokens_exact=True), "rules")
    assert set(models_of(exact)) == {"gemini-pro", "gemini-flash"}  # the only 1M+ windows
    with pytest.raises(ContextWindowExceededError):
        router.planner.plan(make_features(tokens=1_000_000, tokens_exact=False), "rules")


@pytest.mark.parametrize("strategy", BUILTIN_STRATEGIES)
def test_no_target_without_vision_for_images(router, strategy):
    plan = plan_or_none(router, make_features(has_images=True), strategy)
    if plan is None:
        assert strategy == "self_hosted_only"
        return
    for target in plan.targets:
        assert router.catalog.has_capability(target.model, "vision"), target


def test_images_with_self_hosted_only_is_unsupported(router):
    with pytest.raises(UnsupportedFeatureError) as info:
        router.planner.plan(make_features(has_images=True), "self_hosted_only")
    assert info.value.status_code == 400
    assert info.value.code == "unsupported_feature"


@pytest.mark.parametrize("strategy", BUILTIN_STRATEGIES)
@pytest.mark.parametrize("task", ["simple_qa", "code_generation"])
def test_no_target_without_tools_for_tool_requests(router, strategy, task):
    plan = router.planner.plan(make_features(has_tools=True, task=task), strategy)
    for target in plan.targets:
        assert router.catalog.has_capability(target.model, "tools"), target


def test_tools_request_whose_picks_lack_tools_still_gets_a_tools_model(router, raw_config, build_router):
    # auto's code branch is codellama (no tools); its fallback chain has one that does
    plan = router.planner.plan(make_features(task="code_generation", has_tools=True), "rules")
    assert plan.primary.model == "mistral-7b-instruct"
    assert ("codellama-13b", "no tool-calling capability") in plan.dropped

    # a custom strategy that only names a model without tools
    raw_config["strategies"]["code_only"] = {
        "decision_tree": [{"condition": {}, "action": {"models": ["codellama-13b"]}}]
    }
    custom = build_router(raw_config).planner.plan(make_features(has_tools=True), "code_only")
    assert router.catalog.has_capability(custom.primary.model, "tools")


def test_tools_request_never_falls_back_to_a_model_without_tools(router):
    """When only models without tools are up, the answer is 503, not a model that ignores the tools."""
    with_tools = [m for m in router.catalog.models if router.catalog.has_capability(m, "tools")]
    with pytest.raises(NoHealthyBackendError):
        router.planner.plan(make_features(has_tools=True, task="code_generation"), "rules", down(*with_tools))


@pytest.mark.parametrize("strategy", BUILTIN_STRATEGIES)
@pytest.mark.parametrize(
    ("need", "capability"), [("needs_json", "json_mode"), ("needs_logprobs", "logprobs")]
)
def test_json_and_logprobs_requests_go_only_to_models_that_have_them(router, strategy, need, capability):
    plan = router.planner.plan(make_features(**{need: True}), strategy)
    assert plan.targets
    for target in plan.targets:
        assert router.catalog.has_capability(target.model, capability), target
    for model, why in plan.dropped:
        if not router.catalog.has_capability(model, capability):
            assert capability in why


@pytest.mark.parametrize(
    ("need", "param", "dropped_reason"),
    [
        ("needs_json", "response_format", "no json_mode capability for response_format"),
        ("needs_logprobs", "logprobs", "no logprobs capability"),
    ],
)
def test_a_model_named_without_the_capability_is_a_400_naming_the_parameter(
    router, need, param, dropped_reason
):
    features = make_features(**{need: True})
    assert router.planner.unfit_reason("claude-haiku", features) == dropped_reason
    with pytest.raises(UnsupportedFeatureError) as info:
        router.planner.plan_explicit("claude-haiku", features)
    assert info.value.status_code == 400 and info.value.param == param


def test_no_model_with_json_mode_is_a_400_naming_response_format(raw_config, build_router):
    for spec in raw_config["models"].values():
        spec["capabilities"] = [c for c in spec.get("capabilities", []) if c != "json_mode"]
    custom = build_router(raw_config)
    with pytest.raises(UnsupportedFeatureError) as info:
        custom.planner.plan(make_features(needs_json=True), "auto")
    assert info.value.param == "response_format" and "JSON output" in info.value.message


def test_needs_no_single_model_has_together_name_the_first_parameter(raw_config, build_router):
    for name, spec in raw_config["models"].items():  # tools only on Claude, JSON only elsewhere
        claude = name.startswith("claude")
        spec["capabilities"] = [c for c in spec.get("capabilities", []) if (c == "tools") == claude]
    custom = build_router(raw_config)
    with pytest.raises(UnsupportedFeatureError) as info:
        custom.planner.plan(make_features(has_tools=True, needs_json=True), "auto")
    assert info.value.param == "tools" and "together" in info.value.message


@pytest.mark.parametrize("strategy", [*BUILTIN_STRATEGIES, "private_first"])
@pytest.mark.parametrize("features", SHAPES.values(), ids=SHAPES.keys())
def test_targets_have_reasons_and_no_duplicates(router, strategy, features):
    plan = plan_or_none(router, features, strategy)
    if plan is None:
        return
    names = models_of(plan)
    assert len(names) == len(set(names))
    assert names, "a plan has a primary target"
    assert len(names) <= 1 + router.config.routing.max_fallbacks
    for target in plan.targets:
        assert target.reason.strip()
        assert target.provider == router.catalog.provider_name(target.model)
    assert plan.primary == plan.targets[0] and plan.fallbacks == plan.targets[1:]


# --- availability ----------------------------------------------------------------------------------------


def test_unavailable_models_are_dropped_with_their_reason(router):
    plan = router.planner.plan(
        make_features(), "rules", down("mistral-7b-instruct", why="breaker open since 12:01")
    )
    assert "mistral-7b-instruct" not in models_of(plan)
    assert plan.primary.model == "mistral-7b-fast"  # the next in mistral's fallback chain
    assert ("mistral-7b-instruct", "breaker open since 12:01") in plan.dropped


def test_everything_unavailable_is_503_with_the_reasons(router):
    def availability(model: str) -> str:
        return f"{model} breaker open"

    with pytest.raises(NoHealthyBackendError) as info:
        router.planner.plan(make_features(), "rules", availability)
    err = info.value
    assert err.status_code == 503
    assert "mistral-7b-instruct breaker open" in err.message


# --- fallback chains ---------------------------------------------------------------------------------------


def pin(raw_config: dict, model: str) -> None:
    raw_config["strategies"]["pinned"] = {"decision_tree": [{"condition": {}, "action": {"models": [model]}}]}


@pytest.mark.parametrize(
    "model",
    [
        "mistral-7b-instruct",
        "mistral-7b-fast",
        "codellama-13b",
        "gemini-flash",
        "gemini-pro",
        "claude-opus",
        "gpt",
        "claude-haiku",
    ],
)
def test_fallbacks_follow_the_configured_chain(config, raw_config, build_router, model):
    pin(raw_config, model)
    plan = build_router(raw_config).planner.plan(make_features(), "pinned")
    chain = config.routing.fallbacks[model][: config.routing.max_fallbacks]
    assert models_of(plan) == [model, *chain]
    assert all(t.reason == f"fallback for {model}" for t in plan.fallbacks)


def test_seed_failover_chain_for_the_default_route(router):
    """The seed's failover: self-hosted -> Gemini Flash -> Claude Haiku."""
    names = models_of(router.planner.plan(make_features(), "rules"))
    assert names[0] == "mistral-7b-instruct"
    assert names.index("gemini-flash") < names.index("claude-haiku")


def test_fallbacks_skip_unfit_models_and_keep_order(config, raw_config, build_router):
    pin(raw_config, "codellama-13b")
    plan = build_router(raw_config).planner.plan(make_features(), "pinned", down("mistral-7b-instruct"))
    assert models_of(plan) == ["codellama-13b", "gemini-flash", "claude-haiku"]


@pytest.mark.parametrize("max_fallbacks", [0, 1, 2, 3, 5])
def test_max_fallbacks_bounds_the_plan(raw_config, build_router, max_fallbacks):
    raw_config["routing"]["max_fallbacks"] = max_fallbacks
    router = build_router(raw_config)
    for strategy in BUILTIN_STRATEGIES:
        plan = router.planner.plan(make_features(), strategy)
        assert len(plan.fallbacks) <= max_fallbacks
    auto = router.planner.plan(make_features(), "rules")
    expected = ["mistral-7b-instruct", "mistral-7b-fast", "gemini-flash", "claude-haiku"]
    assert models_of(auto)[:4] == expected[: 1 + max_fallbacks]
    assert len(auto.fallbacks) == max_fallbacks


# --- nothing can serve -------------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", BUILTIN_STRATEGIES)
def test_too_long_for_every_model_is_context_length_exceeded(router, strategy):
    with pytest.raises(ContextWindowExceededError) as info:
        router.planner.plan(make_features(tokens=2_000_000), strategy)
    err = info.value
    assert err.status_code == 400
    assert err.code == "context_length_exceeded"
    assert err.error_type == "invalid_request_error"
    assert "2,000,000" in err.message


def test_too_long_for_self_hosted_only_names_its_largest_window(router):
    with pytest.raises(ContextWindowExceededError) as info:
        router.planner.plan(make_features(tokens=40_000), "self_hosted_only")
    assert "32,768" in info.value.message


def test_context_error_wins_over_unavailability(router):
    def availability(model: str) -> str:
        return "down"

    with pytest.raises(ContextWindowExceededError):
        router.planner.plan(make_features(tokens=2_000_000), "rules", availability)


# --- an explicit model --------------------------------------------------------------------------------------


def test_explicit_model_gets_exactly_that_model(router):
    plan = router.planner.plan_explicit("claude-haiku", make_features())
    assert models_of(plan) == ["claude-haiku"]
    assert plan.primary.reason


def test_explicit_model_unavailable_is_503_not_a_silent_switch(router):
    with pytest.raises(NoHealthyBackendError) as info:
        router.planner.plan_explicit(
            "claude-haiku", make_features(), down("claude-haiku", why="rate limited upstream")
        )
    assert info.value.status_code == 503
    assert "rate limited upstream" in info.value.message


def test_explicit_model_too_small_is_context_length_exceeded(router):
    with pytest.raises(ContextWindowExceededError) as info:
        router.planner.plan_explicit("mistral-7b-instruct", make_features(tokens=40_000))
    assert info.value.status_code == 400
    assert "32,768" in info.value.message


def test_explicit_model_without_tools_is_unsupported(router):
    with pytest.raises(UnsupportedFeatureError) as info:
        router.planner.plan_explicit("codellama-13b", make_features(has_tools=True))
    assert info.value.param == "tools"


def test_unknown_strategy_is_404(router):
    with pytest.raises(NotFoundError) as info:
        router.planner.plan(make_features(), "cheapest_possible")
    err = info.value
    assert err.status_code == 404
    assert err.param == "routing_strategy"
    assert "cheapest_possible" in err.message
    assert "auto" in err.message and "private_first" in err.message  # says what exists
