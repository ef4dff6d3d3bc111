"""OpenAI prompt caching: the derived ``prompt_cache_key`` (pure), and cached tokens through the
real ``openai`` SDK against ``FakeOpenAI`` on loopback, priced as genai-prices prices them."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio
from genai_prices import Usage, calc_price

from app.backends.openai_client import OpenAIBackend
from app.backends.openai_translate import cache_key, to_openai
from app.budget.pricing import Pricer
from app.config import ModelSpec, Pricing, ProviderSpec
from tests.fakes.openai_server import FakeOpenAI
from tests.support.fake_servers import fake_server_fixtures

KEY = "test-openai-key"
MODEL = "gpt-5.5"
SPEC = ModelSpec(
    provider="openai",
    model_id=MODEL,
    context_window=1_000_000,
    weights={"cost": 0.3, "latency": 0.5, "quality": 1.0},
    pricing=Pricing(provider_id="openai"),
    typical_latency_ms=2000,
)
DOC = " ".join(f"clause{i}" for i in range(1_500))  # ~12k characters: ~3k tokens
OTHER_DOC = " ".join(f"article{i}" for i in range(1_500))
on_module_loop = pytest.mark.asyncio(loop_scope="module")


def chat(system: str, *turns: str, **body: Any) -> dict[str, Any]:
    roles = ["user", "assistant"]
    messages = [{"role": "system", "content": system}]
    messages += [{"role": roles[i % 2], "content": t} for i, t in enumerate(turns)]
    return {"model": MODEL, "messages": messages, **body}


# --- the key (pure) ------------------------------------------------------------------------
def test_the_same_prefix_gets_the_same_key_whatever_the_question() -> None:
    first = cache_key(chat(DOC, "What does clause 7 say?"), 1024)
    assert first is not None and re.fullmatch(r"hr-[0-9a-f]{32}", first)
    assert cache_key(chat(DOC, "And clause 9?"), 1024) == first
    assert DOC not in first and "clause" not in first


def test_a_different_prefix_gets_a_different_key() -> None:
    first = cache_key(chat(DOC, "Q"), 1024)
    assert cache_key(chat(OTHER_DOC, "Q"), 1024) != first
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    assert cache_key(chat(DOC, "Q", tools=tools), 1024) != first


def test_leading_long_turns_are_part_of_the_prefix_and_short_ones_end_it() -> None:
    with_doc = cache_key(chat("Be terse.", DOC, "Read.", "Question one?"), 1024)
    assert with_doc is not None
    assert cache_key(chat("Be terse.", DOC, "Read.", "Question two?"), 1024) == with_doc
    assert cache_key(chat("Be terse.", OTHER_DOC, "Read.", "Question one?"), 1024) != with_doc


def parts(document: str, question: str) -> dict[str, Any]:
    """One user message of two parts, the document then the question."""
    content = [{"type": "text", "text": document}, {"type": "text", "text": question}]
    return {
        "model": MODEL,
        "messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": content}],
    }


def test_a_document_part_before_the_question_part_gets_a_key() -> None:
    first = cache_key(parts(DOC, "What does clause 7 say?"), 1024)
    assert first is not None and re.fullmatch(r"hr-[0-9a-f]{32}", first)
    assert cache_key(parts(DOC, "And clause 9?"), 1024) == first
    assert cache_key(parts(OTHER_DOC, "And clause 9?"), 1024) not in (None, first)
    assert cache_key(parts("A short note.", "Q"), 1024) is None  # a short prefix: no key
    alone = {"model": MODEL, "messages": [{"role": "user", "content": [{"type": "text", "text": DOC}]}]}
    assert cache_key(alone, 1024) is None  # a message's last part is its question, never the prefix
    after_a_short_turn = chat("Be terse.", "Hi", "Hello.")
    after_a_short_turn["messages"].append(parts(DOC, "Q")["messages"][1])
    assert cache_key(after_a_short_turn, 1024) is None  # the prefix ended at the short turn


def test_short_prefixes_get_no_key() -> None:
    assert cache_key(chat("Be terse.", "Hi"), 1024) is None
    assert cache_key(chat("Be terse.", DOC), 1024) is None  # the last message is never the prefix
    assert "prompt_cache_key" not in to_openai(
        chat("Be terse.", "Hi"), native=True, stream=False, cache_min_tokens=1024
    )


def test_the_clients_key_is_kept_and_off_sends_none() -> None:
    mine = to_openai(
        chat(DOC, "Q", prompt_cache_key="tenant-7"), native=True, stream=False, cache_min_tokens=1024
    )
    assert mine["prompt_cache_key"] == "tenant-7"
    assert "prompt_cache_key" not in to_openai(chat(DOC, "Q"), native=True, stream=False)


# --- through the SDK and the fake -----------------------------------------------------------
server, fake = fake_server_fixtures(lambda: FakeOpenAI(api_key=KEY))


def make(fake: FakeOpenAI, kind: str = "openai", **provider: Any) -> OpenAIBackend:
    spec = ProviderSpec(kind=kind, api_key_env="K", base_url=f"{fake.url}/v1", timeout_s=5, **provider)  # type: ignore[arg-type]
    return OpenAIBackend("gpt", SPEC, spec, api_key=KEY)


@pytest_asyncio.fixture(loop_scope="module")
async def backend(fake: FakeOpenAI) -> AsyncIterator[OpenAIBackend]:
    b = make(fake)
    yield b
    await b.aclose()


def assert_priced_right(usage: dict[str, Any]) -> None:
    expected = calc_price(
        Usage(
            input_tokens=usage["prompt_tokens"],
            cache_read_tokens=usage["prompt_tokens_details"]["cached_tokens"] or None,
            output_tokens=usage["completion_tokens"],
        ),
        model_ref=MODEL,
        provider_id="openai",
    ).total_price
    cost = Pricer({"gpt": SPEC}).usage_cost("gpt", usage)
    assert round(cost, 2) == round(Decimal(expected), 2) and cost == Decimal(expected)


async def stream_usage(stream: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    chunks = [c async for c in stream]
    assert chunks[-1]["choices"] == []
    usage: dict[str, Any] = chunks[-1]["usage"]
    return usage


@on_module_loop
async def test_a_repeated_long_prompt_reads_the_cache_with_the_derived_key(
    backend: OpenAIBackend, fake: FakeOpenAI
) -> None:
    first = (await backend.complete(chat(DOC, "What does clause 7 say?")))["usage"]
    second = (await backend.complete(chat(DOC, "And clause 9?")))["usage"]
    assert first["prompt_tokens_details"]["cached_tokens"] == 0
    cached = second["prompt_tokens_details"]["cached_tokens"]
    assert cached >= 1024 and (cached - 1024) % 128 == 0 and cached < second["prompt_tokens"]
    keys = {r.body["prompt_cache_key"] for r in fake.requests}
    assert keys == {cache_key(chat(DOC, "x"), 1024)}
    for usage in (first, second):
        assert_priced_right(usage)
    pricer = Pricer({"gpt": SPEC})
    assert pricer.usage_cost("gpt", second) < pricer.usage_cost("gpt", first)


@on_module_loop
async def test_streams_report_cached_tokens(backend: OpenAIBackend, fake: FakeOpenAI) -> None:
    first = await stream_usage(backend.stream(chat(DOC, "One?")))
    second = await stream_usage(backend.stream(chat(DOC, "Two?")))
    assert first["prompt_tokens_details"]["cached_tokens"] == 0
    assert second["prompt_tokens_details"]["cached_tokens"] >= 1024
    assert all(r.body["prompt_cache_key"].startswith("hr-") for r in fake.requests)
    for usage in (first, second):
        assert_priced_right(usage)


@on_module_loop
async def test_a_document_part_reads_the_cache_with_the_derived_key(
    backend: OpenAIBackend, fake: FakeOpenAI
) -> None:
    await backend.complete(parts(DOC, "What does clause 7 say?"))
    second = (await backend.complete(parts(DOC, "And clause 9?")))["usage"]
    assert second["prompt_tokens_details"]["cached_tokens"] >= 1024
    assert {r.body["prompt_cache_key"] for r in fake.requests} == {cache_key(parts(DOC, "x"), 1024)}
    assert_priced_right(second)


@on_module_loop
async def test_the_clients_key_reaches_openai(backend: OpenAIBackend, fake: FakeOpenAI) -> None:
    await backend.complete(chat(DOC, "Q", prompt_cache_key="tenant-7"))
    await backend.complete(chat(DOC, "Q", prompt_cache_key="tenant-8"))
    assert [r.body["prompt_cache_key"] for r in fake.requests] == ["tenant-7", "tenant-8"]


@on_module_loop
@pytest.mark.parametrize(
    ("kind", "provider"), [("openai", {"prompt_cache": False}), ("openai_compatible", {})]
)
async def test_no_derived_key_when_off_or_not_openai(
    fake: FakeOpenAI, kind: str, provider: dict[str, Any]
) -> None:
    backend = make(fake, kind, **provider)
    try:
        await backend.complete(chat(DOC, "Q"))
    finally:
        await backend.aclose()
    assert "prompt_cache_key" not in fake.requests[0].body
