"""Model prices: ``genai-prices`` for cloud models, a configured per-million price for self-hosted.

``usage_cost`` prices a response's real usage exactly: input (cached reads and cache writes at
their own prices), output (reasoning tokens are output tokens), tiers included, and the storage of
a Gemini context cache the request created (``cache_storage_token_hours``, at
``pricing.cache_storage_per_million_hour``: genai-prices has no storage prices, so the config's,
else Google's list price, see ``storage_price``).
``worst_case`` is what a request could cost at most (its prompt plus ``max_tokens``), the
amount reserved against budgets. ``rates`` gives base USD per million tokens, for ranking.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from app.config import ModelSpec

_SAMPLE_TOKENS = 1_000  # small enough to stay below every tier's start
_MILLION = Decimal(1_000_000)
# Google's list prices for context-cache storage, USD per 1M tokens per hour (Vertex AI pricing):
# Gemini Pro models 4.50, Flash and Flash-Lite 1.00.
GEMINI_STORAGE_PRO = Decimal("4.50")
GEMINI_STORAGE_OTHER = Decimal("1.00")


@dataclass(frozen=True)
class Rates:
    input_per_million: float
    output_per_million: float

    def estimate(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_million + output_tokens * self.output_per_million) / 1e6


@dataclass(frozen=True)
class TokenUsage:
    """Usage in the terms prices use; ``input_tokens`` includes cached reads and cache writes.
    ``cache_storage_token_hours``: tokens times hours of context-cache storage (Gemini)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_storage_token_hours: float = 0.0

    @classmethod
    def from_openai(cls, usage: Mapping[str, Any]) -> TokenUsage:
        """OpenAI's usage block, with the details our adapters fill in (cached, cache writes)."""
        details = usage.get("prompt_tokens_details") or {}
        return cls(
            input_tokens=int(usage.get("prompt_tokens") or 0),
            output_tokens=int(usage.get("completion_tokens") or 0),
            cache_read_tokens=int(details.get("cached_tokens") or 0),
            cache_write_tokens=int(details.get("cache_write_tokens") or 0),
            cache_storage_token_hours=float(details.get("cache_storage_token_hours") or 0),
        )


CACHE_COUNTERS = "prompt_cache."  # the ledger keys of CacheUse's daily counters start so


@dataclass(frozen=True)
class CacheUse:
    """What provider prompt caching did for one answer. ``saved_usd`` is net: the price of the same
    usage uncached minus its price, negative where cache writes and storage cost more than reads
    saved (a first sighting)."""

    read_tokens: int
    write_tokens: int
    storage_usd: Decimal
    saved_usd: Decimal

    def ledger_entries(self) -> dict[str, Decimal]:
        """Today's counters in the budget ledger (``prompt_cache.*``; never a budget)."""
        entries = {
            "read_tokens": Decimal(self.read_tokens),
            "write_tokens": Decimal(self.write_tokens),
            "storage_usd": self.storage_usd,
            "saved_usd": max(self.saved_usd, Decimal(0)),
            "extra_usd": max(-self.saved_usd, Decimal(0)),
        }
        return {CACHE_COUNTERS + key: value for key, value in entries.items() if value}


class Pricer:
    def __init__(self, models: dict[str, ModelSpec]) -> None:
        self.models = models

    @functools.cache  # noqa: B019 - one Pricer per service, for the service's life: the cache is its point
    def rates(self, model: str) -> Rates:
        pricing = self.models[model].pricing
        if pricing.source == "fixed":
            assert pricing.input_per_million is not None and pricing.output_per_million is not None
            return Rates(pricing.input_per_million, pricing.output_per_million)
        per_input = self.cost(model, TokenUsage(input_tokens=_SAMPLE_TOKENS))
        per_output = self.cost(model, TokenUsage(output_tokens=_SAMPLE_TOKENS))
        scale = Decimal(1_000_000 // _SAMPLE_TOKENS)
        return Rates(float(per_input * scale), float(per_output * scale))

    def cost(self, model: str, usage: TokenUsage) -> Decimal:
        """The exact USD price of ``usage`` on ``model``, context-cache storage included."""
        spec = self.models[model]
        storage = Decimal(0)
        if usage.cache_storage_token_hours:
            storage = Decimal(str(usage.cache_storage_token_hours)) * storage_price(spec) / _MILLION
        return self._tokens_cost(spec, usage) + storage

    @staticmethod
    def _tokens_cost(spec: ModelSpec, usage: TokenUsage) -> Decimal:
        pricing = spec.pricing
        if pricing.source == "fixed":
            per_in, per_out = (
                Decimal(str(pricing.input_per_million)),
                Decimal(str(pricing.output_per_million)),
            )
            return (usage.input_tokens * per_in + usage.output_tokens * per_out) / _MILLION
        from genai_prices import Usage, calc_price

        priced = calc_price(
            Usage(
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cache_read_tokens=usage.cache_read_tokens or None,
                cache_write_tokens=usage.cache_write_tokens or None,
            ),
            pricing.model_ref or spec.model_id,
            provider_id=pricing.provider_id,
        )
        return Decimal(priced.total_price)

    def usage_cost(self, model: str, usage: Mapping[str, Any]) -> Decimal:
        return self.cost(model, TokenUsage.from_openai(usage))

    def cache_use(self, model: str, usage: Mapping[str, Any]) -> CacheUse | None:
        """The cache reads, writes, storage and net saving in ``usage``; None when it has none."""
        tokens = TokenUsage.from_openai(usage)
        if not (tokens.cache_read_tokens or tokens.cache_write_tokens or tokens.cache_storage_token_hours):
            return None
        uncached = self.cost(
            model, TokenUsage(input_tokens=tokens.input_tokens, output_tokens=tokens.output_tokens)
        )
        storage = (
            Decimal(str(tokens.cache_storage_token_hours)) * storage_price(self.models[model]) / _MILLION
        )
        return CacheUse(
            tokens.cache_read_tokens, tokens.cache_write_tokens, storage, uncached - self.cost(model, tokens)
        )

    def worst_case(self, model: str, prompt_tokens: int, max_tokens: int | None) -> Decimal:
        """The most a request can cost: its whole prompt uncached, and every completion token it
        may produce (``max_tokens``, else what the model's window and output limit leave)."""
        spec = self.models[model]
        room = max(0, spec.context_window - prompt_tokens)
        output = min(max_tokens or spec.max_output_tokens, spec.max_output_tokens, room)
        return self.cost(model, TokenUsage(input_tokens=prompt_tokens, output_tokens=output))


def storage_price(spec: ModelSpec) -> Decimal:
    """USD per 1M tokens per hour of context-cache storage: the config's, else Google's list
    price for Gemini models (Pro 4.50, others 1.00), else 0."""
    configured = spec.pricing.cache_storage_per_million_hour
    if configured is not None:
        return Decimal(str(configured))
    model = (spec.pricing.model_ref or spec.model_id).lower()
    if "gemini" not in model:
        return Decimal(0)
    return GEMINI_STORAGE_PRO if "pro" in model else GEMINI_STORAGE_OTHER
