"""What the near cache promises beyond the cache contract, shown with two instances on one Redis:
a hit never touches Redis, and a forgotten experiment leaves every instance within the bound."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from adapters.redis.cache import RedisCache
from adapters.redis.near_cache import ForgetChannel, NearCache
from domain.assignment import Assignment
from domain.experiment import Experiment
from tests import factories
from tests.proxy import OutageProxy

pytestmark = pytest.mark.redis

from tests.contract.conftest import REDIS_URL
from tests.polling import eventually_async


def an_experiment() -> Experiment:
    return factories.an_experiment(primary=None, ids=f"t{secrets.token_hex(6)}-")


class Deployment:
    """Instances of the service as a deployment has them: one Redis, one key prefix, each
    instance with its own near cache. An instance may reach Redis through a proxy."""

    def __init__(self, admin: Redis) -> None:
        self.admin = admin
        self.prefix = f"test-{secrets.token_hex(6)}:"
        self.proxies: list[OutageProxy] = []
        self.caches: list[NearCache] = []

    async def proxied_url(self) -> tuple[str, OutageProxy]:
        kwargs = self.admin.connection_pool.connection_kwargs
        proxy = OutageProxy("127.0.0.1", kwargs.get("port", 6379))
        port = await proxy.start()
        self.proxies.append(proxy)
        return f"redis://127.0.0.1:{port}/{kwargs.get('db', 0)}", proxy

    def instance(
        self,
        *,
        far_url: str = REDIS_URL,
        channel_url: str = REDIS_URL,
        experiment_ttl_seconds: float = 60,
        heartbeat: float = 5.0,
    ) -> tuple[NearCache, ForgetChannel]:
        changes = ForgetChannel(
            channel_url, key_prefix=self.prefix, retry_after=0.05, heartbeat=heartbeat
        )
        far = RedisCache(far_url, key_prefix=self.prefix, retry_after=0.05)
        cache = NearCache(far, changes, experiment_ttl_seconds=experiment_ttl_seconds)
        self.caches.append(cache)
        return cache, changes

    async def close(self) -> None:
        for cache in self.caches:
            await cache.close()
        for proxy in self.proxies:
            await proxy.stop()
        async for key in self.admin.scan_iter(match=f"{self.prefix}*"):
            await self.admin.delete(key)


@pytest.fixture
async def deployment(redis_admin: Redis) -> AsyncIterator[Deployment]:
    opened = Deployment(redis_admin)
    yield opened
    await opened.close()


async def holding(cache: NearCache, changes: ForgetChannel, experiment: Experiment) -> None:
    """Cache the experiment once the instance listens (subscribing drops what it held)."""
    await cache.set_experiment(experiment)
    await eventually_async(lambda: changes.listening, within=2)
    await cache.set_experiment(experiment)
    assert await cache.get_experiment(experiment.id) == experiment


async def missing(cache: NearCache, experiment: Experiment) -> bool:
    return await cache.get_experiment(experiment.id) is None


async def test_a_hit_never_touches_redis(deployment: Deployment) -> None:
    url, proxy = await deployment.proxied_url()
    a, _ = deployment.instance()
    b, _ = deployment.instance(far_url=url)
    exp = an_experiment()
    assignment = Assignment.decide(exp, "u1", exp.created_at)
    await a.set_assignment(assignment)

    assert await b.get_assignment(exp.id, "u1") == assignment  # from Redis: A stored it there
    sent = proxy.bytes_to_server
    assert sent > 0
    for _ in range(1000):
        assert await b.get_assignment(exp.id, "u1") == assignment
    assert proxy.bytes_to_server == sent

    proxy.cut()  # no Redis at all: still a hit
    assert await b.get_assignment(exp.id, "u1") == assignment
    await b.set_experiment(exp)
    assert await b.get_experiment(exp.id) == exp
    assert proxy.bytes_to_server == sent


async def test_a_forget_on_one_instance_reaches_the_other_at_once(
    deployment: Deployment,
) -> None:
    a, a_changes = deployment.instance()
    b, b_changes = deployment.instance()
    exp, other = an_experiment(), an_experiment()
    assignment = Assignment.decide(exp, "u1", exp.created_at)
    await b.set_assignment(assignment)
    await holding(a, a_changes, exp)
    await holding(b, b_changes, exp)
    await b.set_experiment(other)

    await a.forget_experiment(exp.id)
    assert await a.get_experiment(exp.id) is None
    # The TTL is a minute: only the message can make B miss this soon.
    await eventually_async(lambda: missing(b, exp), within=0.5)
    assert await b.get_experiment(other.id) == other
    assert await b.get_assignment(exp.id, "u1") == assignment


async def test_while_changes_go_unheard_the_ttl_bounds_a_stale_copy(
    deployment: Deployment,
) -> None:
    url, proxy = await deployment.proxied_url()
    a, _ = deployment.instance()
    b, b_changes = deployment.instance(channel_url=url, experiment_ttl_seconds=2)
    exp = an_experiment()
    await holding(b, b_changes, exp)
    cached_at = time.monotonic()
    proxy.cut()
    await eventually_async(lambda: not b_changes.listening, within=1)

    await a.forget_experiment(exp.id)
    await asyncio.sleep(0.1)
    assert await b.get_experiment(exp.id) == exp  # the message was lost
    await eventually_async(lambda: missing(b, exp), within=3)
    assert time.monotonic() - cached_at <= 2 + 0.25


async def test_a_listener_that_hears_nothing_gives_up_and_drops_what_it_may_have_missed(
    deployment: Deployment,
) -> None:
    url, proxy = await deployment.proxied_url()
    b, b_changes = deployment.instance(channel_url=url, heartbeat=0.1)
    exp = an_experiment()
    await holding(b, b_changes, exp)
    proxy.silent = True  # open connections, no traffic: the ping goes unanswered
    await eventually_async(lambda: not b_changes.listening, within=1)
    proxy.restore()
    await eventually_async(lambda: b_changes.listening, within=2)
    assert await b.get_experiment(exp.id) is None


async def test_a_resubscription_drops_experiments_cached_while_unheard(
    deployment: Deployment, caplog: pytest.LogCaptureFixture
) -> None:
    url, proxy = await deployment.proxied_url()
    b, b_changes = deployment.instance(channel_url=url)
    exp, later = an_experiment(), an_experiment()
    with caplog.at_level(logging.WARNING, logger="experiments.cache"):
        await holding(b, b_changes, exp)
        proxy.cut()
        await eventually_async(lambda: not b_changes.listening, within=1)
        await b.set_experiment(later)
        assert await b.get_experiment(later.id) == later
        await asyncio.sleep(0.2)  # several failed resubscriptions: one warning, not one each
        proxy.restore()
        await eventually_async(lambda: b_changes.listening, within=2)
    assert await b.get_experiment(exp.id) is None
    assert await b.get_experiment(later.id) is None
    messages = [r.getMessage() for r in caplog.records if r.name == "experiments.cache"]
    assert len(messages) == 2, messages
    assert "not hearing" in messages[0] and "again" in messages[1]


async def test_without_redis_every_call_answers(caplog: pytest.LogCaptureFixture) -> None:
    url = "redis://:s3cret-pw@127.0.0.1:1/0"
    changes = ForgetChannel(url, retry_after=0.05)
    cache = NearCache(RedisCache(url), changes)
    exp = an_experiment()
    assignment = Assignment.decide(exp, "u1", exp.created_at)
    with caplog.at_level(logging.WARNING, logger="experiments.cache"):
        await cache.set_experiment(exp)
        await cache.set_assignment(assignment)
        assert await cache.get_experiment(exp.id) == exp  # this process's copy
        assert await cache.get_assignment(exp.id, "u1") == assignment
        assert await cache.get_assignment(exp.id, "u2") is None
        await asyncio.sleep(0.2)
        await cache.forget_experiment(exp.id)
        assert await cache.get_experiment(exp.id) is None
        await cache.close()
    messages = [r.getMessage() for r in caplog.records if r.name == "experiments.cache"]
    assert len(messages) == 3, messages  # the cache failed, the listener, the announcement
    assert "s3cret" not in caplog.text


async def test_close_stops_the_listener(deployment: Deployment) -> None:
    b, b_changes = deployment.instance()
    await holding(b, b_changes, an_experiment())
    listeners = [t for t in asyncio.all_tasks() if t.get_name() == f"listen to {b_changes.name}"]
    assert len(listeners) == 1
    await b.close()
    assert listeners[0].done() and not b_changes.listening
    await b.set_experiment(an_experiment())  # a late call after close starts nothing
    assert not [t for t in asyncio.all_tasks() if t.get_name() == f"listen to {b_changes.name}"]
