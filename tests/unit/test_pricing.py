"""Costs of recorded usage blocks, against figures worked out by hand from the providers' prices
(genai-prices): uncached input, cached reads, cache writes and output (reasoning included)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from app.budget.pricing import Pricer, TokenUsage

# Each case: model, the usage block as our adapters return it, and the hand-worked cost.
CASES = [
    pytest.param(
        "gpt",  # gpt-5.5: $5 in, $0.50 cached in, $30 out per million
        {
            "prompt_tokens": 10_000,
            "completion_tokens": 2_000,
            "prompt_tokens_details": {"cached_tokens": 4_000},
            "completion_tokens_details": {"reasoning_tokens": 500},
        },
        # 6,000 x 5 + 4,000 x 0.5 + 2,000 x 30 (reasoning is part of the completion) = 92,000 / 1M
        Decimal("0.092"),
        id="openai-cached-and-reasoning",
    ),
    pytest.param(
        "claude-sonnet",  # claude-sonnet-4-6: $3 in, $0.30 cache read, $3.75 cache write, $15 out
        {
            "prompt_tokens": 11_000,
            "completion_tokens": 500,
            "prompt_tokens_details": {"cached_tokens": 8_000, "cache_write_tokens": 2_000},
        },
        # 1,000 x 3 + 8,000 x 0.3 + 2,000 x 3.75 + 500 x 15 = 20,400 / 1M
        Decimal("0.0204"),
        id="anthropic-cache-read-and-write",
    ),
    pytest.param(
        "gemini-pro",  # gemini-3.1-pro-preview, <= 200K prompt: $2 in, $0.20 cached, $12 out
        {
            "prompt_tokens": 50_000,
            "completion_tokens": 4_000,
            "prompt_tokens_details": {"cached_tokens": 10_000},
            "completion_tokens_details": {"reasoning_tokens": 3_000},
        },
        # 40,000 x 2 + 10,000 x 0.2 + 4,000 x 12 = 130,000 / 1M
        Decimal("0.130"),
        id="gemini-cached-and-thinking",
    ),
    pytest.param(
        "gemini-pro",  # over 200K prompt tokens the higher tier applies: $4 in, $18 out
        {"prompt_tokens": 300_000, "completion_tokens": 1_000},
        # 300,000 x 4 + 1,000 x 18 = 1,218,000 / 1M
        Decimal("1.218"),
        id="gemini-long-context-tier",
    ),
    pytest.param(
        "gemini-pro",  # a context cache made for this request: written at the input price, stored 1 h
        {
            "prompt_tokens": 110_000,  # 10,000 fresh, 50,000 read and 50,000 written
            "completion_tokens": 1_000,
            "prompt_tokens_details": {
                "cached_tokens": 50_000,
                "cache_write_tokens": 50_000,
                "cache_storage_token_hours": 50_000.0,
            },
        },
        # 10,000 x 2 (the rest) + 50,000 x 0.2 (read) + 50,000 x 2 (written) + 1,000 x 12, and
        # 50,000 token-hours x $4.50 (Google's storage list price for Pro) = 367,000 / 1M
        Decimal("0.367"),
        id="gemini-context-cache-created",
    ),
    pytest.param(
        "mistral-7b-instruct",  # self-hosted: the configured $0.01 per million, in and out
        {"prompt_tokens": 1_000_000, "completion_tokens": 1_000_000},
        Decimal("0.02"),
        id="self-hosted-fixed-price",
    ),
]


@pytest.mark.parametrize(("model", "usage", "expected"), CASES)
def test_usage_costs_match_hand_worked_figures(config, model, usage, expected):
    assert Pricer(config.models).usage_cost(model, usage) == expected


def test_worst_case_is_the_whole_prompt_plus_max_tokens(config):
    pricer = Pricer(config.models)
    # claude-haiku-4-5: $1 in, $5 out: 1,000 x 1 + 100 x 5 = 1,500 / 1M
    assert pricer.worst_case("claude-haiku", 1_000, 100) == Decimal("0.0015")
    # Without max_tokens, the model's whole output limit (64,000 tokens) is possible.
    assert pricer.worst_case("claude-haiku", 1_000, None) == Decimal("0.321")
    # Never more output than the context window leaves.
    spec = config.models["mistral-7b-instruct"]
    room = spec.context_window - 32_000
    assert (
        pricer.worst_case("mistral-7b-instruct", 32_000, 4_000)
        == Decimal(32_000 + room) * Decimal("0.01") / 1_000_000
    )


def test_worst_case_covers_any_real_usage_of_the_same_request(config):
    pricer = Pricer(config.models)
    for model in ("gpt", "claude-sonnet", "gemini-flash", "mistral-7b-fast"):
        worst = pricer.worst_case(model, 5_000, 800)
        real = pricer.cost(model, TokenUsage(input_tokens=5_000, output_tokens=800, cache_read_tokens=2_000))
        assert real <= worst


def test_storage_is_priced_from_the_config_else_googles_list_price(config):
    from app.budget.pricing import storage_price

    models = config.models
    assert storage_price(models["gemini-pro"]) == Decimal("4.50")
    assert storage_price(models["gemini-flash"]) == Decimal("1.00")
    assert storage_price(models["claude-sonnet"]) == Decimal(0)
    priced = models["gemini-flash"].model_copy(
        update={
            "pricing": models["gemini-flash"].pricing.model_copy(
                update={"cache_storage_per_million_hour": 2.0}
            )
        }
    )
    assert storage_price(priced) == Decimal(2)
    usage = TokenUsage(cache_storage_token_hours=1_000_000)
    assert Pricer({"g": priced}).cost("g", usage) == Decimal(2)
