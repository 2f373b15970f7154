"""What the Redis rate limiter promises beyond the contract: its keys, shared buckets, failing open."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time

import pytest
from redis.asyncio import Redis

from adapters.redis.rate_limiter import RedisRateLimiter
from domain.rate_limit import Rate
from tests.contract.conftest import REDIS_URL
from tests.proxy import OutageProxy, SilentServer

pytestmark = pytest.mark.redis

RATES = {"assignment": Rate(6, 60, 3)}  # a token every 10 s: nothing refills during a test
SLOW_OK = 5.0  # the timeout where a test is about buckets: a loaded machine must not fail it open


async def test_a_bucket_is_a_hash_that_expires_once_it_would_be_full(redis_admin: Redis) -> None:
    prefix = f"test-{secrets.token_hex(6)}:"
    limiter = RedisRateLimiter(REDIS_URL, RATES, key_prefix=prefix, timeout=SLOW_OK)
    key = f"{prefix}ratelimit:assignment:key-1"
    try:
        await limiter.take("key-1", "assignment")
        state = await redis_admin.hgetall(key)
        assert set(state) == {b"tokens", b"s", b"us"}
        assert float(state[b"tokens"]) == 2.0
        seconds, micros = await redis_admin.time()
        assert abs(int(state[b"s"]) - seconds) <= 1  # Redis's clock, not this process's
        # Full again 30 s after the last take; kept a second longer.
        assert 30_000 < await redis_admin.pttl(key) <= 31_000
    finally:
        await redis_admin.delete(key)
        await limiter.close()


async def test_instances_on_one_redis_share_each_bucket(redis_admin: Redis) -> None:
    prefix = f"test-{secrets.token_hex(6)}:"
    one, two = (
        RedisRateLimiter(REDIS_URL, RATES, key_prefix=prefix, timeout=SLOW_OK) for _ in range(2)
    )
    try:
        answers = [await (one if i % 2 else two).take("shared", "assignment") for i in range(4)]
        assert [a.allowed for a in answers] == [True, True, True, False]
        assert [a.remaining for a in answers] == [2, 1, 0, 0]
    finally:
        await redis_admin.delete(f"{prefix}ratelimit:assignment:shared")
        await one.close()
        await two.close()


async def test_a_dead_redis_allows_every_request_at_once_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limiter = RedisRateLimiter("redis://:s3cret-pw@127.0.0.1:1/0", RATES)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="experiments.rate_limit"):
        answers = [await limiter.take("k", "assignment") for _ in range(50)]
    await limiter.close()
    assert all(a.allowed and not a.counted for a in answers)
    assert time.monotonic() - started < 2
    warnings = [r.getMessage() for r in caplog.records if r.name == "experiments.rate_limit"]
    assert len(warnings) == 1 and "allowing every request" in warnings[0]
    assert "127.0.0.1:1" in warnings[0] and "s3cret" not in caplog.text


async def test_a_hung_redis_costs_one_short_timeout_per_outage_window() -> None:
    server = SilentServer()
    port = await server.start()
    limiter = RedisRateLimiter(f"redis://127.0.0.1:{port}/0", RATES, timeout=0.1, retry_after=60)
    try:
        started = time.monotonic()
        first = await limiter.take("k", "assignment")
        assert first.allowed and not first.counted
        assert time.monotonic() - started < 1
        for _ in range(100):
            assert (await limiter.take("k", "assignment")).allowed
        assert server.connections == 1
    finally:
        await limiter.close()
        await server.stop()


async def test_limits_count_again_when_redis_is_back(redis_admin: Redis) -> None:
    kwargs = redis_admin.connection_pool.connection_kwargs
    proxy = OutageProxy("127.0.0.1", kwargs.get("port", 6379))
    port = await proxy.start()
    prefix = f"test-{secrets.token_hex(6)}:"
    limiter = RedisRateLimiter(
        f"redis://127.0.0.1:{port}/{kwargs.get('db', 0)}",
        RATES,
        key_prefix=prefix,
        timeout=SLOW_OK,
        retry_after=0.2,
    )
    try:
        assert (await limiter.take("k", "assignment")).counted
        proxy.cut()
        assert not (await limiter.take("k", "assignment")).counted
        proxy.restore()
        await asyncio.sleep(0.3)  # past retry_after: the next call probes Redis again
        back = await limiter.take("k", "assignment")
        assert back.counted and back.remaining == 1  # the take before the outage still counts
    finally:
        await redis_admin.delete(f"{prefix}ratelimit:assignment:k")
        await limiter.close()
        await proxy.stop()


async def test_the_composition_root_puts_limits_where_the_cache_is() -> None:
    from adapters.memory.rate_limiter import MemoryRateLimiter
    from entrypoints.config.container import build_rate_limiter
    from entrypoints.config.settings import ConfigurationError, Settings

    assert isinstance(build_rate_limiter(Settings(cache_url="memory://")), MemoryRateLimiter)
    limiter = build_rate_limiter(Settings(cache_url="redis://127.0.0.1:6379/0"))
    assert isinstance(limiter, RedisRateLimiter)
    await limiter.close()
    with pytest.raises(ConfigurationError) as caught:
        build_rate_limiter(Settings(cache_url="redis://:pw@host:port/0"))
    assert "pw" not in str(caught.value)
