"""One contract every Cache adapter must keep."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from adapters.memory.cache import MemoryCache
from application.ports import Cache
from domain.assignment import Assignment
from domain.experiment import Experiment, VariantDraft
from tests.contract.conftest import REDIS_URL, reachable_redis
from tests.fakes import SequentialIds

CACHE_KINDS = ["memory", "redis", "near"]


async def open_cache(kind: str, ttl_seconds: float) -> Cache:
    if kind == "memory":
        return MemoryCache(ttl_seconds=ttl_seconds, experiment_ttl_seconds=ttl_seconds)
    if kind not in ("redis", "near"):
        raise ValueError(kind)
    import secrets

    from adapters.redis.cache import RedisCache
    from adapters.redis.near_cache import ForgetChannel, NearCache

    # A database of its own and a random prefix: runs sharing the server never meet, and
    # closing deletes exactly the keys this cache wrote.
    url = REDIS_URL
    prefix = f"test-{secrets.token_hex(6)}:"
    admin = await reachable_redis(url)
    shared = RedisCache(url, ttl_seconds=ttl_seconds, key_prefix=prefix)
    cache: Cache = shared
    if kind == "near":
        changes = ForgetChannel(url, key_prefix=prefix)
        cache = NearCache(shared, changes, experiment_ttl_seconds=ttl_seconds)
    close = cache.close

    async def close_and_delete_own_keys() -> None:
        await close()
        async for key in admin.scan_iter(match=f"{prefix}*"):
            await admin.delete(key)
        await admin.aclose()

    cache.close = close_and_delete_own_keys  # type: ignore[method-assign]
    return cache


@pytest.fixture(params=CACHE_KINDS)
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[Cache]:
    opened = await open_cache(request.param, ttl_seconds=60)
    yield opened
    await opened.close()


def an_experiment() -> Experiment:
    return Experiment.create(
        name="exp",
        description=None,
        primary_event_type=None,
        variants=[VariantDraft("a", 33.33), VariantDraft("b", 66.67, True)],
        new_id=SequentialIds().new_id,
        created_at=datetime(2026, 11, 28, 1, 2, 3, 456789, tzinfo=UTC),
    )


async def test_a_miss_is_none(cache: Cache) -> None:
    assert await cache.get_experiment("nope") is None
    assert await cache.get_assignment("nope", "u1") is None


async def test_round_trips_are_exact(cache: Cache) -> None:
    exp = an_experiment()
    await cache.set_experiment(exp)
    assert await cache.get_experiment(exp.id) == exp
    assignment = Assignment.decide(exp, "user with spaces:and:colons", exp.created_at)
    await cache.set_assignment(assignment)
    assert await cache.get_assignment(exp.id, assignment.user_id) == assignment
    assert await cache.get_assignment(exp.id, "user with spaces") is None


@pytest.mark.parametrize("kind", CACHE_KINDS)
async def test_entries_expire(kind: str) -> None:
    import asyncio

    cache = await open_cache(kind, ttl_seconds=1)
    exp = an_experiment()
    await cache.set_experiment(exp)
    assert await cache.get_experiment(exp.id) == exp
    await asyncio.sleep(1.2)
    assert await cache.get_experiment(exp.id) is None
    await cache.close()


async def test_a_forgotten_experiment_is_a_miss_and_its_assignments_stay(cache: Cache) -> None:
    exp = an_experiment()
    assignment = Assignment.decide(exp, "u1", exp.created_at)
    await cache.set_experiment(exp)
    await cache.set_assignment(assignment)
    await cache.forget_experiment(exp.id)
    assert await cache.get_experiment(exp.id) is None
    assert await cache.get_assignment(exp.id, "u1") == assignment
    await cache.forget_experiment("never cached")
    await cache.set_experiment(exp)  # cached again after the change, as its next read would
    assert await cache.get_experiment(exp.id) == exp
