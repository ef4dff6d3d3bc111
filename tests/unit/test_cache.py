"""The response cache: which requests are cached, their keys, the stores, and stream replay."""

from __future__ import annotations

import copy
import logging
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.cache.keys import KEY_VERSION, cache_key, cacheable
from app.cache.store import MemoryCache, RedisCache, chunks_to_completion, completion_to_chunks, storable
from tests.conformance import assert_conforms
from tests.unit.redis_fixture import redis_url  # noqa: F401 - the fixture

MODEL = "gpt-4o-mini"


def body(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": "auto:rules",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}],
        "temperature": 0,
    }
    base.update(fields)
    return base


def completion(content: str | None = "Hello! How can I help?", **fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": "chatcmpl-abc123",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
    }
    out.update(fields)
    return out


def tool_completion() -> dict[str, Any]:
    out = completion(None)
    out["choices"][0]["finish_reason"] = "tool_calls"
    out["choices"][0]["message"]["tool_calls"] = [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        },
        {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": '{"tz": "CET"}'}},
    ]
    return out


# --- cacheable ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"temperature": 0}, True),
        ({"temperature": 0.0}, True),
        ({"temperature": 0.7, "seed": 42}, True),
        ({"seed": 0}, True),
        ({"temperature": 0, "n": 1}, True),
        ({"temperature": 0.7}, False),
        ({}, False),
        ({"seed": None, "temperature": None}, False),
        ({"temperature": 0, "n": 2}, False),
        ({"seed": 7, "n": 3}, False),
        ({"temperature": False}, False),
    ],
)
def test_cacheable(fields: dict[str, Any], expected: bool) -> None:
    request = {"model": "auto:rules", "messages": [{"role": "user", "content": "x"}], **fields}
    assert cacheable(request) is expected


# --- keys ---------------------------------------------------------------------------------


def test_key_is_versioned_sha256() -> None:
    key = cache_key(body(), MODEL)
    version, _, digest = key.partition(":")
    assert version == KEY_VERSION
    assert len(digest) == 64 and int(digest, 16) >= 0


@pytest.mark.parametrize(
    ("a", "b"),
    [
        pytest.param(
            body(),
            body(
                messages=[
                    {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
                    {"role": "user", "content": [{"type": "text", "text": "Hi there"}]},
                ]
            ),
            id="string-vs-text-part",
        ),
        pytest.param(body(stop="END"), body(stop=["END"]), id="stop-string-vs-list"),
        pytest.param(body(stop=["a", "b"]), body(stop=["b", "a", "a"]), id="stop-order"),
        pytest.param(body(max_tokens=100), body(max_completion_tokens=100), id="max-tokens-aliases"),
        pytest.param(
            body(max_tokens=100), body(max_tokens=100, max_completion_tokens=100), id="both-limits-equal"
        ),
        pytest.param(
            body(stream=True, stream_options={"include_usage": True}), body(stream=False), id="stream"
        ),
        pytest.param(body(user="alice", metadata={"team": "a"}), body(user="bob"), id="user-metadata"),
        pytest.param(
            body(model="auto:fast", routing_strategy="fast", max_latency_ms=500), body(), id="routing"
        ),
        pytest.param(body(temperature=0.0), body(temperature=0), id="float-vs-int"),
        pytest.param(body(n=1), body(), id="n-default"),
        pytest.param(body(seed=None, top_p=None), body(), id="none-is-absent"),
        pytest.param(
            body(messages=[{"role": "user", "content": "Hi", "name": None}]),
            body(messages=[{"role": "user", "content": "Hi"}]),
            id="none-message-keys",
        ),
        pytest.param(body(store=True, service_tier="auto", safety_identifier="u1"), body(), id="ignore-list"),
        pytest.param({**body(), "extra": 1}, {"extra": 1, **body()}, id="field-order"),
    ],
)
def test_equivalent_requests_share_a_key(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert cache_key(a, MODEL) == cache_key(b, MODEL)


TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param(body(messages=[{"role": "user", "content": "Hi there!"}]), id="message"),
        pytest.param(
            body(
                messages=[
                    {"role": "system", "content": "Be brief."},
                    {"role": "assistant", "content": "Hi there"},
                ]
            ),
            id="role",
        ),
        pytest.param(
            body(
                messages=[
                    {
                        "role": "user",
                        "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": " there"}],
                    }
                ]
            ),
            id="two-text-parts",
        ),
        pytest.param(body(temperature=0.5), id="temperature"),
        pytest.param(body(seed=1), id="seed"),
        pytest.param(body(tools=[TOOL]), id="tools"),
        pytest.param(body(tool_choice="required"), id="tool-choice"),
        pytest.param(body(parallel_tool_calls=False), id="parallel-tool-calls"),
        pytest.param(body(response_format={"type": "json_object"}), id="response-format"),
        pytest.param(body(top_p=0.5), id="top-p"),
        pytest.param(body(max_tokens=10), id="max-tokens"),
        pytest.param(body(stop=["x"]), id="stop"),
        pytest.param(body(presence_penalty=0.5), id="presence-penalty"),
        pytest.param(body(frequency_penalty=0.5), id="frequency-penalty"),
        pytest.param(body(logit_bias={"50256": -100}), id="logit-bias"),
        pytest.param(body(logprobs=True, top_logprobs=2), id="logprobs"),
        pytest.param(body(reasoning_effort="high"), id="unknown-field"),
        pytest.param(body(top_k=5), id="unknown-backend-field"),
    ],
)
def test_any_change_that_matters_changes_the_key(changed: dict[str, Any]) -> None:
    assert cache_key(changed, MODEL) != cache_key(body(), MODEL)


def test_model_and_differing_limits_change_the_key() -> None:
    assert cache_key(body(), MODEL) != cache_key(body(), "claude-sonnet")
    assert cache_key(body(max_tokens=10, max_completion_tokens=20), MODEL) != cache_key(
        body(max_tokens=10), MODEL
    )
    assert cache_key(body(tools=[TOOL]), MODEL) != cache_key(
        body(tools=[{**TOOL, "function": {**TOOL["function"], "name": "other"}}]), MODEL
    )


def test_key_does_not_mutate_the_request() -> None:
    request = body(stop="END", max_completion_tokens=5, stream=True)
    before = copy.deepcopy(request)
    cache_key(request, MODEL)
    assert request == before


# --- storable / memory ----------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _finish(reason: Any) -> dict[str, Any]:
    out = completion()
    out["choices"][0]["finish_reason"] = reason
    return out


def _without_finish() -> dict[str, Any]:
    out = completion()
    del out["choices"][0]["finish_reason"]
    return out


REFUSED = {
    "no-choices": completion(choices=[]),
    "missing-choices": {k: v for k, v in completion().items() if k != "choices"},
    "no-finish-reason": _without_finish(),
    "finish-none": _finish(None),
    "content-filter": _finish("content_filter"),
    "error": {"error": {"message": "boom", "type": "server_error"}},
    "chunk": {**completion(), "object": "chat.completion.chunk"},
}


def test_storable_accepts_complete_answers() -> None:
    assert storable(completion())
    assert storable(tool_completion())
    assert storable(_finish("length"))


@pytest.mark.parametrize("name", sorted(REFUSED))
async def test_memory_refuses_incomplete_answers(name: str) -> None:
    cache = MemoryCache(4)
    assert await cache.put("k", REFUSED[name], 60) is False
    assert await cache.get("k") is None
    assert len(cache) == 0


async def test_memory_hit_and_miss() -> None:
    cache = MemoryCache(4)
    assert await cache.get("k") is None
    assert await cache.put("k", completion(), 60) is True
    hit = await cache.get("k")
    assert hit == completion()
    hit["model"] = "mutated"  # the caller may mutate what it got
    assert (await cache.get("k"))["model"] == MODEL
    assert await cache.get("other") is None


async def test_memory_ttl_expiry() -> None:
    clock = FakeClock()
    cache = MemoryCache(4, clock=clock)
    await cache.put("k", completion(), 10)
    clock.now += 9.9
    assert await cache.get("k") is not None
    clock.now += 0.1
    assert await cache.get("k") is None
    assert len(cache) == 0  # evicted, not just hidden
    assert await cache.put("k", completion(), 0) is False


async def test_memory_lru_eviction() -> None:
    cache = MemoryCache(2)
    await cache.put("a", completion("A"), 60)
    await cache.put("b", completion("B"), 60)
    assert await cache.get("a") is not None  # "a" is now the most recently used
    await cache.put("c", completion("C"), 60)
    assert len(cache) == 2
    assert await cache.get("b") is None
    assert (await cache.get("a"))["choices"][0]["message"]["content"] == "A"
    assert (await cache.get("c"))["choices"][0]["message"]["content"] == "C"


async def test_memory_overwrite_refreshes_ttl() -> None:
    clock = FakeClock()
    cache = MemoryCache(2, clock=clock)
    await cache.put("k", completion("old"), 5)
    clock.now += 4
    await cache.put("k", completion("new"), 5)
    clock.now += 4
    assert (await cache.get("k"))["choices"][0]["message"]["content"] == "new"
    assert len(cache) == 1


def test_memory_needs_room() -> None:
    with pytest.raises(ValueError):
        MemoryCache(0)


# --- redis ----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The Redis server: tests.unit.redis_fixture (REDIS_URL, or a private redis-server).


@pytest.fixture
async def redis_cache(redis_url: str) -> AsyncIterator[RedisCache]:  # noqa: F811 - the imported fixture
    cache = RedisCache(redis_url, prefix=f"test:{uuid.uuid4().hex}:")
    yield cache
    await cache.close()


async def test_redis_hit_and_miss(redis_cache: RedisCache) -> None:
    assert await redis_cache.get("k") is None
    assert await redis_cache.put("k", tool_completion(), 60) is True
    assert await redis_cache.get("k") == tool_completion()
    assert await redis_cache.get("other") is None


@pytest.mark.parametrize("name", ["no-finish-reason", "content-filter", "error"])
async def test_redis_refuses_incomplete_answers(redis_cache: RedisCache, name: str) -> None:
    assert await redis_cache.put("k", REFUSED[name], 60) is False
    assert await redis_cache.get("k") is None


async def test_redis_entries_expire_after_their_ttl(redis_cache: RedisCache) -> None:
    """Redis itself expires the entry: its remaining life is the ttl given (no waiting needed)."""
    assert await redis_cache.put("k", completion(), 0.5) is True
    assert await redis_cache.get("k") is not None
    remaining_ms = await redis_cache._client.pttl(redis_cache.prefix + "k")
    assert 0 < remaining_ms <= 500


async def test_redis_is_shared_between_clients(redis_url: str) -> None:  # noqa: F811 - the imported fixture
    prefix = f"test:{uuid.uuid4().hex}:"
    writer, reader = RedisCache(redis_url, prefix=prefix), RedisCache(redis_url, prefix=prefix)
    try:
        assert await writer.put("k", completion(), 60)
        assert await reader.get("k") == completion()
        other = RedisCache(redis_url, prefix=f"test:{uuid.uuid4().hex}:")
        assert await other.get("k") is None  # prefixes keep deployments apart
        await other.close()
    finally:
        await writer.close()
        await reader.close()


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_dead_redis_is_a_miss_and_never_raises() -> None:
    url = f"redis://:s3cret@127.0.0.1:{_free_port()}/0"  # nothing listens there
    logger = logging.getLogger("hybrid_router")
    handler, level = _Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    cache = RedisCache(url, prefix="test:", timeout_s=0.2)
    try:
        assert await cache.get("k") is None
        assert await cache.put("k", completion(), 60) is False
    finally:
        await cache.close()
        logger.removeHandler(handler)
        logger.setLevel(level)
    events = [r.event for r in handler.records if isinstance(getattr(r, "event", None), dict)]
    assert [(e["op"], e["error_type"]) for e in events if e["event"] == "cache_error"][:2] == [
        ("get", "ConnectionError"),
        ("put", "ConnectionError"),
    ]
    assert all("s3cret" not in str(e) and "127.0.0.1" not in str(e) for e in events)


async def test_redis_corrupt_value_is_a_miss(redis_cache: RedisCache) -> None:
    await redis_cache._client.set(redis_cache.prefix + "bad", b"{not json")
    await redis_cache._client.set(redis_cache.prefix + "partial", b'{"choices": []}')
    assert await redis_cache.get("bad") is None
    assert await redis_cache.get("partial") is None


# --- stream replay and assembly -----------------------------------------------------------------


def _essentials(c: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [
        (ch["message"]["content"], ch["message"].get("tool_calls"), ch["finish_reason"], c.get("usage"))
        for ch in c["choices"]
    ]


@pytest.mark.parametrize(
    "original", [completion(), tool_completion(), _finish("length")], ids=["text", "tools", "length"]
)
def test_replay_round_trips(original: dict[str, Any]) -> None:
    chunks = completion_to_chunks(original)
    for item in chunks:
        assert_conforms(item, "CreateChatCompletionStreamResponse")
    assert len({c["id"] for c in chunks}) == 1 and len({c["created"] for c in chunks}) == 1
    assert chunks[0]["id"] != original["id"]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == original["usage"]
    assert chunks[-2]["choices"][0]["finish_reason"] == original["choices"][0]["finish_reason"]
    assembled = chunks_to_completion(chunks)
    assert assembled is not None
    assert_conforms(assembled, "CreateChatCompletionResponse")
    assert _essentials(assembled) == _essentials(original)
    assert assembled["model"] == original["model"]


def test_replay_tool_call_deltas_carry_everything() -> None:
    chunks = completion_to_chunks(tool_completion(), id="chatcmpl-new", created=123)
    calls = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in chunks
        if c["choices"] and "tool_calls" in c["choices"][0]["delta"]
    ]
    assert calls == [
        {
            "index": 0,
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        },
        {
            "index": 1,
            "id": "call_2",
            "type": "function",
            "function": {"name": "get_time", "arguments": '{"tz": "CET"}'},
        },
    ]
    assert {(c["id"], c["created"]) for c in chunks} == {("chatcmpl-new", 123)}


def test_replay_does_not_mutate_the_completion() -> None:
    original = tool_completion()
    before = copy.deepcopy(original)
    chunks_to_completion(completion_to_chunks(original))
    assert original == before


def _chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    choices = (
        [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    )
    return {
        "id": "chatcmpl-stream",
        "object": "chat.completion.chunk",
        "created": 1_700_000_001,
        "model": MODEL,
        "system_fingerprint": "fp_1",
        "choices": choices,
        "usage": None,
        **extra,
    }


# An OpenAI stream with stream_options.include_usage: two parallel tool calls, arguments in pieces.
TOOL_STREAM = [
    _chunk({"role": "assistant", "content": None, "refusal": None}),
    _chunk(
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_A",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ]
        }
    ),
    _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]}),
    _chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Par'}}]}),
    _chunk(
        {
            "tool_calls": [
                {
                    "index": 1,
                    "id": "call_B",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": ""},
                }
            ]
        }
    ),
    _chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'is"}'}}]}),
    _chunk({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}),
    _chunk({}, "tool_calls"),
    _chunk(None, usage={"prompt_tokens": 80, "completion_tokens": 30, "total_tokens": 110}),
]


def test_assembles_a_stream_with_tool_call_deltas() -> None:
    for item in TOOL_STREAM:
        assert_conforms(item, "CreateChatCompletionStreamResponse")
    assembled = chunks_to_completion(TOOL_STREAM)
    assert assembled is not None
    assert_conforms(assembled, "CreateChatCompletionResponse")
    assert assembled["id"] == "chatcmpl-stream" and assembled["object"] == "chat.completion"
    assert assembled["system_fingerprint"] == "fp_1"
    choice = assembled["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [
        {
            "id": "call_A",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        },
        {"id": "call_B", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
    ]
    assert assembled["usage"]["total_tokens"] == 110
    assert storable(assembled)


def test_assembles_text_pieces_and_repeated_call_ids() -> None:
    stream = [
        _chunk({"role": "assistant", "content": ""}),
        _chunk({"content": "Hel"}),
        _chunk({"content": "lo"}),
        # Some servers repeat id and name in every tool-call delta.
        _chunk(
            {
                "tool_calls": [
                    {"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": "{"}}
                ]
            }
        ),
        _chunk(
            {
                "tool_calls": [
                    {"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": "}"}}
                ]
            }
        ),
        _chunk({}, "stop"),
    ]
    assembled = chunks_to_completion(stream)
    assert assembled is not None and "usage" not in assembled
    assert_conforms(assembled, "CreateChatCompletionResponse")
    message = assembled["choices"][0]["message"]
    assert message["content"] == "Hello"
    assert message["tool_calls"] == [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    ]


@pytest.mark.parametrize(
    "stream",
    [
        pytest.param(TOOL_STREAM[:-2], id="cut-before-finish"),
        pytest.param(
            [c for c in TOOL_STREAM if not (c["choices"] and c["choices"][0]["finish_reason"])],
            id="usage-but-no-finish",
        ),
        pytest.param([], id="empty"),
        pytest.param([TOOL_STREAM[-1]], id="usage-only"),
    ],
)
def test_incomplete_stream_assembles_to_none(stream: list[dict[str, Any]]) -> None:
    assert chunks_to_completion(stream) is None


async def test_assembled_stream_is_cached_and_replayed() -> None:
    cache = MemoryCache(4)
    assembled = chunks_to_completion(TOOL_STREAM)
    assert assembled is not None
    key = cache_key(body(stream=True), MODEL)
    assert await cache.put(key, assembled, 60)
    hit = await cache.get(cache_key(body(stream=False), MODEL))
    assert hit is not None
    replayed = completion_to_chunks(hit)
    assert chunks_to_completion(replayed)["choices"] == assembled["choices"]
