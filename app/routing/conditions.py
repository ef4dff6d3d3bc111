"""Conditions of custom decision trees: feature tests written as data in the config.

A condition is a mapping; every entry must hold. An entry is ``feature: value`` (equality, or
membership when the value is a list) or ``feature: {op: value, ...}`` with ops ``eq``, ``ne``,
``gt``, ``gte``, ``lt``, ``lte``, ``in``, ``not_in``. Features are those of ``Features``
(``tokens``, ``complexity``, ``task``, ``has_images``...) and ``metadata.<key>`` for the
request's ``metadata`` object, so clients can steer custom strategies.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any

from app.routing.analysis import TASKS, Features

FEATURES = {f.name for f in fields(Features)} - {"metadata"} | {"multimodal"}
OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
    "in": lambda a, b: a in b,
    "not_in": lambda a, b: a not in b,
}


def check_condition(condition: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Problems with a condition, as (key, message) pairs, for config validation."""
    problems = []
    for key, test in condition.items():
        if not (key in FEATURES or key.startswith("metadata.")):
            hint = f"; for a request field use 'metadata.{key}'" if "." not in key else ""
            problems.append((key, f"unknown feature; expected one of {sorted(FEATURES)}{hint}"))
            continue
        if isinstance(test, Mapping):
            for op in test:
                if op not in OPS:
                    problems.append((f"{key}.{op}", f"unknown operator; expected one of {sorted(OPS)}"))
        if key == "task":
            values = test.values() if isinstance(test, Mapping) else [test]
            for value in values:
                for task in value if isinstance(value, list) else [value]:
                    if task not in TASKS:
                        problems.append((key, f"unknown task {task!r}; expected one of {list(TASKS)}"))
    return problems


def feature_value(features: Features, key: str) -> Any:
    if key.startswith("metadata."):
        return features.metadata.get(key.removeprefix("metadata."))
    return getattr(features, key)


def matches(condition: Mapping[str, Any], features: Features) -> bool:
    for key, test in condition.items():
        value = feature_value(features, key)
        if isinstance(test, Mapping):
            if not all(_apply(op, value, expected) for op, expected in test.items()):
                return False
        elif isinstance(test, list):
            if value not in test:
                return False
        elif value != test:
            return False
    return True


def _apply(op: str, value: Any, expected: Any) -> bool:
    try:
        return bool(OPS[op](value, expected))
    except TypeError:  # e.g. comparing a missing metadata value with a number
        return False
