"""Fixtures of the end-to-end tests: the real app (routes, auth, DI container, SQLite store,
Alembic migrations) driven in-process over HTTP, with the clock under the test's control."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from dependency_injector import providers
from litestar.testing import TestClient

from adapters.sqlalchemy.migrate import upgrade
from entrypoints.config.container import Container, create_container
from entrypoints.config.settings import Settings
from entrypoints.http.app import create_app
from tests.factories import create_experiment
from tests.fakes import FakeClock, SequentialIds

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file migrated by the real Alembic history, copied for every test."""
    path = tmp_path_factory.mktemp("e2e-template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def database_url(tmp_path: Path, migrated_template: Path) -> str:
    """A migrated SQLite file of this test's own."""
    path = tmp_path / "e2e.db"
    shutil.copyfile(migrated_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def fake_clock() -> FakeClock:
    """Starts at 2026-11-28T12:00:00Z; tests move it with ``advance``."""
    return FakeClock()


def build_container(
    database_url: str, clock: object | None = None, ids: object | None = None, **settings: Any
) -> Container:
    """``settings``: Settings fields to set besides the store and the token."""
    container = create_container(Settings(database_url=database_url, api_tokens=(TOKEN,), **settings))
    # Before the first request: the use cases are singletons built on first use.
    if clock is not None:
        container.clock.override(providers.Object(clock))
    if ids is not None:
        container.ids.override(providers.Object(ids))
    return container


@pytest.fixture
def make_client() -> Iterator[Callable[..., TestClient]]:
    """Open an authenticated TestClient on a fresh app over ``database_url``; every client is
    closed (lifespan shutdown: the store's engine is disposed) when the test ends."""
    opened: list[TestClient] = []

    def make(
        database_url: str, clock: object | None = None, ids: object | None = None, **settings: Any
    ) -> TestClient:
        client = TestClient(create_app(build_container(database_url, clock, ids, **settings)))
        client.__enter__()
        client.headers.update(AUTH)
        opened.append(client)
        return client

    yield make
    for client in reversed(opened):
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient], database_url: str, fake_clock: FakeClock) -> TestClient:
    """The app on a migrated SQLite file, with the fake clock; sends the valid token."""
    return make_client(database_url, fake_clock)


async def _async_client(container: Container) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(container))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", headers=AUTH) as c:
        yield c
    await container.store().close()
    await container.cache().close()


@pytest.fixture
async def async_client(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The app in the test's own event loop (httpx's ASGI transport), so that requests sent with
    asyncio.gather really interleave; Litestar's test clients run each request to completion
    through a blocking portal. The real clock: racing first calls get different `now`s."""
    async for c in _async_client(build_container(database_url)):
        yield c


@pytest.fixture
async def async_memory_client() -> AsyncIterator[httpx.AsyncClient]:
    """The app on the memory store, in the test's loop: for tests of the hash over thousands of
    users, where a durable SQLite write per assignment would cost seconds and test nothing more.
    Sequential ids make the experiment id, and so every statistical check on its users, the same
    on every run: a chi-square test at p > 0.001 would otherwise fail one run in a thousand."""
    async for c in _async_client(build_container("memory://", FakeClock(), SequentialIds("exp"))):
        yield c


@pytest.fixture
def experiment(client: TestClient) -> dict:
    """An experiment of two halves, control and treatment, on the ``client``'s app."""
    return create_experiment(client, "events", [("control", 50), ("treatment", 50)])


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_client(
    request: pytest.FixtureRequest, make_client: Callable[..., TestClient], database_url: str, fake_clock: FakeClock
) -> TestClient:
    """A client on SQLite, then on a migrated PostgreSQL database. Sequential ids, prefixed by
    the test module's ``IDS``: the experiment's id, and so which user lands where, is the same
    on every run."""
    ids = SequentialIds(getattr(request.module, "IDS", "store"))
    if request.param == "sqlite":
        return make_client(database_url, fake_clock, ids)
    url = request.getfixturevalue("postgres_database")
    upgrade(url)
    return make_client(url, fake_clock, ids)
