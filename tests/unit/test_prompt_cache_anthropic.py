"""Anthropic prompt caching: breakpoint placement (pure), and cache writes then reads through the
real ``anthropic`` SDK against ``FakeAnthropic`` on loopback, priced as genai-prices prices them."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio
from genai_prices import Usage, calc_price

from app.backends.anthropic_cache import MAX_BREAKPOINTS
from app.backends.anthropic_client import AnthropicBackend
from app.backends.anthropic_translate import to_anthropic
from app.budget.pricing import Pricer
from app.config import ModelSpec, Pricing, ProviderSpec
from tests.fakes.anthropic_server import FakeAnthropic
from tests.support.fake_servers import fake_server_fixtures

KEY = "test-anthropic-key"
MODEL = "claude-sonnet-4-6"
SPEC = ModelSpec(
    provider="anthropic",
    model_id=MODEL,
    context_window=200_000,
    max_output_tokens=2048,
    weights={"cost": 0.5, "latency": 0.5, "quality": 0.5},
    pricing=Pricing(provider_id="anthropic"),
    typical_latency_ms=900,
)
DOC = " ".join(f"clause{i}" for i in range(1_500))  # ~12k characters: ~3k tokens
OTHER_DOC = " ".join(f"article{i}" for i in range(1_500))
EPHEMERAL = {"type": "ephemeral"}
TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}

# NOTE: the async tests and the backend share one loop: the SDK's aiohttp session belongs to it.
on_module_loop = pytest.mark.asyncio(loop_scope="module")


def marked(kwargs: dict[str, Any]) -> list[str]:
    """Where the breakpoints are: "tools[i]", "system[i]", "messages[i][j]"."""
    out = [f"tools[{i}]" for i, t in enumerate(kwargs.get("tools") or []) if "cache_control" in t]
    system = kwargs.get("system")
    if isinstance(system, list):
        out += [f"system[{i}]" for i, b in enumerate(system) if "cache_control" in b]
    for i, turn in enumerate(kwargs["messages"]):
        out += [f"messages[{i}][{j}]" for j, b in enumerate(turn["content"]) if "cache_control" in b]
    return out


def chat(*messages: dict[str, Any], **body: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": list(messages), **body}


# --- placement (pure) ---------------------------------------------------------------------
def test_short_prompts_are_left_alone() -> None:
    kwargs = to_anthropic(
        chat({"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, tools=[TOOL]),
        max_output_tokens=100,
        cache_min_tokens=1024,
    )
    assert marked(kwargs) == [] and kwargs["system"] == "Be brief."


def test_long_system_and_tools_get_breakpoints() -> None:
    big_tool = copy.deepcopy(TOOL)
    big_tool["function"]["description"] = DOC
    kwargs = to_anthropic(
        chat(
            {"role": "system", "content": DOC},
            {"role": "user", "content": "Question?"},
            tools=[TOOL, big_tool],
        ),
        max_output_tokens=100,
        cache_min_tokens=1024,
    )
    assert marked(kwargs) == ["tools[1]", "system[0]"]
    assert kwargs["system"] == [{"type": "text", "text": DOC, "cache_control": EPHEMERAL}]


def test_only_a_prefix_above_the_minimum_is_marked() -> None:
    half = DOC[: len(DOC) // 2]  # ~1.5k tokens: above Sonnet's 1024, below Haiku's 2048
    request = chat({"role": "system", "content": half}, {"role": "user", "content": "Q"})
    assert marked(to_anthropic(request, max_output_tokens=100, cache_min_tokens=1024)) == ["system[0]"]
    assert marked(to_anthropic(request, max_output_tokens=100, cache_min_tokens=2048)) == []


def test_long_early_user_turns_are_marked_longest_first_never_the_last_turn() -> None:
    request = chat(
        {"role": "system", "content": "Short."},
        {"role": "user", "content": [{"type": "text", "text": "Read:"}, {"type": "text", "text": DOC}]},
        {"role": "assistant", "content": "Read it."},
        {"role": "user", "content": DOC + OTHER_DOC},
        {"role": "assistant", "content": "Read that too."},
        {"role": "user", "content": DOC},  # the last turn: the question of the day, not a prefix
    )
    kwargs = to_anthropic(request, max_output_tokens=100, cache_min_tokens=1024)
    assert marked(kwargs) == ["messages[0][1]", "messages[2][0]"]
    assert kwargs["system"] == "Short."


def document_then_question(
    shape: str, question: str = "What does clause 7 say?", doc: str = DOC
) -> dict[str, Any]:
    """The two shapes a client sends a document and its question in, besides the system prompt:
    a document message then a question message ("turns"), or one message of two parts ("parts")."""
    system = {"role": "system", "content": "Answer from the document."}
    if shape == "turns":
        return chat(system, {"role": "user", "content": doc}, {"role": "user", "content": question})
    parts = [{"type": "text", "text": doc}, {"type": "text", "text": question}]
    return chat(system, {"role": "user", "content": parts})


@pytest.mark.parametrize("shape", ["turns", "parts"])
def test_a_document_before_the_question_in_the_last_turn_is_marked(shape: str) -> None:
    kwargs = to_anthropic(document_then_question(shape), max_output_tokens=100, cache_min_tokens=1024)
    assert len(kwargs["messages"]) == 1 and len(kwargs["messages"][0]["content"]) == 2
    assert marked(kwargs) == ["messages[0][0]"]  # the document, never the question
    short = to_anthropic(
        document_then_question(shape, doc="A short note."), max_output_tokens=100, cache_min_tokens=1024
    )
    assert marked(short) == []
    above_the_prefix = to_anthropic(
        document_then_question(shape), max_output_tokens=100, cache_min_tokens=8192
    )
    assert marked(above_the_prefix) == []


def test_the_last_long_block_before_the_question_is_the_one_marked() -> None:
    parts = [
        {"type": "text", "text": "Two documents:"},
        {"type": "text", "text": DOC},
        {"type": "text", "text": OTHER_DOC},
        {"type": "text", "text": "Compare them."},
    ]
    kwargs = to_anthropic(
        chat({"role": "user", "content": parts}), max_output_tokens=100, cache_min_tokens=1024
    )
    assert marked(kwargs) == ["messages[0][2]"]  # the longest prefix: both documents


def test_a_document_in_the_last_turn_counts_against_four_and_never_moves_the_clients() -> None:
    client = {"type": "text", "text": DOC, "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    earlier = [
        {"role": r, "content": [dict(client)] if r == "user" else "ok"} for r in ("user", "assistant")
    ] * 2
    request = chat(
        {"role": "system", "content": DOC},
        *earlier,
        {"role": "user", "content": [{"type": "text", "text": OTHER_DOC}, {"type": "text", "text": "Q"}]},
        tools=[{**TOOL, "cache_control": EPHEMERAL}],
    )
    kwargs = to_anthropic(request, max_output_tokens=100, cache_min_tokens=1024)
    assert marked(kwargs) == ["tools[0]", "system[0]", "messages[0][0]", "messages[2][0]"]
    already = chat({"role": "user", "content": [dict(client), {"type": "text", "text": "Q"}]})
    mine = to_anthropic(already, max_output_tokens=100, cache_min_tokens=1024)
    assert mine["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert marked(mine) == ["messages[0][0]"]


def test_never_more_than_four_and_the_clients_own_are_kept() -> None:
    docs = [
        {"role": role, "content": DOC if role == "user" else "ok"}
        for _ in range(4)
        for role in ("user", "assistant")
    ]
    request = chat(
        {"role": "system", "content": DOC},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Rules.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
            ],
        },
        {"role": "assistant", "content": "ok"},
        *docs,
        {"role": "user", "content": "Question?"},
        tools=[{**TOOL, "cache_control": EPHEMERAL}],
    )
    kwargs = to_anthropic(request, max_output_tokens=100, cache_min_tokens=1024)
    where = marked(kwargs)
    assert len(where) == MAX_BREAKPOINTS
    assert where[:3] == ["tools[0]", "system[0]", "messages[0][0]"]  # the client's two, then system
    assert kwargs["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}


def test_a_client_with_four_breakpoints_gets_no_more() -> None:
    part = {"type": "text", "text": DOC, "cache_control": EPHEMERAL}
    request = chat(
        {"role": "system", "content": DOC},
        *[{"role": r, "content": [dict(part)]} for r in ("user", "assistant", "user", "assistant")],
        {"role": "user", "content": "Q"},
    )
    kwargs = to_anthropic(request, max_output_tokens=100, cache_min_tokens=1024)
    assert marked(kwargs) == [f"messages[{i}][0]" for i in range(4)]
    assert isinstance(kwargs["system"], str)


def test_switched_off_places_none_but_keeps_the_clients() -> None:
    request = chat(
        {"role": "system", "content": DOC},
        {"role": "user", "content": DOC, "cache_control": EPHEMERAL},  # message-level, as LiteLLM takes it
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "Q"},
    )
    kwargs = to_anthropic(request, max_output_tokens=100, cache_min_tokens=None)
    assert marked(kwargs) == ["messages[0][0]"] and kwargs["system"] == DOC


def test_a_system_part_marked_by_the_client_stays_where_it_was() -> None:
    system = {
        "role": "system",
        "content": [
            {"type": "text", "text": "Stable.", "cache_control": EPHEMERAL},
            {"type": "text", "text": "Today"},
        ],
    }
    kwargs = to_anthropic(chat(system, {"role": "user", "content": "Q"}), max_output_tokens=100)
    assert kwargs["system"] == [
        {"type": "text", "text": "Stable.", "cache_control": EPHEMERAL},
        {"type": "text", "text": "Today"},
    ]


# --- through the SDK and the fake -----------------------------------------------------------
server, fake = fake_server_fixtures(lambda: FakeAnthropic(api_key=KEY))


def make(fake: FakeAnthropic, *, provider_cache: bool = True, **spec: Any) -> AnthropicBackend:
    provider = ProviderSpec(
        kind="anthropic", api_key_env="K", base_url=fake.url, timeout_s=5, prompt_cache=provider_cache
    )
    return AnthropicBackend("claude-test", SPEC.model_copy(update=spec), provider, api_key=KEY)


@pytest_asyncio.fixture(loop_scope="module")
async def backend(fake: FakeAnthropic) -> AsyncIterator[AnthropicBackend]:
    b = make(fake)
    yield b
    await b.aclose()


def long_request(question: str = "What does clause 7 say?") -> dict[str, Any]:
    return chat({"role": "system", "content": DOC}, {"role": "user", "content": question})


def genai_prices_cost(usage: dict[str, Any]) -> Decimal:
    """What genai-prices itself charges for this usage block (independently of app code)."""
    details = usage["prompt_tokens_details"]
    priced = calc_price(
        Usage(
            input_tokens=usage["prompt_tokens"],
            cache_read_tokens=details["cached_tokens"] or None,
            cache_write_tokens=details["cache_write_tokens"] or None,
            output_tokens=usage["completion_tokens"],
        ),
        model_ref=MODEL,
        provider_id="anthropic",
    )
    return Decimal(priced.total_price)


def assert_priced_right(usage: dict[str, Any]) -> None:
    cost = Pricer({"claude": SPEC}).usage_cost("claude", usage)
    assert round(cost, 2) == round(genai_prices_cost(usage), 2)
    assert cost == genai_prices_cost(usage)


async def collect_usage(stream: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    chunks = [chunk async for chunk in stream]
    assert chunks[-1]["choices"] == []
    usage: dict[str, Any] = chunks[-1]["usage"]
    return usage


@on_module_loop
async def test_a_repeated_long_prompt_writes_then_reads_the_cache(
    backend: AnthropicBackend, fake: FakeAnthropic
) -> None:
    first = (await backend.complete(long_request()))["usage"]
    second = (await backend.complete(long_request("And clause 9?")))["usage"]
    written = first["prompt_tokens_details"]["cache_write_tokens"]
    assert written > 1024 and first["prompt_tokens_details"]["cached_tokens"] == 0
    assert second["prompt_tokens_details"] == {"cached_tokens": written, "cache_write_tokens": 0}
    assert first["prompt_tokens"] > written and second["prompt_tokens"] > written  # reads/writes included
    assert fake.requests[0].body["system"] == [{"type": "text", "text": DOC, "cache_control": EPHEMERAL}]
    for usage in (first, second):
        assert_priced_right(usage)
    cheaper = Pricer({"claude": SPEC}).usage_cost("claude", second)
    assert cheaper < Pricer({"claude": SPEC}).usage_cost("claude", first)


@on_module_loop
@pytest.mark.parametrize("shape", ["turns", "parts"])
async def test_a_document_before_the_question_is_written_then_read(
    backend: AnthropicBackend, fake: FakeAnthropic, shape: str
) -> None:
    first = (await backend.complete(document_then_question(shape)))["usage"]
    second = (await backend.complete(document_then_question(shape, "And clause 9?")))["usage"]
    streamed = await collect_usage(backend.stream(document_then_question(shape, "And clause 11?")))
    written = first["prompt_tokens_details"]["cache_write_tokens"]
    assert written > 1024 and first["prompt_tokens_details"]["cached_tokens"] == 0
    assert second["prompt_tokens_details"] == {"cached_tokens": written, "cache_write_tokens": 0}
    assert streamed["prompt_tokens_details"] == {"cached_tokens": written, "cache_write_tokens": 0}
    sent = fake.requests[0].body["messages"]
    assert sent[0]["content"][0] == {"type": "text", "text": DOC, "cache_control": EPHEMERAL}
    assert "cache_control" not in sent[0]["content"][1]
    for usage in (first, second, streamed):
        assert_priced_right(usage)
    pricer = Pricer({"claude": SPEC})
    assert pricer.usage_cost("claude", second) < pricer.usage_cost("claude", first)


@on_module_loop
async def test_streams_report_cache_writes_then_reads(backend: AnthropicBackend) -> None:
    first = await collect_usage(backend.stream(long_request()))
    second = await collect_usage(backend.stream(long_request("Another?")))
    written = first["prompt_tokens_details"]["cache_write_tokens"]
    assert written > 1024
    assert second["prompt_tokens_details"] == {"cached_tokens": written, "cache_write_tokens": 0}
    for usage in (first, second):
        assert_priced_right(usage)


@on_module_loop
async def test_an_entry_older_than_five_minutes_is_written_again(
    backend: AnthropicBackend, fake: FakeAnthropic
) -> None:
    now = [1_000.0]
    fake.clock = lambda: now[0]
    await backend.complete(long_request())
    now[0] += 301
    again = (await backend.complete(long_request()))["usage"]["prompt_tokens_details"]
    assert again["cached_tokens"] == 0 and again["cache_write_tokens"] > 1024


@pytest.mark.parametrize(("provider_cache", "model_cache"), [(False, None), (True, False)])
@on_module_loop
async def test_switched_off_sends_no_breakpoints(
    fake: FakeAnthropic, provider_cache: bool, model_cache: bool | None
) -> None:
    backend = make(fake, provider_cache=provider_cache, prompt_cache=model_cache)
    try:
        for _ in range(2):
            usage = (await backend.complete(long_request()))["usage"]
    finally:
        await backend.aclose()
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0, "cache_write_tokens": 0}
    assert all(r.body["system"] == DOC for r in fake.requests)


@on_module_loop
async def test_a_model_can_be_switched_on_under_a_provider_that_is_off(fake: FakeAnthropic) -> None:
    backend = make(fake, provider_cache=False, prompt_cache=True, prompt_cache_min_tokens=4096)
    try:
        await backend.complete(long_request())  # ~3k tokens: below this model's minimum
    finally:
        await backend.aclose()
    assert fake.requests[0].body["system"] == DOC


# --- settings ---------------------------------------------------------------------------------
def test_minimum_lengths_by_model_and_the_switch_by_provider_then_model() -> None:
    from pydantic import ValidationError

    from app.backends import prompt_cache

    def spec(model_id: str, **extra: Any) -> ModelSpec:
        return SPEC.model_copy(update={"model_id": model_id, **extra})

    anthropic, vertex = ProviderSpec(kind="anthropic"), ProviderSpec(kind="vertex_ai")
    assert prompt_cache.min_tokens(spec("claude-sonnet-4-6"), anthropic) == 1024
    assert prompt_cache.min_tokens(spec("claude-haiku-4-5"), anthropic) == 2048
    assert prompt_cache.min_tokens(spec("gemini-3.8-flash"), vertex) == 2048
    assert prompt_cache.min_tokens(spec("gemini-3.1-pro-preview"), vertex) == 4096
    assert prompt_cache.min_tokens(spec("gpt-5.5"), ProviderSpec(kind="openai")) == 1024
    assert prompt_cache.min_tokens(spec("claude-haiku-4-5", prompt_cache_min_tokens=5000), anthropic) == 5000
    off = ProviderSpec(kind="anthropic", prompt_cache=False)
    assert prompt_cache.enabled(SPEC, anthropic) and not prompt_cache.enabled(SPEC, off)
    assert prompt_cache.enabled(spec(MODEL, prompt_cache=True), off)
    with pytest.raises(ValidationError):
        ModelSpec.model_validate({**SPEC.model_dump(), "prompt_cache_min_tokens": 0})
    with pytest.raises(ValidationError):
        ProviderSpec.model_validate({"kind": "vertex_ai", "prompt_cache_ttl_s": 0})
