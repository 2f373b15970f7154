"""Fixtures of the contract suites that talk to a real Redis."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


async def reachable_redis(url: str = REDIS_URL) -> Redis:
    """A client of the test Redis database; the test is skipped (failed on CI, which starts the
    server) when Redis does not answer."""
    admin = Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        await admin.ping()
    except Exception as exc:
        await admin.aclose()
        message = f"Redis is not reachable at {url}: {type(exc).__name__}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return admin


@pytest.fixture
async def redis_admin() -> AsyncIterator[Redis]:
    admin = await reachable_redis()
    yield admin
    await admin.aclose()
