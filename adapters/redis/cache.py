"""The Cache on Redis, shared by all instances; any Redis failure is a miss, never an error."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec
from redis.exceptions import RedisError

from adapters.redis.breaker import Breaker, client_for
from domain.assignment import Assignment
from domain.experiment import Experiment, Override, Variant
from domain.lifecycle import Status
from domain.targeting import parse_audience

log = logging.getLogger("experiments.cache")

# array_like: a value is a msgpack array, not a map, so field names are not repeated in every
# entry. Adding a field later means appending it with a default, never reordering.


class _VariantRecord(msgspec.Struct, array_like=True, frozen=True):
    id: str
    name: str
    traffic_basis_points: int
    is_control: bool


class _ExperimentRecord(msgspec.Struct, array_like=True, frozen=True):
    id: str
    name: str
    description: str | None
    primary_event_type: str | None
    # msgpack's timestamp extension: tz-aware UTC back, to the nanosecond.
    created_at: datetime
    variants: tuple[_VariantRecord, ...]
    status: str = "running"
    coverage_basis_points: int = 10_000
    audience: str | None = None  # the rule's JSON
    winner_variant_id: str | None = None
    started_at: datetime | None = None
    stopped_at: datetime | None = None
    overrides: tuple[tuple[str, str, datetime], ...] = ()
    version: int = 1


class _AssignmentRecord(msgspec.Struct, array_like=True, frozen=True):
    experiment_id: str
    user_id: str
    variant_id: str
    variant_name: str
    assigned_at: datetime


_encoder = msgspec.msgpack.Encoder()
_experiment_decoder = msgspec.msgpack.Decoder(_ExperimentRecord)
_assignment_decoder = msgspec.msgpack.Decoder(_AssignmentRecord)


def encode_experiment(experiment: Experiment) -> bytes:
    e = experiment
    return _encoder.encode(
        _ExperimentRecord(
            e.id,
            e.name,
            e.description,
            e.primary_event_type,
            e.created_at,
            tuple(_VariantRecord(v.id, v.name, v.traffic_basis_points, v.is_control) for v in e.variants),
            e.status.value,
            e.coverage_basis_points,
            None if e.audience is None else msgspec.json.encode(e.audience.source).decode(),
            e.winner_variant_id,
            e.started_at,
            e.stopped_at,
            tuple((o.user_id, o.variant_id, o.forced_at) for o in e.overrides),
            e.version,
        )
    )


def decode_experiment(data: bytes) -> Experiment:
    r = _experiment_decoder.decode(data)
    return Experiment(
        id=r.id,
        name=r.name,
        description=r.description,
        primary_event_type=r.primary_event_type,
        created_at=r.created_at,
        variants=tuple(
            Variant(v.id, v.name, v.traffic_basis_points, v.is_control) for v in r.variants
        ),
        status=Status(r.status),
        coverage_basis_points=r.coverage_basis_points,
        audience=None if r.audience is None else parse_audience(msgspec.json.decode(r.audience)),
        winner_variant_id=r.winner_variant_id,
        started_at=r.started_at,
        stopped_at=r.stopped_at,
        overrides=tuple(Override(*o) for o in r.overrides),
        version=r.version,
    )


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


class RedisCache:
    """Keys ``experiment:{experiment_id}`` and ``assignment_key(experiment_id, user_id)``, each
    a msgpack value written with SETEX and the configured TTL.

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

    async def get_experiment(self, experiment_id: str) -> Experiment | None:
        data = await self._call("GET", self._key("experiment", experiment_id))
        return _decoded(decode_experiment, data)

    async def set_experiment(self, experiment: Experiment) -> None:
        key = self._key("experiment", experiment.id)
        await self._call("SETEX", key, self._ttl, encode_experiment(experiment))

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
        key = self._prefix + assignment_key(assignment.experiment_id, assignment.user_id)
        await self._call("SETEX", key, self._ttl, encode_assignment(assignment))

    async def forget_experiment(self, experiment_id: str) -> None:
        # Every process reads the one shared entry, so its deletion is seen at once; if Redis
        # cannot be reached now, though, the old entry outlives the change by up to its TTL.
        await self._call("DEL", self._key("experiment", experiment_id))

    async def close(self) -> None:
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
