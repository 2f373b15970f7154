"""What the Redis cache of assignments promises: its keys, TTLs and values, the entries of
experiments earlier versions kept, and outages."""

from __future__ import annotations

import asyncio
import logging
import secrets
from datetime import UTC, datetime
from urllib.parse import urlsplit

import msgspec
import pytest
from redis.asyncio import Redis

from adapters.redis.cache import RedisCache
from domain.assignment import Assignment
from domain.experiment import Experiment
from tests import factories
from tests.proxy import OutageProxy, SilentServer

pytestmark = pytest.mark.redis

from tests.contract.conftest import REDIS_URL


def an_experiment() -> Experiment:
    # Random ids: the keys below carry no test prefix, so they must not meet another run's.
    at = datetime(2026, 11, 28, 1, 2, 3, 999999, tzinfo=UTC)
    return factories.an_experiment(description="d", ids=f"t{secrets.token_hex(6)}-", created_at=at)


async def test_keys_ttls_and_values_are_as_documented(redis_admin: Redis) -> None:
    cache = RedisCache(REDIS_URL, ttl_seconds=120)
    exp = an_experiment()
    assignment = Assignment.decide(exp, "u:1", exp.created_at)
    key = f"assign:{len(exp.id)}:{exp.id}:u:1"
    try:
        await cache.set_assignment(assignment)
        assert 0 < await redis_admin.ttl(key) <= 120
        # A msgpack array in field order, the timestamp as msgpack's timestamp extension (UTC).
        raw = msgspec.msgpack.decode(await redis_admin.get(key))
        assert raw == [exp.id, "u:1", assignment.variant_id, assignment.variant_name, exp.created_at]
        assert await cache.get_assignment(exp.id, "u:1") == assignment
        assert await redis_admin.keys(f"*{exp.id}*") == [key.encode()]  # nothing of the experiment
    finally:
        await redis_admin.delete(key)
        await cache.close()


async def test_forgetting_an_experiment_deletes_the_entry_earlier_versions_kept(redis_admin: Redis) -> None:
    cache = RedisCache(REDIS_URL, ttl_seconds=60)
    key = f"experiment:{an_experiment().id}"
    try:
        await redis_admin.set(key, b"an experiment, as a version before the near cache wrote it", ex=60)
        await cache.forget_experiment(key.removeprefix("experiment:"))
        assert await redis_admin.exists(key) == 0
    finally:
        await redis_admin.delete(key)
        await cache.close()


async def test_an_unreadable_entry_is_a_miss(redis_admin: Redis) -> None:
    cache = RedisCache(REDIS_URL, ttl_seconds=60)
    experiment_id = secrets.token_hex(6)
    key = f"assign:{len(experiment_id)}:{experiment_id}:u1"
    try:
        await redis_admin.set(key, b"written by some other version", ex=60)
        assert await cache.get_assignment(experiment_id, "u1") is None
    finally:
        await redis_admin.delete(key)
        await cache.close()


async def test_a_closed_port_is_a_miss_and_a_no_op_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = RedisCache("redis://:s3cret-pw@127.0.0.1:1/0", ttl_seconds=60)
    exp = an_experiment()
    assignment = Assignment.decide(exp, "u1", exp.created_at)
    with caplog.at_level(logging.WARNING, logger="experiments.cache"):
        for _ in range(50):
            await cache.set_assignment(assignment)
            assert await cache.get_assignment(exp.id, "u1") is None
    await cache.close()
    warnings = [r for r in caplog.records if r.name == "experiments.cache"]
    assert len(warnings) == 1
    assert "127.0.0.1:1" in warnings[0].getMessage()
    assert "s3cret" not in caplog.text


async def test_a_hung_redis_costs_one_timeout_per_outage_window_not_one_per_call() -> None:
    server = SilentServer()
    port = await server.start()
    cache = RedisCache(f"redis://127.0.0.1:{port}/0", timeout=0.1, retry_after=60)
    exp = an_experiment()
    assignment = Assignment.decide(exp, "u1", exp.created_at)
    try:
        assert await cache.get_assignment(exp.id, "u1") is None
        assert server.connections == 1
        for _ in range(100):
            await cache.set_assignment(assignment)
            assert await cache.get_assignment(exp.id, "u1") is None
        # The breaker kept every later call away from the hung server.
        assert server.connections == 1
    finally:
        await cache.close()
        await server.stop()


async def test_the_cache_comes_back_after_an_outage(
    redis_admin: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = OutageProxy("127.0.0.1", redis_admin.connection_pool.connection_kwargs.get("port", 6379))
    port = await proxy.start()
    db = redis_admin.connection_pool.connection_kwargs.get("db", 0)
    cache = RedisCache(f"redis://127.0.0.1:{port}/{db}", ttl_seconds=60, retry_after=0.2)
    exp = an_experiment()
    assignment = Assignment.decide(exp, "u1", exp.created_at)
    try:
        with caplog.at_level(logging.WARNING, logger="experiments.cache"):
            await cache.set_assignment(assignment)
            assert await cache.get_assignment(exp.id, "u1") == assignment
            proxy.cut()
            assert await cache.get_assignment(exp.id, "u1") is None
            proxy.restore()
            await asyncio.sleep(0.3)  # past retry_after: the next call probes Redis again
            assert await cache.get_assignment(exp.id, "u1") == assignment
        messages = [r.getMessage() for r in caplog.records if r.name == "experiments.cache"]
        assert len(messages) == 2 and "is back" in messages[1]
    finally:
        await redis_admin.delete(f"assign:{len(exp.id)}:{exp.id}:u1")
        await cache.close()
        await proxy.stop()


async def test_the_composition_root_maps_cache_urls() -> None:
    from adapters.memory.cache import MemoryCache
    from adapters.redis.near_cache import NearCache
    from entrypoints.config.container import build_cache
    from entrypoints.config.settings import ConfigurationError, Settings

    assert isinstance(build_cache(Settings(cache_url="memory://")), MemoryCache)
    for url in ("redis://127.0.0.1:6379/0", "rediss://:pw@cache.example:6380/2"):
        # Builds clients and no task: they connect, and the listener starts, on first use only.
        cache = build_cache(Settings(cache_url=url))
        assert isinstance(cache, NearCache)
        await cache.close()
    for url in ("foo://user:pw@x", "memcached://x", "redis://host:port/0", "nonsense"):
        with pytest.raises(ConfigurationError) as caught:
            build_cache(Settings(cache_url=url))
        assert "pw" not in str(caught.value) and "\n" not in str(caught.value)


async def test_the_new_users_of_a_moment_are_written_in_one_round_trip(redis_admin: Redis) -> None:
    """Each caller returns once its own entry is stored; the writes that came while the first
    was on its way went together (one pipeline on one connection, not a round trip each)."""
    target = urlsplit(REDIS_URL)
    proxy = OutageProxy(target.hostname or "127.0.0.1", target.port or 6379)
    port = await proxy.start()
    cache = RedisCache(f"redis://127.0.0.1:{port}{target.path}", ttl_seconds=120)
    exp = an_experiment()
    assignments = [Assignment.decide(exp, f"u{n}", exp.created_at) for n in range(100)]
    try:
        await asyncio.gather(*(cache.set_assignment(a) for a in assignments))
        # One connection for the first write, one for the pipeline after it: never one each.
        assert proxy.connections <= 3, proxy.connections
        for a in assignments:
            assert await cache.get_assignment(exp.id, a.user_id) == a
    finally:
        await redis_admin.delete(*(f"assign:{len(exp.id)}:{exp.id}:u{n}" for n in range(100)))
        await cache.close()
        await proxy.stop()
