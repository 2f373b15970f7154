"""The Cache on Redis, shared by all instances; any Redis failure is a miss, never an error."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from datetime import datetime
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import msgspec
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from domain.assignment import Assignment
from domain.experiment import Experiment, Variant

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
    return _encoder.encode(
        _ExperimentRecord(
            experiment.id,
            experiment.name,
            experiment.description,
            experiment.primary_event_type,
            experiment.created_at,
            tuple(
                _VariantRecord(v.id, v.name, v.traffic_basis_points, v.is_control)
                for v in experiment.variants
            ),
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
    )


def encode_assignment(assignment: Assignment) -> bytes:
    a = assignment
    return _encoder.encode(
        _AssignmentRecord(a.experiment_id, a.user_id, a.variant_id, a.variant_name, a.assigned_at)
    )


def decode_assignment(data: bytes) -> Assignment:
    r = _assignment_decoder.decode(data)
    return Assignment(r.experiment_id, r.user_id, r.variant_id, r.variant_name, r.assigned_at)


def redacted(url: str) -> str:
    """``scheme://host:port/db`` of a Redis URL: what a log line may show, never the password."""
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}{parts.path}"
    except ValueError:
        return "redis (unparseable URL)"


def assignment_key(experiment_id: str, user_id: str) -> str:
    """``assign:{len(experiment_id)}:{experiment_id}:{user_id}``: the length says where the
    experiment id ends, so no two pairs of ids share a key whatever characters they hold (the
    former ``assignment:{experiment_id}:{user_id}`` gave experiment ``a:b`` with user ``c`` and
    experiment ``a`` with user ``b:c`` one key). The new name leaves every former key unread."""
    return f"assign:{len(experiment_id)}:{experiment_id}:{user_id}"


def client_for(url: str, timeout: float, *, retry: bool = True) -> Redis:
    """A client that gives up after ``timeout`` seconds, and (with ``retry``) sends a command
    again, once, after ~10 ms, on a new connection when its connection turns out to be dead.

    A pooled connection can be dead without a word: Redis restarted, or a proxy or NAT in
    between forgot it. The pool finds out only when it is used, one connection at a time, and
    with no retry each one was a failure, so the breaker tripped again at every burst that
    reached an older connection. The retry opens a new connection instead. Only connection
    errors are retried (a timeout is not: a slow Redis would then cost twice the time), and
    every command used here (GET, SETEX, DEL, PUBLISH, SUBSCRIBE) is safe to send twice.
    redis-py's own default, three retries with backoff, cost seconds per call while Redis is
    down; the breaker, not the retry, covers an outage."""
    return Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(
            ExponentialBackoff(cap=0.05, base=0.005), 1 if retry else 0, supported_errors=(RedisConnectionError,)
        ),
        retry_on_timeout=False,
    )


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
        self._retry_after = retry_after
        self._where = redacted(url)
        # Connections are opened on first use, in the event loop that serves the requests.
        self._client = client_for(url, timeout)
        self._skip_until = 0.0
        self._down = False
        self._back_at = 0.0  # when the breaker last closed
        # Told True when the breaker opens, False when Redis is back (a metric, say).
        self._on_breaker = on_breaker or (lambda down: None)

    def _key(self, *parts: str) -> str:
        return self._prefix + ":".join(parts)

    async def _call(self, command: str, *args: Any) -> Any:
        """The command's reply, or None when Redis is skipped or fails."""
        now = time.monotonic()
        if now < self._skip_until:
            return None
        if self._down:
            # Half-open: this call is the probe; the others keep skipping until it is done.
            self._skip_until = now + self._retry_after
        try:
            # The socket timeouts do not cover name resolution; this bounds the whole call.
            async with asyncio.timeout(self._timeout * 2):
                reply = await self._client.execute_command(command, *args)
        except (RedisError, OSError, TimeoutError) as exc:
            if not self._down and now < self._back_at:
                # Sent before Redis was found back (a probe that outlasted the next one, a call
                # in flight when it went down): its failure is old news, not a new outage.
                return None
            self._skip_until = time.monotonic() + self._retry_after
            if not self._down:
                self._down = True
                self._on_breaker(True)
                log.warning(
                    "Redis cache at %s failed (%s); serving from the store until it is back",
                    self._where,
                    type(exc).__name__,
                )
                # Whatever broke this connection may have broken the others in the pool too:
                # the probe and the requests after it start on new ones.
                await self._discard_connections()
            return None
        if self._down:
            self._down = False
            self._skip_until = 0.0
            self._back_at = time.monotonic()
            self._on_breaker(False)
            log.warning("Redis cache at %s is back", self._where)
        return reply

    async def _discard_connections(self) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await self._client.connection_pool.disconnect()
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
