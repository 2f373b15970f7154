"""Fixtures of the contract suites that talk to a real Redis."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
async def redis_admin() -> AsyncIterator[Redis]:
    """A client of the test Redis database; skipped (failed on CI) when Redis is down."""
    admin = Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        await admin.ping()
    except Exception as exc:
        await admin.aclose()
        message = f"Redis is not reachable at {REDIS_URL}: {type(exc).__name__}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    yield admin
    await admin.aclose()
