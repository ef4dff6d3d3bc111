"""Cache-affine routing: a request whose long prefix a model was recently sent prefers that model.

Providers discount a repeated prefix only where it was cached: on the same model (and, for
OpenAI, the same cache machine, which ``prompt_cache_key`` steers). So once a model has answered
a request with a long stable prefix (``prompt_cache.stable_prefix``: tools, system messages and
leading documents), a later request with the same prefix prefers that model for as long as its
provider keeps the cache, provided the request may use it (its strategy allows it, it fits and
can serve) and reading the prefix from its cache costs no more than the strategy's own choice
would without one. The prefix is known by its SHA-256 only, never its text.

Affinity follows whether the *provider* keeps the prefix, not the router's own prompt caching:
some providers cache a repeated prefix by themselves. How long a provider keeps one after its last
use (``cache_lifetime_s``; each use starts it again):

- ``openai``: its automatic cache, with or without the router's ``prompt_cache_key``:
  ``IMPLICIT_CACHE_S`` (OpenAI: 5 to 10 minutes of inactivity, longer off-peak);
- ``vertex_ai``: with the router's prompt caching on, ``prompt_cache_ttl_s`` (an explicit context
  cache's lifetime, and the window in which the implicit cache is watched); off, Vertex's implicit
  cache still reads the prefix: ``IMPLICIT_CACHE_S`` (Google states no lifetime; minutes);
- ``anthropic``: only with the router's breakpoints (prompt caching on), ``ANTHROPIC_CACHE_S``;
  without them Anthropic caches nothing;
- self-hosted (vLLM's automatic prefix cache, on by default, whatever ``prompt_cache`` says):
  ``prompt_cache_ttl_s``, a guess (it keeps a prefix while its GPU memory is not needed);
- any other OpenAI-compatible provider: 0 (its caching is unknown), so no affinity.
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
IMPLICIT_CACHE_S = 300.0  # OpenAI's automatic and Vertex's implicit caches: the shorter end of minutes
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
    """How long ``model``'s provider keeps a prefix after its last use; 0 where it keeps none
    (see the module notes)."""
    spec, provider = config.models[model], config.provider_of(model)
    routers = prompt_cache.enabled(spec, provider)  # the router's own prompt caching for the model
    if provider.kind == "anthropic":
        return ANTHROPIC_CACHE_S if routers else 0.0
    if provider.kind == "vertex_ai":
        return provider.prompt_cache_ttl_s if routers else IMPLICIT_CACHE_S
    if provider.kind == "openai":
        return IMPLICIT_CACHE_S
    return provider.prompt_cache_ttl_s if provider.is_self_hosted else 0.0


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
