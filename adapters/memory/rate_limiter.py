"""The RateLimiter in one process's memory, bounded in size: each server process counts alone."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from cachetools import TTLCache

from domain.rate_limit import Bucket, Decision, Rate, take


class MemoryRateLimiter:
    """Buckets by (route class, identity) in a cachetools TTLCache on the limiter's own clock.

    An entry expires once it has been idle for the longest time any class takes to refill, when
    it is full again and so no different from a missing one: forgetting it changes nothing.
    Past ``max_entries`` live buckets the least recently used goes first, which hands that
    caller a full bucket early; size it above the number of callers active at once.
    """

    def __init__(
        self,
        rates: Mapping[str, Rate],
        *,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rates = dict(rates)
        self._clock = clock
        idle = max((rate.refill_seconds for rate in self._rates.values()), default=1.0)
        self._buckets: TTLCache[tuple[str, str], Bucket] = TTLCache(
            maxsize=max_entries, ttl=idle, timer=clock
        )

    def limits(self, route_class: str) -> bool:
        return route_class in self._rates

    async def take(self, identity: str, route_class: str, cost: int = 1) -> Decision:
        rate = self._rates[route_class]
        key = (route_class, identity)
        bucket, allowed = take(self._buckets.get(key), rate, self._clock(), cost)
        self._buckets[key] = bucket
        return Decision.of(rate, bucket.tokens, allowed, cost)

    async def close(self) -> None:
        self._buckets.clear()
