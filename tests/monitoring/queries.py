"""The monitoring manifests' PromQL, for tests: the dashboard's queries and the alerts' signals.

``dashboard_queries()`` and ``alert_signals()`` are meant for running against a real Prometheus
(an integration test); the rest is the small amount of PromQL reading the file tests need.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "kuberay" / "monitoring"
DASHBOARD = MONITORING / "grafana-dashboard.json"
CONFIGMAP = MONITORING / "grafana-dashboard-configmap.yaml"
RULES = MONITORING / "prometheus-rules.yaml"
PODMONITOR = MONITORING / "podmonitor.yaml"
ALERTS_TEST = Path(__file__).resolve().parent / "alerts_test.yml"

# The dashboard's rate window, as an integration test against a real Prometheus evaluates it.
RATE_INTERVAL = "1m"

COMPARISONS = ("==", "!=", ">=", "<=", ">", "<")


# --- files ---------------------------------------------------------------------------------------
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def panels(board: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    out: list[dict[str, Any]] = []
    for panel in (board or dashboard()).get("panels", []):
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def prometheus_rule() -> dict[str, Any]:
    return yaml.safe_load(RULES.read_text(encoding="utf-8"))


def rule_groups() -> dict[str, Any]:
    """The PrometheusRule's spec: a Prometheus rule file (``groups: [...]``), for promtool."""
    return prometheus_rule()["spec"]


def alert_rules() -> dict[str, dict[str, Any]]:
    """Alert name -> its rule (expr, for, labels, annotations)."""
    return {r["alert"]: r for g in rule_groups()["groups"] for r in g["rules"] if "alert" in r}


# --- PromQL --------------------------------------------------------------------------------------
def _scan(expr: str):
    """Yields (index, char, depth) outside string literals; depth counts (), {} and []."""
    depth, i, n = 0, 0, len(expr)
    while i < n:
        c = expr[i]
        if c in "\"'`":
            end = i + 1
            while end < n and expr[end] != c:
                end += 2 if expr[end] == "\\" and c != "`" else 1
            i = end + 1
            continue
        if c in "({[":
            depth += 1
        elif c in ")}]":
            depth -= 1
        yield i, c, depth
        i += 1


def top_level_comparisons(expr: str) -> list[tuple[int, str]]:
    """(index, operator) of every comparison operator outside parentheses, braces and strings."""
    found: list[tuple[int, str]] = []
    skip_to = -1
    for i, c, depth in _scan(expr):
        if i < skip_to or depth != 0 or c not in "=!<>":
            continue
        two = expr[i : i + 2]
        if two in ("==", "!=", ">=", "<="):
            found.append((i, two))
            skip_to = i + 2
        elif c in "<>":
            found.append((i, c))
    return found


def split_comparison(expr: str) -> tuple[str, str, str]:
    """``<signal> <op> <threshold>`` -> (signal, op, threshold); exactly one top-level comparison."""
    found = top_level_comparisons(expr)
    if len(found) != 1:
        raise ValueError(f"want exactly one top-level comparison, found {[op for _, op in found]}: {expr}")
    ((i, op),) = found
    threshold = expr[i + len(op) :].strip()
    if threshold.startswith("bool "):
        raise ValueError(f"an alert's comparison must filter, not use bool: {expr}")
    return expr[:i].strip(), op, threshold


_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "atan2",
    "inf",
    "nan",
}
_LABEL_LISTS = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_IDENT = re.compile(r"(?<![\w:$.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])")
_MATCHER_LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")


_STRING = re.compile(r""""(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`""")


def _without_strings(expr: str) -> str:
    """``expr`` with every string literal emptied (``""``)."""
    return _STRING.sub('""', expr)


def metric_names(expr: str) -> set[str]:
    """The series names an expression selects (functions, keywords and label names left out)."""
    text = _without_strings(expr)
    text = _LABEL_LISTS.sub(" ", text)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    names = set()
    for m in _IDENT.finditer(text):
        word = m.group(1)
        if word.lower() in _KEYWORDS or text[m.end() :].lstrip().startswith("("):
            continue
        names.add(word)
    return names


def label_names(expr: str) -> set[str]:
    """Label names in grouping/matching clauses and in selectors' matchers."""
    text = _without_strings(expr)
    labels: set[str] = set()
    for m in _LABEL_LISTS.finditer(text):
        labels.update(x.strip() for x in m.group(2).split(",") if x.strip())
    for block in re.findall(r"\{([^}]*)\}", text):
        labels.update(_MATCHER_LABEL.findall(block))
    return labels


# --- for a real Prometheus -----------------------------------------------------------------------
def dashboard_queries() -> list[str]:
    """Every panel target's expr, with Grafana's ``$__rate_interval`` as ``1m``."""
    queries = []
    for panel in panels():
        for target in panel.get("targets", []):
            expr = (target.get("expr") or "").strip()
            if expr:
                queries.append(
                    expr.replace("${__rate_interval}", RATE_INTERVAL).replace(
                        "$__rate_interval", RATE_INTERVAL
                    )
                )
    return queries


def alert_signals() -> dict[str, str]:
    """Alert name -> the signal part of its expr (before its single top-level comparison)."""
    return {name: split_comparison(rule["expr"])[0] for name, rule in alert_rules().items()}
