"""Issue #14, item 3 (and item 9's duplicate client keys): a bad config stops the router at once,
listing every problem once with its field path; ``python -m app.check_config`` checks offline;
``make run`` (scripts/run-local.sh) checks before it starts Ray; budgets and limits are positive."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.check_config import main as check_main
from app.config import ConfigError, load_config, parse_config
from app.security.auth import KeyStore, key_problems

from .conftest import DEFAULT_CONFIG_PATH

ROOT = Path(__file__).parents[2]


def write(path: Path, raw: Any) -> Path:
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def broken(raw: dict[str, Any]) -> dict[str, Any]:
    """The issue's config: a misspelled key, an unknown fallback model and a negative budget,
    plus a wrong type and a dangling strategy name."""
    raw["routing"]["fallbakcs"] = {}  # misspelled key
    raw["routing"]["fallbacks"]["codellama-13b"][1] = "gemini-flashh"
    raw["cost_rules"]["daily_budgets"]["total"] = -50.0
    raw["models"]["gpt"]["context_window"] = "big"
    raw["strategies"]["private_first"]["otherwise"] = "cheapest"
    return raw


EXPECTED = {
    "routing.fallbakcs": "unknown key",
    "routing.fallbacks.codellama-13b.1": "unknown model 'gemini-flashh'",
    "cost_rules.daily_budgets.total": "greater than 0",
    "models.gpt.context_window": "valid integer",
    "strategies.private_first.otherwise": "unknown strategy 'cheapest'",
}


# --- every problem, once, with its path ----------------------------------------------------------


def test_schema_errors_and_cross_checks_are_reported_together(raw_config):
    with pytest.raises(ConfigError) as info:
        parse_config(broken(raw_config), source="bad.yaml")
    problems = dict(info.value.problems)
    assert set(problems) == set(EXPECTED), info.value.problems
    for path, fragment in EXPECTED.items():
        assert fragment in problems[path], (path, problems[path])
    message = str(info.value)
    assert message.startswith("invalid router config (5 problems)")
    for path in EXPECTED:
        assert message.count(f"bad.yaml: {path}: ") == 1, message


def test_a_broken_entry_is_not_reported_again_where_it_is_named(raw_config):
    """gpt's entry is invalid; fallbacks and targets that name gpt are not 'unknown model' too."""
    raw_config["models"]["gpt"].pop("weights")
    raw_config["providers"]["anthropic"]["kind"] = "azure"
    with pytest.raises(ConfigError) as info:
        parse_config(raw_config, source="bad.yaml")
    paths = [p for p, _ in info.value.problems]
    assert paths == ["providers.anthropic.kind", "models.gpt.weights"], info.value.problems


def test_a_value_left_out_is_not_reported_twice(raw_config):
    """A fixed price without its numbers is one problem, not also 'needs a fixed price'."""
    raw_config["models"]["mistral-7b-instruct"]["pricing"] = {"source": "fixed"}
    raw_config["routing"]["fallbacks"]["gpt"] = ["gpt-9"]
    with pytest.raises(ConfigError) as info:
        parse_config(raw_config)
    paths = [p for p, _ in info.value.problems]
    assert paths == ["models.mistral-7b-instruct.pricing", "routing.fallbacks.gpt.0"], info.value.problems


def test_nothing_left_to_cross_check_still_reports_the_schema_errors(raw_config):
    raw_config["models"] = "none"
    raw_config["routing"]["colour"] = "red"
    with pytest.raises(ConfigError) as info:
        parse_config(raw_config)
    assert {p for p, _ in info.value.problems} == {"models", "routing.colour"}


@pytest.mark.parametrize("budget", [-50.0, 0, float("inf"), float("nan")])
def test_daily_budgets_must_be_positive_and_finite(raw_config, budget):
    raw_config["cost_rules"]["daily_budgets"]["anthropic"] = budget
    with pytest.raises(ConfigError) as info:
        parse_config(raw_config)
    assert [p for p, _ in info.value.problems] == ["cost_rules.daily_budgets.anthropic"]


@pytest.mark.parametrize(
    ("section", "value", "path"),
    [
        ("limits", {"max_body_bytes": 0}, "limits.max_body_bytes"),
        ("limits", {"n_ceiling": 0}, "limits.n_ceiling"),
        ("limits", {"max_tokens_ceiling": -1}, "limits.max_tokens_ceiling"),
        ("auth", {"limits": {"daily_budget_usd": -5}}, "auth.limits.daily_budget_usd"),
        ("auth", {"limits": {"requests_per_minute": 0}}, "auth.limits.requests_per_minute"),
        (
            "auth",
            {"key_limits": {"team-a": {"tokens_per_minute": -1}}},
            "auth.key_limits.team-a.tokens_per_minute",
        ),
        ("cache", {"ttl_s": 0}, "cache.ttl_s"),
    ],
)
def test_limits_must_be_positive(raw_config, section, value, path):
    raw_config[section] = value
    with pytest.raises(ConfigError) as info:
        parse_config(raw_config)
    assert path in [p for p, _ in info.value.problems]


def test_custom_strategy_names_that_differ_only_in_case_are_refused(raw_config):
    """Requests name strategies case-insensitively, so the config may not depend on case."""
    strategy = raw_config["strategies"]["private_first"]
    raw_config["strategies"]["Private_First"] = strategy
    raw_config["strategies"]["COST"] = strategy
    with pytest.raises(ConfigError) as info:
        parse_config(raw_config)
    problems = dict(info.value.problems)
    assert "differ only in case" in problems["strategies.Private_First"]
    assert "built-in" in problems["strategies.COST"]


# --- python -m app.check_config ------------------------------------------------------------------


def test_check_command_passes_the_shipped_configs(capsys):
    files = ["deployments/configs/router.yaml", "deployments/configs/gke.yaml", "kuberay/rayservice.yaml"]
    assert check_main([str(ROOT / f) for f in files]) == 0
    out = capsys.readouterr().out
    assert out.count(": ok (") == 3


def test_check_command_lists_every_problem_once_and_fails(tmp_path, raw_config, capsys):
    bad = write(tmp_path / "bad.yaml", broken(raw_config))
    assert check_main([str(bad)]) == 1
    err = capsys.readouterr().err
    for path, fragment in EXPECTED.items():
        [line] = [line for line in err.splitlines() if f"bad.yaml: {path}: " in line]
        assert fragment in line


def test_check_command_reads_a_serve_config_as_build_app_would(tmp_path, raw_config, monkeypatch, capsys):
    bad = write(tmp_path / "bad.yaml", broken(raw_config))
    monkeypatch.setenv("ROUTER_CONFIG", str(bad))
    local = ROOT / "deployments/configs/local.yaml"  # args: {} -> $ROUTER_CONFIG
    assert check_main([str(local)]) == 1
    assert "bad.yaml: cost_rules.daily_budgets.total: " in capsys.readouterr().err
    serve = write(
        tmp_path / "serve.yaml",
        {
            "applications": [
                {
                    "name": "router",
                    "import_path": "deployments.builder:build_app",
                    "args": {"config": broken(raw_config)},
                }
            ]
        },
    )
    assert check_main([str(serve)]) == 1
    assert (
        "serve.yaml (application 'router', args.config): routing.fallbakcs: unknown key"
        in capsys.readouterr().err
    )


def test_check_command_without_files_checks_what_make_run_would(tmp_path, raw_config, monkeypatch, capsys):
    monkeypatch.setenv("ROUTER_CONFIG", str(write(tmp_path / "mine.yaml", raw_config)))
    assert check_main([]) == 0
    assert "mine.yaml: ok" in capsys.readouterr().out


def test_check_command_reports_a_missing_file(tmp_path, capsys):
    assert check_main([str(tmp_path / "nowhere.yaml")]) == 1
    assert "nowhere.yaml: <root>: file not found" in capsys.readouterr().err


def test_check_command_runs_as_a_module_in_seconds(tmp_path, raw_config):
    bad = write(tmp_path / "bad.yaml", broken(raw_config))
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "app.check_config", str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert time.monotonic() - started < 30
    assert len([line for line in result.stderr.splitlines() if "bad.yaml: " in line]) == len(EXPECTED)


# --- make run: the check comes before Ray ------------------------------------------------------------


@pytest.fixture
def fake_bin(tmp_path):
    """A BIN for scripts/run-local.sh whose python is this one and whose ray and serve only leave
    a mark: the script must never reach them with a bad config (and never starts a real Ray)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    python = bin_dir / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    for tool in ("ray", "serve"):
        stub = bin_dir / tool
        stub.write_text(f"#!/bin/sh\necho {tool} >> {tmp_path / 'called'}\nexit 1\n")
        stub.chmod(0o755)
    return bin_dir


def test_make_run_exits_non_zero_within_seconds_listing_every_problem(tmp_path, raw_config, fake_bin):
    bad = write(tmp_path / "bad.yaml", broken(raw_config))
    env = {**os.environ, "BIN": str(fake_bin), "ROUTER_CONFIG": str(bad)}
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(ROOT / "scripts/run-local.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert time.monotonic() - started < 60
    for path in EXPECTED:
        assert result.stderr.count(f"bad.yaml: {path}: ") == 1, result.stderr
    assert not (tmp_path / "called").exists(), "Ray was reached with a bad config"


# --- build_app, for serve run and the RayService -----------------------------------------------------


def test_build_app_raises_a_serve_exception_with_every_problem(raw_config):
    from ray.serve.exceptions import RayServeException

    from deployments.builder import build_app

    with pytest.raises(RayServeException) as info:
        build_app({"config": broken(raw_config)})
    message = str(info.value)
    for path in EXPECTED:
        assert f"serve args: config: {path}: " in message
    assert "python -m app.check_config" in message
    assert "Traceback" not in message


def test_build_app_names_the_file_it_read(tmp_path, raw_config):
    from ray.serve.exceptions import RayServeException

    from deployments.builder import build_app

    bad = write(tmp_path / "bad.yaml", broken(raw_config))
    with pytest.raises(RayServeException, match=r"bad\.yaml: cost_rules\.daily_budgets\.total: "):
        build_app({"config_path": str(bad)})


# --- client keys: a name given twice is a config error ------------------------------------------------

AUTH = load_config(DEFAULT_CONFIG_PATH).auth


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"ROUTER_API_KEYS": "team-a:sk-1,team-b:sk-2,team-a:sk-3"}, "'team-a' is given twice"),
        (
            {"ROUTER_API_KEYS": "team-a:sk-1", "ROUTER_ADMIN_KEYS": "team-a:sk-9"},
            "'team-a' is given in ROUTER_API_KEYS too",
        ),
        ({"ROUTER_API_KEYS": "team-a:sk-1,team-b:sk-1"}, "'team-b' has the same key as 'team-a'"),
        ({"ROUTER_API_KEYS": "team-a:"}, "the key named 'team-a' is empty"),
    ],
)
def test_client_key_problems_stop_start_up_without_showing_a_key(env, fragment):
    problems = key_problems(AUTH, env)
    assert any(fragment in what for _, what in problems), problems
    with pytest.raises(ConfigError) as info:
        KeyStore.from_env(AUTH, env)
    message = str(info.value)
    assert message.startswith("invalid client keys") and fragment in message
    assert "sk-1" not in message and "sk-3" not in message and "sk-9" not in message


def test_distinct_client_keys_load(monkeypatch):
    env = {"ROUTER_API_KEYS": "team-a:sk-1,team-b:sk-2", "ROUTER_ADMIN_KEYS": "ops:sk-3"}
    assert key_problems(AUTH, env) == []
    assert len(KeyStore.from_env(AUTH, env)) == 3


def test_check_command_reports_duplicate_client_keys(monkeypatch, capsys):
    monkeypatch.setenv("ROUTER_API_KEYS", "team-a:sk-1,team-a:sk-2")
    assert check_main([str(DEFAULT_CONFIG_PATH)]) == 1
    captured = capsys.readouterr()
    assert "router.yaml: ok" in captured.out
    assert "environment: ROUTER_API_KEYS: the key name 'team-a' is given twice" in captured.err
    assert "sk-2" not in captured.err
