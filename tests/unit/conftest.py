"""Shared fixtures for the routing unit tests: the default config, and builders for variants."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.config import BUILTIN_STRATEGIES as CONFIG_BUILTIN_STRATEGIES
from app.config import RouterConfig, load_config, parse_config
from app.routing.analysis import Analyzer, Features
from app.routing.catalog import Catalog
from app.routing.planner import Planner
from app.routing.strategies import StrategyRegistry

DEFAULT_CONFIG_PATH = Path(__file__).parents[2] / "deployments" / "configs" / "router.yaml"

BUILTIN_STRATEGIES = list(CONFIG_BUILTIN_STRATEGIES)  # test_config checks them against the seed


@dataclasses.dataclass
class Router:
    """The routing core built from one config, as the service wires it."""

    config: RouterConfig
    catalog: Catalog
    registry: StrategyRegistry
    planner: Planner
    analyzer: Analyzer

    @classmethod
    def build(cls, config: RouterConfig) -> Router:
        catalog = Catalog(config)
        registry = StrategyRegistry(catalog)
        return cls(config, catalog, registry, Planner(catalog, registry), Analyzer(config.routing.thresholds))

    def route(self, body: dict[str, Any], strategy: str = "rules", **kw: Any):
        return self.planner.plan(self.analyzer.analyze(body), strategy, **kw)


def make_features(**overrides: Any) -> Features:
    """A small, plain request's features; override any field to hit a branch precisely."""
    base: dict[str, Any] = dict(
        tokens=100,
        tokens_exact=True,
        max_tokens=None,
        complexity=0.0,
        complexity_signals=(),
        task="general",
        has_images=False,
        has_tools=False,
        latency_ms=None,
        messages=1,
        stream=False,
        metadata={},
    )
    base.update(overrides)
    return Features(**base)


def user(text: str, **body: Any) -> dict[str, Any]:
    """A chat request body with one user message."""
    return {"messages": [{"role": "user", "content": text}], **body}


@pytest.fixture(scope="session")
def default_raw() -> dict[str, Any]:
    return yaml.safe_load(DEFAULT_CONFIG_PATH.read_text(encoding="utf-8"))


@pytest.fixture
def raw_config(default_raw: dict[str, Any]) -> dict[str, Any]:
    """A fresh, mutable copy of the default config as plain data."""
    return copy.deepcopy(default_raw)


@pytest.fixture(scope="session")
def config() -> RouterConfig:
    return load_config(DEFAULT_CONFIG_PATH)


@pytest.fixture(scope="session")
def router(config: RouterConfig) -> Router:
    return Router.build(config)


@pytest.fixture
def build_router() -> Callable[[dict[str, Any]], Router]:
    """Builds the routing core from a (modified) raw config dict."""

    def build(raw: dict[str, Any]) -> Router:
        return Router.build(parse_config(raw, source="test-variant.yaml"))

    return build
