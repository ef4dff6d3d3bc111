"""The seed guide's seven usage examples, routed with the default config and every model healthy.

Each test sends the example's request body (as the seed writes it) through analysis and planning,
and checks the model the seed says it gets.
"""

from __future__ import annotations

import pytest

from app.routing.planner import always_available

from .conftest import user

# Example 5's prompt, verbatim from the seed.
EXAMPLE_5 = """Analyze the following code for security vulnerabilities,
            suggest fixes, and explain the potential impact of each vulnerability
            in detail. [large code snippet...]"""

PARAGRAPH = (
    "The committee met on Tuesday to review the annual figures. Revenue grew in every region, although "
    "costs rose faster in the north, where two new offices opened during the spring. The board asked for "
    "a plan to bring them back in line before the end of the next financial year.\n\n"
)


@pytest.fixture(scope="module")
def long_document() -> str:
    """Well over 100K tokens of ordinary prose."""
    return PARAGRAPH * (800_000 // len(PARAGRAPH))


def primary(router, body, strategy="rules"):
    return router.planner.plan(router.analyzer.analyze(body), strategy, always_available).primary.model


def test_example_1_simple_query_goes_to_self_hosted_mistral(router):
    plan = router.route(user("What is Kubernetes?", model="auto"))
    assert plan.primary.model == "mistral-7b-instruct"
    assert plan.primary.provider == "self_hosted"


def test_example_2_long_document_goes_to_gemini_pro_then_claude_sonnet(router, long_document):
    body = user(f"{long_document}\n\nSummarize the key points.", model="auto", max_tokens=2000)
    plan = router.route(body)
    assert plan.features.tokens > 100_000
    assert plan.features.task == "summarization"
    assert [t.model for t in plan.targets[:2]] == ["gemini-pro", "claude-sonnet"]
    assert plan.primary.provider == "vertex_ai"


def test_example_3_code_generation_goes_to_codellama(router):
    plan = router.route(user("Write a Python REST API with FastAPI", model="auto", max_tokens=1000))
    assert plan.features.task == "code_generation"
    assert plan.primary.model == "codellama-13b"


def test_example_4_fast_strategy_goes_to_mistral_fast(router):
    body = user("Quick summary of this ticket", model="auto", routing_strategy="fast", max_tokens=100)
    assert primary(router, body, body["routing_strategy"]) == "mistral-7b-fast"


def test_example_4_quick_request_under_auto_also_goes_to_mistral_fast(router):
    """'Quick' states a latency need below 500 ms, so auto's step 4 picks the fast pool too."""
    assert primary(router, user("Quick summary of this ticket", max_tokens=100)) == "mistral-7b-fast"


def test_example_5_complex_reasoning_goes_to_a_premium_cloud_model(router):
    plan = router.route(user(EXAMPLE_5, model="auto"))
    assert plan.features.complexity >= 0.7
    assert plan.primary.model in {"claude-opus", "gpt"}
    assert {t.model for t in plan.targets[:2]} == {"claude-opus", "gpt"}


def test_example_6_cost_strategy_translation_goes_to_self_hosted_mistral(router):
    body = user("Translate this text to Spanish", model="auto", routing_strategy="cost")
    assert primary(router, body, body["routing_strategy"]) == "mistral-7b-instruct"


@pytest.mark.parametrize(
    "name",
    [
        "gemini-1.5-pro",  # the seed's example
        "vertex_ai/gemini-1.5-pro",  # the seed's provider/model form
        "vertex-ai/gemini-1.5-pro",  # as the seed's comment spells it
        "Gemini-1.5-Pro",
        " gemini-1.5-pro ",
        "gemini-pro",  # the logical name
        "gemini-3.1-pro-preview",  # the provider's own model id
        "vertex_ai/gemini-3.1-pro-preview",
    ],
)
def test_example_7_explicit_model_names_resolve_to_gemini_pro(router, name):
    assert router.catalog.resolve(name) == "gemini-pro"


@pytest.mark.parametrize(
    "name, model",
    [
        ("self_hosted/mistral-7b-instruct", "mistral-7b-instruct"),
        ("mistral", "mistral-7b-instruct"),
        ("self_hosted/codellama-13b", "codellama-13b"),
        ("anthropic/claude-3-opus", "claude-opus"),
        ("openai/gpt-4-turbo", "gpt"),
        ("gpt-4", "gpt"),
        ("claude-haiku-4-5", "claude-haiku"),
    ],
)
def test_seed_model_names_resolve(router, name, model):
    assert router.catalog.resolve(name) == model


@pytest.mark.parametrize(
    "name",
    [
        "gpt-9",
        "auto",
        "",
        # two logical models serve this provider id, so it names neither
        "mistralai/Mistral-7B-Instruct-v0.3",
    ],
)
def test_unknown_or_ambiguous_names_do_not_resolve(router, name):
    assert router.catalog.resolve(name) is None


def test_example_7_explicit_model_is_used_without_switching(router):
    body = user("Analyze this document", model="gemini-1.5-pro")
    model = router.catalog.resolve(body["model"])
    plan = router.planner.plan_explicit(model, router.analyzer.analyze(body))
    assert [t.model for t in plan.targets] == ["gemini-pro"]
    assert plan.primary.provider == "vertex_ai"
    assert plan.primary.reason
