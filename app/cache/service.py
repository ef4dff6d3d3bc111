"""The response cache as the router uses it: which store, and the lookups around a request.

A hit answers with the stored completion (a fresh id and time, the same content), as JSON or
replayed as a stream; it calls no model and costs nothing. Only complete answers are stored:
a streamed one once it ended cleanly, under the model that actually answered.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from app import openai_wire as wire
from app.cache.keys import cache_key, cacheable
from app.cache.store import CacheStore, MemoryCache, RedisCache
from app.config import CacheConfig


def store_for(config: CacheConfig, env: Mapping[str, str] | None = None) -> CacheStore | None:
    if not config.enabled:
        return None
    if config.backend == "memory":
        return MemoryCache(config.max_entries)
    url = (os.environ if env is None else env).get(config.redis_url_env)
    if not url:
        raise ValueError(f"cache.backend is redis but {config.redis_url_env} is not set")
    return RedisCache(url)


class ResponseCache:
    def __init__(self, store: CacheStore | None, ttl_s: float) -> None:
        self.store = store
        self.ttl_s = ttl_s

    def key(self, body: Mapping[str, Any], model: str) -> str | None:
        return cache_key(body, model) if self.store is not None and cacheable(body) else None

    async def get(self, body: Mapping[str, Any], model: str) -> dict[str, Any] | None:
        key = self.key(body, model)
        if key is None or self.store is None:
            return None
        hit = await self.store.get(key)
        if hit is not None:
            hit.update(id=wire.new_id(), created=wire.now(), model=model)
        return hit

    async def put(self, body: Mapping[str, Any], model: str, completion: dict[str, Any] | None) -> None:
        key = self.key(body, model)
        if key is not None and completion is not None and self.store is not None:
            await self.store.put(key, completion, self.ttl_s)

    async def close(self) -> None:
        if self.store is not None:
            await self.store.close()
