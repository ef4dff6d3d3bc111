"""The budget ledger in Redis, shared by every client that uses the same server and prefix.

Atomicity: ``reserve``, ``settle``, ``release`` and ``spend`` are each one Lua script (EVALSHA),
and Redis runs a script with no other command interleaved, so the limit check over all keys and
the addition of the reservation to all keys are one step for every client. ``record`` is one
MULTI/EXEC transaction; ``mark_alert`` is ``SET NX``.

Layout, per prefix ``P`` and day ``D`` (every key of a day shares the hash tag ``{D}``, so a
day's scripts touch one cluster slot; all keys a script touches are passed as KEYS):

* ``P:{D}:spent``    hash key -> spent nano-dollars (HINCRBY: exact integers)
* ``P:{D}:reserved`` hash key -> nano-dollars of the reservations not yet dropped
* ``P:{D}:resv``     hash id -> JSON {key: nanos} of each reservation
* ``P:{D}:live``     sorted set id -> expiry (ms, Redis server clock)
* ``P:{D}:done``     set of finished ids (the idempotence record)
* ``P:{D}:alert:<key>:<alert>``  SET NX marker

Expiry: a script first drops the day's reservations whose expiry has passed (ZRANGEBYSCORE then
ZREMRANGEBYSCORE, subtracting each from ``reserved``): O(expired) work, after which ``reserved``
is exactly the sum of live reservations, so the check is O(keys). Time is the server's ``TIME``,
the one clock all clients share. Every key of a day expires ``retention_s`` after its last write.

Precision: Lua numbers are doubles, exact up to 2**53 nano-dollars (about $9 million) per day
and key; counters themselves are updated with exact integer strings.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import redis.asyncio as aioredis

from app.budget.money import DEFAULT_RETENTION_S, KeySpend, amount_nanos, from_nanos, limit_nanos

# KEYS: live, resv, reserved. Sets `now` (ms) and drops expired reservations.
_DROP_EXPIRED = """
local function int(x) return string.format('%d', x) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, rid in ipairs(expired) do
  local data = redis.call('HGET', KEYS[2], rid)
  if data then
    for k, n in pairs(cjson.decode(data)) do redis.call('HINCRBY', KEYS[3], k, int(-tonumber(n))) end
    redis.call('HDEL', KEYS[2], rid)
  end
end
if #expired > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now) end
"""

# KEYS: live, resv, reserved, spent. ARGV: id, ttl_ms, retention_s, amounts JSON, limits JSON.
_RESERVE = (
    _DROP_EXPIRED
    + """
local amounts = cjson.decode(ARGV[4])
for k, cap in pairs(cjson.decode(ARGV[5])) do
  local spent = tonumber(redis.call('HGET', KEYS[4], k) or '0')
  local reserved = tonumber(redis.call('HGET', KEYS[3], k) or '0')
  if spent + reserved + tonumber(amounts[k]) > tonumber(cap) then return 0 end
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
redis.call('ZADD', KEYS[1], int(now + tonumber(ARGV[2])), ARGV[1])
for k, n in pairs(amounts) do redis.call('HINCRBY', KEYS[3], k, n) end
for i = 1, 4 do redis.call('EXPIRE', KEYS[i], ARGV[3]) end
return 1
"""
)

# KEYS: live, resv, reserved, spent, done. ARGV: id, retention_s, actual JSON ({} to release).
_FINISH = """
if redis.call('SADD', KEYS[5], ARGV[1]) == 0 then return 0 end
local data = redis.call('HGET', KEYS[2], ARGV[1])
if data then
  for k, n in pairs(cjson.decode(data)) do
    redis.call('HINCRBY', KEYS[3], k, string.format('%d', -tonumber(n)))
  end
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[1], ARGV[1])
end
for k, n in pairs(cjson.decode(ARGV[3])) do redis.call('HINCRBY', KEYS[4], k, n) end
for i = 1, 5 do redis.call('EXPIRE', KEYS[i], ARGV[2]) end
return 1
"""

# KEYS: live, resv, reserved, spent.
_SPEND = (
    _DROP_EXPIRED
    + """
return {redis.call('HGETALL', KEYS[4]), redis.call('HGETALL', KEYS[3])}
"""
)


class RedisLedger:
    """``Ledger`` on Redis at ``url`` (``redis://host:port/db``), its keys under ``prefix``."""

    def __init__(
        self, url: str, prefix: str = "hybrid-router", *, retention_s: int = DEFAULT_RETENTION_S
    ) -> None:
        self.prefix = prefix
        self.retention_s = int(retention_s)
        self.client: aioredis.Redis = aioredis.from_url(url, decode_responses=True)
        self._reserve = self.client.register_script(_RESERVE)
        self._finish_script = self.client.register_script(_FINISH)
        self._spend = self.client.register_script(_SPEND)

    def _keys(self, day: str, *names: str) -> list[str]:
        return [f"{self.prefix}:{{{day}}}:{name}" for name in names]

    async def reserve(
        self, day: str, amounts: Mapping[str, Decimal], limits: Mapping[str, Decimal], *, ttl_s: float
    ) -> str | None:
        wanted = {key: str(amount_nanos(amount)) for key, amount in amounts.items()}
        caps = {key: str(limit_nanos(limits[key])) for key in wanted if key in limits}
        reservation_id = uuid.uuid4().hex
        ttl_ms = max(1, round(ttl_s * 1000))
        args: list[Any] = [reservation_id, ttl_ms, self.retention_s, _json(wanted), _json(caps)]
        ok = await self._reserve(keys=self._keys(day, "live", "resv", "reserved", "spent"), args=args)
        return reservation_id if int(ok) == 1 else None

    async def settle(self, reservation_id: str, day: str, actual: Mapping[str, Decimal]) -> None:
        await self._finish(reservation_id, day, {key: str(amount_nanos(v)) for key, v in actual.items()})

    async def release(self, reservation_id: str, day: str) -> None:
        await self._finish(reservation_id, day, {})

    async def _finish(self, reservation_id: str, day: str, actual: dict[str, str]) -> None:
        keys = self._keys(day, "live", "resv", "reserved", "spent", "done")
        await self._finish_script(keys=keys, args=[reservation_id, self.retention_s, _json(actual)])

    async def record(self, day: str, actual: Mapping[str, Decimal]) -> None:
        (spent_key,) = self._keys(day, "spent")
        async with self.client.pipeline(transaction=True) as pipe:
            for key, value in actual.items():
                pipe.hincrby(spent_key, key, amount_nanos(value))
            pipe.expire(spent_key, self.retention_s)
            await pipe.execute()

    async def spend(self, day: str) -> dict[str, KeySpend]:
        spent_flat, reserved_flat = await self._spend(
            keys=self._keys(day, "live", "resv", "reserved", "spent")
        )
        spent = _pairs(spent_flat)
        reserved = {key: nanos for key, nanos in _pairs(reserved_flat).items() if nanos}
        return {
            key: KeySpend(from_nanos(spent.get(key, 0)), from_nanos(reserved.get(key, 0)))
            for key in sorted(spent.keys() | reserved.keys())
        }

    async def mark_alert(self, day: str, key: str, alert: str) -> bool:
        (marker,) = self._keys(day, f"alert:{key}:{alert}")
        return bool(await self.client.set(marker, "1", nx=True, ex=self.retention_s))

    async def reset(self, day: str, keys: list[str]) -> None:
        (spent,) = self._keys(day, "spent")
        markers = [
            m for k in keys async for m in self.client.scan_iter(match=self._keys(day, f"alert:{k}:*")[0])
        ]
        async with self.client.pipeline(transaction=True) as pipe:
            if keys:
                pipe.hdel(spent, *keys)
            if markers:
                pipe.delete(*markers)
            await pipe.execute()

    async def close(self) -> None:
        await self.client.aclose()


def _json(mapping: Mapping[str, str]) -> str:
    return json.dumps(dict(mapping), separators=(",", ":"), sort_keys=True)


def _pairs(flat: list[str]) -> dict[str, int]:
    return {flat[i]: int(flat[i + 1]) for i in range(0, len(flat), 2)}
