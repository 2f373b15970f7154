"""The Redis breaker: whatever way a call to Redis fails, the caller gets None, never an error."""

from __future__ import annotations

import logging

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from adapters.redis.breaker import Breaker


async def _raise(exc: BaseException) -> None:
    raise exc


@pytest.mark.parametrize(
    "failure",
    [
        RedisConnectionError("refused"),
        OSError("unreachable"),
        TimeoutError(),
        # What redis-py raises under uvloop when a transport was closed under a command in
        # flight (seen as 500s under load when the pool was dropped): still a Redis failure.
        RuntimeError("unable to perform operation on <TCPTransport closed=True>; the handler is closed"),
    ],
    ids=["connection", "os", "timeout", "closed-transport"],
)
async def test_every_kind_of_redis_failure_is_a_miss_and_opens_the_breaker(failure: BaseException) -> None:
    changes: list[bool] = []
    breaker = Breaker(
        "redis://127.0.0.1:6379/0", what="test", meanwhile="carrying on", logger=logging.getLogger("t"),
        on_change=changes.append,
    )
    assert await breaker.call(lambda: _raise(failure)) is None
    assert breaker.open and changes == [True]
