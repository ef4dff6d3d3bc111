"""Routing quality: how well the learned quality predictor ranks prompts and picks models.

Targets (issue #13 item 6):
- APGR (RouteLLM's average performance gap recovered), leave-one-subject-out on MMLU-Pro
  (Mistral-7B-Instruct-v0.2 vs gemini-1.5-pro-002): >= 0.60
- APGR, 5-fold cross-validation on arena-bench-v1 (Mistral-7B-Instruct-v0.1 vs gpt-4-1106-preview): >= 0.75
- choosing among the catalog with `auto` at the default margin: accuracy >= +0.02 above the best mix
  of single models at the same cost (the single-model frontier)
- decision time with the predictor on: p50 < 1.5 ms for a 1K-token chat
The predictor is retrained per fold with the production recipe (`train.balance` + `train.fit`, the
config's `quality.roles`, arena in training for MMLU-Pro and all of MMLU-Pro for arena) and scored on
the features the router computes (`Analyzer.analyze`). Deterministic: fixed folds and seeds.
Run: .venv/bin/python benchmarks/routing_quality.py  (under a minute on 2 cores; or `make bench`)
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from _results import figure, save_plot, table, write_section
from decision_speed import document, percentile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.config import load_config
from app.routing.analysis import Analyzer, Features
from app.routing.catalog import Catalog
from app.routing.planner import Planner
from app.routing.quality.model import QualityModel, QualityPredictor
from app.routing.quality.train import DEFAULT_DATA, Example, balance, examples_from_file, fit, read_jsonl
from app.routing.strategies import StrategyRegistry
from app.service import RouterService
from tests.fakes.backends import ScriptedBackend

CONFIG = Path(__file__).resolve().parents[1] / "deployments/configs/router.yaml"
MMLU_PAIR = ("Mistral-7B-Instruct-v0.2", "gemini-1.5-pro-002")  # (weak, strong)
ARENA_PAIR = ("mistralai/Mistral-7B-Instruct-v0.1", "gpt-4-1106-preview")
SMALL, LARGE = "small", "large"  # the quality roles whose difference is the router's score
SEEDS = 20  # tie-breaks for `rules`, shuffles for random
OUTPUT_TOKENS = 300  # assumed answer length for cost: a short chain-of-thought answer
MARGINS = [round(0.05 * i, 2) for i in range(21)]
TARGETS = {"loso": 0.60, "arena": 0.75, "gap": 0.02, "p50_ms": 1.5}
DATA_MODEL = {  # catalog model -> the MMLU-Pro model whose answers stand for it
    "mistral-7b-instruct": "Mistral-7B-Instruct-v0.2",
    "gemini-flash": "gemini-1.5-flash-002",
    "gemini-pro": "gemini-1.5-pro-002",
    "gpt": "gpt-4o-2024-05-13",
    "mistral-7b-fast": "Mistral-7B-Instruct-v0.2",
    "codellama-13b": "Mistral-7B-Instruct-v0.2",
    "claude-haiku": "gemini-1.5-flash-002",
    "claude-sonnet": "gemini-1.5-pro-002",
    "claude-opus": "gpt-4o-2024-05-13",
}
SINGLES = ["mistral-7b-instruct", "gemini-flash", "gemini-pro", "gpt"]


@dataclass
class Data:
    examples: list[Example]  # training rows (vector, labels, group, outcomes)
    features: list[Features]  # what the router's analyzer makes of the same prompts

    def outcome(self, model: str, idx: np.ndarray | None = None) -> np.ndarray:
        rows = self.examples if idx is None else [self.examples[i] for i in idx]
        return np.array([ex.outcomes.get(model, np.nan) for ex in rows])

    def where(self, group: str) -> np.ndarray:
        return np.array([i for i, ex in enumerate(self.examples) if ex.group == group])


def load(path: Path, roles: dict, analyzer: Analyzer) -> Data:
    examples = examples_from_file(path, roles)
    prompts = [row["prompt"] for row in read_jsonl(path)]
    assert len(prompts) == len(examples), f"{path.name}: some rows have no role label"
    return Data(examples, [analyzer.analyze({"messages": [{"role": "user", "content": p}]}) for p in prompts])


# --- ranking: PGR curves and APGR -----------------------------------------------------------
@dataclass(frozen=True)
class Curve:
    pgr: np.ndarray  # PGR when the top k of N prompts go to the strong model, k = 0..N

    @property
    def apgr(self) -> float:
        return float(((self.pgr[1:] + self.pgr[:-1]) / 2).sum() / (len(self.pgr) - 1))

    def cpt(self, level: float) -> float:
        return float(np.argmax(self.pgr >= level - 1e-9) / (len(self.pgr) - 1))


def pgr(score: np.ndarray, weak: np.ndarray, strong: np.ndarray, seed: int | None = None) -> np.ndarray:
    """Highest score to the strong model first; ties in a seeded random order (else input order)."""
    order = np.arange(len(score)) if seed is None else np.random.default_rng(seed).permutation(len(score))
    order = order[np.argsort(-score[order], kind="stable")]
    gained = np.r_[0.0, np.cumsum((strong - weak)[order])]
    return gained / gained[-1]


def compare(
    router: np.ndarray, complexity: np.ndarray, weak: np.ndarray, strong: np.ndarray
) -> dict[str, Curve]:
    """Router, keyword rules (mean curve over seeded tie-breaks), random (mean of shuffles), oracle."""
    return {
        "router": Curve(pgr(router, weak, strong)),
        "rules": Curve(np.mean([pgr(complexity, weak, strong, s) for s in range(SEEDS)], axis=0)),
        "random": Curve(np.mean([pgr(np.zeros(len(weak)), weak, strong, s) for s in range(SEEDS)], axis=0)),
        "oracle": Curve(pgr(strong - weak, weak, strong)),
    }


def curves_for(data: Data, scores: np.ndarray, pair: tuple[str, str], idx: np.ndarray) -> dict[str, Curve]:
    weak, strong = data.outcome(pair[0], idx), data.outcome(pair[1], idx)
    keep = ~(np.isnan(weak) | np.isnan(strong))  # arena: a few failed judgments
    complexity = np.array([data.features[i].complexity for i in idx])
    return compare(scores[idx][keep], complexity[keep], weak[keep], strong[keep])


def gain_score(q: dict[str, float]) -> float:
    return q[LARGE] - q[SMALL]


def loso(mmlu: Data, arena: Data, roles: list[str]) -> tuple[dict[str, QualityModel], list[dict[str, float]]]:
    """Per MMLU-Pro subject: a model trained on the other six (plus arena) and its held-out predictions."""
    models, predicted = {}, [{}] * len(mmlu.examples)
    for subject in sorted({ex.group for ex in mmlu.examples}):
        rest = [ex for ex in mmlu.examples if ex.group != subject]
        models[subject] = fit(balance([rest, arena.examples]), roles)
        for i in mmlu.where(subject):
            predicted[i] = models[subject].predict(mmlu.features[i].quality_inputs)
    return models, predicted


def arena_cv(mmlu: Data, arena: Data, roles: list[str]) -> np.ndarray:
    """5-fold CV over arena prompts, each fold's model trained on the other folds plus all of MMLU-Pro."""
    from sklearn.model_selection import KFold

    scores = np.zeros(len(arena.examples))
    for train_idx, test_idx in KFold(5, shuffle=True, random_state=0).split(arena.examples):
        model = fit(balance([mmlu.examples, [arena.examples[i] for i in train_idx]]), roles)
        for i in test_idx:
            scores[i] = gain_score(model.predict(arena.features[i].quality_inputs))
    return scores


# --- multi-model choice: accuracy and cost against the single-model frontier ------------------
@dataclass(frozen=True)
class Point:
    label: str
    accuracy: float
    usd_per_1k: float
    shares: dict[str, float]


def point(label: str, chosen: list[str], mmlu: Data, catalog: Catalog) -> Point:
    acc = np.mean([ex.outcomes[DATA_MODEL[m]] for m, ex in zip(chosen, mmlu.examples, strict=True)])
    cost = np.mean([catalog.cost_estimate(m, f.tokens, OUTPUT_TOKENS) for m, f in zip(chosen, mmlu.features)])
    shares = {m: n / len(chosen) for m, n in Counter(chosen).most_common()}
    return Point(label, float(acc), 1000 * float(cost), shares)


def _not_above(a: tuple[float, float], b: tuple[float, float], c: tuple[float, float]) -> bool:
    """Whether b lies on or under the segment from a to c."""
    return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]) >= 0


def frontier(points: list[Point]) -> list[tuple[float, float]]:
    """Upper-left convex hull of (cost, accuracy): a random mix of two models reaches any point between."""
    hull: list[tuple[float, float]] = []
    for c, a in sorted((p.usd_per_1k, p.accuracy) for p in points):
        if hull and a <= hull[-1][1]:
            continue  # costs more and is no better
        while len(hull) >= 2 and _not_above(hull[-2], hull[-1], (c, a)):
            hull.pop()
        hull.append((c, a))
    return hull


def gap(p: Point, hull: list[tuple[float, float]]) -> float:
    """Accuracy above the frontier at the same cost (beyond its ends, the frontier is flat)."""
    return p.accuracy - float(np.interp(p.usd_per_1k, [c for c, _ in hull], [a for _, a in hull]))


def margins(catalog: Catalog) -> list[float]:
    return sorted({*MARGINS, catalog.config.quality.margin})  # the sweep, and the configured default


def choices(catalog: Catalog, mmlu: Data, models: dict[str, QualityModel]) -> dict[str, list[str]]:
    """The real planner's pick per question (every model up): `rules`, and `auto` at each margin with
    the question's held-out predictor."""
    planner = Planner(catalog, StrategyRegistry(catalog))
    role_of = {m: s.quality_role for m, s in catalog.config.models.items() if s.quality_role}
    out = {f"{m:g}": [""] * len(mmlu.examples) for m in margins(catalog)}
    out["rules"] = [planner.plan(f, "rules").primary.model for f in mmlu.features]
    for subject, model in models.items():
        catalog.quality = QualityPredictor(model, role_of)
        for i in mmlu.where(subject):
            for m in margins(catalog):
                out[f"{m:g}"][i] = planner.plan(
                    replace(mmlu.features[i], quality_margin=m), "auto"
                ).primary.model
    return out


def choice_points(catalog: Catalog, mmlu: Data, models: dict[str, QualityModel]) -> dict:
    singles = [point(m, [m] * len(mmlu.examples), mmlu, catalog) for m in SINGLES]
    picked = choices(catalog, mmlu, models)
    sweep = [point(f"auto, margin {m:g}", picked[f"{m:g}"], mmlu, catalog) for m in margins(catalog)]
    hull = frontier(singles)
    best = max(sweep, key=lambda p: gap(p, hull))
    small = np.array([DATA_MODEL[m] == MMLU_PAIR[0] for m in picked[margin_label(best)]])
    weak = mmlu.outcome(MMLU_PAIR[0])
    return {
        "singles": singles,
        "sweep": sweep,
        "rules": point("rules", picked["rules"], mmlu, catalog),
        "hull": hull,
        "best": best,
        "best_gap": gap(best, hull),
        "weak_acc": float(weak.mean()),
        "weak_acc_on_small": float(weak[small].mean()) if small.any() else float("nan"),
    }


# --- decision time --------------------------------------------------------------------------
async def decision_times(runs: int = 300) -> dict[int, tuple[float, float]]:
    """p50/p99 ms of `RouterService.plan` (analysis + prediction + plan, `auto`) per chat size."""
    config = load_config(CONFIG)
    service = RouterService(config, {m: ScriptedBackend(m) for m in config.models})
    out = {}
    for size in (100, 1_000, 10_000):
        text = document(size) + "\nSummarize the key points."
        body = {"model": "auto", "messages": [{"role": "user", "content": text}]}
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            await service.plan(body, assume_available=True)
            times.append((time.perf_counter() - start) * 1000)
        out[size] = (statistics.median(times), percentile(times, 0.99))
    return out


# --- evaluation -----------------------------------------------------------------------------
def evaluate() -> dict:
    config = load_config(CONFIG)
    roles, analyzer = list(config.quality.roles), Analyzer(config.routing.thresholds)
    mmlu, arena = (load(p, config.quality.roles, analyzer) for p in DEFAULT_DATA)
    models, predicted = loso(mmlu, arena, roles)
    scores = np.array([gain_score(q) for q in predicted])
    subjects = {s: curves_for(mmlu, scores, MMLU_PAIR, mmlu.where(s)) for s in sorted(models)}
    pooled = curves_for(mmlu, scores, MMLU_PAIR, np.arange(len(mmlu.examples)))
    arena_curves = curves_for(arena, arena_cv(mmlu, arena, roles), ARENA_PAIR, np.arange(len(arena.examples)))
    r = choice_points(Catalog(config), mmlu, models)
    default = next(p for p in r["sweep"] if p.label == f"auto, margin {config.quality.margin:g}")
    weak, strong = (mmlu.outcome(m) for m in MMLU_PAIR)
    arena_gain = arena.outcome(ARENA_PAIR[1]) - arena.outcome(ARENA_PAIR[0])
    return r | {
        "mmlu": mmlu,
        "subjects": subjects,
        "pooled": pooled,
        "arena_curves": arena_curves,
        "margin": config.quality.margin,
        "default": default,
        "gap": gap(default, r["hull"]),
        "loso": pooled["router"],
        "arena": arena_curves["router"],
        "arena_oracle": arena_curves["oracle"].apgr,
        **{
            f"{k}_mean": float(np.mean([c[k].apgr for c in subjects.values()]))
            for k in ("router", "rules", "oracle")
        },
        "gain_share": float(np.mean(strong - weak > 0)),
        "arena_gain_share": float(np.mean(arena_gain[~np.isnan(arena_gain)] > 0)),
        "r_gain": float(np.corrcoef(scores, strong - weak)[0, 1]),
        "r_small": float(np.corrcoef([q[SMALL] for q in predicted], weak)[0, 1]),
        "r_large": float(np.corrcoef([q[LARGE] for q in predicted], strong)[0, 1]),
    }


# --- report ---------------------------------------------------------------------------------
def ranking_rows(name: str, curves: dict[str, Curve]) -> list[list[object]]:
    return [[name, k, f"{c.apgr:.3f}", f"{c.cpt(0.5):.1%}", f"{c.cpt(0.8):.1%}"] for k, c in curves.items()]


def subject_rows(subjects: dict[str, dict[str, Curve]], mmlu: Data) -> list[list[object]]:
    rows = []
    for s, curves in subjects.items():
        weak, strong = (mmlu.outcome(m, mmlu.where(s)).mean() for m in MMLU_PAIR)
        apgr = [f"{c.apgr:.3f}" for c in curves.values()]
        rows.append([s, len(mmlu.where(s)), f"{weak:.2f}", f"{strong:.2f}", *apgr])
    means = [np.mean([c[k].apgr for c in subjects.values()]) for k in ("router", "rules", "random", "oracle")]
    rows.append(["**mean over subjects**", "", "", "", *(f"**{v:.3f}**" for v in means)])
    return rows


def margin_label(p: Point) -> str:
    return p.label.split()[-1]


def signed(x: float) -> str:
    return f"{round(x, 3) + 0.0:+.3f}"  # no "-0.000"


def shares(p: Point) -> str:
    return ", ".join(f"{m} {s:.0%}" for m, s in p.shares.items() if s >= 0.005)


def choice_rows(r: dict) -> list[list[object]]:
    rows = []
    for p in [*r["singles"], *r["sweep"], r["rules"]]:
        label = f"**{p.label}** (default)" if p is r["default"] else p.label
        rows.append([label, f"{p.accuracy:.3f}", f"{p.usd_per_1k:.2f}", signed(gap(p, r["hull"])), shares(p)])
    return rows


def pgr_plot(curves: dict[str, Curve], title: str, name: str) -> str:
    fig, ax = figure(6, 4.5)
    styles = {"router": "-", "rules": "--", "random": ":", "oracle": "-."}
    for k, c in curves.items():
        ax.plot(np.linspace(0, 1, len(c.pgr)), c.pgr, styles[k], label=f"{k} (APGR {c.apgr:.3f})")
    ax.set(
        xlabel="share of prompts sent to the strong model", ylabel="performance gap recovered", title=title
    )
    ax.legend(fontsize=8)
    return save_plot(fig, name, title)


def cost_plot(r: dict) -> str:
    fig, ax = figure()
    hull, sweep, rules = r["hull"], r["sweep"], r["rules"]
    ax.plot(
        [c for c, _ in hull], [a for _, a in hull], "k--", linewidth=1, label="single-model frontier (mixes)"
    )
    for p in r["singles"]:
        ax.scatter(p.usd_per_1k, p.accuracy, marker="s", color="black")
        ax.annotate(
            p.label, (p.usd_per_1k, p.accuracy), textcoords="offset points", xytext=(4, -12), fontsize=8
        )
    ax.plot(
        [p.usd_per_1k for p in sweep],
        [p.accuracy for p in sweep],
        "o-",
        markersize=3,
        label="auto, margin 0 to 1",
    )
    at, label = r["default"], f"auto, default margin {r['margin']:g}"
    ax.scatter(at.usd_per_1k, at.accuracy, s=90, marker="*", color="red", zorder=3, label=label)
    ax.scatter(
        rules.usd_per_1k, rules.accuracy, marker="^", color="green", zorder=3, label="rules (keyword tree)"
    )
    ax.set(
        xlabel=f"USD per 1,000 questions ({OUTPUT_TOKENS}-token answers)",
        ylabel="accuracy (MMLU-Pro, held-out subject)",
        title="Cost and accuracy of choosing among the catalog",
    )
    ax.legend(fontsize=8, loc="lower right")
    return save_plot(fig, "routing_quality_cost", "cost and accuracy of the router against single models")


def targets_table(r: dict) -> str:
    loso, t, best = "APGR, MMLU-Pro leave-one-subject-out", TARGETS, r["best"]
    rows = [
        [
            f"{loso}, mean over subjects",
            f">= {t['loso']}",
            r["router_mean"] >= t["loso"],
            f"{r['router_mean']:.3f} (oracle {r['oracle_mean']:.3f})",
        ],
        [
            f"{loso}, pooled",
            f">= {t['loso']}",
            r["loso"].apgr >= t["loso"],
            f"{r['loso'].apgr:.3f} (oracle {r['pooled']['oracle'].apgr:.3f})",
        ],
        [
            "APGR, arena-bench 5-fold CV",
            f">= {t['arena']}",
            r["arena"].apgr >= t["arena"],
            f"{r['arena'].apgr:.3f} (oracle ceiling {r['arena_oracle']:.3f})",
        ],
        [
            f"accuracy above the single-model frontier at equal cost, default margin {r['margin']:g}",
            f">= +{t['gap']}",
            r["gap"] >= t["gap"],
            f"{signed(r['gap'])} (best margin {margin_label(best)}: {signed(r['best_gap'])})",
        ],
        [
            "decision p50, 1K-token chat, predictor on",
            f"< {t['p50_ms']} ms",
            r["p50"] < t["p50_ms"],
            f"{r['p50']:.3f} ms",
        ],
    ]
    return table(
        ["target", "goal", "measured", "met"], [[n, g, m, "yes" if ok else "**no**"] for n, g, ok, m in rows]
    )


def why(r: dict) -> str:
    arena, cap, best = r["arena"].apgr, r["arena_oracle"], r["best"]
    return (
        "**Why the targets are or are not met.** Ranking the questions of an unseen subject by predicted "
        f"gain recovers {r['router_mean']:.3f} of the gap per subject ({r['loso'].apgr:.3f} pooled), against "
        f"0.5 for random and {r['rules_mean']:.3f} for the keyword rules. The oracle reaches "
        f"{r['oracle_mean']:.3f} because only the {r['gain_share']:.0%} of questions where {MMLU_PAIR[1]} is "
        f"right and {MMLU_PAIR[0]} wrong gain anything. The predicted small-model quality tracks "
        f"Mistral-7B's correctness somewhat (r = {r['r_small']:.2f}), the large-model quality barely tracks "
        f"the strong model's (r = {r['r_large']:.2f}), so the score correlates with the true gain at only "
        f"r = {r['r_gain']:.2f}: the features (the shape of a question: calculation, numbers, options, "
        "length) tell questions Mistral-7B answers from the rest, but not the questions the strong model "
        "answers from those neither does. On arena the strong model's judge score is higher on "
        f"{r['arena_gain_share']:.0%} of prompts, so no ranking can leave many prompts on the weak model for "
        f"free: even the oracle, largest gains first, recovers only {cap:.3f}"
        + (
            f"; a target of {TARGETS['arena']} is above that ceiling and no ranking can meet it"
            if cap < TARGETS["arena"]
            else ""
        )
        + f". The router's {arena:.3f} there, on {len(r['arena'].pgr) - 1} prompts (about 60 per fold), is "
        + ("no better than random. " if abs(arena - 0.5) < 0.03 else "noisy. ")
        + f"Choosing among the catalog, the best margin is {margin_label(best)} "
        f"({signed(r['best_gap'])} against the frontier at equal cost; {shares(best)}): the questions it "
        f"keeps on the self-hosted models are ones Mistral-7B answers {r['weak_acc_on_small']:.0%} of the "
        f"time, against {r['weak_acc']:.0%} overall. "
        + (
            "The default margin is that best one. Below about 0.3 the choice is mostly between Gemini "
            "Flash and the premium models, which needs the large-model prediction, the weak one, and "
            "lies under the frontier."
            if margin_label(best) == f"{r['margin']:g}"
            else f"At the default margin {r['margin']:g} ({signed(r['gap'])}; {shares(r['default'])})."
        )
    )


def report(r: dict, times: dict[int, tuple[float, float]]) -> str:
    ranking = table(
        ["evaluation", "ranking", "APGR", "CPT(50%)", "CPT(80%)"],
        ranking_rows("MMLU-Pro LOSO, pooled", r["pooled"])
        + ranking_rows("arena-bench 5-fold CV", r["arena_curves"]),
    )
    subjects = table(
        ["held-out subject", "questions", "weak acc", "strong acc", "router", "rules", "random", "oracle"],
        subject_rows(r["subjects"], r["mmlu"]),
    )
    choice = table(
        ["routing", "accuracy", "USD / 1K questions", "vs frontier at equal cost", "share per model"],
        choice_rows(r),
    )
    speed = table(
        ["chat tokens", "decision p50 ms", "decision p99 ms"],
        [[f"{n:,}", f"{p50:.3f}", f"{p99:.3f}"] for n, (p50, p99) in times.items()],
    )
    mapping = ", ".join(f"{k} = {v}" for k, v in DATA_MODEL.items())
    return "\n\n".join(
        [
            "**What this measures.** How well the learned quality predictor (`app/routing/quality`) decides "
            "on prompts and subjects it was not trained on. *Ranking*: sort prompts by predicted gain "
            "(q_large - q_small) and send the top k to the strong model; PGR(k) is the share of the strong "
            "model's advantage over the weak one recovered, APGR its area over k/N, CPT(x) the smallest "
            "share of strong calls that recovers x (RouteLLM's definitions). Rules (the keyword complexity "
            f"score, ties broken at random) and random are averaged over {SEEDS} seeds; the oracle ranks by "
            "the true gap. *Choice*: the real planner (`auto`, every model up) picks a catalog model for "
            "each MMLU-Pro question with the question's subject held out of training; accuracy is that of "
            f"the data model standing for it ({mapping}), cost the catalog's price for the prompt and an "
            f"assumed {OUTPUT_TOKENS}-token answer. The frontier is the best random mix of single models at "
            "each cost.",
            targets_table(r),
            why(r),
            "### Ranking",
            ranking,
            "CPT of rules and random is read off their mean curve. The oracle's PGR goes above 1 on "
            "MMLU-Pro: Mistral-7B is right on a few questions the strong model misses.",
            "### Per held-out subject (APGR)",
            subjects,
            pgr_plot(r["pooled"], "MMLU-Pro, leave-one-subject-out (pooled)", "routing_quality_pgr_mmlu")
            + " "
            + pgr_plot(r["arena_curves"], "arena-bench, 5-fold CV", "routing_quality_pgr_arena"),
            "### Choosing among the catalog (MMLU-Pro, leave-one-subject-out)",
            choice,
            cost_plot(r),
            "### Decision time, predictor on (`RouterService.plan`: analysis + prediction + plan)",
            speed,
        ]
    )


def show(r: dict, times: dict[int, tuple[float, float]]) -> None:
    for name, curves in [("MMLU-Pro LOSO pooled", r["pooled"]), ("arena 5-fold CV", r["arena_curves"])]:
        for k, c in curves.items():
            print(f"{name:22} {k:7} APGR {c.apgr:.3f}  CPT50 {c.cpt(0.5):.1%}  CPT80 {c.cpt(0.8):.1%}")
    for s, curves in r["subjects"].items():
        print(f"LOSO {s:12} " + "  ".join(f"{k} {c.apgr:.3f}" for k, c in curves.items()))
    print(
        f"LOSO mean over subjects: router {r['router_mean']:.3f}  rules {r['rules_mean']:.3f}  "
        f"oracle {r['oracle_mean']:.3f}"
    )
    print(
        f"correlations: score vs true gain {r['r_gain']:.2f}, q_small vs weak {r['r_small']:.2f}, "
        f"q_large vs strong {r['r_large']:.2f}; {r['gain_share']:.0%} of questions have a gain"
    )
    for p in [*r["singles"], *r["sweep"], r["rules"]]:
        print(
            f"{p.label:22} acc {p.accuracy:.3f}  ${p.usd_per_1k:6.2f}/1K  vs frontier "
            f"{signed(gap(p, r['hull']))}  {shares(p)}"
        )
    print(
        f"BEST MARGIN: {margin_label(r['best'])} ({signed(r['best_gap'])} vs frontier); "
        f"default margin {r['margin']:g}: {signed(r['gap'])}"
    )
    for n, (p50, p99) in times.items():
        print(f"decision {n:>6,} tokens: p50 {p50:.3f} ms  p99 {p99:.3f} ms")


def main() -> None:
    start = time.perf_counter()
    results = evaluate()
    times = asyncio.run(decision_times())
    results["p50"] = times[1_000][0]
    show(results, times)
    write_section("routing_quality", "Routing quality", report(results, times))
    print(f"done in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
