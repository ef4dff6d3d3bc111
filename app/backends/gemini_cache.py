"""Vertex AI Gemini explicit context caching: which prefix to cache, and the caches a provider
holds. Pure apart from the clock; the SDK calls (create, and the call that uses a cache) are in
``gemini_client``.

Implicit caching needs nothing from the router: Vertex reports it as
``usageMetadata.cachedContentTokenCount``, which becomes ``cached_tokens`` and is priced at the
cache-read price. Explicit caching, for long prefixes that repeat:

- the stable prefix of a ``generateContent`` body is its ``systemInstruction``, ``tools`` and
  ``toolConfig`` (which a request using a cache may not set itself) and its leading long
  contents (``prompt_cache.leading_long``), never the last one (``split``);
- a prefix of at least the model's minimum (``prompt_cache.min_tokens``) seen a second time
  within ``prompt_cache_ttl_s`` gets a context cache, created for, and used by, that request;
  later requests with the prefix send ``cachedContent`` and only the remaining contents, while
  the cache lives (``ContextCaches``: key -> cache name, keyed by a SHA-256, never the text);
- a cache the API no longer has (expired, deleted: a 400, 403 or 404 naming the cached content)
  is forgotten and the request is sent again whole: never an error for the client.

Charges, on the response whose request created the cache (``add_creation``): the cached tokens
as ``cache_write_tokens`` (Vertex bills creating a cache at the input price, which is what
genai-prices charges for Gemini cache writes), added to ``prompt_tokens``, and
``cache_storage_token_hours`` = those tokens x the TTL in hours, which ``app.budget.pricing``
prices at the model's storage price. The cache is never deleted early, so it is stored for all
of its TTL.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from app.backends import prompt_cache
from app.openai_wire import Json

PREFIX_FIELDS = ("systemInstruction", "tools", "toolConfig")
MAX_KEYS = 10_000  # prefixes remembered per provider; older sightings go first
EXPIRY_MARGIN_S = 30.0  # a cache this close to its end is not used any more


@dataclass(frozen=True)
class Split:
    """A body's stable prefix (wire JSON: the ``PREFIX_FIELDS`` it has and ``contents``), the
    contents after it, the prefix's key and its estimated tokens."""

    key: str
    prefix: Json
    rest: list[Json]
    tokens: int


def split(body: Json, model: str, min_tokens: int) -> Split | None:
    """The stable prefix of ``body`` when it is at least ``min_tokens`` long (estimated), else None."""
    contents: list[Json] = body.get("contents") or []
    leading = prompt_cache.leading_long(contents)
    prefix: Json = {k: body[k] for k in PREFIX_FIELDS if body.get(k)}
    if leading:
        prefix["contents"] = contents[:leading]
    tokens = prompt_cache.estimate_tokens(prefix)
    if not prefix or tokens < min_tokens:
        return None
    return Split(prompt_cache.prefix_key(model, prefix), prefix, contents[leading:], tokens)


def cached_body(body: Json, rest: list[Json], name: str) -> Json:
    """``body`` for a request that uses cache ``name``: no prefix fields, only the rest."""
    out = {k: v for k, v in body.items() if k not in PREFIX_FIELDS}
    out.update(contents=rest, cachedContent=name)
    return out


@dataclass
class Cache:
    name: str
    tokens: int
    expires_at: float


class ContextCaches:
    """A provider's context caches and the prefixes it has seen, by key; shared by its models.

    ``clock`` is monotonic seconds. Not thread-safe: one event loop uses it.
    """

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self._caches: dict[str, Cache] = {}
        self._seen: dict[str, float] = {}  # key -> last sighting
        self._creating: set[str] = set()

    def live(self, key: str) -> Cache | None:
        """The cache for ``key`` while it has more than ``EXPIRY_MARGIN_S`` left."""
        cache = self._caches.get(key)
        if cache is not None and cache.expires_at - min(EXPIRY_MARGIN_S, self.ttl_s / 10) > self.clock():
            return cache
        self._caches.pop(key, None)
        return None

    def seen_again(self, key: str) -> bool:
        """Records a sighting of ``key``; True when it was also seen within the TTL before."""
        now = self.clock()
        before = self._seen.pop(key, None)
        self._seen[key] = now
        if len(self._seen) > MAX_KEYS:
            for old in list(self._seen)[: MAX_KEYS // 10]:
                del self._seen[old]
        return before is not None and now - before <= self.ttl_s

    def claim(self, key: str) -> bool:
        """True for the one caller that may create ``key``'s cache now (``release`` after)."""
        if key in self._creating:
            return False
        self._creating.add(key)
        return True

    def release(self, key: str) -> None:
        self._creating.discard(key)

    def add(self, key: str, name: str, tokens: int) -> Cache:
        cache = self._caches[key] = Cache(name, tokens, self.clock() + self.ttl_s)
        return cache

    def forget(self, key: str) -> None:
        """Drops ``key``'s cache (the API no longer has it); its sightings stay, so the next
        request with the prefix creates a new one."""
        self._caches.pop(key, None)


def gone(status: int | None, message: str | None) -> bool:
    """Whether an API error says a context cache is no longer there (expired or deleted): a 400,
    403 or 404 whose message names the cache."""
    return status in (400, 403, 404) and "cache" in (message or "").lower()


def add_creation(usage: Json, tokens: int, ttl_s: float) -> Json:
    """``usage`` with the charges of creating a cache of ``tokens`` kept ``ttl_s`` (see the notes)."""
    usage["prompt_tokens"] = int(usage.get("prompt_tokens") or 0) + tokens
    usage["total_tokens"] = int(usage.get("total_tokens") or 0) + tokens
    details = usage.setdefault("prompt_tokens_details", {})
    details["cache_write_tokens"] = int(details.get("cache_write_tokens") or 0) + tokens
    details["cache_storage_token_hours"] = tokens * ttl_s / 3600
    return usage
