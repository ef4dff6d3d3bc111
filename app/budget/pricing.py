"""Model prices: ``genai-prices`` for cloud models, a configured per-million price for self-hosted.

``rates`` gives a model's base USD per million input and output tokens (looked up once per model:
genai-prices takes ~0.1 ms a call), for ranking and planning. ``cost`` prices real usage exactly,
tiers included.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from decimal import Decimal

from app.config import ModelSpec

_SAMPLE_TOKENS = 1_000  # small enough to stay below every tier's start


@dataclass(frozen=True)
class Rates:
    input_per_million: float
    output_per_million: float

    def estimate(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_million + output_tokens * self.output_per_million) / 1e6


class Pricer:
    def __init__(self, models: dict[str, ModelSpec]) -> None:
        self.models = models

    @functools.cache
    def rates(self, model: str) -> Rates:
        spec = self.models[model]
        pricing = spec.pricing
        if pricing.source == "fixed":
            assert pricing.input_per_million is not None and pricing.output_per_million is not None
            return Rates(pricing.input_per_million, pricing.output_per_million)
        per_input = self.cost(model, input_tokens=_SAMPLE_TOKENS, output_tokens=0)
        per_output = self.cost(model, input_tokens=0, output_tokens=_SAMPLE_TOKENS)
        scale = Decimal(1_000_000 // _SAMPLE_TOKENS)
        return Rates(float(per_input * scale), float(per_output * scale))

    def cost(self, model: str, *, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0) -> Decimal:
        """The exact USD price of a response's usage (``input_tokens`` includes cached ones)."""
        spec = self.models[model]
        pricing = spec.pricing
        if pricing.source == "fixed":
            per_token = (Decimal(str(pricing.input_per_million)), Decimal(str(pricing.output_per_million)))
            return (input_tokens * per_token[0] + output_tokens * per_token[1]) / 1_000_000
        from genai_prices import Usage, calc_price

        usage = Usage(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_read_tokens=cached_input_tokens or None,
        )
        price = calc_price(usage, pricing.model_ref or spec.model_id, provider_id=pricing.provider_id)
        return Decimal(price.total_price)
