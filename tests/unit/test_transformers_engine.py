"""TransformersChatEngine on the offline demo model (no Ray, no network)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.engine.demo_model import MARKER, build_demo_model
from app.engine.transformers_engine import TransformersChatEngine
from app.errors import InvalidRequestError, UnsupportedFeatureError

pytestmark = pytest.mark.slow  # the real CPU engine / property-based fuzzing: `make test-fast` skips it

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {
        "role": "user",
        "content": [{"type": "text", "text": "Say something "}, {"type": "text", "text": "please."}],
    },
]


def req(**kw) -> dict:
    return {"model": "demo", "messages": MESSAGES, "temperature": 0, "max_tokens": 24, **kw}


def text_of(resp: dict) -> str:
    return resp["choices"][0]["message"]["content"]


@pytest.fixture(scope="session", autouse=True)
def _offline():
    """No network: set before the session fixtures import huggingface_hub (it reads these at import)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        yield


@pytest.fixture(scope="session")
def demo_path(tmp_path_factory):
    return build_demo_model(tmp_path_factory.mktemp("models") / "demo")


@pytest.fixture(scope="session")
def engine(demo_path):
    eng = TransformersChatEngine(str(demo_path), served_name="demo", torch_threads=1)
    eng.start()
    return eng


def test_demo_model_is_idempotent(demo_path):
    marker = demo_path / MARKER
    before = marker.stat().st_mtime_ns
    assert build_demo_model(demo_path) == demo_path
    assert marker.stat().st_mtime_ns == before
    size = sum(p.stat().st_size for p in demo_path.iterdir())
    assert 100_000 < size < 3_000_000


def test_demo_model_concurrent_builders_and_stale_dir(tmp_path):
    target = tmp_path / "demo"
    target.mkdir()
    (target / "junk.bin").write_bytes(b"partial")  # leftovers without the marker get replaced
    with ThreadPoolExecutor(2) as pool:
        paths = list(pool.map(build_demo_model, [target, target]))
    assert paths == [target.resolve()] * 2
    assert (target / MARKER).is_file() and not (target / "junk.bin").exists()
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in target.iterdir()}
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]  # no temp dirs left behind


def test_status_of_real_load(engine, demo_path):
    assert engine.status() == {
        "model": str(demo_path),
        "loaded": str(demo_path),
        "demo": False,
        "reason": None,
        "ready": True,
    }


@pytest.mark.asyncio
async def test_complete_shape_and_usage(engine):
    resp = await engine.complete(req(max_tokens=8))
    assert resp["id"].startswith("chatcmpl-") and resp["object"] == "chat.completion"
    assert isinstance(resp["created"], int) and resp["model"] == "demo"
    choice = resp["choices"][0]
    assert choice["index"] == 0 and choice["message"]["role"] == "assistant" and choice["logprobs"] is None
    assert choice["finish_reason"] == "length"
    flat = [MESSAGES[0], {"role": "user", "content": "Say something please."}]
    templated = engine.tokenizer.apply_chat_template(flat, tokenize=False, add_generation_prompt=True)
    n_prompt = len(engine.tokenizer(templated, add_special_tokens=False)["input_ids"])
    usage = resp["usage"]
    assert usage["prompt_tokens"] == n_prompt
    assert 0 < usage["completion_tokens"] <= 8
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


@pytest.mark.asyncio
async def test_max_completion_tokens_and_context_clamp(engine):
    resp = await engine.complete(req(max_tokens=None, max_completion_tokens=5))
    assert resp["usage"]["completion_tokens"] == 5
    n_prompt = resp["usage"]["prompt_tokens"]
    small = TransformersChatEngine(engine.model_id, max_context=n_prompt + 3)
    small.start()
    clamped = await small.complete(req(max_tokens=100))
    assert clamped["usage"]["completion_tokens"] == 3 and clamped["choices"][0]["finish_reason"] == "length"
    tiny = TransformersChatEngine(engine.model_id, max_context=n_prompt)
    tiny.start()
    with pytest.raises(ValueError, match="context"):
        await tiny.complete(req())


@pytest.mark.asyncio
async def test_greedy_is_deterministic(engine):
    first, second = await engine.complete(req()), await engine.complete(req())
    assert text_of(first) and text_of(first) == text_of(second)


@pytest.mark.asyncio
async def test_seed_makes_sampling_reproducible(engine):
    sample = req(temperature=1.0, top_p=0.95, seed=7, max_tokens=32)
    a, b = await engine.complete(sample), await engine.complete(sample)
    assert text_of(a) == text_of(b)


@pytest.mark.asyncio
async def test_stop_string_truncates(engine):
    full = text_of(await engine.complete(req(max_tokens=40)))
    stop = full[len(full) // 2 : len(full) // 2 + 3]
    resp = await engine.complete(req(max_tokens=40, stop=[stop]))
    assert text_of(resp) == full[: full.index(stop)]
    assert resp["choices"][0]["finish_reason"] == "stop"
    assert resp["usage"]["completion_tokens"] < 40


async def collect(engine, request) -> list[dict]:
    return [chunk async for chunk in engine.stream(request)]


def streamed_text(chunks: list[dict]) -> str:
    return "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])


@pytest.mark.asyncio
async def test_stream_matches_complete(engine):
    resp = await engine.complete(req(max_tokens=30))
    chunks = await collect(engine, req(max_tokens=30))
    assert len({c["id"] for c in chunks}) == 1 and len({c["created"] for c in chunks}) == 1
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "demo" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert streamed_text(chunks) == text_of(resp)
    final, usage = chunks[-2], chunks[-1]
    assert final["choices"][0]["finish_reason"] == "length" and final["choices"][0]["delta"] == {}
    assert usage["choices"] == [] and usage["usage"] == resp["usage"]
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-2])


@pytest.mark.asyncio
async def test_stream_honours_stop_across_tokens(engine):
    full = text_of(await engine.complete(req(max_tokens=40)))
    stop = full[len(full) // 2 - 2 : len(full) // 2 + 6]  # long enough to span several tokens
    chunks = await collect(engine, req(max_tokens=40, stop=stop))
    assert streamed_text(chunks) == full[: full.index(stop)]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


async def wait_idle(engine, timeout: float = 5.0) -> None:
    start = time.monotonic()
    while engine.active_generations and time.monotonic() - start < timeout:
        await asyncio.sleep(0.01)
    assert engine.active_generations == 0, "generation thread still running"


@pytest.fixture
def forward_calls(engine, monkeypatch) -> list[int]:
    """Counts model forward passes (one per generated token)."""
    calls: list[int] = []
    original = engine.model.forward

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(engine.model, "forward", counting)
    return calls


async def assert_stopped_early(engine, forward_calls: list[int], max_tokens: int) -> None:
    await wait_idle(engine)
    done = len(forward_calls)
    await asyncio.sleep(0.2)
    assert len(forward_calls) == done < max_tokens // 2  # stopped early, and nothing runs on


@pytest.mark.asyncio
async def test_closing_stream_stops_generation(engine, forward_calls):
    gen = engine.stream(req(max_tokens=1500))
    assert (await anext(gen))["choices"][0]["delta"]["role"] == "assistant"
    await anext(gen)  # first content: generation is running
    assert engine.active_generations == 1
    await gen.aclose()
    await assert_stopped_early(engine, forward_calls, 1500)


@pytest.mark.asyncio
async def test_cancelled_consumer_stops_generation(engine, forward_calls):
    async def consume():
        async for _ in engine.stream(req(max_tokens=1500)):
            await asyncio.sleep(0)

    task = asyncio.create_task(consume())
    while not forward_calls:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await assert_stopped_early(engine, forward_calls, 1500)


@pytest.mark.asyncio
async def test_concurrent_requests(engine):
    solo = text_of(await engine.complete(req()))
    results = await asyncio.gather(*(engine.complete(req()) for _ in range(3)), collect(engine, req()))
    assert [text_of(r) for r in results[:3]] == [solo] * 3
    assert streamed_text(results[3]) == solo


@pytest.mark.asyncio
async def test_bad_requests(engine):
    with pytest.raises(ValueError):
        await engine.complete({"messages": []})
    with pytest.raises(UnsupportedFeatureError) as n:
        await engine.complete(req(n=2))
    with pytest.raises(InvalidRequestError) as max_tokens:
        await engine.complete(req(max_tokens=0))
    assert (n.value.param, max_tokens.value.param) == ("n", "max_tokens")


def test_not_started_raises():
    with pytest.raises(RuntimeError, match="start"):
        asyncio.run(TransformersChatEngine("x").complete(req()))


@pytest.mark.asyncio
async def test_fallback_to_demo(demo_path, caplog):
    eng = TransformersChatEngine("no-such-org/no-such-model", demo_dir=demo_path)
    with caplog.at_level(logging.WARNING, logger="app.engine.transformers_engine"):
        eng.start()
    assert "no-such-org/no-such-model" in caplog.text and "DEMO" in caplog.text
    status = eng.status()
    assert status["demo"] is True and status["ready"] is True and status["reason"]
    assert status["model"] == "no-such-org/no-such-model" and status["loaded"] == str(demo_path)
    assert (await eng.complete(req(max_tokens=3)))["usage"]["completion_tokens"] == 3


def test_no_fallback_raises(demo_path):
    eng = TransformersChatEngine("no-such-org/no-such-model", demo_fallback=False, demo_dir=demo_path)
    with pytest.raises(Exception, match="no-such-org/no-such-model"):
        eng.start()
    assert eng.status()["ready"] is False


# --- fields beyond plain text (app.engine.request_fields) ------------------------------------
SCHEMA = {
    "type": "object",
    "properties": {"a": {"type": "string"}, "b": {"type": "array", "items": {"type": "integer"}}},
    "required": ["a", "b"],
    "additionalProperties": False,
}
JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "s", "schema": SCHEMA, "strict": True}}


@pytest.mark.asyncio
async def test_json_stream_matches_complete(engine):
    request = req(max_tokens=40, response_format=JSON_SCHEMA)
    resp = await engine.complete(request)
    chunks = await collect(engine, request)
    assert streamed_text(chunks) == text_of(resp)
    assert (
        json.loads(text_of(resp)).keys() == {"a", "b"} and chunks[-2]["choices"][0]["finish_reason"] == "stop"
    )


@pytest.mark.asyncio
async def test_json_closes_within_any_budget_that_can_hold_it(engine):
    from app.engine.constrained import closing_tokens

    grammar = engine.grammar(SCHEMA, True)
    shortest = len(closing_tokens(grammar, grammar.initial(), engine._texts))
    for budget in (shortest, shortest + 1, shortest + 7, 3 * shortest):
        resp = await engine.complete(
            req(max_tokens=budget, temperature=1.0, seed=budget, response_format=JSON_SCHEMA)
        )
        assert resp["usage"]["completion_tokens"] <= budget
        assert json.loads(text_of(resp)).keys() == {"a", "b"}, budget
    with pytest.raises(InvalidRequestError) as info:
        await engine.complete(req(max_tokens=shortest - 1, response_format=JSON_SCHEMA))
    assert info.value.param == "max_tokens"


@pytest.mark.asyncio
async def test_logprobs_stop_where_a_stop_string_cuts(engine):
    full = await engine.complete(req(max_tokens=30, logprobs=True))
    tokens = [t["token"] for t in full["choices"][0]["logprobs"]["content"]]
    assert "".join(tokens) == text_of(full) and len(tokens) == 30
    stop = "".join(tokens[10:12])
    cut = await engine.complete(req(max_tokens=30, logprobs=True, stop=[stop]))
    kept = [t["token"] for t in cut["choices"][0]["logprobs"]["content"]]
    assert text_of(cut) == text_of(full)[: text_of(full).index(stop)]
    assert kept == tokens[: len(kept)] and "".join(kept).startswith(text_of(cut))


def test_a_template_that_takes_tools_gets_them(demo_path):
    eng = TransformersChatEngine(str(demo_path), torch_threads=1)
    eng.start()
    eng.tokenizer.chat_template = (
        "{% if tools %}TOOLS:{{ tools | tojson }}\n{% endif %}"
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant: "
    )
    from app.engine.request_fields import read_fields

    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    request = {"messages": MESSAGES, "tools": [tool]}
    prompt = eng.tokenizer.decode(eng.prompt_ids(request, read_fields(request, 1000, eng.grammar)))
    assert prompt.startswith('TOOLS:[{"type": "function", "function": {"name": "lookup"')
    assert "<tool_call>" not in prompt  # the model's own format, not the fallback description
