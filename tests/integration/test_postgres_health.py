"""A store out of reach: at start the server exits with one clear line; later it answers 503."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import psycopg
import pytest
from sqlalchemy.engine import make_url

from adapters.sqlalchemy.migrate import upgrade
from entrypoints.config.container import create_container
from entrypoints.config.settings import Settings
from entrypoints.http.app import create_app
from tests.conftest import POSTGRES_ADMIN_URL
from tests.factories import experiment_body
from tests.integration.conftest import REPO_ROOT, free_port
from tests.proxy import OutageProxy

pytestmark = pytest.mark.postgres

AUTH = {"Authorization": "Bearer t"}
EXPERIMENT = experiment_body("checkout", primary="buy")


@pytest.fixture
async def migrated(postgres_database: str) -> str:
    await asyncio.to_thread(upgrade, postgres_database)
    return postgres_database


@asynccontextmanager
async def client_for(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The app served in this event loop, where the proxy runs too (Litestar's test client would
    run it in a thread of its own, and block this loop while it waits for an answer)."""
    settings = Settings(database_url=database_url, cache_url="memory://", api_tokens=("t",))
    container = create_container(settings)
    transport = httpx.ASGITransport(app=create_app(container))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            yield client
    finally:
        await container.store().close()
        await container.cache().close()


async def assert_unavailable_everywhere(client: httpx.AsyncClient, experiment_id: str) -> None:
    health = await client.get("/health")
    assert (health.status_code, health.json()) == (503, {"status": "unavailable"})
    calls = [
        client.post("/experiments", json={**EXPERIMENT, "name": "another"}, headers=AUTH),
        client.get("/experiments", headers=AUTH),
        client.get(f"/experiments/{experiment_id}/assignment/new-user", headers=AUTH),
        client.post(
            "/events",
            json={"experiment_id": experiment_id, "user_id": "u1", "event_type": "buy"},
            headers=AUTH,
        ),
        client.get(f"/experiments/{experiment_id}/results", headers=AUTH),
    ]
    for call in calls:
        response = await call
        assert response.status_code == 503, (response.request.url, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert problem["status"] == 503 and problem["title"] and problem["detail"]


async def exercise(
    client: httpx.AsyncClient, outage: Callable[[], Awaitable[None]]
) -> str:
    assert (await client.get("/health")).json() == {"status": "ok"}
    created = await client.post("/experiments", json=EXPERIMENT, headers=AUTH)
    assert created.status_code == 201
    experiment_id = created.json()["id"]
    assign = await client.get(f"/experiments/{experiment_id}/assignment/u1", headers=AUTH)
    assert assign.status_code == 200
    await outage()
    await assert_unavailable_everywhere(client, experiment_id)
    return experiment_id


async def test_a_lost_database_server_is_503_not_500(migrated: str) -> None:
    admin = make_url(POSTGRES_ADMIN_URL)
    proxy = OutageProxy(admin.host or "127.0.0.1", admin.port or 5432)
    port = await proxy.start()
    url = make_url(migrated).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    async with client_for(url) as client:
        await exercise(client, _as_async(proxy.cut))
    await proxy.stop()


def _as_async(action: Callable[[], None]) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        action()

    return run


@pytest.fixture
async def renamable(migrated: str) -> AsyncIterator[tuple[str, Callable[[], Awaitable[None]]]]:
    """The database, and a way to make it vanish: its sessions ended and its name changed."""
    name = make_url(migrated).database
    gone = f"{name}_gone"

    def vanish() -> None:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
            )
            admin.execute(f'ALTER DATABASE "{name}" RENAME TO "{gone}"')

    yield migrated, lambda: asyncio.to_thread(vanish)

    def drop_renamed() -> None:  # a test that failed midway leaves it under the other name
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{gone}" WITH (FORCE)')

    await asyncio.to_thread(drop_renamed)


async def test_a_vanished_database_is_503_and_service_resumes_when_it_is_back(renamable) -> None:
    url, vanish = renamable
    name = make_url(url).database
    async with client_for(url) as client:
        experiment_id = await exercise(client, vanish)

        def come_back() -> None:
            with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'ALTER DATABASE "{name}_gone" RENAME TO "{name}"')

        await asyncio.to_thread(come_back)
        # The pool's stale connections are checked before use, so the next request reconnects.
        assert (await client.get("/health")).json() == {"status": "ok"}
        again = await client.get(f"/experiments/{experiment_id}/assignment/new-user", headers=AUTH)
        assert again.status_code == 200


@pytest.mark.parametrize(
    "env",
    [
        {"DATABASE_URL": "postgresql://postgres:s3cret-pw@127.0.0.1:1/x"},
        {"DATABASE_URL": "memory://", "CACHE_URL": "foo://user:s3cret-pw@x"},
    ],
    ids=["database-refused", "cache-scheme"],
)
def test_bad_configuration_fails_at_start_with_one_line(env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "entrypoints", "serve"],
        cwd=REPO_ROOT,
        env={**os.environ, "API_TOKENS": "t", "PORT": str(free_port()), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "s3cret" not in done.stderr + done.stdout
