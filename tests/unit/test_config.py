"""The router config: the default file loads, and every mistake stops start-up with a message that
names the file, the field's dotted path and what was expected."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.config import BUILTIN_STRATEGIES, ConfigError, load_config, parse_config

from .conftest import DEFAULT_CONFIG_PATH

FILE_NAME = "router-under-test.yaml"


def write(tmp_path: Path, raw: Any) -> Path:
    path = tmp_path / FILE_NAME
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def load_error(tmp_path: Path, raw: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, raw))
    return info.value


def rule(condition: dict, action: dict) -> dict:
    return {"condition": condition, "action": action}


def set_rule(r: dict, condition: dict | None = None, action: dict | None = None) -> None:
    """Replaces the first rule of the default config's custom strategy ``private_first``."""
    first = r["strategies"]["private_first"]["decision_tree"][0]
    if condition is not None:
        first["condition"] = condition
    if action is not None:
        first["action"] = action


PF_RULE = "strategies.private_first.decision_tree.0"


# --- the default file -------------------------------------------------------------------------


def test_default_config_loads(config):
    assert config.routing.default_strategy == "auto"
    assert {"mistral-7b-instruct", "mistral-7b-fast", "codellama-13b", "gemini-pro", "gemini-flash"} <= set(
        config.models
    )
    assert config.is_self_hosted("mistral-7b-instruct")
    assert not config.is_self_hosted("gemini-pro")
    assert "private_first" in config.strategies
    # every self-hosted model carries its own price
    for name, spec in config.models.items():
        if config.is_self_hosted(name):
            assert spec.pricing.source == "fixed"


def test_default_config_round_trips_through_parse_config(default_raw):
    assert parse_config(default_raw) == load_config(DEFAULT_CONFIG_PATH)


# --- schema errors: unknown keys and wrong types ------------------------------------------------

Mutation = Callable[[dict], None]


def case(name: str, mutate: Mutation, path: str, expected: list[str], **kw: Any) -> Any:
    return pytest.param(mutate, path, expected, id=name, **kw)


SCHEMA_ERRORS = [
    case("unknown top-level key", lambda r: r.update(colour="red"), "colour", ["unknown key"]),
    case(
        "unknown model key",
        lambda r: r["models"]["gpt"].update(colour="blue"),
        "models.gpt.colour",
        ["unknown key"],
    ),
    case(
        "unknown threshold key (typo)",
        lambda r: r["routing"]["thresholds"].update(hgh_complexity=0.5),
        "routing.thresholds.hgh_complexity",
        ["unknown key"],
    ),
    case(
        "unknown key in a custom rule action",
        lambda r: set_rule(r, action={"provider": "self_hosted", "colour": "red"}),
        f"{PF_RULE}.action.colour",
        ["unknown key"],
    ),
    case(
        "context window not a number",
        lambda r: r["models"]["gpt"].update(context_window="big"),
        "models.gpt.context_window",
        ["valid integer", "'big'"],
    ),
    case(
        "context window missing",
        lambda r: r["models"]["gpt"].pop("context_window"),
        "models.gpt.context_window",
        ["required"],
    ),
    case(
        "weight above 1",
        lambda r: r["models"]["gpt"]["weights"].update(quality=1.5),
        "models.gpt.weights.quality",
        ["less than or equal to 1", "1.5"],
    ),
    case(
        "unknown capability",
        lambda r: r["models"]["gpt"].update(capabilities=["telepathy"]),
        "models.gpt.capabilities.0",
        ["'vision'", "'telepathy'"],
    ),
    case(
        "unknown provider kind",
        lambda r: r["providers"]["openai"].update(kind="azure"),
        "providers.openai.kind",
        ["'openai'", "'azure'"],
    ),
    case(
        "max_fallbacks not a number",
        lambda r: r["routing"].update(max_fallbacks="three"),
        "routing.max_fallbacks",
        ["valid integer", "'three'"],
    ),
]


@pytest.mark.parametrize("mutate, path, expected", SCHEMA_ERRORS)
def test_schema_error_names_file_path_and_expectation(tmp_path, raw_config, mutate, path, expected):
    mutate(raw_config)
    err = load_error(tmp_path, raw_config)
    message = str(err)
    assert FILE_NAME in message
    assert f": {path}: " in message, message
    for fragment in expected:
        assert fragment in message, message
    assert path in [p for p, _ in err.problems]


# --- dangling references and cross-field rules ---------------------------------------------------

REFERENCE_ERRORS = [
    case(
        "fallback names a missing model",
        lambda r: r["routing"]["fallbacks"].update(gpt=["claude-opus", "gpt-9"]),
        "routing.fallbacks.gpt.1",
        ["unknown model 'gpt-9'", "claude-opus"],  # the message lists what exists
    ),
    case(
        "fallback chain for a missing model",
        lambda r: r["routing"]["fallbacks"].update({"gpt-9": ["gpt"]}),
        "routing.fallbacks.gpt-9",
        ["unknown model 'gpt-9'"],
    ),
    case(
        "auto target names a missing model",
        lambda r: r["routing"]["auto"].update(high_complexity=["claude-opus", "gpt-9"]),
        "routing.auto.high_complexity.1",
        ["unknown model 'gpt-9'"],
    ),
    case(
        "model names a missing provider",
        lambda r: r["models"]["gpt"].update(provider="azure"),
        "models.gpt.provider",
        ["unknown provider 'azure'"],
    ),
    case(
        "default strategy unknown",
        lambda r: r["routing"].update(default_strategy="cheapest"),
        "routing.default_strategy",
        ["unknown strategy 'cheapest'"],
    ),
    case(
        "custom action names a missing model",
        lambda r: set_rule(r, action={"models": ["gpt-9"]}),
        f"{PF_RULE}.action.models.0",
        ["unknown model 'gpt-9'"],
    ),
    case(
        "custom action names a missing provider",
        lambda r: set_rule(r, action={"provider": "azure"}),
        f"{PF_RULE}.action.provider",
        ["unknown provider 'azure'"],
    ),
    case(
        "custom action names a missing strategy",
        lambda r: set_rule(r, action={"strategy": "cheapest"}),
        f"{PF_RULE}.action.strategy",
        ["unknown strategy 'cheapest'"],
    ),
    case(
        "custom otherwise names a missing strategy",
        lambda r: r["strategies"]["private_first"].update(otherwise="cheapest"),
        "strategies.private_first.otherwise",
        ["unknown strategy 'cheapest'"],
    ),
    case(
        "condition on an unknown feature suggests metadata",
        lambda r: set_rule(r, condition={"team": "legal"}),
        f"{PF_RULE}.condition.team",
        ["unknown feature", "'metadata.team'"],
    ),
    case(
        "condition with an unknown operator",
        lambda r: set_rule(r, condition={"tokens": {"greater": 5}}),
        f"{PF_RULE}.condition.tokens.greater",
        ["unknown operator", "'gt'"],
    ),
    case(
        "condition on an unknown task",
        lambda r: set_rule(r, condition={"task": "coding"}),
        f"{PF_RULE}.condition.task",
        ["unknown task 'coding'", "'code_generation'"],
    ),
    case(
        "condition on an unknown task in a list",
        lambda r: set_rule(r, condition={"task": ["translation", "coding"]}),
        f"{PF_RULE}.condition.task",
        ["unknown task 'coding'"],
    ),
    case(
        "condition on an unknown task behind an operator",
        lambda r: set_rule(r, condition={"task": {"in": ["coding"]}}),
        f"{PF_RULE}.condition.task",
        ["unknown task 'coding'"],
    ),
    case(
        "empty action",
        lambda r: set_rule(r, action={}),
        f"{PF_RULE}.action",
        ["needs models, a provider or a strategy"],
    ),
    case(
        "alias already used by another model",
        lambda r: r["models"]["gpt"]["aliases"].append("claude-3-opus"),
        "models.gpt.aliases.5",
        ["'claude-3-opus' already names 'claude-opus'"],
    ),
    case(
        "alias equal to another model's name",
        lambda r: r["models"]["gpt"]["aliases"].append("claude-opus"),
        "models.gpt.aliases.5",
        ["'claude-opus' already names 'claude-opus'"],
    ),
    case(
        "alias equal to another model's name but for case",
        lambda r: r["models"]["gpt"]["aliases"].append("Claude-Opus"),
        "models.gpt.aliases.5",
        ["already names 'claude-opus'"],
    ),
    case(
        "custom strategy reuses a built-in name",
        lambda r: r["strategies"].update(fast={"decision_tree": [rule({}, {"models": ["gpt"]})]}),
        "strategies.fast",
        ["built-in"],
    ),
    case(
        "custom strategy named like a model",
        lambda r: r["strategies"].update(gpt={"decision_tree": [rule({}, {"models": ["gpt"]})]}),
        "strategies.gpt",
        ["also a model name"],
    ),
    case(
        "self-hosted model without a fixed price",
        lambda r: r["models"]["mistral-7b-instruct"].pop("pricing"),
        "models.mistral-7b-instruct.pricing",
        ["self-hosted models need a fixed price"],
    ),
    case(
        "fixed price without an output price",
        lambda r: r["models"]["mistral-7b-instruct"].update(
            pricing={"source": "fixed", "input_per_million": 0.01}
        ),
        "models.mistral-7b-instruct.pricing",
        ["output_per_million"],
    ),
]


@pytest.mark.parametrize("mutate, path, expected", REFERENCE_ERRORS)
def test_reference_error_names_file_path_and_problem(tmp_path, raw_config, mutate, path, expected):
    mutate(raw_config)
    err = load_error(tmp_path, raw_config)
    message = str(err)
    assert FILE_NAME in message
    assert f": {path}: " in message, message
    for fragment in expected:
        assert fragment in message, message


def test_every_problem_is_reported_at_once(tmp_path, raw_config):
    raw_config["routing"]["fallbacks"]["gpt"] = ["gpt-9"]
    raw_config["models"]["claude-opus"]["provider"] = "azure"
    err = load_error(tmp_path, raw_config)
    paths = [p for p, _ in err.problems]
    assert "routing.fallbacks.gpt.0" in paths
    assert "models.claude-opus.provider" in paths


def test_parse_config_names_its_source(raw_config):
    raw_config["colour"] = "red"
    with pytest.raises(ConfigError, match=r"profile-x\.yaml: colour: unknown key"):
        parse_config(raw_config, source="profile-x.yaml")


# --- strategy delegation cycles -------------------------------------------------------------------


def _never(models: list[str]) -> dict:
    return rule({"tokens": {"lt": 0}}, {"models": models})


CYCLES = {
    "otherwise a->b->a": {
        "a": {"decision_tree": [_never(["gpt"])], "otherwise": "b"},
        "b": {"decision_tree": [_never(["gpt"])], "otherwise": "a"},
    },
    "otherwise to itself": {"a": {"decision_tree": [_never(["gpt"])], "otherwise": "a"}},
    "rule action a->b, otherwise b->a": {
        "a": {"decision_tree": [rule({"task": "translation"}, {"strategy": "b"})]},
        "b": {"decision_tree": [_never(["gpt"])], "otherwise": "a"},
    },
}


@pytest.mark.parametrize("strategies", CYCLES.values(), ids=CYCLES.keys())
def test_strategy_delegation_cycle_is_rejected_at_load(tmp_path, raw_config, strategies):
    raw_config["strategies"].update(strategies)
    message = str(load_error(tmp_path, raw_config))
    assert FILE_NAME in message
    assert re.search(r": strategies\.(a|b)[.:]", message), message
    assert re.search(r"cycle|circular|loop", message, re.IGNORECASE), message


def test_acyclic_delegation_chain_loads(raw_config):
    """A chain that ends in a built-in is fine, however it is reached."""
    raw_config["strategies"].update(
        {
            "a": {"decision_tree": [rule({"task": "translation"}, {"strategy": "b"})], "otherwise": "b"},
            "b": {"decision_tree": [_never(["gpt"])], "otherwise": "cost"},
        }
    )
    config = parse_config(raw_config)
    assert set(config.strategies) >= {"a", "b"}


# --- the file itself --------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "nowhere.yaml" in str(info.value)
    assert "file not found" in str(info.value)


def test_invalid_yaml(tmp_path):
    path = tmp_path / FILE_NAME
    path.write_text("providers:\n  self_hosted: {kind: self_hosted\nmodels: [", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert FILE_NAME in str(info.value)
    assert "not valid YAML" in str(info.value)


@pytest.mark.parametrize("text", ["- providers\n- models\n", "just a string\n", "", "42\n"])
def test_top_level_must_be_a_mapping(tmp_path, text):
    path = tmp_path / FILE_NAME
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert FILE_NAME in str(info.value)
    assert "expected a mapping at the top level" in str(info.value)


def test_builtin_strategy_names_are_the_seeds_and_rules():
    """The seed's eight, plus ``rules``: its keyword tree, kept to compare with quality routing."""
    assert set(BUILTIN_STRATEGIES) == {
        "rules",
        "auto",
        "fast",
        "quality",
        "cost",
        "long_context",
        "balanced",
        "self_hosted_only",
        "cloud_only",
    }


def test_model_references_may_use_aliases_as_the_seed_writes_them(raw_config):
    # The seed's custom strategy names `self_hosted/mistral-7b-instruct`; fallbacks may name aliases too.
    raw_config["strategies"]["custom_strategy"] = {
        "description": "My custom routing logic",
        "decision_tree": [
            rule(
                {"metadata.custom_field": "specific_value"},
                {"provider": "self_hosted", "models": ["self_hosted/mistral-7b-instruct"]},
            )
        ],
    }
    raw_config["routing"]["fallbacks"]["gemini-1.5-pro"] = ["claude-3-opus", "gpt-4-turbo"]
    config = parse_config(raw_config)
    assert config.strategies["custom_strategy"].decision_tree[0].action.models == ["mistral-7b-instruct"]
    assert config.routing.fallbacks["gemini-pro"] == ["claude-opus", "gpt"]
