"""One contract every RateLimiter adapter must keep: on a clock the test moves for the memory
limiter, on Redis's own clock (the test waits) for the Redis one."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from adapters.memory.rate_limiter import MemoryRateLimiter
from application.ports import RateLimiter
from domain.rate_limit import Rate
from tests.contract.conftest import REDIS_URL, reachable_redis
from tests.fakes import FakeTimer

# A token a second: slow enough that a test's quick requests all fall in one refill step even
# on a loaded machine, fast enough that waiting for Redis's clock costs little.
RATES = {"read": Rate(1, 1, 3), "ingestion": Rate(1, 1, 3)}
LIMITER_KINDS = ["memory", "redis"]


@dataclass
class Limiter:
    limiter: RateLimiter
    wait: Callable[[float], Awaitable[None]]
    """Let ``seconds`` pass on the limiter's clock."""


async def open_limiter(kind: str) -> tuple[Limiter, Callable[[], Awaitable[None]]]:
    if kind == "memory":
        timer = FakeTimer()

        async def advance(seconds: float) -> None:
            timer.advance(seconds)

        memory = MemoryRateLimiter(RATES, clock=timer)
        return Limiter(memory, advance), memory.close
    if kind != "redis":
        raise ValueError(kind)
    from adapters.redis.rate_limiter import RedisRateLimiter

    # A random prefix: runs sharing the server never meet, and closing deletes exactly the
    # buckets this limiter wrote.
    prefix = f"test-{secrets.token_hex(6)}:"
    admin = await reachable_redis(REDIS_URL)
    # A generous timeout: this suite is about buckets, and a loaded machine must not turn a slow
    # answer into the fail-open decision (test_redis_rate_limiter.py covers that).
    redis = RedisRateLimiter(REDIS_URL, RATES, key_prefix=prefix, timeout=5)

    async def close() -> None:
        await redis.close()
        async for key in admin.scan_iter(match=f"{prefix}*"):
            await admin.delete(key)
        await admin.aclose()

    return Limiter(redis, asyncio.sleep), close


@pytest.fixture(
    params=[pytest.param(k, marks=[pytest.mark.redis] if k == "redis" else []) for k in LIMITER_KINDS]
)
async def subject(request: pytest.FixtureRequest) -> AsyncIterator[Limiter]:
    opened, close = await open_limiter(request.param)
    yield opened
    await close()


async def test_a_new_identity_gets_its_burst_then_is_refused(subject: Limiter) -> None:
    decisions = [await subject.limiter.take("alice", "read") for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert all(d.counted and d.limit == 3 and d.rate == RATES["read"] for d in decisions)
    refused = decisions[-1]
    assert refused.retry_after_seconds == 1  # a second to the next token
    assert refused.reset_seconds == 3  # three to full
    assert decisions[0].retry_after_seconds == 0 and decisions[0].reset_seconds == 1


async def test_tokens_come_back_at_the_rate(subject: Limiter) -> None:
    for _ in range(3):
        assert (await subject.limiter.take("bob", "read")).allowed
    assert not (await subject.limiter.take("bob", "read")).allowed
    await subject.wait(1.1)
    assert (await subject.limiter.take("bob", "read")).allowed
    assert not (await subject.limiter.take("bob", "read")).allowed


async def test_an_idle_bucket_is_full_again(subject: Limiter) -> None:
    for _ in range(3):
        await subject.limiter.take("carol", "read")
    await subject.wait(RATES["read"].refill_seconds + 0.1)
    assert [(await subject.limiter.take("carol", "read")).allowed for _ in range(4)] == [
        True,
        True,
        True,
        False,
    ]


async def test_identities_and_route_classes_have_buckets_of_their_own(subject: Limiter) -> None:
    for _ in range(3):
        await subject.limiter.take("dave", "ingestion")
    assert not (await subject.limiter.take("dave", "ingestion")).allowed
    assert (await subject.limiter.take("dave", "read")).allowed
    assert (await subject.limiter.take("erin", "ingestion")).allowed


async def test_a_cost_takes_that_many_tokens(subject: Limiter) -> None:
    assert (await subject.limiter.take("frank", "read", cost=2)).remaining == 1
    refused = await subject.limiter.take("frank", "read", cost=2)
    assert not refused.allowed and refused.remaining == 1
    assert (await subject.limiter.take("frank", "read", cost=1)).allowed


async def test_concurrent_takes_never_spend_a_token_twice(subject: Limiter) -> None:
    decisions = await asyncio.gather(*(subject.limiter.take("grace", "read") for _ in range(20)))
    assert all(d.counted for d in decisions)
    assert sum(d.allowed for d in decisions) == 3


async def test_it_knows_which_classes_it_limits(subject: Limiter) -> None:
    assert subject.limiter.limits("read") and subject.limiter.limits("ingestion")
    assert not subject.limiter.limits("admin")
