"""The assignments on Redis, shared by all instances behind their near caches (near_cache.py);
any Redis failure is a miss, never an error."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec
from redis.exceptions import RedisError

from adapters.coalescing import Coalescer
from adapters.redis.breaker import Breaker, client_for
from domain.assignment import Assignment

log = logging.getLogger("experiments.cache")

# array_like: a value is a msgpack array, not a map, so field names are not repeated in every
# entry. Adding a field later means appending it with a default, never reordering.


class _AssignmentRecord(msgspec.Struct, array_like=True, frozen=True):
    experiment_id: str
    user_id: str
    variant_id: str
    variant_name: str
    assigned_at: datetime


_encoder = msgspec.msgpack.Encoder()
_assignment_decoder = msgspec.msgpack.Decoder(_AssignmentRecord)


def encode_assignment(assignment: Assignment) -> bytes:
    a = assignment
    return _encoder.encode(
        _AssignmentRecord(a.experiment_id, a.user_id, a.variant_id, a.variant_name, a.assigned_at)
    )


def decode_assignment(data: bytes) -> Assignment:
    r = _assignment_decoder.decode(data)
    return Assignment(r.experiment_id, r.user_id, r.variant_id, r.variant_name, r.assigned_at)


def assignment_key(experiment_id: str, user_id: str) -> str:
    """``assign:{len(experiment_id)}:{experiment_id}:{user_id}``: the length says where the
    experiment id ends, so no two pairs of ids share a key whatever characters they hold (the
    former ``assignment:{experiment_id}:{user_id}`` gave experiment ``a:b`` with user ``c`` and
    experiment ``a`` with user ``b:c`` one key). The new name leaves every former key unread."""
    return f"assign:{len(experiment_id)}:{experiment_id}:{user_id}"


MAX_WRITES_PER_PIPELINE = 256
"""Bounds one pipeline (and the wait of the writes behind it)."""


class RedisCache:
    """Keys ``assignment_key(experiment_id, user_id)``, each a msgpack value written with SETEX
    and the configured TTL. Experiments are not kept here: each process keeps its own, for a
    short TTL (NearCache says why), so this is the shared part of the Cache, not one itself.

    The store is the truth and the cache only spares it reads, so a Redis that fails or is slow
    must cost little: every call gives up after ``timeout`` seconds, and after a failure Redis is
    skipped for ``retry_after`` seconds (a circuit breaker) so that requests during an outage do
    not each wait out a timeout. Then one call probes it; if it answers, the cache is back.
    """

    def __init__(
        self,
        url: str,
        ttl_seconds: float = 3600,
        *,
        key_prefix: str = "",
        timeout: float = 0.25,
        retry_after: float = 2.0,
        on_breaker: Callable[[bool], object] | None = None,
    ) -> None:
        self._ttl = max(1, math.ceil(ttl_seconds))  # SETEX takes whole seconds
        self._prefix = key_prefix
        self._timeout = timeout
        self._client = client_for(url, timeout)
        self._writes: Coalescer[tuple[str, bytes], None] = Coalescer(self._setex_all, MAX_WRITES_PER_PIPELINE)
        self._breaker = Breaker(
            url,
            what="Redis cache",
            meanwhile="serving from the store",
            logger=log,
            timeout=timeout,
            retry_after=retry_after,
            on_change=on_breaker,
            on_open=self._discard_connections,
        )

    def _key(self, *parts: str) -> str:
        return self._prefix + ":".join(parts)

    async def _call(self, command: str, *args: Any) -> Any:
        """The command's reply, or None when Redis is skipped or fails."""
        return await self._breaker.call(lambda: self._client.execute_command(command, *args))

    @property
    def breaker_open(self) -> bool:
        return self._breaker.open

    async def _discard_connections(self) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                # Idle connections only: closing one a request is using under it would fail
                # that request mid-command; a busy one that is dead fails and is replaced alone.
                await self._client.connection_pool.disconnect(inuse_connections=False)
        except (RedisError, OSError, TimeoutError):
            pass

    async def get_assignment(self, experiment_id: str, user_id: str) -> Assignment | None:
        data = await self._call("GET", self._prefix + assignment_key(experiment_id, user_id))
        assignment = _decoded(decode_assignment, data)
        if assignment is None or (assignment.experiment_id, assignment.user_id) != (
            experiment_id,
            user_id,
        ):
            # The entry names its own ids: one that is not this pair's is never served, under
            # any key format past or future.
            return None
        return assignment

    async def set_assignment(self, assignment: Assignment) -> None:
        """Coalesced with the others of the same moment (adapters/coalescing.py): one pipeline,
        one round trip, for the new users that come while one write is on its way. Returns once
        its own SETEX has been answered, or skipped while Redis is down: the store holds it."""
        key = self._prefix + assignment_key(assignment.experiment_id, assignment.user_id)
        await self._writes.submit((key, encode_assignment(assignment)))

    async def _setex_all(self, group: list[tuple[str, bytes]]) -> list[None]:
        await self._breaker.call(lambda: self._pipeline(group))
        return [None] * len(group)

    async def _pipeline(self, group: list[tuple[str, bytes]]) -> Any:
        if len(group) == 1:  # no pipeline's own work for the one write of a quiet moment
            key, value = group[0]
            return await self._client.execute_command("SETEX", key, self._ttl, value)
        async with self._client.pipeline(transaction=False) as pipe:
            for key, value in group:
                pipe.execute_command("SETEX", key, self._ttl, value)
            return await pipe.execute()

    async def forget_experiment(self, experiment_id: str) -> None:
        """Delete the entry that versions of the service before the near cache kept of the
        experiment: while they still run beside this one (a rolling upgrade), they read it."""
        await self._call("DEL", self._key("experiment", experiment_id))

    async def close(self) -> None:
        await self._writes.close()  # the writes already asked for go first
        try:
            await self._client.aclose()
        except (RedisError, OSError):
            pass


def _decoded(decode: Any, data: bytes | None) -> Any:
    if data is None:
        return None
    try:
        return decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        # An entry this version cannot read (written by another one) is a miss; the store answers
        # and the write that follows replaces it.
        return None
