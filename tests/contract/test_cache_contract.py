"""One contract every Cache adapter must keep."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from adapters.memory.cache import MemoryCache
from application.ports import Cache
from domain.assignment import Assignment
from domain.experiment import Experiment
from tests import factories
from tests.contract.conftest import REDIS_URL, reachable_redis

CACHE_KINDS = ["memory", "near"]  # RedisCache is the near cache's shared part, not a Cache


async def open_cache(kind: str, ttl_seconds: float) -> Cache:
    if kind == "memory":
        return MemoryCache(ttl_seconds=ttl_seconds, experiment_ttl_seconds=ttl_seconds)
    if kind != "near":
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
    changes = ForgetChannel(url, key_prefix=prefix)
    cache: Cache = NearCache(shared, changes, experiment_ttl_seconds=ttl_seconds)
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
    """What a round trip could lose: microseconds, uneven shares, a control that is not first."""
    at = datetime(2026, 11, 28, 1, 2, 3, 456789, tzinfo=UTC)
    return factories.an_experiment(shares=(33.33, 66.67), primary=None, control=1, created_at=at)


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


# Ids of any characters but lone surrogates (no request can carry one), with the separators and
# digits a key format might use made common.
_ids = st.text(
    alphabet=st.sampled_from(":0123456789{}|\\/%") | st.characters(exclude_categories=("Cs",)),
    min_size=1,
    max_size=12,
)


# Any two pairs, and often two that join to the same text with a separator moved (a:b + c, a + b:c).
_two_pairs = st.tuples(st.tuples(_ids, _ids), st.tuples(_ids, _ids)) | st.builds(
    lambda a, b, c, sep: ((a + sep + b, c), (a, b + sep + c)), _ids, _ids, _ids, st.sampled_from(":|/")
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pairs=_two_pairs)
@example(pairs=(("a:b", "c"), ("a", "b:c")))
async def test_assignments_of_different_id_pairs_never_share_an_entry(
    cache: Cache, pairs: tuple[tuple[str, str], tuple[str, str]]
) -> None:
    """Experiment ``a:b`` with user ``c`` and experiment ``a`` with user ``b:c`` (any two
    pairs) are two entries: writing one never changes what the other reads."""
    first, second = pairs
    if first == second:
        return
    at = datetime(2026, 11, 28, tzinfo=UTC)
    one = Assignment(*first, "variant-1", "one", at)
    two = Assignment(*second, "variant-2", "two", at)
    await cache.set_assignment(one)
    await cache.set_assignment(two)
    assert await cache.get_assignment(*first) == one
    assert await cache.get_assignment(*second) == two


async def test_an_entry_under_the_old_key_format_is_never_served() -> None:
    """Keys were ``assignment:{experiment_id}:{user_id}``: after an upgrade such an entry is a
    miss, never another pair's answer (experiment ``e`` and user ``u:v`` wrote the entry that
    experiment ``e:u`` with user ``v`` would have read)."""
    cache = await open_cache("near", ttl_seconds=60)
    try:
        from adapters.redis.cache import encode_assignment

        prefix = cache._far._prefix  # type: ignore[attr-defined]
        admin = await reachable_redis()
        at = datetime(2026, 11, 28, tzinfo=UTC)
        old = Assignment("e", "u:v", "variant-1", "one", at)
        await admin.set(f"{prefix}assignment:e:u:v", encode_assignment(old))
        await admin.aclose()
        assert await cache.get_assignment("e:u", "v") is None
    finally:
        await cache.close()
