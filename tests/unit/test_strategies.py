"""Routing strategies: the eight built-ins, the ``auto`` decision tree's boundaries, config-driven
thresholds, and custom decision trees from the config."""

from __future__ import annotations

import re

import pytest

from app.config import ConfigError, parse_config
from app.errors import RouterError
from app.routing.strategies import auto_branch

from .conftest import BUILTIN_STRATEGIES, make_features

# Requests of every shape a strategy must handle (all small enough for some model).
SHAPES = {
    "simple": make_features(task="simple_qa", complexity=0.2),
    "code generation": make_features(task="code_generation", complexity=0.3),
    "complex": make_features(task="code_analysis", complexity=0.9),
    "urgent": make_features(latency_ms=200),
    "tools": make_features(has_tools=True, complexity=0.3),
    "images": make_features(has_images=True, complexity=0.3),
    "40K tokens": make_features(tokens=40_000, complexity=0.3),
    "60K tokens": make_features(tokens=60_000),
    "150K tokens": make_features(tokens=150_000, tokens_exact=False),
}


def models_of(plan) -> list[str]:
    return [t.model for t in plan.targets]


def fitting(router, features) -> list[str]:
    return [m for m in router.catalog.models if router.planner.unfit_reason(m, features) is None]


# --- the built-in strategies -------------------------------------------------------------------------


@pytest.mark.parametrize("features", SHAPES.values(), ids=SHAPES.keys())
def test_fast_picks_the_lowest_latency_model_that_fits(router, features):
    primary = router.planner.plan(features, "fast").primary.model
    best = max(router.catalog.models[m].weights.latency for m in fitting(router, features))
    assert router.catalog.models[primary].weights.latency == best


def test_fast_picks_the_disaggregated_mistral_for_plain_requests(router):
    assert router.planner.plan(make_features(), "fast").primary.model == "mistral-7b-fast"


@pytest.mark.parametrize("features", SHAPES.values(), ids=SHAPES.keys())
def test_quality_picks_a_top_quality_model(router, features):
    primary = router.planner.plan(features, "quality").primary.model
    assert router.catalog.models[primary].weights.quality == 1.0


@pytest.mark.parametrize("features", SHAPES.values(), ids=SHAPES.keys())
def test_cost_picks_the_cheapest_model_that_fits(router, features):
    output = features.max_tokens or router.config.routing.default_max_tokens

    def price(m: str) -> float:
        return router.catalog.pricer.rates(m).estimate(features.tokens, output)

    primary = router.planner.plan(features, "cost").primary.model
    assert price(primary) == min(price(m) for m in fitting(router, features))


def test_cost_prefers_self_hosted_mistral_for_small_requests(router):
    assert router.planner.plan(make_features(max_tokens=500), "cost").primary.model == "mistral-7b-instruct"


@pytest.mark.parametrize("features", SHAPES.values(), ids=SHAPES.keys())
def test_long_context_only_picks_big_windows_first(router, features):
    threshold = router.config.routing.thresholds.long_context_tokens
    preference = router.registry.prefer("long_context", features)
    assert preference.picks
    assert all(router.catalog.models[m].context_window >= threshold for m, _ in preference.picks)
    assert all(
        router.catalog.models[t.model].context_window >= threshold
        for t in router.planner.plan(features, "long_context").targets
    )


def test_long_context_primary_is_the_largest_window(router):
    assert router.planner.plan(make_features(), "long_context").primary.model == "gemini-pro"


@pytest.mark.parametrize("complexity", [0.0, 0.1, 0.2, 0.3])
def test_balanced_keeps_simple_requests_self_hosted(router, complexity):
    primary = router.planner.plan(make_features(complexity=complexity), "balanced").primary.model
    assert router.catalog.is_self_hosted(primary)


@pytest.mark.parametrize("complexity", [0.9, 1.0])
def test_balanced_sends_complex_requests_to_a_premium_cloud_model(router, complexity):
    primary = router.planner.plan(make_features(complexity=complexity), "balanced").primary.model
    assert not router.catalog.is_self_hosted(primary)
    assert router.catalog.models[primary].weights.quality >= 0.95


def test_balanced_weights_come_from_the_config(raw_config, build_router):
    raw_config["routing"]["balanced_weights"] = {"cost": 0.0, "latency": 1.0, "quality": 0.0}
    router = build_router(raw_config)
    assert router.planner.plan(make_features(), "balanced").primary.model == "mistral-7b-fast"


@pytest.mark.parametrize(
    "strategy, expected_self_hosted", [("self_hosted_only", True), ("cloud_only", False)]
)
@pytest.mark.parametrize("features", SHAPES.values(), ids=SHAPES.keys())
def test_only_strategies_never_leave_their_side(router, strategy, expected_self_hosted, features):
    """Every target, fallbacks included, stays self-hosted (or cloud); when none fits, a client error."""
    try:
        plan = router.planner.plan(features, strategy)
    except RouterError as exc:
        assert expected_self_hosted, "cloud models can take every shape here"
        assert exc.status_code == 400
        return
    assert plan.targets
    for target in plan.targets:
        assert router.catalog.is_self_hosted(target.model) is expected_self_hosted, target


@pytest.mark.parametrize("strategy, side", [("self_hosted_only", True), ("cloud_only", False)])
def test_only_strategies_do_not_escape_when_their_side_is_down(router, strategy, side):
    def down(model: str) -> str | None:
        return "breaker open" if router.catalog.is_self_hosted(model) is side else None

    with pytest.raises(RouterError) as info:
        router.planner.plan(make_features(), strategy, down)
    assert info.value.status_code == 503


def test_self_hosted_only_serves_complex_requests_on_self_hosted_models(router):
    plan = router.planner.plan(make_features(complexity=1.0, task="code_analysis"), "self_hosted_only")
    assert plan.primary.model in {"mistral-7b-instruct", "mistral-7b-fast", "codellama-13b"}


@pytest.mark.parametrize("strategy", BUILTIN_STRATEGIES)
def test_every_builtin_strategy_plans_a_simple_request(router, strategy):
    plan = router.planner.plan(make_features(), strategy)
    assert plan.strategy == strategy
    assert plan.primary.reason


# --- the auto decision tree ----------------------------------------------------------------------------

# (overrides, the branch's first model) -- the seed's tree, steps 1 to 5, and its boundaries.
AUTO_TREE = [
    ("tokens just over 100K", dict(tokens=100_001), "gemini-pro"),
    ("tokens exactly 100K", dict(tokens=100_000), "gemini-flash"),
    ("tokens just over 50K", dict(tokens=50_001), "gemini-flash"),
    ("tokens just under 50K", dict(tokens=49_999), "mistral-7b-instruct"),
    ("long context beats code", dict(tokens=150_000, task="code_generation"), "gemini-pro"),
    ("medium context beats complexity", dict(tokens=60_000, complexity=1.0), "gemini-flash"),
    ("code generation", dict(task="code_generation"), "codellama-13b"),
    ("code generation beats complexity", dict(task="code_generation", complexity=1.0), "codellama-13b"),
    ("complexity exactly 0.7", dict(complexity=0.7), "claude-opus"),
    ("complexity 1.0", dict(complexity=1.0), "claude-opus"),
    ("complexity just under 0.7", dict(complexity=0.69), "mistral-7b-instruct"),
    ("complexity beats latency", dict(complexity=0.8, latency_ms=100), "claude-opus"),
    ("latency 499 ms", dict(latency_ms=499), "mistral-7b-fast"),
    ("latency exactly 500 ms", dict(latency_ms=500), "mistral-7b-instruct"),
    ("latency 2 s", dict(latency_ms=2_000), "mistral-7b-instruct"),
    ("code analysis is not generation", dict(task="code_analysis", complexity=0.3), "mistral-7b-instruct"),
    ("default", dict(), "mistral-7b-instruct"),
]


@pytest.mark.parametrize("overrides, first", [c[1:] for c in AUTO_TREE], ids=[c[0] for c in AUTO_TREE])
def test_auto_tree_branch(router, overrides, first):
    models, reason = auto_branch(make_features(**overrides), router.catalog)
    assert models[0] == first
    assert reason


def test_auto_tree_exactly_50k_tokens_is_moderate_context(router):
    models, _ = auto_branch(make_features(tokens=50_000, complexity=0.8), router.catalog)
    assert models[0] == "gemini-flash"


@pytest.mark.parametrize(
    "overrides, primary",
    [
        (dict(tokens=100_001), "gemini-pro"),
        (dict(tokens=100_000), "gemini-flash"),
        (dict(task="code_generation"), "codellama-13b"),
        (dict(complexity=0.7), "claude-opus"),
        (dict(latency_ms=499), "mistral-7b-fast"),
        (dict(latency_ms=500), "mistral-7b-instruct"),
    ],
)
def test_auto_plan_primary_follows_the_tree(router, overrides, primary):
    plan = router.planner.plan(make_features(**overrides), "rules")
    assert plan.primary.model == primary
    assert plan.primary.reason.startswith("rules")


def test_auto_reason_says_which_branch(router):
    reasons = {
        "context": router.planner.plan(make_features(tokens=150_000), "rules").primary.reason,
        "code": router.planner.plan(make_features(task="code_generation"), "rules").primary.reason,
        "complexity": router.planner.plan(make_features(complexity=0.8), "rules").primary.reason,
        "latency": router.planner.plan(make_features(latency_ms=100), "rules").primary.reason,
    }
    for word, reason in reasons.items():
        assert word in reason.lower(), reason


THRESHOLD_CHANGES = [
    (
        "lower complexity bar",
        {"high_complexity": 0.5},
        dict(complexity=0.5),
        "claude-opus",
        "mistral-7b-instruct",
    ),
    (
        "higher latency bar",
        {"low_latency_ms": 1_000},
        dict(latency_ms=800),
        "mistral-7b-fast",
        "mistral-7b-instruct",
    ),
    (
        "smaller context bars",
        {"long_context_tokens": 20_000, "medium_context_tokens": 10_000},
        dict(tokens=25_000),
        "gemini-pro",
        "mistral-7b-instruct",
    ),
    (
        "higher medium bar",
        {"medium_context_tokens": 80_000},
        dict(tokens=60_000, complexity=0.8),
        "claude-opus",
        "gemini-flash",
    ),
]


@pytest.mark.parametrize(
    "thresholds, overrides, changed, default",
    [c[1:] for c in THRESHOLD_CHANGES],
    ids=[c[0] for c in THRESHOLD_CHANGES],
)
def test_config_thresholds_change_the_decision(
    router, raw_config, build_router, thresholds, overrides, changed, default
):
    features = make_features(**overrides)
    assert router.planner.plan(features, "rules").primary.model == default
    raw_config["routing"]["thresholds"].update(thresholds)
    assert build_router(raw_config).planner.plan(features, "rules").primary.model == changed


def test_config_auto_targets_change_the_decision(raw_config, build_router):
    raw_config["routing"]["auto"]["default"] = ["claude-haiku"]
    assert build_router(raw_config).planner.plan(make_features(), "rules").primary.model == "claude-haiku"


# --- custom decision trees -------------------------------------------------------------------------------

TEAM_RULES = {
    "description": "Legal to Sonnet, big prompts to Vertex, translations and summaries cheap.",
    "decision_tree": [
        {"condition": {"metadata.team": "legal"}, "action": {"models": ["claude-sonnet"]}},
        {"condition": {"tokens": {"gt": 1000}}, "action": {"provider": "vertex_ai"}},
        {"condition": {"task": ["translation", "summarization"]}, "action": {"strategy": "cost"}},
    ],
    "otherwise": "rules",
}


@pytest.fixture
def team_router(raw_config, build_router):
    raw_config["strategies"]["team_rules"] = TEAM_RULES
    return build_router(raw_config)


def test_custom_rule_on_metadata(team_router):
    # rule 1 wins over rules 2 and 3, which also match
    features = make_features(metadata={"team": "legal"}, tokens=5_000, task="translation")
    plan = team_router.planner.plan(features, "team_rules")
    assert plan.primary.model == "claude-sonnet"
    assert "team_rules" in plan.primary.reason and "rule 1" in plan.primary.reason
    assert models_of(plan)[1:] == team_router.catalog.fallbacks("claude-sonnet")[: len(plan.targets) - 1]


def test_custom_rule_on_tokens_restricts_to_a_provider(team_router):
    plan = team_router.planner.plan(make_features(tokens=5_000, metadata={"team": "sales"}), "team_rules")
    assert {t.provider for t in plan.targets} == {"vertex_ai"}
    assert "rule 2" in plan.primary.reason


@pytest.mark.parametrize("task", ["translation", "summarization"])
def test_custom_rule_on_task_delegates_to_cost(team_router, task):
    plan = team_router.planner.plan(make_features(task=task), "team_rules")
    assert plan.primary.model == "mistral-7b-instruct"
    assert "rule 3" in plan.primary.reason and "cost" in plan.primary.reason


def test_custom_tree_otherwise_falls_back_to_its_otherwise_strategy(team_router):
    plan = team_router.planner.plan(make_features(task="code_analysis", complexity=0.9), "team_rules")
    assert plan.primary.model == "claude-opus"  # what the keyword rules pick for complex requests
    reason = plan.primary.reason
    assert "team_rules" in reason
    assert re.search(r"rule \d", reason) is None  # no rule claims it
    assert "rules" in reason


@pytest.mark.parametrize("tokens, matched", [(1000, False), (1001, True)])
def test_custom_gt_is_strict(team_router, tokens, matched):
    """Rule 2 is `tokens: {gt: 1000}`."""
    plan = team_router.planner.plan(make_features(tokens=tokens), "team_rules")
    assert (plan.primary.provider == "vertex_ai") is matched


def test_missing_metadata_does_not_match_or_crash(team_router):
    plan = team_router.planner.plan(make_features(metadata={}), "team_rules")
    assert plan.primary.model == "mistral-7b-instruct"


def test_default_config_private_first_keeps_confidential_requests_self_hosted(router):
    features = make_features(metadata={"confidential": "true"}, complexity=1.0, task="code_analysis")
    plan = router.planner.plan(features, "private_first")
    assert all(router.catalog.is_self_hosted(t.model) for t in plan.targets)
    assert "rule 1" in plan.primary.reason


def test_default_config_private_first_otherwise_routes_like_auto(router):
    features = make_features(complexity=1.0, task="code_analysis")
    assert (
        router.planner.plan(features, "private_first").primary.model
        == router.planner.plan(features, "auto").primary.model
    )


@pytest.mark.parametrize("inner, self_hosted", [("self_hosted_only", True), ("cloud_only", False)])
def test_custom_rule_delegating_to_an_only_strategy_keeps_its_bound(
    raw_config, build_router, inner, self_hosted
):
    raw_config["strategies"]["private"] = {
        "decision_tree": [{"condition": {"metadata.private": "yes"}, "action": {"strategy": inner}}],
    }
    router = build_router(raw_config)
    for features in (
        make_features(metadata={"private": "yes"}, complexity=0.9),
        make_features(metadata={"private": "yes"}),
    ):
        plan = router.planner.plan(features, "private")
        assert all(router.catalog.is_self_hosted(t.model) is self_hosted for t in plan.targets), models_of(
            plan
        )


def test_seed_custom_strategy_example_is_rejected_with_a_metadata_hint(raw_config):
    """The seed's own example conditions on a bare request field; the router asks for `metadata.`."""
    raw_config["strategies"]["custom_strategy"] = {
        "description": "My custom routing logic",
        "decision_tree": [
            {
                "condition": {"custom_field": "specific_value"},
                "action": {"provider": "self_hosted", "models": ["mistral-7b-instruct"]},
            }
        ],
    }
    with pytest.raises(ConfigError) as info:
        parse_config(raw_config, source="routing-strategies.yaml")
    message = str(info.value)
    assert "routing-strategies.yaml" in message
    assert "strategies.custom_strategy.decision_tree.0.condition.custom_field" in message
    assert "metadata.custom_field" in message


def test_seed_custom_strategy_with_metadata_condition_routes(raw_config, build_router):
    raw_config["strategies"]["custom_strategy"] = {
        "description": "My custom routing logic",
        "decision_tree": [
            {
                "condition": {"metadata.custom_field": "specific_value"},
                "action": {"provider": "self_hosted", "models": ["mistral-7b-instruct"]},
            }
        ],
        "otherwise": "quality",
    }
    router = build_router(raw_config)
    hit = router.planner.plan(
        make_features(metadata={"custom_field": "specific_value"}, complexity=1.0), "custom_strategy"
    )
    miss = router.planner.plan(make_features(metadata={"custom_field": "other"}), "custom_strategy")
    assert hit.primary.model == "mistral-7b-instruct"
    assert all(t.provider == "self_hosted" for t in hit.targets)
    assert router.catalog.models[miss.primary.model].weights.quality == 1.0
