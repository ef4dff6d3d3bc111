"""The trained quality predictor: prompt features in, P(a good answer) per model role out.

A *role* is a kind of model the training data has answers from (``small``: a 7B self-hosted
model; ``mid``: a cheap cloud model; ``large``: a premium one). The router config maps each
catalog model to a role (``models.<name>.quality_role``), so ``QualityPredictor`` answers per
catalog model. The artifact is a small JSON file (a standardiser and one logistic regression per
role) written by ``python -m app.routing.quality.train``; predicting is a few dot products.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.routing.quality.features import NAMES

DEFAULT_MODEL_PATH = Path(__file__).with_name("quality_model.json")


@dataclass(frozen=True)
class RoleModel:
    coef: tuple[float, ...]
    intercept: float

    def probability(self, z: Sequence[float]) -> float:
        logit = self.intercept + sum(w * x for w, x in zip(self.coef, z, strict=True))
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, logit))))


@dataclass(frozen=True)
class QualityModel:
    """A trained artifact: ``predict(vector)`` gives each role's probability of a good answer."""

    mean: tuple[float, ...]
    scale: tuple[float, ...]
    roles: Mapping[str, RoleModel]
    info: Mapping[str, Any]

    def predict(self, vector: Sequence[float]) -> dict[str, float]:
        z = [(x - m) / s for x, m, s in zip(vector, self.mean, self.scale, strict=True)]
        return {role: model.probability(z) for role, model in self.roles.items()}

    def as_dict(self) -> dict[str, Any]:
        return {
            "features": list(NAMES),
            "mean": list(self.mean),
            "scale": list(self.scale),
            "roles": {r: {"coef": list(m.coef), "intercept": m.intercept} for r, m in self.roles.items()},
            "info": dict(self.info),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QualityModel:
        if list(data.get("features", ())) != list(NAMES):
            raise ValueError(
                "the quality model was trained on other features; retrain it (make train-router)"
            )
        roles = {r: RoleModel(tuple(m["coef"]), float(m["intercept"])) for r, m in data["roles"].items()}
        return cls(tuple(data["mean"]), tuple(data["scale"]), roles, dict(data.get("info", {})))

    @classmethod
    def load(cls, path: str | Path | None = None) -> QualityModel:
        with open(Path(path).expanduser() if path else DEFAULT_MODEL_PATH, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))


class QualityPredictor:
    """Predicted quality per catalog model, through each model's role."""

    def __init__(self, model: QualityModel, role_of: Mapping[str, str]) -> None:
        unknown = sorted({r for r in role_of.values() if r not in model.roles})
        if unknown:
            raise ValueError(
                f"quality roles {unknown} are not in the trained model (it has {sorted(model.roles)})"
            )
        self.model = model
        self.role_of = dict(role_of)

    def predict(self, vector: Sequence[float], models: Sequence[str] | None = None) -> dict[str, float]:
        """``{model: probability}`` for the named models (default: all) that have a role; ``{}``
        without a feature vector (features made by hand, or logged before the predictor existed)."""
        if not vector:
            return {}
        by_role = self.model.predict(vector)
        names = self.role_of if models is None else [m for m in models if m in self.role_of]
        return {m: round(by_role[self.role_of[m]], 4) for m in names}
