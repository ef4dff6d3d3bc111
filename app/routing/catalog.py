"""The catalog: logical models, how names resolve to them, and how they rank.

Names resolve from the logical name, an alias, the provider's own model id (when only one
logical model uses it; one that several use is ambiguous, and ``sharing`` names them), or any of
those behind a ``provider/`` prefix (the routing guide writes
``self_hosted/mistral-7b-instruct`` and ``vertex_ai/gemini-1.5-pro``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from app.budget.pricing import Pricer
from app.config import ModelSpec, RouterConfig, StrategyWeights, name_table, resolve_name, shared_ids
from app.load.monitor import LoadMonitor
from app.routing.quality.model import QualityModel, QualityPredictor


class Catalog:
    """``load``: the live statistics and load that latency rankings use (by default the catalog's
    own figures, with nothing in flight)."""

    def __init__(
        self, config: RouterConfig, pricer: Pricer | None = None, load: LoadMonitor | None = None
    ) -> None:
        self.config = config
        self.load = load or LoadMonitor(config)
        self.models: dict[str, ModelSpec] = dict(config.models)
        self.pricer = pricer or Pricer(self.models)
        self._names = name_table(self.models)
        self._shared = shared_ids(self.models)
        roles = {m: spec.quality_role for m, spec in self.models.items() if spec.quality_role}
        self.quality = QualityPredictor(QualityModel.load(config.quality.model_path), roles)

    def resolve(self, name: str) -> str | None:
        return resolve_name(name, self._names)

    def sharing(self, name: str) -> list[str]:
        """The logical models that share ``name`` as their provider model id (so that it names none
        of them), also behind a ``provider/`` prefix; empty when it is not such an id."""
        key = name.strip().lower()
        return self._shared.get(key) or (self._shared.get(key.split("/", 1)[1], []) if "/" in key else [])

    def is_self_hosted(self, model: str) -> bool:
        return self.config.is_self_hosted(model)

    def provider_name(self, model: str) -> str:
        return self.models[model].provider

    def has_capability(self, model: str, capability: str) -> bool:
        return capability in self.models[model].capabilities

    def fallbacks(self, model: str) -> list[str]:
        return list(self.config.routing.fallbacks.get(model, ()))

    def names(self, where: Callable[[str], bool] | None = None) -> list[str]:
        return [m for m in self.models if where is None or where(m)]

    # Rankings: each returns model names, best first; ties keep catalog order.
    def by_latency(self, models: Iterable[str], output_tokens: float) -> list[str]:
        """Soonest first, by the live estimate (queueing included): of the first token, or of the
        whole answer when it is expected to be long (``load.long_answer_tokens``)."""
        whole = self.load.long_answer(output_tokens)

        def seconds(m: str) -> float:
            estimate = self.load.estimate(m, output_tokens)
            return estimate.total_s if whole else estimate.first_token_s

        return sorted(models, key=seconds)

    def by_quality(self, models: Iterable[str]) -> list[str]:
        return sorted(models, key=lambda m: -self.models[m].weights.quality)

    def by_cost(self, models: Iterable[str], input_tokens: int, output_tokens: int) -> list[str]:
        def cost(m: str) -> tuple[float, float]:
            return (self.cost_estimate(m, input_tokens, output_tokens), -self.models[m].weights.cost)

        return sorted(models, key=cost)

    def cost_estimate(self, model: str, input_tokens: int, output_tokens: int) -> float:
        return float(self.pricer.rates(model).estimate(input_tokens, output_tokens))

    def speed(self, model: str, output_tokens: float) -> float:
        """1 when ``model`` answers as fast as its catalog figures say, less as it is slower now."""
        spec = self.models[model]
        typical = spec.typical_latency_ms / 1000 + output_tokens / spec.typical_tokens_per_s
        return min(1.0, typical / max(self.load.estimate(model, output_tokens).total_s, 1e-9))

    def by_context(self, models: Iterable[str]) -> list[str]:
        """Largest window first, then the better model."""
        return sorted(models, key=lambda m: (-self.models[m].context_window, -self.models[m].weights.quality))

    def by_balance(
        self, models: Iterable[str], weights: StrategyWeights, complexity: float, output_tokens: float
    ) -> list[str]:
        """Weighted merit; as complexity grows, the cost weight moves over to quality. A model's
        latency merit shrinks as far as its live estimate exceeds what it does unloaded."""
        cost_w = weights.cost * (1 - complexity)
        quality_w = weights.quality + weights.cost * complexity

        def score(m: str) -> float:
            w = self.models[m].weights
            return (
                cost_w * w.cost
                + weights.latency * w.latency * self.speed(m, output_tokens)
                + quality_w * w.quality
            )

        return sorted(models, key=lambda m: -score(m))
