"""Token-bucket arithmetic for rate limits: pure functions over a bucket, a rate and a time."""

from __future__ import annotations

import math
from dataclasses import dataclass

# Refills are float products (0.1 s × 10/s is 0.9999999999999999 tokens): without this slack
# a client that keeps exactly to its rate would be refused now and then. It grants at most a
# billionth of a token per request more than the exact arithmetic, which no client can use.
EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class Rate:
    """``requests`` per ``per_seconds``, refilled continuously; at most ``burst`` at once."""

    requests: int
    per_seconds: int
    burst: int

    def __post_init__(self) -> None:
        if self.requests < 1 or self.per_seconds < 1 or self.burst < 1:
            raise ValueError(f"a rate needs positive numbers, got {self}")

    @property
    def per_second(self) -> float:
        return self.requests / self.per_seconds

    @property
    def refill_seconds(self) -> float:
        """From empty to full: an idle bucket this old is as good as a new one."""
        return self.burst / self.per_second

    def __str__(self) -> str:
        unit = {1: "s", 60: "min"}.get(self.per_seconds, f"{self.per_seconds}s")
        burst = "" if self.burst == self.requests else f",burst={self.burst}"
        return f"{self.requests}/{unit}{burst}"


@dataclass(frozen=True, slots=True)
class Bucket:
    """The tokens left at time ``at`` (seconds on whichever clock refills the bucket)."""

    tokens: float
    at: float


def refill(bucket: Bucket | None, rate: Rate, now: float) -> float:
    """The tokens in the bucket at ``now``; a missing bucket is full. A clock that went back
    (another Redis after a failover) refills nothing rather than taking tokens away."""
    if bucket is None:
        return float(rate.burst)
    elapsed = max(0.0, now - bucket.at)
    return min(float(rate.burst), bucket.tokens + elapsed * rate.per_second)


def take(bucket: Bucket | None, rate: Rate, now: float, cost: int = 1) -> tuple[Bucket, bool]:
    """The bucket after a request of ``cost`` tokens at ``now``, and whether it was allowed.
    A refused request takes nothing."""
    if not 1 <= cost <= rate.burst:
        raise ValueError(f"cost must be from 1 to the burst {rate.burst}, got {cost}")
    tokens = refill(bucket, rate, now)
    if tokens + EPSILON >= cost:
        return Bucket(max(0.0, tokens - cost), now), True
    return Bucket(tokens, now), False


@dataclass(frozen=True, slots=True)
class Decision:
    """What a rate limiter answered for one request, in the whole seconds HTTP headers carry.

    ``counted`` is False when the limiter could not tell (its Redis is down) and let the
    request through: then the other numbers mean nothing and no RateLimit header is sent.
    """

    allowed: bool
    rate: Rate
    remaining: int
    reset_seconds: int
    retry_after_seconds: int
    counted: bool = True

    @property
    def limit(self) -> int:
        return self.rate.burst

    @classmethod
    def of(cls, rate: Rate, tokens: float, allowed: bool, cost: int = 1) -> Decision:
        """The decision for a bucket left with ``tokens``: ``reset`` is when it is full again,
        ``retry_after`` (refused only, at least 1) when it will hold ``cost`` tokens."""
        speed = rate.per_second
        reset = math.ceil(max(0.0, rate.burst - tokens - EPSILON) / speed)
        retry = 0 if allowed else max(1, math.ceil((cost - tokens - EPSILON) / speed))
        return cls(allowed, rate, max(0, math.floor(tokens + EPSILON)), reset, retry)

    @classmethod
    def not_counted(cls, rate: Rate) -> Decision:
        return cls(True, rate, rate.burst, 0, 0, counted=False)
