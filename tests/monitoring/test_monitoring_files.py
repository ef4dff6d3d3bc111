"""The monitoring manifests in kuberay/monitoring: the PrometheusRule (promtool check and unit
tests), the Grafana dashboard and its ConfigMap, the PodMonitor, and the PromQL they share, which
must use only the router's series (app.observability.metrics.SERIES) as Ray exports them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.observability.metrics import SERIES
from tests.monitoring import queries as q

PROMTOOL = os.environ.get("PROMTOOL") or shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (Debian/Ubuntu: apt-get install prometheus)"
)

# The name the unit tests' rule_files entry gives the rules extracted from the PrometheusRule.
RULES_FILE_NAME = "hybrid-router-rules.yaml"

ALERTS = {
    "DailyBudgetExceeded",
    "HighRouterLatency",
    "SelfHostedModelsDown",
    "HighFallbackRate",
    "CloudOveruseOpportunity",
}
README_URL = "https://github.com/hybrid-router/hybrid-router/blob/main/README.md"
TROUBLESHOOTING_ANCHORS = {
    "all-requests-going-to-cloud",
    "high-cloud-costs",
    "slow-response-times",
    "self-hosted-model-failures",
    "wrong-model-selection",
}
REQUIRED_PANELS = {
    # the seed guide's three
    "Request Distribution",
    "Cost Over Time",
    "Latency by Model",
    "Fallback Rate",
    "Self-Hosted vs Cloud Share",
    "Budget Spend vs Limit",
    "Breaker State by Model",
    "Backend Up by Model",
    "Time to First Token by Model",
    "Router Overhead",
    "Requests by Status",
    "Cost per Day by Provider",
    "Tokens In/Out by Model",
    "Cache Hit Ratio",
    "Prompt Cache Tokens and Savings",
    "Self-Hosted Load and Spill-Over",
    "Live Model Latency",
}
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
AGGREGATIONS = ("sum", "max", "min", "avg", "count")


def _all_exprs() -> list[tuple[str, str]]:
    """(where, expr) for every dashboard target and every alert."""
    out = []
    for panel in q.panels():
        for target in panel.get("targets", []):
            out.append((f"panel {panel.get('title')!r} {target.get('refId')}", target.get("expr", "")))
    out += [(f"alert {name}", rule["expr"]) for name, rule in q.alert_rules().items()]
    return out


def _series_of(metric: str) -> tuple[str, str]:
    """``ray_router_x_total`` -> (``router_x``, kind), checking the suffix fits the kind."""
    assert metric.startswith("ray_"), f"{metric}: the router's series reach Prometheus as ray_router_*"
    bare = metric[len("ray_") :]
    for name, (kind, _, _) in SERIES.items():
        for suffix in SUFFIXES[kind]:
            if bare == name + suffix:
                return name, kind
    raise AssertionError(
        f"{metric}: not one of the router's series (app.observability.metrics.SERIES) "
        f"with its kind's suffix (counter _total, histogram _bucket/_sum/_count, gauge none)"
    )


# --- (a), (b): promtool ------------------------------------------------------------------------
@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    """A folder holding the PrometheusRule's spec as a plain rule file, and the unit tests."""
    (tmp_path / RULES_FILE_NAME).write_text(
        yaml.safe_dump(q.rule_groups(), sort_keys=False, width=10_000), encoding="utf-8"
    )
    shutil.copy(q.ALERTS_TEST, tmp_path / q.ALERTS_TEST.name)
    return tmp_path


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


@needs_promtool
def test_promtool_check_rules(rules_dir: Path) -> None:
    done = _promtool("check", "rules", RULES_FILE_NAME, cwd=rules_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in done.stdout


@needs_promtool
def test_promtool_unit_tests(rules_dir: Path) -> None:
    done = _promtool("test", "rules", q.ALERTS_TEST.name, cwd=rules_dir)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_dashboard_queries_parse(tmp_path: Path) -> None:
    """Each dashboard query, as a recording rule, passes promtool's PromQL parser."""
    rules = [
        {"record": f"hybrid_router:dashboard_query_{i}", "expr": expr}
        for i, expr in enumerate(q.dashboard_queries())
    ]
    (tmp_path / "dashboard.yaml").write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, width=10_000), encoding="utf-8"
    )
    done = _promtool("check", "rules", "dashboard.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_unit_tests_cover_every_alert() -> None:
    """Each alert: a case that fires it, checked before its `for` has passed (nothing yet) and
    after (firing, with labels and annotations); and a case where it stays silent."""
    doc = yaml.safe_load(q.ALERTS_TEST.read_text(encoding="utf-8"))
    assert doc["rule_files"] == [RULES_FILE_NAME]
    fires: set[str] = set()
    pending_then_fires: set[str] = set()
    silent: set[str] = set()
    rules = q.alert_rules()
    for case in doc["tests"]:
        checks = case.get("alert_rule_test", [])
        firing_cases = {c["alertname"] for c in checks if c.get("exp_alerts")}
        for check in checks:
            name = check["alertname"]
            assert name in rules, f"{case['name']}: no alert {name} in the rules"
            for alert in check.get("exp_alerts") or []:
                assert alert["exp_labels"]["severity"] == rules[name]["labels"]["severity"]
                assert alert["exp_annotations"]["summary"], f"{case['name']}: no summary expected"
                assert set(alert["exp_annotations"]) == set(rules[name]["annotations"])
            if check.get("exp_alerts"):
                fires.add(name)
                earlier_empty = [
                    c
                    for c in checks
                    if c["alertname"] == name
                    and not c.get("exp_alerts")
                    and _minutes(c["eval_time"]) < _minutes(check["eval_time"])
                ]
                if earlier_empty:
                    pending_then_fires.add(name)
            elif name not in firing_cases:
                silent.add(name)
    assert set(rules) == ALERTS
    assert fires == ALERTS, f"no firing case for {sorted(ALERTS - fires)}"
    assert pending_then_fires == ALERTS, f"`for` not checked for {sorted(ALERTS - pending_then_fires)}"
    assert silent == ALERTS, f"no silent case for {sorted(ALERTS - silent)}"


def _minutes(duration: str) -> float:
    units = {"s": 1 / 60, "m": 1, "h": 60}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([smh])", duration))


# --- (c): only the router's series --------------------------------------------------------------
@pytest.mark.parametrize(("where", "expr"), [pytest.param(w, e, id=w) for w, e in _all_exprs()])
def test_exprs_use_only_router_series(where: str, expr: str) -> None:
    names = q.metric_names(expr)
    assert names, f"{where}: no series in {expr!r}"
    allowed_labels = {"le"}
    for metric in names:
        name, kind = _series_of(metric)
        allowed_labels |= set(SERIES[name][2])
        if metric.endswith("_bucket"):
            assert "histogram_quantile(" in expr, f"{where}: {metric} outside histogram_quantile"
        if kind == "counter":
            assert re.search(rf"\b(rate|increase)\(\s*{metric}\b", expr), (
                f"{where}: counter {metric} not rated"
            )
    unknown = q.label_names(expr) - allowed_labels
    assert not unknown, f"{where}: labels {sorted(unknown)} are not the router's ({expr})"


@pytest.mark.parametrize(("where", "expr"), [pytest.param(w, e, id=w) for w, e in _all_exprs()])
def test_exprs_aggregate_away_replica_labels(where: str, expr: str) -> None:
    """Every operand is aggregated (sum/max/min/avg/count, by the router's labels only), so
    Ray's replica, WorkerId, NodeAddress... never reach a panel or an alert."""
    for operand in _operands(expr):
        operand = re.sub(
            r"^(on|ignoring)\s*\([^)]*\)\s*(group_left|group_right)?\s*(\([^)]*\))?\s*", "", operand.strip()
        )
        if re.fullmatch(r"[0-9.e+]+", operand):
            continue
        m = re.match(r"histogram_quantile\(\s*[0-9.]+\s*,\s*(.*)\)$", operand, re.DOTALL)
        if m:
            inner = m.group(1).strip()
            assert re.match(r"sum\s+by\s*\(([^)]*\ble\b[^)]*)\)", inner), f"{where}: {operand}"
            continue
        assert re.match(rf"({'|'.join(AGGREGATIONS)})\b\s*(by\s*\([^)]*\)\s*)?\(", operand), (
            f"{where}: {operand!r} is not aggregated"
        )
        assert not re.match(r"\w+\s+without\b", operand), f"{where}: aggregate with by(), not without()"


def _operands(expr: str) -> list[str]:
    """The operands of ``expr``'s top-level binary operators."""
    cuts, skip = [], -1
    for i, c, depth in q._scan(expr):
        if i < skip or depth != 0:
            continue
        two = expr[i : i + 2]
        if two in ("==", "!=", ">=", "<="):
            cuts.append((i, 2))
            skip = i + 2
        elif c in "/*+-<>%^" and not (c in "+-" and re.search(r"[0-9.]e$", expr[:i])):
            cuts.append((i, 1))
    parts, last = [], 0
    for i, n in cuts:
        parts.append(expr[last:i])
        last = i + n
    parts.append(expr[last:])
    return [p.strip() for p in parts if p.strip()]


# --- (d): the ConfigMap -----------------------------------------------------------------------
def test_configmap_holds_exactly_the_dashboard() -> None:
    text = q.DASHBOARD.read_text(encoding="utf-8")
    cm = yaml.safe_load(q.CONFIGMAP.read_text(encoding="utf-8"))
    assert cm["apiVersion"] == "v1" and cm["kind"] == "ConfigMap"
    assert cm["metadata"]["namespace"] == "production"
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert list(cm["data"]) == ["hybrid-router.json"]
    assert cm["data"]["hybrid-router.json"] == text, "run python kuberay/monitoring/make_configmap.py"


def test_make_configmap_is_up_to_date() -> None:
    done = subprocess.run(
        [sys.executable, str(q.MONITORING / "make_configmap.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


# --- (e): the dashboard ------------------------------------------------------------------------
def test_dashboard_shape() -> None:
    board = q.dashboard()
    assert board["uid"] == "hybrid-router"
    assert 36 <= board["schemaVersion"] <= 41
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in q.panels(board)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_dashboard_has_the_panels() -> None:
    titles = [p["title"] for p in q.panels()]
    assert len(titles) == len(set(titles)), "panel titles must be unique"
    missing = REQUIRED_PANELS - set(titles)
    assert not missing, f"missing panels: {sorted(missing)}"


@pytest.mark.parametrize("panel", q.panels(), ids=lambda p: p.get("title", "?"))
def test_dashboard_panel(panel: dict[str, Any]) -> None:
    assert panel["type"] in {"timeseries", "stat", "bargauge", "gauge", "table"}
    assert {"h", "w", "x", "y"} <= set(panel["gridPos"]) and panel["gridPos"]["x"] + panel["gridPos"][
        "w"
    ] <= 24
    assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    targets = panel.get("targets") or []
    assert any((t.get("expr") or "").strip() for t in targets), "no target with an expr"
    for t in targets:
        assert (t.get("expr") or "").strip(), f"target {t.get('refId')} has no expr"
        assert t["datasource"] == panel["datasource"]
        # rates over Grafana's $__rate_interval only, never a fixed window
        windows = set(re.findall(r"\[([^\]]+)\]", t["expr"]))
        assert windows <= {"$__rate_interval"}, f"{t['expr']}: windows {windows}"


def test_dashboard_queries_helper() -> None:
    queries = q.dashboard_queries()
    assert len(queries) == sum(len(p["targets"]) for p in q.panels())
    assert all("$" not in expr for expr in queries)
    assert any("[1m]" in expr for expr in queries)


# --- (f): the alerts -------------------------------------------------------------------------
def test_prometheus_rule_object() -> None:
    rule = q.prometheus_rule()
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["kind"] == "PrometheusRule"
    assert rule["metadata"]["namespace"] == "production"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert [g["name"] for g in rule["spec"]["groups"]] == ["hybrid-router"]
    assert set(q.alert_rules()) == ALERTS


@pytest.mark.parametrize("name", sorted(ALERTS))
def test_alert(name: str) -> None:
    rule = q.alert_rules()[name]
    signal, op, threshold = q.split_comparison(rule["expr"])
    assert signal and op in q.COMPARISONS and threshold
    assert re.fullmatch(r"\d+(\.\d+)?", threshold), f"{name}: threshold {threshold!r} is not a number"
    assert not q.top_level_comparisons(signal)
    assert re.fullmatch(r"\d+[smh]", rule["for"]), f"{name}: for {rule.get('for')!r}"
    assert rule["labels"]["severity"] in {"critical", "warning", "info"}
    notes = rule["annotations"]
    assert notes["summary"].strip() and notes["description"].strip()
    url, _, anchor = notes["runbook_url"].partition("#")
    assert url == README_URL and anchor in TROUBLESHOOTING_ANCHORS, notes["runbook_url"]


def test_alert_signals_helper() -> None:
    signals = q.alert_signals()
    assert set(signals) == ALERTS
    for name, signal in signals.items():
        assert signal and not q.top_level_comparisons(signal)
        assert q.alert_rules()[name]["expr"].startswith(signal)


def test_split_comparison() -> None:
    assert q.split_comparison('max(x{a!="1",b=~"<>"}) >= 1') == ('max(x{a!="1",b=~"<>"})', ">=", "1")
    assert q.split_comparison("sum(a) / sum(b) > 0.1") == ("sum(a) / sum(b)", ">", "0.1")
    assert q.split_comparison("max by (p) (a) >= on(p) max by (p) (b)")[2] == "on(p) max by (p) (b)"
    with pytest.raises(ValueError):
        q.split_comparison("sum(a) > 1 < 3")
    with pytest.raises(ValueError):
        q.split_comparison("sum(a)")


def test_runbook_anchors_exist_once_the_readme_has_them() -> None:
    """Once README.md has its Troubleshooting section, every runbook anchor must be a heading there."""
    readme = (q.ROOT / "README.md").read_text(encoding="utf-8")
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", readme, re.MULTILINE)
    if not any(_slug(h) == "troubleshooting" for h in headings):
        pytest.skip("README.md has no Troubleshooting section yet")
    slugs = {_slug(h) for h in headings}
    for name, rule in q.alert_rules().items():
        anchor = rule["annotations"]["runbook_url"].partition("#")[2]
        assert anchor in slugs, f"{name}: README.md has no heading for #{anchor}"


def _slug(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    heading = re.sub(r"`|\*\*|__", "", heading.strip().lower())
    return re.sub(r"\s", "-", re.sub(r"[^\w\- ]", "", heading))


# --- the PodMonitor -------------------------------------------------------------------------------
def test_podmonitor() -> None:
    pm = yaml.safe_load(q.PODMONITOR.read_text(encoding="utf-8"))
    assert pm["apiVersion"] == "monitoring.coreos.com/v1" and pm["kind"] == "PodMonitor"
    assert pm["metadata"]["namespace"] == "production"
    assert pm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert pm["spec"]["namespaceSelector"]["matchNames"] == ["production"]
    assert pm["spec"]["selector"]["matchLabels"] == {
        "ray.io/is-ray-node": "yes",
        "app.kubernetes.io/name": "hybrid-router",
    }
    (endpoint,) = pm["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"], endpoint["interval"]) == ("metrics", "/metrics", "15s")
    relabel = {r["targetLabel"]: r["sourceLabels"] for r in endpoint["relabelings"]}
    assert relabel["ray_cluster"] == ["__meta_kubernetes_pod_label_ray_io_cluster"]
