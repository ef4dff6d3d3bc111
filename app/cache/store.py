"""Where cached completions live, and how a completion becomes a stream and back.

A store keeps complete ``chat.completion`` objects (plain JSON dicts) under the keys of
``app.cache.keys``. ``put`` refuses (returns False) anything that is not a complete answer
(``storable``); ``get`` returns a fresh copy the caller may mutate, or None for a miss.
Stores never raise into the request path for a backend failure: a failure is a miss, or a
refused ``put``.

``completion_to_chunks`` replays a cached completion as an OpenAI stream;
``chunks_to_completion`` assembles a streamed answer into a completion, so a stream can be
cached once it has ended cleanly.
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from app import openai_wire as wire
from app.observability.logs import log_event
from app.openai_wire import Json

_REFUSED_FINISH = frozenset({"content_filter"})


class CacheStore(Protocol):
    async def get(self, key: str) -> Json | None:
        """The completion stored under ``key`` (a fresh copy), or None: absent, expired, or failed."""
        ...

    async def put(self, key: str, completion: Json, ttl_s: float) -> bool:
        """Stores ``completion`` for ``ttl_s`` seconds; False when refused (``storable``) or failed."""
        ...

    async def close(self) -> None:
        """Releases the store's resources; safe to call twice."""
        ...


def storable(completion: Any) -> bool:
    """True for a complete answer: a ``chat.completion`` with at least one choice, each with a
    message and a ``finish_reason`` that is neither missing, null nor ``content_filter``."""
    if not isinstance(completion, Mapping) or "error" in completion:
        return False
    if completion.get("object", "chat.completion") != "chat.completion":
        return False
    choices = completion.get("choices")
    if not isinstance(choices, list) or not choices:
        return False
    for choice in choices:
        if not isinstance(choice, Mapping) or not isinstance(choice.get("message"), Mapping):
            return False
        reason = choice.get("finish_reason")
        if not isinstance(reason, str) or not reason or reason in _REFUSED_FINISH:
            return False
    return True


def _entry_text(completion: Json, ttl_s: float) -> str | None:
    """The JSON text to store, or None when the answer must not be cached (every store's rule)."""
    if ttl_s <= 0 or not storable(completion):
        return None
    try:
        return json.dumps(completion, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        return None


class MemoryCache:
    """In-process LRU with a TTL per entry. Expired entries are misses and are evicted when
    met; past ``max_entries`` the least recently used entry goes. Values are kept as JSON text,
    so a stored or returned dict is never shared with the caller."""

    def __init__(self, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, str]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> Json | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, text = entry
        if self._clock() >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        answer: dict[str, Any] = json.loads(text)
        return answer

    async def put(self, key: str, completion: Json, ttl_s: float) -> bool:
        text = _entry_text(completion, ttl_s)
        if text is None:
            return False
        self._entries[key] = (self._clock() + ttl_s, text)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return True

    async def close(self) -> None:
        self._entries.clear()


class RedisCache:
    """Shared across replicas: JSON values under ``prefix + key``, with ``SET ... PX`` (the
    millisecond form of ``EX``). Any failure (connection, timeout, bad value) is a miss or a
    refused put, logged with the error type only (never the value or the URL, which may hold
    a password). Timeouts are short and a command is retried once (a stale pooled connection),
    so a dead or slow Redis costs a request little."""

    def __init__(self, url: str, prefix: str = "hybrid-router:cache:", *, timeout_s: float = 0.5) -> None:
        self.prefix = prefix
        self._client = Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 1)
        )

    def _failed(self, op: str, exc: Exception) -> None:
        log_event("cache_error", logging.WARNING, store="redis", op=op, error_type=type(exc).__name__)

    async def get(self, key: str) -> Json | None:
        try:
            raw = await self._client.get(self.prefix + key)
            if raw is None:
                return None
            value = json.loads(raw)
        except Exception as exc:  # noqa: BLE001 - a cache failure is a miss, never a failed request
            self._failed("get", exc)
            return None
        return value if storable(value) else None

    async def put(self, key: str, completion: Json, ttl_s: float) -> bool:
        text = _entry_text(completion, ttl_s)
        if text is None:
            return False
        try:
            return bool(await self._client.set(self.prefix + key, text, px=max(1, round(ttl_s * 1000))))
        except Exception as exc:  # noqa: BLE001 - a cache failure is a refused put, never a failed request
            self._failed("put", exc)
            return False

    async def close(self) -> None:
        try:
            await self._client.aclose()
        except Exception as exc:  # noqa: BLE001
            self._failed("close", exc)


# --- streams ------------------------------------------------------------------------------


def completion_to_chunks(
    completion: Mapping[str, Any], *, id: str | None = None, created: int | None = None
) -> list[Json]:
    """``completion`` replayed as ``chat.completion.chunk`` objects sharing one NEW id and
    created time (``id``/``created`` override them): per choice a role chunk, one content chunk
    (with the choice's logprobs), a refusal chunk, one chunk per tool call (index, id, type,
    function name and full arguments), the finish chunk; then, when the completion has usage,
    a last ``{"choices": [], "usage": ...}`` chunk (a caller not asked for usage drops it)."""
    chunk_id, model = id or wire.new_id(), completion.get("model", "")
    at = wire.now() if created is None else created
    extra = (
        {"system_fingerprint": completion["system_fingerprint"]}
        if completion.get("system_fingerprint")
        else {}
    )

    def chunk(index: int, delta: Json, finish_reason: str | None = None, logprobs: Any = None) -> Json:
        return {
            **wire.chunk(
                chunk_id, model, at, delta, index=index, finish_reason=finish_reason, logprobs=logprobs
            ),
            **extra,
        }

    chunks: list[Json] = []
    for position, choice in enumerate(completion.get("choices") or ()):
        index = choice.get("index", position)
        message = choice.get("message") or {}
        chunks.append(chunk(index, {"role": message.get("role") or "assistant"}))
        if message.get("content") or choice.get("logprobs"):
            chunks.append(
                chunk(index, {"content": message.get("content") or ""}, logprobs=choice.get("logprobs"))
            )
        if message.get("refusal"):
            chunks.append(chunk(index, {"refusal": message["refusal"]}))
        for j, call in enumerate(message.get("tool_calls") or ()):
            function = call.get("function") or {}
            delta_call = {
                "index": j,
                "id": call.get("id", ""),
                "type": call.get("type", "function"),
                "function": {"name": function.get("name", ""), "arguments": function.get("arguments", "")},
            }
            chunks.append(chunk(index, {"tool_calls": [delta_call]}))
        chunks.append(chunk(index, {}, choice.get("finish_reason") or "stop"))
    if completion.get("usage"):
        chunks.append({**wire.usage_chunk(chunk_id, model, at, completion["usage"]), **extra})
    return chunks


class _Choice:
    """One choice being assembled from deltas."""

    def __init__(self) -> None:
        self.role = "assistant"
        self.content: list[str] = []
        self.refusal: list[str] = []
        self.calls: dict[int, Json] = {}
        self.logprobs: Json | None = None
        self.finish_reason: str | None = None

    def add(self, choice: Mapping[str, Any]) -> None:
        delta = choice.get("delta") or {}
        if isinstance(delta.get("role"), str):
            self.role = delta["role"]
        if isinstance(delta.get("content"), str):
            self.content.append(delta["content"])
        if isinstance(delta.get("refusal"), str):
            self.refusal.append(delta["refusal"])
        for call in delta.get("tool_calls") or ():
            self._add_call(call)
        if choice.get("logprobs"):
            self._add_logprobs(choice["logprobs"])
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]

    def _add_call(self, delta: Mapping[str, Any]) -> None:
        # id, type and name come once (first non-empty wins, so a server repeating them is fine);
        # arguments come in pieces and are concatenated.
        call = self.calls.setdefault(
            delta.get("index", len(self.calls)),
            {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
        )
        if delta.get("id") and not call["id"]:
            call["id"] = delta["id"]
        if delta.get("type"):
            call["type"] = delta["type"]
        function = delta.get("function") or {}
        if function.get("name") and not call["function"]["name"]:
            call["function"]["name"] = function["name"]
        if isinstance(function.get("arguments"), str):
            call["function"]["arguments"] += function["arguments"]

    def _add_logprobs(self, logprobs: Mapping[str, Any]) -> None:
        merged = self.logprobs or {"content": None, "refusal": None}
        for part in ("content", "refusal"):
            if logprobs.get(part):
                merged[part] = [*(merged[part] or []), *logprobs[part]]
        self.logprobs = merged

    def result(self, index: int) -> Json:
        message: Json = {
            "role": self.role,
            "content": "".join(self.content) or None,
            "refusal": "".join(self.refusal) or None,
        }
        if self.calls:
            message["tool_calls"] = [self.calls[i] for i in sorted(self.calls)]
        return {
            "index": index,
            "message": message,
            "logprobs": self.logprobs,
            "finish_reason": self.finish_reason,
        }


def chunks_to_completion(chunks: list[Json]) -> Json | None:
    """The ``chat.completion`` a stream's chunks add up to, or None when the stream is
    incomplete (no choice, or a choice without ``finish_reason``).

    Content and refusal are concatenated (empty is null, as in a non-streamed tool call);
    tool-call deltas are merged by index; usage is the last non-null ``usage`` seen; id,
    created, model and system_fingerprint come from the first chunk carrying them."""
    head: Json = {}
    choices: dict[int, _Choice] = {}
    usage = None
    for item in chunks:
        for field in ("id", "created", "model", "system_fingerprint"):
            if item.get(field) is not None:
                head.setdefault(field, item[field])
        usage = item.get("usage") or usage
        for position, choice in enumerate(item.get("choices") or ()):
            choices.setdefault(choice.get("index", position), _Choice()).add(choice)
    if not choices or any(c.finish_reason is None for c in choices.values()):
        return None
    choice_list = [choices[i].result(i) for i in sorted(choices)]
    completion = wire.completion(
        head.get("id") or wire.new_id(), head.get("model", ""), choice_list, created=head.get("created")
    )
    if "system_fingerprint" in head:
        completion["system_fingerprint"] = head["system_fingerprint"]
    if usage:
        completion["usage"] = usage
    return completion
