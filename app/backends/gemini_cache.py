"""Vertex AI Gemini context caching, "implicit first": which prefix gets an explicit context cache,
and the caches a provider holds. Pure apart from the clock; the SDK calls (create, and the call
that uses a cache) are in ``gemini_client``.

Vertex's implicit cache needs nothing from the router: it reads a repeated prefix by itself,
reported as ``usageMetadata.cachedContentTokenCount`` (``cached_tokens``, priced at the cache-read
price). An explicit context cache is read at that same price, but creating one charges its prefix
again at the input price plus storage for its whole TTL: where the implicit cache reads the prefix
anyway, an explicit cache only costs. So the router creates one only where it has seen the implicit
cache miss:

- the stable prefix of a ``generateContent`` body is its ``systemInstruction``, ``tools`` and
  ``toolConfig`` (which a request using a cache may not set itself) and its leading long
  contents (``prompt_cache.leading_long``), never the last one (``split``); only a prefix of at
  least the model's minimum (``prompt_cache.min_tokens``) is considered;
- every request with such a prefix is a sighting (``ContextCaches.seen_again``); a sighting
  within ``prompt_cache_ttl_s`` of the previous one is a *repeat*;
- a repeat sent without a context cache whose answer read less than ``IMPLICIT_HIT_SHARE`` of its
  prefix from the implicit cache (``record_implicit``, after the call, streamed or not) marks the
  prefix: the implicit cache missed it. A first sighting's miss says nothing (nothing could hit);
  a later hit clears the mark, and so does a gap longer than the TTL;
- the next repeat of a marked prefix gets a context cache, created for, and used by, that request
  (``should_create``); later requests with the prefix send ``cachedContent`` and only the
  remaining contents while the cache lives (``ContextCaches``: key -> cache, keyed by a SHA-256,
  never the text, at most ``MAX_KEYS`` prefixes). When it expires the prefix goes back to
  implicit first. A creation that fails is not tried again for the prefix within the TTL;
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
IMPLICIT_HIT_SHARE = 0.5  # an answer that read at least this share of its prefix hit the implicit cache


@dataclass(frozen=True)
class Split:
    """A body's stable prefix (wire JSON: the ``PREFIX_FIELDS`` it has and ``contents``), the
    contents after it, the prefix's key, its estimated tokens and its share of the body's."""

    key: str
    prefix: Json
    rest: list[Json]
    tokens: int
    share: float = 1.0


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
    rest = contents[leading:]
    share = tokens / max(1, tokens + prompt_cache.estimate_tokens(rest))
    return Split(prompt_cache.prefix_key(model, prefix), prefix, rest, tokens, share)


def cached_body(body: Json, rest: list[Json], name: str) -> Json:
    """``body`` for a request that uses cache ``name``: no prefix fields, only the rest."""
    out = {k: v for k, v in body.items() if k not in PREFIX_FIELDS}
    out.update(contents=rest, cachedContent=name)
    return out


def implicit_hit(found: Split, usage: Json) -> bool:
    """Whether an answer sent whole read its prefix from Vertex's implicit cache: ``cached_tokens``
    at least ``IMPLICIT_HIT_SHARE`` of the prefix's tokens (its estimated share of the prompt
    applied to the ``prompt_tokens`` Vertex counted, so the estimate's bias cancels out)."""
    details = usage.get("prompt_tokens_details") or {}
    read = int(details.get("cached_tokens") or 0)
    prefix = int(usage.get("prompt_tokens") or 0) * found.share
    return read > 0 and read >= IMPLICIT_HIT_SHARE * prefix


@dataclass
class Cache:
    name: str
    tokens: int
    expires_at: float


@dataclass
class Sighting:
    """What is known of one prefix: when it was last seen, whether the implicit cache was seen to
    miss it on a repeat (since its last context cache), and when a creation may be tried again."""

    at: float
    missed: bool = False
    retry_at: float = 0.0


class ContextCaches:
    """A provider's context caches and the prefixes it has seen, by key; shared by its models.

    The calls, per request with a long prefix (see the module notes): ``seen_again``; ``live``;
    when there is no live cache, ``should_create`` (then ``claim``, create, ``add`` or ``failed``,
    ``release``); after a call sent whole, ``record_implicit``. ``clock`` is monotonic seconds.
    Not thread-safe: one event loop uses it.
    """

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self._caches: dict[str, Cache] = {}
        self._seen: dict[str, Sighting] = {}  # key -> what is known, least recently seen first
        self._creating: set[str] = set()

    def live(self, key: str) -> Cache | None:
        """The cache for ``key`` while it has more than ``EXPIRY_MARGIN_S`` left."""
        cache = self._caches.get(key)
        if cache is not None and cache.expires_at - min(EXPIRY_MARGIN_S, self.ttl_s / 10) > self.clock():
            return cache
        self._caches.pop(key, None)
        return None

    def seen_again(self, key: str) -> bool:
        """Records a sighting of ``key``; True when it was also seen within the TTL before (a
        repeat). After a longer gap the prefix starts afresh: an earlier implicit miss is dropped."""
        now = self.clock()
        before = self._seen.pop(key, None)
        repeat = before is not None and now - before.at <= self.ttl_s
        if before is not None and repeat:
            before.at = now
            self._seen[key] = before
        else:
            self._seen[key] = Sighting(now, retry_at=before.retry_at if before else 0.0)
        if len(self._seen) > MAX_KEYS:
            for old in list(self._seen)[: MAX_KEYS // 10]:
                del self._seen[old]
        return repeat

    def record_implicit(self, found: Split, usage: Json, repeat: bool) -> None:
        """After a call for ``found``'s prefix sent whole (no context cache), with its answer's
        OpenAI ``usage``: on a repeat, whether the implicit cache missed the prefix marks it for a
        context cache (``should_create``) or clears the mark. A first sighting says nothing."""
        sighting = self._seen.get(found.key)
        if repeat and sighting is not None:
            sighting.missed = not implicit_hit(found, usage)

    def should_create(self, key: str) -> bool:
        """Whether ``key``'s prefix is due a context cache: the implicit cache was seen to miss it
        on a repeat, and no creation failed for it within the TTL."""
        sighting = self._seen.get(key)
        return sighting is not None and sighting.missed and self.clock() >= sighting.retry_at

    def claim(self, key: str) -> bool:
        """True for the one caller that may create ``key``'s cache now (``release`` after)."""
        if key in self._creating:
            return False
        self._creating.add(key)
        return True

    def release(self, key: str) -> None:
        self._creating.discard(key)

    def add(self, key: str, name: str, tokens: int) -> Cache:
        """A cache made for ``key``; the implicit miss that called for it is spent (when it ends,
        the prefix goes back to implicit first)."""
        cache = self._caches[key] = Cache(name, tokens, self.clock() + self.ttl_s)
        sighting = self._seen.get(key)
        if sighting is not None:
            sighting.missed = False
        return cache

    def failed(self, key: str) -> None:
        """A creation for ``key`` failed: not tried again within the TTL."""
        sighting = self._seen.get(key)
        if sighting is not None:
            sighting.missed, sighting.retry_at = False, self.clock() + self.ttl_s

    def forget(self, key: str) -> None:
        """Drops ``key``'s cache (the API no longer has it); the request is sent whole, and its
        implicit outcome decides again whether the prefix gets a new one."""
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
