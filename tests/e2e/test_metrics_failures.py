"""Metrics of failures: the store unreachable (503s counted), the Redis breaker open (gauge 1)."""

from __future__ import annotations

from typing import Any

from dependency_injector import providers
from litestar.testing import TestClient
from prometheus_client import REGISTRY

from adapters.memory.store import MemoryStore
from adapters.redis.cache import RedisCache
from domain.errors import StoreUnavailable
from entrypoints.config.container import create_container
from entrypoints.config.settings import Settings
from entrypoints.http.app import create_app
from entrypoints.telemetry.metrics import breaker_changed
from tests.e2e.conftest import AUTH, TOKEN


class _UnreachableStore(MemoryStore):
    async def list_experiments(self, *args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable("ConnectionRefusedError")


def _value(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def test_503s_of_an_unreachable_store_are_counted() -> None:
    container = create_container(Settings(database_url="memory://", api_tokens=(TOKEN,)))
    container.store.override(providers.Object(_UnreachableStore()))
    before = _value("experiments_store_unavailable_total")
    with TestClient(create_app(container)) as client:
        assert client.get("/experiments", headers=AUTH).status_code == 503
        assert client.get("/experiments", headers=AUTH).status_code == 503
    assert _value("experiments_store_unavailable_total") - before == 2


async def test_the_breaker_gauge_follows_the_redis_cache() -> None:
    # Nothing listens on port 1: the first call fails and opens the breaker.
    cache = RedisCache("redis://127.0.0.1:1/0", timeout=0.2, on_breaker=breaker_changed)
    try:
        assert await cache.get_assignment("e", "u") is None
        assert _value("experiments_cache_breaker_open") == 1
    finally:
        breaker_changed(False)
        await cache.close()
    assert _value("experiments_cache_breaker_open") == 0
