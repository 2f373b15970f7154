"""The RateLimiter on Redis: buckets all instances share, taken from atomically by a Lua script."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

from redis.exceptions import RedisError

from adapters.redis.breaker import Breaker, client_for
from domain.rate_limit import EPSILON, Decision, Rate

log = logging.getLogger("experiments.rate_limit")

# The arithmetic of domain.rate_limit.take, on the Redis server: read, refill, take and write in
# one script, so that instances taking from one bucket at once never both spend its last token.
# The time is the server's (TIME), so instances whose clocks disagree still agree on the
# buckets. It is kept as TIME gives it, seconds and microseconds apart: one Lua number of
# microseconds would print with 14 digits, and lose the fraction of a second.
_TAKE = f"""
local burst = tonumber(ARGV[1])
local per_second = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now = redis.call('TIME')
local tokens = burst
local state = redis.call('HMGET', KEYS[1], 'tokens', 's', 'us')
if state[1] and state[2] and state[3] then
  local elapsed = (tonumber(now[1]) - tonumber(state[2]))
    + (tonumber(now[2]) - tonumber(state[3])) / 1000000
  if elapsed < 0 then elapsed = 0 end
  tokens = math.min(burst, tonumber(state[1]) + elapsed * per_second)
end
local allowed = 0
if tokens + {EPSILON!r} >= cost then
  tokens = math.max(0, tokens - cost)
  allowed = 1
end
local written = string.format('%.9f', tokens)
redis.call('HSET', KEYS[1], 'tokens', written, 's', now[1], 'us', now[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {{allowed, written}}
"""


class RedisRateLimiter:
    """Hashes ``{key_prefix}ratelimit:{route_class}:{identity}`` with fields ``tokens``, ``s``
    and ``us`` (Redis's TIME when last taken from), expiring once idle long enough to be full.

    Limits must not stop the service: a Redis that fails or is slow allows the request (a
    decision that is not counted). Every call gives up after ``timeout``; after a failure Redis
    is skipped for ``retry_after`` seconds (the cache's breaker), so an outage adds no latency.
    """

    def __init__(
        self,
        url: str,
        rates: Mapping[str, Rate],
        *,
        key_prefix: str = "",
        timeout: float = 0.25,
        retry_after: float = 2.0,
    ) -> None:
        self._rates = dict(rates)
        self._prefix = key_prefix
        self._client = client_for(url, timeout)
        self._take = self._client.register_script(_TAKE)
        self._breaker = Breaker(
            url,
            what="Redis rate limiter",
            meanwhile="allowing every request",
            logger=log,
            timeout=timeout,
            retry_after=retry_after,
        )

    def limits(self, route_class: str) -> bool:
        return route_class in self._rates

    async def take(self, identity: str, route_class: str, cost: int = 1) -> Decision:
        rate = self._rates[route_class]
        if not 1 <= cost <= rate.burst:
            raise ValueError(f"cost must be from 1 to the burst {rate.burst}, got {cost}")
        key = f"{self._prefix}ratelimit:{route_class}:{identity}"
        # A second past full, so the key never expires while the bucket could hold less.
        idle_ms = math.ceil(rate.refill_seconds * 1000) + 1000
        args = (rate.burst, repr(rate.per_second), cost, idle_ms)
        reply = await self._breaker.call(lambda: self._take(keys=[key], args=args))
        if reply is None:
            return Decision.not_counted(rate)
        allowed, tokens = reply
        return Decision.of(rate, float(tokens), bool(allowed), cost)

    async def close(self) -> None:
        try:
            await self._client.aclose()
        except (RedisError, OSError):
            pass
