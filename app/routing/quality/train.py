"""Trains the quality predictor: ``python -m app.routing.quality.train`` (``make train-router``).

Training data is JSONL, one prompt a line, with per-model outcomes in one of three shapes:
``"correct": {model: 0|1}`` (graded answers), ``"score": {model: 1..10}`` (judge scores, scaled
to [0, 1]) or ``"quality": {model: 0..1}``. The router config's ``quality.roles`` says which
models of the data play each role; a row's label for a role is the mean over those it has.
Router feedback (``--feedback FILE`` from ``python -m app.feedback.export``, or
``--feedback-store`` to read the ledger store directly; ratings of ``POST /v1/feedback``) adds the answering
model's role with the client's score, from the stored feature vector (no prompt text needed).

Each role gets one L2-regularised logistic regression on standardised features, with soft
labels as weighted 0/1 rows and each file weighted to count like the largest one (at most
``MAX_FILE_WEIGHT`` per row). Everything is deterministic: same data, same artifact.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.routing.quality.features import vectorize
from app.routing.quality.model import DEFAULT_MODEL_PATH, QualityModel, RoleModel

DATA_DIR = Path(__file__).parents[3] / "data" / "routing"
DEFAULT_DATA = (DATA_DIR / "mmlu_pro_train.jsonl", DATA_DIR / "arena_bench_v1.jsonl")
REGULARISATION_C = 0.1  # chosen by leave-one-subject-out on MMLU-Pro (benchmarks/routing_quality.py)
MAX_FILE_WEIGHT = 5.0


@dataclass
class Example:
    """One prompt's feature vector and its label (in [0, 1]) for each role the data covers."""

    vector: list[float]
    labels: dict[str, float]
    weight: float = 1.0
    group: str = ""  # the subject or source, for grouped evaluation
    outcomes: dict[str, float] = field(default_factory=dict)  # per data model, for evaluation


def outcomes_of(row: Mapping[str, Any]) -> dict[str, float]:
    """Per-model outcome in [0, 1] from any of the three row shapes."""
    if "correct" in row:
        return {m: float(v) for m, v in row["correct"].items() if v is not None}
    if "score" in row:
        return {m: (float(v) - 1) / 9 for m, v in row["score"].items() if v is not None and float(v) >= 1}
    return {m: float(v) for m, v in (row.get("quality") or {}).items() if v is not None}


def role_labels(outcomes: Mapping[str, float], roles: Mapping[str, Sequence[str]]) -> dict[str, float]:
    labels = {}
    for role, names in roles.items():
        found = [outcomes[n] for n in names if n in outcomes]
        if found:
            labels[role] = sum(found) / len(found)
    return labels


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def examples_from_file(path: str | Path, roles: Mapping[str, Sequence[str]]) -> list[Example]:
    out = []
    for row in read_jsonl(path):
        outcomes = outcomes_of(row)
        labels = role_labels(outcomes, roles)
        if labels:
            group = str(row.get("category") or Path(path).stem)
            out.append(Example(vectorize(row["prompt"]), labels, group=group, outcomes=outcomes))
    return out


def examples_from_feedback(rows: Iterable[Mapping[str, Any]], role_of: Mapping[str, str]) -> list[Example]:
    """Feedback rows (``{"model", "score", "features": {"quality_inputs": [...]}}``) whose model
    has a role."""
    out = []
    for row in rows:
        vector = (row.get("features") or {}).get("quality_inputs")
        role = role_of.get(str(row.get("model")))
        if vector and role is not None and row.get("score") is not None:
            out.append(Example(list(vector), {role: float(row["score"])}, group="feedback"))
    return out


def balance(files: list[list[Example]]) -> list[Example]:
    """Every file counts like the largest one (each row weighing at most ``MAX_FILE_WEIGHT``)."""
    largest = max((len(f) for f in files), default=0)
    out = []
    for examples in files:
        for ex in examples:
            ex.weight = min(MAX_FILE_WEIGHT, largest / len(examples))
            out.append(ex)
    return out


def fit(
    examples: Sequence[Example],
    roles: Iterable[str],
    c: float = REGULARISATION_C,
    info: Mapping[str, Any] | None = None,
) -> QualityModel:
    """One logistic regression per role on the examples that have its label."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    x_all = np.array([ex.vector for ex in examples], dtype=float)
    mean = x_all.mean(axis=0)
    scale = x_all.std(axis=0)
    scale[scale < 1e-9] = 1.0
    models = {}
    for role in roles:
        rows = [ex for ex in examples if role in ex.labels]
        if not rows:
            continue
        z = (np.array([ex.vector for ex in rows]) - mean) / scale
        y = np.array([ex.labels[role] for ex in rows])
        w = np.array([ex.weight for ex in rows])
        # Soft labels: each row once as a success with weight y, once as a failure with weight 1 - y.
        lr = LogisticRegression(C=c, max_iter=5000)
        lr.fit(
            np.vstack([z, z]),
            np.r_[np.ones(len(y)), np.zeros(len(y))],
            sample_weight=np.r_[w * y, w * (1 - y)],
        )
        models[role] = RoleModel(
            tuple(round(float(v), 6) for v in lr.coef_[0]), round(float(lr.intercept_[0]), 6)
        )
    return QualityModel(
        tuple(round(float(v), 6) for v in mean),
        tuple(round(float(v), 6) for v in scale),
        models,
        dict(info or {}),
    )


def train(
    roles: Mapping[str, Sequence[str]],
    data: Sequence[str | Path] = DEFAULT_DATA,
    feedback: Sequence[Mapping[str, Any]] = (),
    role_of: Mapping[str, str] | None = None,
) -> QualityModel:
    files = [examples_from_file(p, roles) for p in data]
    fed = examples_from_feedback(feedback, role_of or {})
    examples = balance([f for f in files if f]) + fed
    info = {
        "data": {Path(p).name: _digest(p) for p in data},
        "rows": len(examples),
        "feedback_rows": len(fed),
        "roles": {r: list(n) for r, n in roles.items()},
        "c": REGULARISATION_C,
    }
    return fit(examples, roles, info=info)


def _digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def main(argv: Sequence[str] | None = None) -> None:
    from app.config import load_config

    default_config = Path(__file__).parents[3] / "deployments" / "configs" / "router.yaml"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config", default=str(default_config), help="router config (quality.roles, catalog roles)"
    )
    parser.add_argument(
        "--data", nargs="*", default=[str(p) for p in DEFAULT_DATA], help="training JSONL files"
    )
    ratings = parser.add_mutually_exclusive_group()
    ratings.add_argument("--feedback", help="JSONL exported by `python -m app.feedback.export`")
    ratings.add_argument(
        "--feedback-store",
        action="store_true",
        help="read the ratings from the config's ledger store (SQLite file or $REDIS_URL)",
    )
    parser.add_argument(
        "--out", default=str(DEFAULT_MODEL_PATH), help="where to write the trained model (JSON)"
    )
    args = parser.parse_args(argv)
    config = load_config(args.config)
    role_of = {m: s.quality_role for m, s in config.models.items() if s.quality_role}
    feedback = read_jsonl(args.feedback) if args.feedback else []
    if args.feedback_store:
        from app.feedback.export import read_rows

        feedback = read_rows(config)
    model = train(config.quality.roles, args.data, feedback, role_of)
    Path(args.out).write_text(json.dumps(model.as_dict(), indent=1) + "\n", encoding="utf-8")
    print(
        f"wrote {args.out}: roles {sorted(model.roles)}, {model.info['rows']} rows "
        f"({model.info['feedback_rows']} from feedback)"
    )


if __name__ == "__main__":
    main()
