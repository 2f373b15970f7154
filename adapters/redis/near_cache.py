"""The Cache for several instances: each process's own memory in front of the shared Redis."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable

from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from adapters.memory.expiring import ExpiringMap
from adapters.redis.breaker import client_for, redacted
from adapters.redis.cache import RedisCache
from domain.assignment import Assignment
from domain.experiment import Experiment

log = logging.getLogger("experiments.cache")

_FAILURES = (RedisError, OSError, TimeoutError)


class ForgetChannel:
    """The Redis pub/sub channel ``{key_prefix}forget-experiment``: each message is the id of an
    experiment that changed, so that every process drops its own copy.

    Publishing never raises. Listening is one background task, started in the running event loop
    when first needed; whenever its subscription is (re)established it first calls ``forget_all``,
    as messages sent while it was not subscribed are lost. After a failure it resubscribes every
    ``retry_after`` seconds, and after ``heartbeat`` quiet seconds it pings Redis, so a connection
    that died without a word is given up within two heartbeats.
    """

    NAME = "forget-experiment"

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = "",
        timeout: float = 0.25,
        retry_after: float = 2.0,
        heartbeat: float = 5.0,
    ) -> None:
        self.name = key_prefix + self.NAME
        self.listening = False
        """Whether a subscription is established now: while it is not, changes go unheard."""
        self._timeout, self._retry_after, self._heartbeat = timeout, retry_after, heartbeat
        self._where = redacted(url)
        # Publishing replaces a dead pooled connection at once (client_for). Listening does
        # not retry: redis-py would resubscribe on a new connection unseen, and the messages
        # lost meanwhile would go unnoticed; the listener's loop resubscribes and forgets all.
        self._client = client_for(url, timeout)
        self._listener = client_for(url, timeout, retry=False)
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def publish(self, experiment_id: str) -> None:
        try:
            async with asyncio.timeout(self._timeout * 2):
                await self._client.publish(self.name, experiment_id)
        except _FAILURES as exc:
            log.warning(
                "Redis at %s could not announce a changed experiment (%s); other processes drop"
                " their copy when it expires",
                self._where,
                type(exc).__name__,
            )

    def follow(self, forget: Callable[[str], object], forget_all: Callable[[], object]) -> None:
        """Start listening unless already started: ``forget(experiment_id)`` for each message."""
        if self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(
                self._listen(forget, forget_all), name=f"listen to {self.name}"
            )

    async def _listen(
        self, forget: Callable[[str], object], forget_all: Callable[[], object]
    ) -> None:
        deaf = False  # a failure was logged and no subscription has succeeded since
        while True:
            pubsub = self._listener.pubsub()
            try:
                await self._subscribe(pubsub)
                forget_all()
                self.listening = True
                if deaf:
                    deaf = False
                    log.warning("Redis at %s: hearing about changed experiments again", self._where)
                await self._receive(pubsub, forget)
            except _FAILURES as exc:
                if not deaf:
                    deaf = True
                    log.warning(
                        "Redis at %s: not hearing about changed experiments (%s); cached"
                        " experiments expire by their TTL until it is back",
                        self._where,
                        type(exc).__name__,
                    )
            except Exception:
                # A bug, not an outage: say so loudly, and keep listening all the same.
                deaf = True
                log.exception("the listener to %s failed", self.name)
            finally:
                self.listening = False
                with contextlib.suppress(*_FAILURES):
                    await pubsub.aclose()
            await asyncio.sleep(self._retry_after)

    async def _subscribe(self, pubsub: PubSub) -> None:
        async with asyncio.timeout(self._timeout * 2):
            await pubsub.subscribe(self.name)
            reply = await pubsub.get_message(timeout=self._timeout * 2)
        if reply is None or reply["type"] != "subscribe":
            raise TimeoutError("no confirmation of the subscription")

    async def _receive(self, pubsub: PubSub, forget: Callable[[str], object]) -> None:
        pinged = False
        while True:
            message = await pubsub.get_message(timeout=self._heartbeat)
            if message is None:
                if pinged:
                    raise TimeoutError("no answer to a ping")
                await pubsub.ping()
                pinged = True
                continue
            pinged = False  # whatever arrives shows the connection is alive
            if message["type"] == "message":
                forget(message["data"].decode(errors="replace"))

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            # Cancelled until it ends: on Python 3.11 a cancellation that arrives as a write
            # completes is lost inside asyncio.wait_for, which redis-py uses for writes.
            while not self._task.done():
                self._task.cancel()
                await asyncio.wait({self._task}, timeout=0.05)
            self._task = None
        for client in (self._client, self._listener):
            with contextlib.suppress(*_FAILURES):
                await client.aclose()


class NearCache:
    """Each process keeps what it reads in its own memory, in front of the Redis all share.

    A hit is a lookup in a dict of this process: no network, nothing awaited.

    - Assignments never change: each process keeps up to ``max_entries`` of them, the least
      recently used evicted first, with no TTL; Redis keeps them all (``RedisCache``), so
      a user's assignment made by one process is a hit for every other after one Redis read.
    - Experiments may change, and live in process memory only, for ``experiment_ttl_seconds``.
      ``forget_experiment`` drops one here at once and publishes its id on ``changes``, which
      every process listens to and drops its copy within milliseconds. When a message is lost
      (the listener disconnected, Redis down) the TTL is the bound: a copy is never served
      longer than ``experiment_ttl_seconds`` after it was cached, and on every (re)subscription
      a process drops all its experiments, since it may have missed messages. They are not put
      in Redis: an entry there that a failed deletion left behind would outlive that bound, and
      reading the store once per TTL per process is cheap.
    """

    def __init__(
        self,
        far: RedisCache,
        changes: ForgetChannel,
        *,
        experiment_ttl_seconds: float = 5,
        max_entries: int = 100_000,
        max_experiments: int = 10_000,
    ) -> None:
        self._far, self._changes = far, changes
        self._assignments: ExpiringMap[tuple[str, str], Assignment] = ExpiringMap(max_entries, math.inf)
        self._experiments: ExpiringMap[str, Experiment] = ExpiringMap(
            max_experiments, experiment_ttl_seconds
        )

    async def get_experiment(self, experiment_id: str) -> Experiment | None:
        return self._experiments.get(experiment_id)

    async def set_experiment(self, experiment: Experiment) -> None:
        # Only a process that holds experiments needs to hear of changes.
        self._changes.follow(self._drop_experiment, self._experiments.clear)
        self._experiments.set(experiment.id, experiment)

    async def get_assignment(self, experiment_id: str, user_id: str) -> Assignment | None:
        key = (experiment_id, user_id)
        assignment = self._assignments.get(key)
        if assignment is None:
            assignment = await self._far.get_assignment(experiment_id, user_id)
            if assignment is not None:
                self._assignments.set(key, assignment)
        return assignment

    async def set_assignment(self, assignment: Assignment) -> None:
        self._assignments.set((assignment.experiment_id, assignment.user_id), assignment)
        await self._far.set_assignment(assignment)

    async def forget_experiment(self, experiment_id: str) -> None:
        self._drop_experiment(experiment_id)
        # Also from Redis: entries written there by earlier versions of the service.
        await self._far.forget_experiment(experiment_id)
        await self._changes.publish(experiment_id)

    def _drop_experiment(self, experiment_id: str) -> None:
        self._experiments.pop(experiment_id)

    async def close(self) -> None:
        await self._changes.close()
        await self._far.close()
        self._experiments.clear()
        self._assignments.clear()
