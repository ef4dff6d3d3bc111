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

Every ingress replica remembers the prefixes it saw. Where the router has Redis (the ledger's or
the response cache's), replicas also share them (``SharedPrefixes``): a prefix one replica sent to
a model goes back to it from any replica. A Redis failure is a miss, never a failed request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from app.backends import prompt_cache
from app.config import RouterConfig
from app.observability.logs import log_event

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


class SharedPrefixes:
    """Prefixes every replica sees: ``prefix + key`` -> ``{"model", "age_s"}`` in Redis, kept for
    the provider's lifetime (``SET ... PX``). Short timeouts: a slow Redis costs a decision little."""

    def __init__(self, url: str, prefix: str = "hybrid-router:affinity:", *, timeout_s: float = 0.25) -> None:
        from redis.asyncio import Redis

        self.prefix = prefix
        self._client = Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self._failing = False

    def _failed(self, op: str, exc: Exception) -> None:
        if not self._failing:  # once until it works again, not per request
            log_event("affinity_store_error", logging.WARNING, op=op, error_type=type(exc).__name__)
        self._failing = True

    async def put(self, key: str, model: str, lifetime_s: float) -> None:
        value = json.dumps({"model": model, "at": time.time()})
        try:
            await self._client.set(self.prefix + key, value, px=max(1, round(lifetime_s * 1000)))
        except Exception as exc:  # noqa: BLE001 - affinity only saves money; never fails a request
            self._failed("put", exc)
        else:
            self._failing = False

    async def get(self, key: str) -> tuple[str, float, float] | None:
        """(model, seconds since it answered, seconds it is still kept), or None."""
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.get(self.prefix + key)
                pipe.pttl(self.prefix + key)
                raw, left_ms = await pipe.execute()
            if raw is None or left_ms is None or left_ms <= 0:
                return None
            entry = json.loads(raw)
            return str(entry["model"]), max(0.0, time.time() - float(entry["at"])), left_ms / 1000
        except Exception as exc:  # noqa: BLE001 - a miss
            self._failed("get", exc)
            return None

    async def close(self) -> None:
        try:
            await self._client.aclose()
        except Exception as exc:  # noqa: BLE001
            self._failed("close", exc)


def shared_for(config: RouterConfig, env: Mapping[str, str] | None = None) -> SharedPrefixes | None:
    """The router's Redis (the ledger's, else the response cache's), when it has one."""
    env = os.environ if env is None else env
    if config.ledger.backend == "redis" and env.get(config.ledger.redis_url_env):
        return SharedPrefixes(env[config.ledger.redis_url_env])
    if config.cache.enabled and config.cache.backend == "redis" and env.get(config.cache.redis_url_env):
        return SharedPrefixes(env[config.cache.redis_url_env])
    return None


class PrefixAffinity:
    def __init__(
        self,
        config: RouterConfig,
        clock: Callable[[], float] = time.monotonic,
        shared: SharedPrefixes | None = None,
    ) -> None:
        self.clock = clock
        self.shared = shared
        self._lifetime = {m: cache_lifetime_s(config, m) for m in config.models}
        self._seen: OrderedDict[str, Seen] = OrderedDict()
        self._writes: set[asyncio.Task[None]] = set()

    def remember(self, prefix: Prefix, model: str) -> None:
        """Here at once; in the shared store in the background (the answer does not wait)."""
        lifetime = self._lifetime.get(model, 0.0)
        if lifetime <= 0:
            return
        self._keep(prefix.key, Seen(model, self.clock(), self.clock() + lifetime))
        if self.shared is not None:
            task = asyncio.get_running_loop().create_task(self.shared.put(prefix.key, model, lifetime))
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    def _keep(self, key: str, seen: Seen) -> None:
        self._seen[key] = seen
        self._seen.move_to_end(key)
        while len(self._seen) > MAX_PREFIXES:
            self._seen.popitem(last=False)

    async def recall(self, prefix: Prefix) -> Seen | None:
        """The model that last answered this prefix, while its provider still keeps it: as this
        replica saw it, else as another replica did."""
        seen = self._seen.get(prefix.key)
        if seen is not None and self.clock() >= seen.until:
            del self._seen[prefix.key]
            seen = None
        if seen is not None or self.shared is None:
            return seen
        found = await self.shared.get(prefix.key)
        if found is None:
            return None
        model, age_s, left_s = found
        if model not in self._lifetime:  # a model this replica's catalog does not have
            return None
        now = self.clock()
        seen = Seen(model, now - age_s, now + left_s)
        self._keep(prefix.key, seen)
        return seen

    async def settled(self) -> None:
        """Waits for the shared store's pending writes (tests, shutdown)."""
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)

    async def close(self) -> None:
        await self.settled()
        if self.shared is not None:
            await self.shared.close()
