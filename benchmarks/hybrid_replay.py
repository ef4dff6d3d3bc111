"""Hybrid cost and latency: a day shaped like the seed's workload, replayed through `/v1/route`.

Method. ``workload.py`` draws a day of requests (default 100K) in the seed's mix: 70% simple
queries, code and fast responses, 20% moderate-context documents (50-100K tokens), 10% long
documents (>100K) and complex analyses. Each request is sent, in arrival order, to the real
``POST /v1/route`` of the real app (``create_app`` over ``RouterService`` with the default
``deployments/configs/router.yaml`` and scripted backends, in process over ASGI, lifespan run),
which returns the router's decision and its token count. Scenarios:

* hybrid: ``model: auto``, the router's default: among the models that fit, the cheapest whose
  predicted quality is within ``quality.margin`` of the best; prompts over 50K / 100K tokens and
  tight latency needs keep the keyword tree's context and latency branches. Budgets lifted;
* hybrid, rules: ``routing_strategy: rules``, the seed's keyword decision tree (what ``auto`` was
  before the quality predictor), budgets lifted;
* cloud-only: the router's ``cloud_only`` strategy, ``auto``'s rule among cloud models only (the
  seed's failover "self-hosted unavailable -> Gemini Flash"), budgets lifted;
* self-hosted-only: the router's ``self_hosted_only`` strategy, ``auto``'s rule among self-hosted
  models, budgets lifted; a prompt that no self-hosted window takes is refused (400), as the
  router does;
* hybrid, configured budgets: ``auto`` with the config's daily budgets (scaled down for a replay
  shorter than 100K requests); each decision is then spent as the executor spends it (the worst
  case reserved on the primary, or on each fallback in turn while the budgets refuse, then the real
  cost settled) in the router's own ledger in a temporary folder, which the router re-reads.

Where ``auto`` sends each class, and why, is derived from what ``/v1/route`` answers: the branch
(its reason) and the predicted quality of every model that fits. From those predictions the report
also works out the self-hosted share ``auto`` would reach at other margins (exact while every model
is up: self-hosted models are the cheapest, so a request stays self-hosted exactly when one of them
is within the margin of the best).

Each served request is priced with the model's catalog price (``genai-prices`` for cloud models,
the catalog's fixed per-token price for self-hosted ones): input = the router's token count,
output = the request's sampled answer length. Latency is modelled per model: the catalog's
``typical_latency_ms`` plus prefill and decode time at the speeds below (stated assumptions).

Speed. A decision depends only on the body and on what each model's availability check answers
for it (backend up, breaker closed, budgets), so a body seen before is not sent again while those
answers are unchanged; its earlier decision is reused, and every ``VERIFY_EVERY``-th reuse is
re-sent to check that the endpoint still answers the same (mismatches are reported).

Run: .venv/bin/python benchmarks/hybrid_replay.py [--requests 100000] [--seed 7]

``--workload document-reuse`` replays instead the same day with its long documents asked about in
sessions, through ``/v1/chat/completions`` with provider prompt caching simulated, and reports the
cost per day with and without caching and cache affinity (``reuse_replay.py``, its own section).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import math
import statistics
import sys
import tempfile
import textwrap
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `tests.fakes` lives at the repo root

import httpx
from _results import figure, save_plot, table, write_section
from workload import KINDS, Workload, generate

from app.api.routes import create_app
from app.budget.alerts import AlertSender
from app.budget.budgets import STATE_DIR_ENV, Budgets, ledger_for
from app.budget.pricing import Pricer, TokenUsage
from app.config import RouterConfig, load_config
from app.errors import BudgetExhaustedError
from app.feedback.backends import store_for as feedback_store_for
from app.feedback.service import FeedbackService
from app.observability.logs import configure_logging
from app.observability.metrics import metrics as new_metrics
from app.service import RouterService
from tests.fakes.backends import ScriptedBackend

CONFIG = Path(__file__).parents[1] / "deployments/configs/router.yaml"
DAY_REQUESTS = 100_000  # the seed's day ("Hybrid Strategy Results": 100K requests/day)
VERIFY_EVERY = 50  # every 50th reused decision is re-sent to the endpoint

# The seed's claims: guide, "Performance Benchmarks" > "Hybrid Strategy Results" and "Cost
# Optimization" > "Expected Cost Distribution" (Flash $2.00/day for 20% of requests; its cost table
# prices Flash at $0.10 per 1M tokens).
SEED = {
    "self_hosted_share": 0.70,
    "cheap_cloud_share": 0.20,
    "premium_share": 0.10,
    "hybrid_usd_day": 10.0,
    "cloud_only_usd_day": 35.0,
    "savings": 0.71,
    "hybrid_latency_ms": 600.0,
    "cloud_only_latency_ms": 1200.0,
    "flash_usd_day": 2.00,
    "flash_usd_per_million": 0.10,
}
SHARE_TOLERANCE, COST_TOLERANCE = 0.05, 0.25  # "met" within 5 points, or 25% of a dollar figure
CHEAP_CLOUD_MAX_INPUT = 1.0  # USD per 1M input tokens: cloud models at or under it are the seed's Flash tier

# Self-hosted speeds, derived from the NVIDIA L4 datasheet (300 GB/s memory bandwidth, 121 TFLOPS
# dense FP16) for the fp16 weights deployments/configs/gke.yaml serves (no quantization): decode is
# bandwidth-bound (each token reads every weight), prefill compute-bound (2 FLOPs per parameter).
L4_BANDWIDTH, L4_FLOPS = 300e9, 121e12
BANDWIDTH_EFFICIENCY, PREFILL_MFU = 0.8, 0.5  # assumed: typical of vLLM at low batch
SELF_HOSTED = {  # parameters, GPUs (tensor parallel)
    "mistral-7b-instruct": (7.2e9, 1),
    "mistral-7b-fast": (7.2e9, 1),  # prefill/decode disaggregation: one L4 each, decode still bandwidth-bound
    "codellama-13b": (13.0e9, 2),
}
# Cloud speeds (decode, prefill tokens/s): assumed round figures of the order public output-speed
# measurements show (e.g. artificialanalysis.ai, 2025); not measured here.
CLOUD_SPEED = {
    "gemini-flash": (200, 20_000),
    "gemini-pro": (100, 20_000),
    "claude-haiku": (150, 20_000),
    "claude-sonnet": (70, 20_000),
    "claude-opus": (45, 20_000),
    "gpt": (80, 20_000),
}
# GPU nodes behind the self-hosted models at the GKE profile's minimum replicas (gke.yaml, kuberay/):
# mistral-7b-instruct on one L4 (g2-standard-8), codellama-13b on two (g2-standard-24), mistral-7b-fast's
# prefill and decode servers on one L4 each (2 x g2-standard-8). On-demand us-central1 list prices of
# about $0.85/h and $2.00/h (Compute Engine pricing, 2025). Not part of the catalog's per-token price.
GPU_NODES_USD_PER_DAY = (3 * 0.85 + 1 * 2.00) * 24


@dataclass(frozen=True)
class Scenario:
    name: str
    strategy: str | None  # routing_strategy sent; None: the default (auto)
    budgets: bool  # the config's daily budgets, with the day's spend recorded


HYBRID, RULES, CLOUD, SELF, BUDGETED = (
    "hybrid",
    "hybrid, rules",
    "cloud-only",
    "self-hosted-only",
    "hybrid, configured budgets",
)
SCENARIOS = (
    Scenario(HYBRID, None, False),
    Scenario(RULES, "rules", False),
    Scenario(CLOUD, "cloud_only", False),
    Scenario(SELF, "self_hosted_only", False),
    Scenario(BUDGETED, None, True),
)
COMPARED = (HYBRID, RULES)  # the two routings of the hybrid, side by side in the report


@dataclass(frozen=True)
class Decision:
    status: int
    model: str | None
    tokens: int | None
    error: str | None = None
    fallbacks: tuple[str, ...] = ()
    dropped: tuple[tuple[str, str], ...] = ()
    max_tokens: int | None = None
    reason: str = ""  # the primary's reason: the branch taken
    quality: tuple[tuple[str, float], ...] = ()  # predicted quality of each model that fits
    margin: float | None = None  # the quality margin used (quality-ranked strategies only)
    task: str | None = None

    @property
    def ranked(self) -> bool:
        """Decided by predicted quality (not by a context or latency branch)."""
        return "cheapest with predicted quality" in self.reason


def decision_of(response: httpx.Response) -> Decision:
    data = response.json()
    if response.status_code != 200:
        return Decision(response.status_code, None, None, (data.get("error") or {}).get("code") or "error")
    f = data["features"]
    return Decision(
        200,
        data["model"],
        f["tokens"],
        None,
        tuple(t["model"] for t in data["fallbacks"]),
        tuple((d["model"], d["reason"]) for d in data["dropped"]),
        f["max_tokens"],
        data["reason"],
        tuple(sorted((data.get("quality") or {}).items())),
        data.get("quality_margin"),
        f.get("task"),
    )


@dataclass
class Router:
    """Decisions from ``/v1/route``; a body seen before is re-sent only when the answers of the
    availability checks the planner makes for it have changed (see the module docstring)."""

    client: httpx.AsyncClient
    service: RouterService
    workload: Workload
    strategy: str | None
    features: dict[int, tuple[int, int]]  # shape -> (tokens, planning output), shared by scenarios
    memo: dict[tuple, Decision] = field(default_factory=dict)
    calls: int = 0
    reused: int = 0
    checked: int = 0
    mismatches: int = 0
    version: int = 0  # bumped whenever the router's state may have changed (budgets re-read)
    _available: tuple[int, dict[str, str | None]] = (-1, {})
    _states: dict[int, tuple[int, tuple]] = field(default_factory=dict)

    def state(self, shape: int) -> tuple:
        """What the planner asks of each model for this body (``RouterService._fits``): whether it
        is available, and whether the day's budgets can cover this request on it."""
        cached = self._states.get(shape)
        if cached is not None and cached[0] == self.version:
            return cached[1]
        s = self.service
        if self._available[0] != self.version:
            self._available = (self.version, {m: s.availability(m) for m in s.catalog.models})
        available = self._available[1]
        tokens, output = self.features[shape]
        state = tuple(available[m] or s.budgets.cannot_cover(m, tokens, output) for m in s.catalog.models)
        self._states[shape] = (self.version, state)
        return state

    async def send(self, shape: int) -> Decision:
        self.calls += 1
        decision = decision_of(
            await self.client.post("/v1/route", json=self.workload.body(shape, self.strategy))
        )
        if decision.tokens is not None and shape not in self.features:
            output = decision.max_tokens or self.service.config.routing.default_max_tokens
            self.features[shape] = (decision.tokens, output)
        return decision

    async def decide(self, shape: int) -> Decision:
        key = (shape, self.state(shape)) if shape in self.features else None
        known = self.memo.get(key) if key else None
        if known is None:
            decision = await self.send(shape)
            if shape in self.features:
                self.memo[(shape, self.state(shape))] = decision
            return decision
        self.reused += 1
        if self.reused % VERIFY_EVERY:
            return known
        fresh = await self.send(shape)
        self.checked += 1
        self.mismatches += fresh != known
        return fresh


@dataclass
class Outcome:
    """Per request of one scenario: the decision, its cost (USD) and modelled latency (s)."""

    scenario: Scenario
    decisions: list[Decision]
    costs: list[float]
    latencies: list[float | None]
    router: Router
    seconds: float
    budget_report: dict | None = None  # GET /v1/budget at the end of the day


# --- prices and latency ---------------------------------------------------------------------
@cache
def pricer() -> Pricer:
    return Pricer(dict(load_config(CONFIG).models))


def price(model: str, input_tokens: int, output_tokens: int) -> Decimal:
    """``Pricer.cost`` of the usage, computed once per prompt: genai-prices picks a tier by input
    tokens, and within it the output cost is linear, so this is exact and ~100x cheaper per request."""
    base, per_output = prompt_price(model, input_tokens)
    return base + output_tokens * per_output


@cache
def prompt_price(model: str, input_tokens: int) -> tuple[Decimal, Decimal]:
    base = pricer().cost(model, TokenUsage(input_tokens=input_tokens))
    million = pricer().cost(model, TokenUsage(input_tokens=input_tokens, output_tokens=1_000_000))
    return base, (million - base) / 1_000_000


@cache
def speeds(model: str) -> tuple[float, float]:
    """(decode, prefill) tokens per second."""
    if model in SELF_HOSTED:
        params, gpus = SELF_HOSTED[model]
        decode = BANDWIDTH_EFFICIENCY * L4_BANDWIDTH * gpus / (2 * params)
        return decode, PREFILL_MFU * L4_FLOPS * gpus / (2 * params)
    return CLOUD_SPEED[model]


def latency(config: RouterConfig, model: str, prompt: int, answer: int) -> float:
    decode, prefill = speeds(model)
    return config.models[model].typical_latency_ms / 1000 + prompt / prefill + answer / decode


# --- the replay ------------------------------------------------------------------------------
def service_for(config: RouterConfig, state_dir: str) -> RouterService:
    """The router as deployed, with scripted backends, a ledger in ``state_dir``, no webhook, and
    one fixed day (a replay that crosses midnight must not reset its budgets); its feedback store
    beside that ledger."""
    metrics = new_metrics()
    day = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    budgets = Budgets(
        config,
        pricer(),
        ledger_for(config.ledger, {STATE_DIR_ENV: state_dir}),
        metrics,
        AlertSender(config.cost_rules.webhook, metrics, env={}),
        now=lambda: day,
    )
    backends = {m: ScriptedBackend(m) for m in config.models}
    feedback = FeedbackService(feedback_store_for(config.ledger, {STATE_DIR_ENV: state_dir}))
    return RouterService(config, backends, pricer(), metrics=metrics, budgets=budgets, feedback=feedback)


def with_budgets(config: RouterConfig, scale: float | None) -> RouterConfig:
    """The config's daily budgets times ``scale`` (a replay shorter than a day gets smaller ones),
    or none at all."""
    budgets = {k: v * scale for k, v in config.cost_rules.daily_budgets.items()} if scale else {}
    return config.model_copy(
        update={"cost_rules": config.cost_rules.model_copy(update={"daily_budgets": budgets})}
    )


async def spend(service: RouterService, d: Decision, answer_tokens: int) -> Decision:
    """What the executor does with a plan under budgets: reserve the request's worst case on the
    primary, then on each fallback while the budgets refuse; settle the real cost. The router then
    re-reads the day's spend, as it does after every call."""
    for model in (d.model, *d.fallbacks):
        try:
            reservation = await service.budgets.reserve(model, d.tokens, d.max_tokens)
        except BudgetExhaustedError:
            continue
        await service.budgets.settle(reservation, price(model, d.tokens, answer_tokens))
        await service.budgets.settled()
        return replace(d, model=model)
    return replace(d, status=429, model=None, error="budget_exhausted")


async def replay(scenario: Scenario, workload: Workload, features: dict, state_dir: str) -> Outcome:
    """The day's decisions in one scenario, then their costs and latencies."""
    config = load_config(CONFIG)
    config = with_budgets(config, len(workload.requests) / DAY_REQUESTS if scenario.budgets else None)
    service = service_for(config, state_dir)
    app = create_app(service)
    started = time.perf_counter()
    decisions: list[Decision] = []
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://replay")
    async with app.router.lifespan_context(app), client:
        router = Router(client, service, workload, scenario.strategy, features)
        for request in workload.requests:
            d = await router.decide(request.shape)
            if scenario.budgets and d.model is not None:
                d = await spend(service, d, request.answer_tokens)
                router.version += 1
            decisions.append(d)
        report = (await client.get("/v1/budget")).json() if scenario.budgets else None
    costs = [
        float(price(d.model, d.tokens, r.answer_tokens)) if d.model else 0.0
        for d, r in zip(decisions, workload.requests)
    ]
    latencies = [
        latency(config, d.model, d.tokens, r.answer_tokens) if d.model else None
        for d, r in zip(decisions, workload.requests)
    ]
    return Outcome(scenario, decisions, costs, latencies, router, time.perf_counter() - started, report)


# --- summaries -------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def tier(config: RouterConfig, model: str) -> str:
    if config.is_self_hosted(model):
        return "self-hosted"
    return (
        "cheap cloud" if pricer().rates(model).input_per_million <= CHEAP_CLOUD_MAX_INPUT else "premium cloud"
    )


def summary(o: Outcome, config: RouterConfig) -> dict:
    n = len(o.decisions)
    scale = DAY_REQUESTS / n
    served = [d for d in o.decisions if d.model]
    tiers = Counter(tier(config, d.model) for d in served)
    lat = [x for x in o.latencies if x is not None]
    catalog = [config.models[d.model].typical_latency_ms for d in served]
    cost = sum(o.costs) * scale
    gpu = GPU_NODES_USD_PER_DAY if tiers["self-hosted"] else 0.0
    return {
        "requests": n,
        "served": len(served),
        "refused": Counter(d.error for d in o.decisions if not d.model),
        "cost": cost,
        "cost_gpu": cost + gpu,
        "self_hosted": tiers["self-hosted"] / n,
        "cheap_cloud": tiers["cheap cloud"] / n,
        "premium": tiers["premium cloud"] / n,
        "mean_s": statistics.fmean(lat) if lat else float("nan"),
        "p50_s": percentile(lat, 0.5),
        "p95_s": percentile(lat, 0.95),
        "catalog_ms": statistics.fmean(catalog) if catalog else float("nan"),
        "models": Counter(d.model for d in served),
        "cost_by_model": by_model_cost(o, scale),
    }


def by_model_cost(o: Outcome, scale: float) -> Counter:
    out: Counter = Counter()
    for d, c in zip(o.decisions, o.costs):
        if d.model:
            out[d.model] += c * scale
    return out


def class_indexes(workload: Workload) -> dict[str, list[int]]:
    """Request indexes per workload class, in ``KINDS`` order (empty classes left out)."""
    out: dict[str, list[int]] = {k.name: [] for k in KINDS}
    for i, r in enumerate(workload.requests):
        out[workload.shapes[r.shape].kind].append(i)
    return {k: v for k, v in out.items() if v}


def by_kind(outcomes: list[Outcome], workload: Workload) -> list[list[object]]:
    """Per workload class: where each scenario routed it and what it cost there."""
    scale = DAY_REQUESTS / len(workload.requests)
    rows = []
    for kind, idx in class_indexes(workload).items():
        tokens = [t for o in outcomes for t in [o.decisions[i].tokens for i in idx] if t is not None]
        answers = [workload.requests[i].answer_tokens for i in idx]
        row: list[object] = [
            kind,
            f"{pct(len(idx) / len(workload.requests))}",
            f"{statistics.median(tokens):,.0f}" if tokens else "-",
            f"{statistics.median(answers):,.0f}",
        ]
        for o in outcomes:
            models = Counter(o.decisions[i].model or f"refused ({o.decisions[i].error})" for i in idx)
            row += [
                ", ".join(f"{m} {pct(c / len(idx))}" for m, c in models.most_common(3)),
                usd(sum(o.costs[i] for i in idx) * scale),
            ]
        rows.append(row)
    return rows


def kind_table(outcomes: list[Outcome], workload: Workload) -> str:
    headers = ["class", "share", "median prompt tokens", "median answer tokens"]
    for o in outcomes:
        label = ROUTING_LABEL.get(o.scenario.name, o.scenario.name)
        headers += [f"{label}: routed to", f"{label}: cost/day"]
    return table(headers, by_kind(outcomes, workload))


ROUTING_LABEL = {HYBRID: "`auto`", RULES: "`rules`"}


def usd(x: float) -> str:
    return f"${x:,.2f}"


def pct(x: float) -> str:
    """A share in whole percent, never rounded to a misleading 0% or 100%."""
    return "<1%" if 0 < x < 0.005 else ">99%" if 0.995 <= x < 1 else f"{x:.0%}"


def scenario_table(results: list[tuple[Outcome, dict]]) -> str:
    rows = []
    for o, s in results:
        refused = ", ".join(f"{c:,} {e}" for e, c in s["refused"].items()) or "0"
        rows.append(
            [
                o.scenario.name,
                f"{s['requests']:,}",
                f"{s['served']:,}",
                refused,
                usd(s["cost"]),
                usd(s["cost_gpu"]),
                f"{s['self_hosted']:.1%}",
                f"{s['mean_s']:.2f}",
                f"{s['p50_s']:.2f}",
                f"{s['p95_s']:.2f}",
                f"{s['catalog_ms']:.0f}",
            ]
        )
    return table(
        [
            "scenario",
            "requests",
            "served",
            "refused",
            "cost/day (catalog prices)",
            "cost/day + GPU nodes",
            "self-hosted share",
            "mean latency s",
            "p50 s",
            "p95 s",
            "mean catalog latency ms",
        ],
        rows,
    )


def share_table(results: list[tuple[Outcome, dict]], config: RouterConfig) -> str:
    by_name = {o.scenario.name: s for o, s in results}
    models = [m for m in config.models if any(s["models"][m] for _, s in results)]
    rows = []
    for m in models:
        row: list[object] = [m, tier(config, m)]
        for _, s in results:
            row.append(f"{s['models'][m] / s['requests']:.1%}" if s["models"][m] else "-")
        for name in COMPARED:
            s = by_name[name]
            row.append(usd(s["cost_by_model"][m]) if s["models"][m] else "-")
        rows.append(row)
    return table(
        ["model", "tier"] + [o.scenario.name for o, _ in results] + [f"{n} cost/day" for n in COMPARED], rows
    )


def verdict(ok: bool) -> str:
    return "met" if ok else "not met"


SELF_HOSTED_TARGET = SEED["self_hosted_share"]
SWEEP_MARGINS = (
    0.3,
    0.5,
    0.6,
    0.7,
    0.8,
    0.9,
    1.0,
)  # margins at which the report works out auto's self-hosted share


def claims(h: dict, c: dict) -> list[tuple[str, str, str, bool, str | None]]:
    """The seed's claims for one hybrid scenario ``h`` against cloud-only ``c``:
    (claim, seed's figure, replay's figure, met, key into ``to_close``)."""
    savings = 1 - h["cost"] / c["cost"]
    savings_gpu = 1 - h["cost_gpu"] / c["cost_gpu"]
    faster_catalog = 1 - h["catalog_ms"] / c["catalog_ms"]
    faster_model = 1 - h["mean_s"] / c["mean_s"]
    return [
        (
            "self-hosted share",
            "70%",
            f"{h['self_hosted']:.1%}",
            abs(h["self_hosted"] - SEED["self_hosted_share"]) <= SHARE_TOLERANCE,
            "share",
        ),
        (
            "cheap cloud (Flash tier) share",
            "20%",
            f"{h['cheap_cloud']:.1%}",
            abs(h["cheap_cloud"] - SEED["cheap_cloud_share"]) <= SHARE_TOLERANCE,
            None,
        ),
        (
            "premium cloud share",
            "10%",
            f"{h['premium']:.1%}",
            abs(h["premium"] - SEED["premium_share"]) <= SHARE_TOLERANCE,
            None,
        ),
        (
            "hybrid cost/day",
            "~$10",
            usd(h["cost"]),
            h["cost"] <= SEED["hybrid_usd_day"] * (1 + COST_TOLERANCE),
            "cost",
        ),
        (
            "cloud-only cost/day",
            "$35",
            usd(c["cost"]),
            abs(c["cost"] / SEED["cloud_only_usd_day"] - 1) <= COST_TOLERANCE,
            "cost",
        ),
        (
            "savings vs cloud-only",
            "71%",
            f"{savings:.1%} ({savings_gpu:.1%} with GPU nodes)",
            savings >= SEED["savings"] - SHARE_TOLERANCE,
            "cost",
        ),
        (
            "mean latency vs cloud-only (catalog latency, the seed's basis)",
            "600 vs 1,200 ms (50% faster)",
            f"{h['catalog_ms']:.0f} vs {c['catalog_ms']:.0f} ms ({relative(faster_catalog)})",
            faster_catalog >= 0.5 - SHARE_TOLERANCE,
            "latency_catalog",
        ),
        (
            "mean latency vs cloud-only (modelled end to end)",
            "50% faster",
            f"{h['mean_s']:.2f} vs {c['mean_s']:.2f} s ({relative(faster_model)})",
            faster_model >= 0.5 - SHARE_TOLERANCE,
            "latency_model",
        ),
    ]


def comparison(
    res: dict[str, dict], workload: Workload, out: dict[str, Outcome], config: RouterConfig, sweep: Sweep
) -> str:
    """The seed's claims against both hybrids (``auto`` and ``rules``); why and what would close a
    miss are given for ``auto``, the router's default."""
    why = reasons(res, workload, out, config)
    auto_rows, rules_rows = claims(res[HYBRID], res[CLOUD]), claims(res[RULES], res[CLOUD])
    rows = []
    for (claim, seed, value, met, key), (_, _, rules_value, rules_met, _) in zip(auto_rows, rules_rows):
        shares = key in (None, "share")  # the share rows always say why; the others only when missed
        rows.append(
            [
                claim,
                seed,
                value,
                verdict(met),
                rules_value,
                verdict(rules_met),
                why.get(claim, "") if shares or not met else "",
                to_close(key, sweep, res) if key and not met else "",
            ]
        )
    return table(
        [
            "seed's claim",
            "seed",
            "hybrid (`auto`)",
            "verdict",
            "hybrid, rules (`rules`)",
            "verdict",
            "why (`auto`)",
            "what would close it (`auto`)",
        ],
        rows,
    )


def to_close(key: str, sweep: Sweep, res: dict[str, dict]) -> str:
    """What would close a claim ``auto`` misses."""
    if key == "share":
        needed = sweep.needed(SELF_HOSTED_TARGET)
        reach = (
            f"on this day's predictions a margin of {needed:.2f} or more keeps {SELF_HOSTED_TARGET:.0%} of "
            "requests on self-hosted models"
            if needed is not None
            else f"no margin reaches {SELF_HOSTED_TARGET:.0%} on this day (at most {sweep.share_at(1.0):.1%})"
        )
        return (
            f"A larger `quality.margin` ({reach}), a predictor trained on everyday prompts as well as hard "
            f"ones, or `routing_strategy: rules` ({res[RULES]['self_hosted']:.1%} self-hosted)."
        )
    return TO_CLOSE[key]


# What would close each missed cost or latency claim: these change the workload's economics or the
# self-hosted hardware; routing short prompts differently moves little of a bill the documents dominate.
TO_CLOSE = {
    "cost": (
        "Self-hosted capacity for long prompts (a long-context model on GPUs with the memory for "
        "its KV cache), or fewer prompt tokens to the cloud (provider prompt caching of repeated "
        "documents, which the router does: see 'Prompt caching: document reuse'; retrieval instead of "
        "whole documents); or the seed's short prompts."
    ),
    "latency_catalog": (
        "A larger share on self-hosted models: prompts over the self-hosted windows stay on the "
        "cloud, so longer self-hosted windows (and, for `auto`, a larger margin)."
    ),
    "latency_model": (
        "Faster self-hosted decoding (FP8 or AWQ weights, speculative decoding, a faster GPU than the "
        "L4), or routing requests that expect long answers (`max_tokens`) to the cloud."
    ),
}


def relative(gain: float) -> str:
    """1 - hybrid / cloud-only, in words."""
    return f"{gain:.0%} faster" if gain >= 0 else f"{1 - gain:.1f}x slower"


SEED_SELF_HOSTED_KINDS = ("simple query", "code generation", "fast response")  # the seed's 70% group


def on_self_hosted(o: Outcome, config: RouterConfig) -> list[bool]:
    return [bool(d.model and config.is_self_hosted(d.model)) for d in o.decisions]


def reasons(
    res: dict[str, dict], workload: Workload, out: dict[str, Outcome], config: RouterConfig
) -> dict[str, str]:
    """One sentence per claim, from the replay's own numbers (for ``auto``)."""
    h, c = res[HYBRID], res[CLOUD]
    hybrid = out[HYBRID]
    n = len(workload.requests)
    scale = DAY_REQUESTS / n
    decisions = hybrid.decisions
    group = [workload.shapes[r.shape].kind in SEED_SELF_HOSTED_KINDS for r in workload.requests]

    def kept_moved(o: Outcome) -> tuple[float, float]:
        on_self = on_self_hosted(o, config)
        kept = sum(a and b for a, b in zip(on_self, group)) / max(1, sum(group))
        moved = sum(a and not b for a, b in zip(on_self, group)) / max(1, n - sum(group))
        return kept, moved

    (kept, moved), (rules_kept, _) = kept_moved(hybrid), kept_moved(out[RULES])
    window = max(config.models[m].context_window for m in config.models if config.is_self_hosted(m))
    big = [i for i, d in enumerate(decisions) if d.tokens and d.tokens >= window]
    doc_cost = sum(hybrid.costs[i] for i in big) * scale
    short_cloud = [
        i
        for i, d in enumerate(decisions)
        if d.model and not config.is_self_hosted(d.model) and (d.tokens or 0) < window
    ]
    short_cloud_cost = sum(hybrid.costs[i] for i in short_cloud) * scale
    # The Flash tier: what it costs, and the prompt size the seed's $2.00/day for it implies.
    cheap = [i for i, d in enumerate(decisions) if d.model and tier(config, d.model) == "cheap cloud"]
    cheap_cost = sum(hybrid.costs[i] for i in cheap) * scale
    cheap_tokens = statistics.fmean(decisions[i].tokens for i in cheap) if cheap else 0
    implied = (
        SEED["flash_usd_day"]
        / (SEED["cheap_cloud_share"] * DAY_REQUESTS)
        / SEED["flash_usd_per_million"]
        * 1e6
    )
    decode_self, decode_flash = speeds("mistral-7b-instruct")[0], speeds("gemini-flash")[0]

    def tier_why(name: str) -> str:
        """A tier's share of the day, split by the branch that sent requests there."""
        mine = [d for d in decisions if d.model and tier(config, d.model) == name]
        by_branch = Counter(
            "by predicted quality"
            if d.ranked
            else "by the context branches"
            if "tokens" in d.reason
            else "by the latency branch"
            if "latency" in d.reason
            else "otherwise"
            for d in mine
        )
        return (
            f"`auto`'s {len(mine) / n:.1%}: "
            + ", ".join(f"{c / n:.1%} {b}" for b, c in by_branch.most_common())
            + "."
        )

    return {
        "cheap cloud (Flash tier) share": tier_why("cheap cloud"),
        "premium cloud share": tier_why("premium cloud"),
        "self-hosted share": (
            f"By construction {sum(group) / n:.0%} of requests are in the seed's self-hosted classes "
            f"(simple, code, fast); `auto` kept {kept:.0%} of those on self-hosted models (`rules` "
            f"{rules_kept:.0%}) and sent {moved:.0%} of the rest there; {len(big) / n:.0%} of requests "
            f"exceed every self-hosted window ({window:,} tokens). Why `auto` sends the others to the "
            'cloud: "How each class was routed" below.'
        ),
        "hybrid cost/day": (
            f"Prompts over {window:,} tokens cost {usd(doc_cost)}/day of it, the {len(short_cloud) / n:.0%} "
            f"of requests under that size that `auto` sends to the cloud {usd(short_cloud_cost)}/day; the "
            f"Flash tier averages {cheap_tokens:,.0f} prompt tokens ({usd(cheap_cost)}/day), where the "
            f"seed's $2.00/day at its own $0.10/1M implies ~{implied:,.0f}-token prompts."
        ),
        "cloud-only cost/day": (
            f"Cloud-only pays for the same long prompts ({usd(doc_cost)}/day in the hybrid) plus the short "
            "requests at cloud prices; $35 would need prompts far shorter than the seed's own 50K+ token "
            "documents."
        ),
        "savings vs cloud-only": (
            f"Prompts too long for self-hosted go to the same cloud models in both scenarios and make up "
            f"{doc_cost / c['cost']:.0%} of cloud-only's cost, so moving short requests to self-hosted saves "
            "little."
        ),
        "mean latency vs cloud-only (catalog latency, the seed's basis)": (
            f"`auto` sends {1 - h['self_hosted']:.0%} of requests to cloud models ({len(big) / n:.0%} of the "
            "day are prompts over every self-hosted window), where they are no faster than in cloud-only, "
            "which caps the gain."
        ),
        "mean latency vs cloud-only (modelled end to end)": (
            f"Self-hosted decode on L4s in fp16 is bandwidth-bound at ~{decode_self:.0f} tokens/s against "
            f"~{decode_flash:.0f} for Gemini Flash, so any answer over a few dozen tokens is slower "
            "self-hosted; the seed's figures are times to a short answer."
        ),
    }


# --- where auto sends each class, and why ----------------------------------------------------
def self_hosted_gap(d: Decision, config: RouterConfig) -> float:
    """For a decision ``auto`` made by predicted quality: how far the best self-hosted model's
    predicted quality lies below the best of the models it ranked (as ``rank_by_quality`` ranks:
    code-capable models only for code generation). ``inf`` when no self-hosted model fits."""
    quality = dict(d.quality)
    pool = list(quality)
    if d.task == "code_generation":
        pool = [m for m in pool if "code" in config.models[m].capabilities] or pool
    own = [quality[m] for m in pool if config.is_self_hosted(m)]
    return max(quality[m] for m in pool) - max(own) if own else float("inf")


@dataclass
class Sweep:
    """``auto``'s self-hosted share at other margins, from the replay's own predictions: a request
    decided by predicted quality stays self-hosted exactly when its ``self_hosted_gap`` is within
    the margin (self-hosted models are the cheapest), the others keep their branch's model."""

    n: int
    fixed_self: int  # requests on self-hosted models by a context or latency branch
    gaps: list[float]  # sorted, one per request decided by predicted quality
    margin: float  # the margin the replay used
    disagreements: int  # requests where the gap rule and the replay's decision disagree (expected 0)

    @classmethod
    def of(cls, o: Outcome, config: RouterConfig) -> Sweep:
        fixed, gaps, margins, disagreements = 0, [], set(), 0
        for d, own in zip(o.decisions, on_self_hosted(o, config)):
            if d.ranked:
                gap = self_hosted_gap(d, config)
                gaps.append(gap)
                margins.add(d.margin)
                disagreements += own != (gap <= d.margin + 1e-12)
            else:
                fixed += own
        margin = margins.pop() if len(margins) == 1 else float("nan")
        return cls(len(o.decisions), fixed, sorted(gaps), margin, disagreements)

    def share_at(self, margin: float) -> float:
        return (self.fixed_self + bisect.bisect_right(self.gaps, margin + 1e-12)) / self.n

    @staticmethod
    def by_class(o: Outcome, config: RouterConfig, margin: float) -> dict[str, float]:
        """Per class, the share of its requests decided by predicted quality that would be
        self-hosted at ``margin``, as a share of the whole class."""
        kinds: Counter = Counter()
        kept: Counter = Counter()
        for d, r in zip(o.decisions, o.router.workload.requests):
            kind = o.router.workload.shapes[r.shape].kind
            kinds[kind] += 1
            kept[kind] += d.ranked and self_hosted_gap(d, config) <= margin + 1e-12
        return {k: kept[k] / kinds[k] for k in kinds}

    def needed(self, share: float) -> float | None:
        """The smallest margin at which ``share`` of the requests are on self-hosted models."""
        k = math.ceil(share * self.n - 1e-9) - self.fixed_self
        if k <= 0:
            return 0.0
        return self.gaps[k - 1] if k <= len(self.gaps) and math.isfinite(self.gaps[k - 1]) else None


def class_notes(out: dict[str, Outcome], workload: Workload, config: RouterConfig, sweep: Sweep) -> str:
    """Where ``auto`` sends each class and why, from the branches and predictions ``/v1/route`` answered."""
    auto, rules = out[HYBRID], out[RULES]
    n = len(workload.requests)
    t = config.routing.thresholds
    classes = class_indexes(workload)
    own_auto, own_rules = on_self_hosted(auto, config), on_self_hosted(rules, config)
    context = [i for i, d in enumerate(auto.decisions) if d.model and not d.ranked and "tokens" in d.reason]
    latency_branch = [i for i, d in enumerate(auto.decisions) if d.model and "latency need" in d.reason]
    ranked = [i for i, d in enumerate(auto.decisions) if d.ranked]
    same = sum(auto.decisions[i].model == rules.decisions[i].model for i in context)
    opening = (
        f"`auto` decided {pct(len(context) / n)} of the day by the context branches it keeps from the "
        f"keyword tree (prompts of {t.medium_context_tokens:,} tokens or more), choosing the same model as "
        f"`rules` for {pct(same / max(1, len(context)))} of them"
    )
    if latency_branch:
        models = Counter(auto.decisions[i].model for i in latency_branch)
        kinds = Counter(workload.shapes[workload.requests[i].shape].kind for i in latency_branch)
        opening += (
            f"; {pct(len(latency_branch) / n)} by the kept latency branch (a latency need under "
            f"{t.low_latency_ms:,} ms: "
            + ", ".join(f"{pct(c / len(latency_branch))} {k}" for k, c in kinds.most_common())
            + "; to "
            + ", ".join(f"{m} {pct(c / len(latency_branch))}" for m, c in models.most_common())
            + ")"
        )
    opening += (
        f"; and the other {pct(len(ranked) / n)} by predicted quality, taking the cheapest model within "
        f"{sweep.margin:g} of the best. Per class, the requests decided by predicted quality:"
    )
    lines, gaps_by_class, kept_more, kept_less = [], [], [], []
    for kind, idx in classes.items():
        mine = [i for i in idx if auto.decisions[i].ranked]
        if not mine:
            continue
        gaps = [self_hosted_gap(auto.decisions[i], config) for i in mine]
        best = statistics.median(max(q for _, q in auto.decisions[i].quality) for i in mine)
        small = [
            max(q for m, q in auto.decisions[i].quality if config.is_self_hosted(m))
            for i, g in zip(mine, gaps)
            if math.isfinite(g)
        ]
        to = ", ".join(
            f"{m} {pct(c / len(mine))}"
            for m, c in Counter(auto.decisions[i].model for i in mine).most_common(3)
        )
        if small:
            gap = statistics.median(gaps)
            gaps_by_class.append(f"{gap:.2f} ({kind})")
            why = (
                f"median predicted quality {statistics.median(small):.2f} for the best self-hosted model "
                f"against {best:.2f} for the best that fits (median gap {gap:.2f}), a gap over the margin "
                f"for {pct(sum(g > sweep.margin for g in gaps) / len(mine))}"
            )
        else:
            why = (
                f"no self-hosted model fits them (under {t.medium_context_tokens:,} prompt tokens, but over "
                "every self-hosted context window with the answer), so the ranking is among cloud models "
                f"(best predicted {best:.2f})"
            )
        a_share = sum(own_auto[i] for i in idx) / len(idx)
        r_share = sum(own_rules[i] for i in idx) / len(idx)
        lines.append(
            f"- **{kind}** ({pct(len(mine) / len(idx))} of the class): to {to}; {why}. The whole class: "
            f"{pct(a_share)} self-hosted under `auto`, {pct(r_share)} under `rules`."
        )
        if small and a_share > r_share:
            top, count = Counter(rules.decisions[i].model for i in idx).most_common(1)[0]
            kept_more.append(
                f"keeps {pct(a_share)} of the {kind} class on self-hosted models (`rules` sends "
                f"{pct(count / len(idx))} of them to {top})"
            )
        elif small and a_share < r_share:
            kept_less.append(
                f"sends {pct(1 - a_share)} of the {kind} class to the cloud (`rules` keeps {pct(r_share)} "
                "self-hosted)"
            )
    roles = {config.models[m].quality_role for m in config.models if config.is_self_hosted(m)}
    shared = (
        f" (every self-hosted model, the code model included, has the `{roles.pop()}` quality role, so all "
        "get the same prediction)"
        if len(roles) == 1
        else ""
    )
    needed = sweep.needed(SELF_HOSTED_TARGET)
    why = (
        "Why: the predictor learned from hard prompts (MMLU-Pro questions and hard chat prompts, "
        "`data/routing/`), on which the 7B model is often wrong, so it rates short everyday prompts (a "
        "definition, a translation, a summary of an email, a small function) as hard for the self-hosted "
        f"models too{shared}, and the cheap cloud model is then the cheapest within the margin. The median "
        "gap between the best self-hosted model and the best is "
        + ", ".join(gaps_by_class)
        + f", against a margin of {sweep.margin:g}"
        + (": `auto` " + "; it ".join(kept_more + kept_less) if kept_more or kept_less else "")
        + ". The margin trades this. On this day's predictions `auto` would keep "
        + ", ".join(f"{sweep.share_at(m):.1%} at {m:g}" for m in SWEEP_MARGINS)
        + " of requests on self-hosted models (all models up; a request decided by predicted quality stays "
        "self-hosted exactly when a self-hosted model is within the margin of the best, "
        "a rule that reproduces "
        + (
            "every decision of the replay"
            if not sweep.disagreements
            else f"the replay's decisions but for {sweep.disagreements:,}"
        )
        + "). "
    )
    if needed is not None:
        moved = [
            (k, idx)
            for k, idx in classes.items()
            if k not in SEED_SELF_HOSTED_KINDS and any(auto.decisions[i].ranked for i in idx)
        ]
        at = sweep.by_class(auto, config, needed)
        extra = ", ".join(f"{pct(at[k])} of the {k} class" for k, _ in moved if at.get(k))
        why += (
            f"The seed's {pct(SELF_HOSTED_TARGET)} needs a margin of {needed:.2f}"
            + (f", which also puts {extra} on self-hosted models" if extra else "")
            + "; "
        )
    else:
        why += f"No margin reaches the seed's {pct(SELF_HOSTED_TARGET)}; "
    why += (
        f"`rules` keeps {sum(own_rules) / n:.1%} there. Set the margin per deployment (`quality.margin`), "
        "per request (`auto:<margin>`), or fit it to your traffic with "
        "`python -m app.routing.quality.calibrate`."
    )
    return opening + "\n\n" + "\n".join(lines) + "\n\n" + why


def rules_note(res: dict[str, dict], out: dict[str, Outcome], workload: Workload) -> str:
    """Why `rules` compares with cloud-only as it does: the class where their costs differ most."""
    rules, cloud = out[RULES], out[CLOUD]
    scale = DAY_REQUESTS / len(workload.requests)
    diffs = {
        k: (sum(rules.costs[i] for i in idx) * scale, sum(cloud.costs[i] for i in idx) * scale, idx)
        for k, idx in class_indexes(workload).items()
    }
    kind, (r, c, idx) = max(diffs.items(), key=lambda kv: kv[1][0] - kv[1][1])
    if r <= c:
        return ""
    top = Counter(rules.decisions[i].model for i in idx).most_common(1)[0]
    cloud_top = Counter(cloud.decisions[i].model for i in idx).most_common(2)
    return (
        "`rules` against cloud-only: cloud-only is the router's `cloud_only` strategy, which ranks cloud "
        f"models by predicted quality; the largest difference between them is {kind}, which `rules` sends to "
        f"{top[0]} ({top[1] / len(idx):.0%}; {usd(r)}/day) and `cloud_only` to "
        + ", ".join(f"{m} ({n / len(idx):.0%})" for m, n in cloud_top)
        + f" ({usd(c)}/day)."
    )


def budget_notes(budgeted: Outcome, hybrid: Outcome, config: RouterConfig) -> str:
    """Whether the configured budgets changed the day: decisions that differ from the unbudgeted
    hybrid's for the same request, and the ledger's spend at the end (per 100K-request day)."""
    n = len(budgeted.decisions)
    changed = [i for i, (b, h) in enumerate(zip(budgeted.decisions, hybrid.decisions)) if b.model != h.model]
    if not changed:
        return "The configured daily budgets never changed a decision."
    refused = sum(d.error == "budget_exhausted" for d in budgeted.decisions)
    scale = DAY_REQUESTS / n
    spend = (budgeted.budget_report or {}).get("budgets", {})
    spent = ", ".join(
        f"{k} {usd(v['spent_usd'] * scale)}"
        + (f" of {usd(v['limit_usd'] * scale)}" if v.get("limit_usd") else "")
        + (" (switched to self-hosted only)" if v.get("mode") == "self_hosted_only" else "")
        for k, v in sorted(spend.items())
    )
    return (
        f"Budgets kicked in. With the configured daily budgets "
        f"({', '.join(f'{k} ${v:g}' for k, v in config.cost_rules.daily_budgets.items())}) the first "
        f"decision that differs from the unbudgeted hybrid's is request {changed[0]:,} of {n:,} (about "
        f"{changed[0] / n * 24:.1f} h into the day); {len(changed):,} requests ({len(changed) / n:.0%}) were "
        f"routed differently, {refused:,} of them refused with a 429 (budget exhausted). Spend at the end of "
        f'the day: {spent}. From then on the day is what the table\'s "hybrid, configured budgets" row '
        "shows: the documents the self-hosted windows cannot take are refused."
    )


# --- plots -----------------------------------------------------------------------------------
def plots(results: list[tuple[Outcome, dict]], config: RouterConfig) -> list[str]:
    names = [textwrap.fill(o.scenario.name, 16) for o, _ in results]
    fig, ax = figure(10, 4.5)
    catalog = [s["cost"] for _, s in results]
    gpu = [s["cost_gpu"] - s["cost"] for _, s in results]
    ax.bar(names, catalog, label="catalog prices (genai-prices, fixed self-hosted)")
    ax.bar(names, gpu, bottom=catalog, label="GPU nodes at minimum replicas", hatch="//", alpha=0.5)
    ax.axhline(SEED["hybrid_usd_day"], color="green", linestyle="--", label="seed: hybrid $10/day")
    ax.axhline(SEED["cloud_only_usd_day"], color="red", linestyle="--", label="seed: cloud-only $35/day")
    for x, (low, high) in enumerate(zip(catalog, gpu)):
        ax.annotate(f"${low + high:,.0f}", (x, low + high), ha="center", va="bottom", fontsize=9)
    ax.set_yscale("log")
    ax.set_ylim(bottom=1)
    ax.set_ylabel("USD per day (100K requests), log scale")
    ax.set_title("Cost per day by scenario")
    ax.legend(fontsize=8)
    cost_png = save_plot(fig, "hybrid_replay_cost", "Cost per day by scenario, against the seed's claims")

    fig, ax = figure(10, 4.5)
    models = [m for m in config.models if any(s["models"][m] for _, s in results)]
    left = [0.0] * len(results)
    for m in models:
        shares = [s["models"][m] / s["requests"] for _, s in results]
        ax.barh(names, shares, left=left, label=m)
        left = [a + b for a, b in zip(left, shares)]
    ax.barh(names, [1 - x for x in left], left=left, label="refused", color="lightgrey")
    ax.set_xlabel("share of requests")
    ax.set_title("Share of requests per model")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    share_png = save_plot(fig, "hybrid_replay_share", "Share of requests per model by scenario")
    return [cost_png, share_png]


# --- main ------------------------------------------------------------------------------------
async def main(requests: int, seed: int) -> None:
    started = time.perf_counter()
    configure_logging("error")  # the budgeted day's alerts are reported below, not logged line by line
    workload = generate(requests, seed)
    print(
        f"workload: {len(workload.requests):,} requests, {len(workload.shapes):,} distinct bodies", flush=True
    )
    features: dict[int, tuple[int, int]] = {}
    outcomes: list[Outcome] = []
    shm = Path("/dev/shm")  # the ledger commits with fsync: keep it in memory where we can
    with tempfile.TemporaryDirectory(prefix="hybrid-replay-", dir=shm if shm.is_dir() else None) as state:
        for i, scenario in enumerate(SCENARIOS):
            o = await replay(scenario, workload, features, f"{state}/{i}")
            r = o.router
            print(
                f"{scenario.name}: {o.seconds:.0f} s, {r.calls:,} calls, {r.reused:,} reused, "
                f"{r.checked:,} re-checked, {r.mismatches} mismatches",
                flush=True,
            )
            outcomes.append(o)
    config = load_config(CONFIG)
    results = [(o, summary(o, config)) for o in outcomes]
    by_name = {o.scenario.name: s for o, s in results}
    for o, s in results:
        print(
            f"{o.scenario.name}: {usd(s['cost'])}/day, self-hosted {s['self_hosted']:.1%}, "
            f"mean latency {s['mean_s']:.2f} s, refused {dict(s['refused'])}",
            flush=True,
        )
    body = report(
        results, by_name, workload, {o.scenario.name: o for o in outcomes}, config, requests, seed, started
    )
    write_section("hybrid_replay", "Hybrid cost and latency", body)
    print(f"total {time.perf_counter() - started:.0f} s", flush=True)


def report(results, by_name, workload, out, config, requests, seed, started) -> str:
    images = plots(results, config)
    sweep = Sweep.of(out[HYBRID], config)
    calls = sum(o.router.calls for o, _ in results)
    checked = sum(o.router.checked for o, _ in results)
    mismatches = sum(o.router.mismatches for o, _ in results)
    scaled = (
        ""
        if requests == DAY_REQUESTS
        else (
            f" Costs are scaled from {requests:,} requests to a 100K-request day, and budgets by "
            f"{requests / DAY_REQUESTS:g}."
        )
    )
    parts = [
        "### Against the seed's claims\n\n"
        + comparison(by_name, workload, out, config, sweep)
        + ("\n\n" + rules_note(by_name, out, workload) if rules_note(by_name, out, workload) else ""),
        "### Method\n\n"
        f"A day of {requests:,} requests (seed {seed}) in the seed's mix (`benchmarks/workload.py`), each "
        "decided by `POST /v1/route` of the real app with the default config (scripted backends, in "
        "process). Scenarios: **hybrid** = `auto`, the router's default (predicted quality, margin "
        f"{sweep.margin:g}; the keyword tree's context and latency branches kept); **hybrid, rules** = "
        "`routing_strategy: rules`, the seed's keyword tree alone (what `auto` was before the quality "
        "predictor); **cloud-only** = the router's `cloud_only` strategy, `auto`'s rule among cloud models "
        "only (the seed's failover to Gemini Flash and its own `cloud_only` strategy; sending everything to "
        "a premium model would cost more still); **self-hosted-only** = `self_hosted_only`, `auto`'s rule "
        "among self-hosted models, where a prompt no self-hosted window takes is refused (400). These four "
        "run with budgets lifted, so that their costs are the workload's. **hybrid, configured budgets** "
        "replays the same day on `auto` with the config's `cost_rules.daily_budgets`, spending each decision "
        "in the router's ledger as the executor does (the worst case reserved on the primary, or on its "
        "fallbacks while budgets refuse; the real cost settled)." + scaled,
        scenario_table(results),
        "Latency (served requests only) is modelled per request: the catalog's `typical_latency_ms` + "
        "prompt / prefill speed + answer / decode speed; self-hosted speeds derived from the L4 datasheet "
        "for fp16 weights (decode "
        + ", ".join(f"{m} {speeds(m)[0]:.0f} tok/s" for m in SELF_HOSTED)
        + "), cloud speeds assumed (decode "
        + ", ".join(f"{m} {v[0]}" for m, v in CLOUD_SPEED.items())
        + ' tok/s; prefill 20K tok/s). "Mean catalog latency" averages only `typical_latency_ms`, '
        "the seed's per-model figures. Self-hosted models are priced as the catalog prices them: a fixed "
        'per-token price (the seed\'s $0.01/1M for Mistral), which leaves out the GPUs; "+ GPU nodes" adds '
        f"{usd(GPU_NODES_USD_PER_DAY)}/day for the GKE profile's minimum self-hosted replicas "
        "(3 g2-standard-8 + 1 g2-standard-24, on-demand list prices).",
        "### Share per model\n\n" + share_table(results, config),
        "### How each class was routed\n\n"
        + kind_table([out[name] for name in COMPARED], workload)
        + "\n\n"
        + class_notes(out, workload, config, sweep),
        "### Budgets\n\n" + budget_notes(out[BUDGETED], out[HYBRID], config),
        "\n\n".join(images),
        (
            f"The replay sent {calls:,} requests to the endpoint for {len(results) * requests:,} decisions "
            f"({len(workload.shapes):,} distinct bodies; a repeated body reuses its decision while every "
            f"model's availability answer for it is unchanged); {checked:,} reused decisions were re-sent to "
            f"check, with {mismatches} mismatches. Total run time {time.perf_counter() - started:.0f} s."
        ),
    ]
    return "\n\n".join(parts)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--requests", type=int, default=DAY_REQUESTS, help="requests in the day (default 100000)"
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the workload's RNG (default 7)")
    parser.add_argument(
        "--workload",
        choices=("seed", "document-reuse"),
        default="seed",
        help="seed: the seed's day through /v1/route (default); document-reuse: see reuse_replay.py",
    )
    parser.add_argument(
        "--hours", type=float, default=None, help="document-reuse: hours of the day replayed (default 1.5)"
    )
    args = parser.parse_args()
    if args.workload == "document-reuse":
        from reuse_replay import cli

        cli(["--seed", str(args.seed)] + (["--hours", str(args.hours)] if args.hours else []))
    else:
        asyncio.run(main(args.requests, args.seed))
