"""Cache-affine routing: a request whose long prefix a model was recently sent prefers that model.

Providers discount a repeated prefix only where it was cached: on the same model (and, for
OpenAI, the same cache machine, which ``prompt_cache_key`` steers). So once a model has answered
a request with a long stable prefix (``prompt_cache.stable_prefix``: tools, system messages and
leading documents), a later request with the same prefix prefers that model for as long as its
provider keeps the cache, provided the request may use it (its strategy allows it, it fits and
can serve) and reading the prefix from its cache costs no more than the strategy's own choice
would without one. The prefix is known by its SHA-256 only, never its text.

How long a provider keeps a prefix (``cache_lifetime_s``): Anthropic 5 minutes from its last use;
the others ``prompt_cache_ttl_s`` (a Vertex AI context cache's TTL; OpenAI's and Gemini's implicit
caches and vLLM's prefix cache keep a prefix for minutes under use). Each use starts it again.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from app.backends import prompt_cache
from app.config import RouterConfig

ANTHROPIC_CACHE_S = 300.0  # Anthropic's ephemeral cache: 5 minutes, refreshed on each read
MIN_PREFIX_TOKENS = 1_024  # below this, no provider caches a prefix
MAX_PREFIXES = 50_000  # prefixes remembered per replica (least recently used go first)


@dataclass(frozen=True)
class Prefix:
    key: str  # SHA-256 hex of the stable prefix
    tokens: int  # its estimated tokens


def prefix_of(body: Mapping[str, Any]) -> Prefix | None:
    """The request's stable prefix, when it is long enough for a provider to cache."""
    parts = prompt_cache.stable_prefix(body)
    if not parts[1] and not parts[0]:
        return None
    tokens = prompt_cache.estimate_tokens(parts)
    if tokens < MIN_PREFIX_TOKENS:
        return None
    return Prefix(prompt_cache.prefix_key(*parts), tokens)


def cache_lifetime_s(config: RouterConfig, model: str) -> float:
    """How long ``model``'s provider keeps a prefix after its last use; 0 with caching off."""
    spec, provider = config.models[model], config.provider_of(model)
    if not prompt_cache.enabled(spec, provider):
        return 0.0
    return ANTHROPIC_CACHE_S if provider.kind == "anthropic" else provider.prompt_cache_ttl_s


@dataclass(frozen=True)
class Seen:
    model: str
    at: float
    until: float


class PrefixAffinity:
    def __init__(self, config: RouterConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lifetime = {m: cache_lifetime_s(config, m) for m in config.models}
        self._seen: OrderedDict[str, Seen] = OrderedDict()

    def remember(self, prefix: Prefix, model: str) -> None:
        lifetime = self._lifetime.get(model, 0.0)
        if lifetime <= 0:
            return
        now = self.clock()
        self._seen[prefix.key] = Seen(model, now, now + lifetime)
        self._seen.move_to_end(prefix.key)
        while len(self._seen) > MAX_PREFIXES:
            self._seen.popitem(last=False)

    def recall(self, prefix: Prefix) -> Seen | None:
        """The model that last answered this prefix, while its provider still keeps it."""
        seen = self._seen.get(prefix.key)
        if seen is None:
            return None
        if self.clock() >= seen.until:
            del self._seen[prefix.key]
            return None
        return seen
