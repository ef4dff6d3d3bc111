"""Provider prompt caching, what the adapters share. Pure, no I/O.

Each provider caches a request's prefix in its own way; the adapters steer it:

- Anthropic (``anthropic_cache``): ``cache_control`` breakpoints on long stable prefixes;
- OpenAI (``openai_translate``): a ``prompt_cache_key`` derived from the prefix;
- Vertex AI Gemini (``gemini_cache``): implicit first; explicit context caches only for prefixes
  whose repeat the implicit cache missed.

What they share is here: whether caching is on for a model, the shortest prefix worth caching
(``min_tokens``), a cheap token estimate (characters / 4, media counted flat) and the prefix
key, a SHA-256 of the prefix (never its text: keys may be logged or sent).

What every adapter reports, in the OpenAI usage block, ``usage.prompt_tokens_details``:

- ``cached_tokens``: prompt tokens read from a cache (OpenAI's own field);
- ``cache_write_tokens``: prompt tokens written to a cache (Anthropic cache creation, a Gemini
  context cache created for this request);
- ``cache_storage_token_hours``: Gemini explicit caches only, the tokens of the context cache this
  request created times the hours it is kept (``prompt_cache_ttl_s``), which
  ``app.budget.pricing`` prices at ``pricing.cache_storage_per_million_hour``.

``prompt_tokens`` counts all of them, as OpenAI's does (so cache reads and writes are part of it).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from app.config import ModelSpec, ProviderSpec

CHARS_PER_TOKEN = 4
MEDIA_TOKENS = 1_600  # an image or a document page, roughly; their base64 says nothing useful
LONG_TURN_TOKENS = 1_024  # a leading turn this long counts as a document, part of the stable prefix
KEY_HEX = 32


def enabled(spec: ModelSpec, provider: ProviderSpec) -> bool:
    """The model's ``prompt_cache``, else its provider's."""
    return provider.prompt_cache if spec.prompt_cache is None else spec.prompt_cache


def min_tokens(spec: ModelSpec, provider: ProviderSpec) -> int:
    """The shortest prefix worth a breakpoint, a key or a context cache (see the schema)."""
    if spec.prompt_cache_min_tokens is not None:
        return spec.prompt_cache_min_tokens
    model = spec.model_id.lower()
    if provider.kind == "anthropic":
        return 2_048 if "haiku" in model else 1_024
    if provider.kind == "vertex_ai":
        return 4_096 if "pro" in model else 2_048
    return 1_024


def threshold(spec: ModelSpec, provider: ProviderSpec) -> int | None:
    """The shortest prefix to cache for this model (``min_tokens``), or None with caching off."""
    return min_tokens(spec, provider) if enabled(spec, provider) else None


def estimate_tokens(value: Any) -> int:
    """A cheap estimate of the tokens in a JSON-like value: text characters / 4, media flat."""
    return _chars(value) // CHARS_PER_TOKEN


def _chars(value: Any) -> int:
    if isinstance(value, str):
        return MEDIA_TOKENS * CHARS_PER_TOKEN if value.startswith("data:") else len(value)
    if isinstance(value, dict):
        total = 0
        for key, item in value.items():
            media = key in ("data", "file_data") and isinstance(item, str | bytes)
            total += len(key) + (MEDIA_TOKENS * CHARS_PER_TOKEN if media else _chars(item))
        return total
    if isinstance(value, list | tuple):
        return sum(_chars(item) for item in value)
    return len(str(value)) if value is not None else 0


def prefix_key(*parts: Any) -> str:
    """A SHA-256 (hex) of the prefix; equal prefixes get equal keys."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def stable_prefix(request: Any) -> tuple[list[Any], list[Any]]:
    """A chat request's stable prefix: its tools, then the leading system and developer messages
    and long turns (documents), then, when all of those lead up to the last message and it is a
    user message of content parts, its leading long parts (all but its last part: a document part
    before the question part) as a message of those parts only. Never the question that changes:
    a last message's text or last part."""
    messages = list(request.get("messages") or [])
    stable = 0
    for message in messages[:-1]:
        system = isinstance(message, dict) and message.get("role") in ("system", "developer")
        if not system and estimate_tokens(message) < LONG_TURN_TOKENS:
            break
        stable += 1
    prefix = messages[:stable]
    last = messages[-1] if messages and stable == len(messages) - 1 else None
    if isinstance(last, dict) and last.get("role") == "user" and isinstance(last.get("content"), list):
        parts = last["content"]
        leading = leading_long(parts)
        if leading:
            prefix.append({"role": "user", "content": parts[:leading]})
    return list(request.get("tools") or []), prefix


def leading_long(items: list[Any], *, keep: int = 1) -> int:
    """How many items from the start are long (``LONG_TURN_TOKENS`` or more), leaving at least
    ``keep`` at the end: the documents a conversation starts with, part of its stable prefix."""
    count = 0
    for item in items[: max(0, len(items) - keep)]:
        if estimate_tokens(item) < LONG_TURN_TOKENS:
            break
        count += 1
    return count
