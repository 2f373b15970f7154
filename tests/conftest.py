"""Fixtures shared by every layer of tests."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from adapters.memory.store import MemoryStore
from application.ports import Store
from tests.fakes import FakeClock, SequentialIds

# Hypothesis keeps its example database out of the work tree.
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", "/tmp/experiments-hypothesis")

TIERS = ("integration", "e2e", "contract", "unit")
"""Each test's tier is the folder it lives in, marked here so no test has to remember it.
``make check`` runs unit and contract on the embedded adapters; ``make test`` runs all. Listed
slowest first: under pytest-xdist (``--no-loadscope-reorder``, so that this order holds) the
long integration files start first and the many short unit files fill the workers' ends, so
none is left running alone at the end while the other workers idle."""
NEEDS = {
    "postgres": ("postgres_url", "postgres_database", "postgres_databases"),
    "redis": ("redis_url", "redis_admin"),
}
"""A test that takes one of these fixtures needs that server: marked by what it uses."""


CLIENT_TESTS = Path(__file__).parent.parent / "clients" / "python" / "tests"
"""The client library's own suite: fakes only, so the fast tier (its tests against live
servers are integration tests here)."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(__file__).parent
    tier_of: dict[str, str] = {}
    for item in items:
        path = Path(item.path)
        tier = tier_of[item.nodeid] = "unit" if path.is_relative_to(CLIENT_TESTS) else path.relative_to(root).parts[0]
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: tests live in one of {TIERS}")
        item.add_marker(getattr(pytest.mark, tier))
        fixtures = getattr(item, "fixturenames", ())
        for server, names in NEEDS.items():
            if any(name in fixtures for name in names):
                item.add_marker(getattr(pytest.mark, server))
    items.sort(key=lambda item: TIERS.index(tier_of[item.nodeid]))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ids() -> SequentialIds:
    return SequentialIds()


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


POSTGRES_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
"""Where throwaway test databases are created from; the server's trust auth needs no password."""

class PostgresDatabases:
    """Throwaway databases ``exp_test_<random>`` on the test server, all dropped at session end.

    A database per test run keeps runs that share the server (a developer's and CI's, or two
    checkouts) from seeing each other's rows, and dropping it leaves the server as it was.
    """

    def __init__(self, admin_url: str) -> None:
        self._admin_url = admin_url
        self._created: list[str] = []

    def _admin(self):  # type: ignore[no-untyped-def]
        import psycopg

        # CREATE and DROP DATABASE cannot run inside a transaction.
        return psycopg.connect(self._admin_url, autocommit=True, connect_timeout=3)

    def url_of(self, name: str) -> str:
        from sqlalchemy.engine import make_url

        return make_url(self._admin_url).set(database=name).render_as_string(hide_password=False)

    def create(self) -> str:
        """A new empty database; returns its URL."""
        name = f"exp_test_{secrets.token_hex(6)}"
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self._created.append(name)
        return self.url_of(name)

    def drop_all(self) -> None:
        with self._admin() as conn:
            for name in self._created:
                # FORCE: a server process a test started may still hold a connection.
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._created.clear()


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases]:
    databases = PostgresDatabases(POSTGRES_ADMIN_URL)
    try:
        databases._admin().close()
    except Exception as exc:
        message = f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {type(exc).__name__}"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI starts the server, so its absence there is a failure
        pytest.skip(message)
    yield databases
    databases.drop_all()


@pytest.fixture(scope="session")
def postgres_url(postgres_databases: PostgresDatabases) -> str:
    """One database of this run, migrated once; open_store empties it for every test."""
    from adapters.sqlalchemy.migrate import upgrade

    url = postgres_databases.create()
    upgrade(url)
    return url


@pytest.fixture
def postgres_database(postgres_databases: PostgresDatabases) -> str:
    """A fresh, unmigrated database of its own for one test (a server it starts migrates it)."""
    return postgres_databases.create()


def _empty_postgres(url: str) -> None:
    """Every table the migrations made, whichever they are, but Alembic's own."""
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=3) as conn:
        tables = [
            f'"{name}"'
            for (name,) in conn.execute(
                "SELECT tablename FROM pg_tables"
                " WHERE schemaname = current_schema() AND tablename <> 'alembic_version'"
            )
        ]
        if tables:
            conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY")
            # As migration 0005 leaves a new database: nothing folded yet.
            conn.execute("INSERT INTO fold_state VALUES (1, 1, 1, 0)")


async def open_store(kind: str, tmp_path: Path, postgres_url: str | None = None) -> Store:
    """A fresh, empty store of the given kind, migrated with the real Alembic history."""
    if kind == "memory":
        return MemoryStore()
    from adapters.sqlalchemy.engine import create_engine_for
    from adapters.sqlalchemy.migrate import upgrade
    from adapters.sqlalchemy.store import SqlStore

    if kind == "sqlite":
        url = sqlite_url(tmp_path)
        upgrade(url)
        return SqlStore(create_engine_for(url))
    if kind == "postgres":
        if postgres_url is None:
            raise ValueError("open_store('postgres') needs the postgres_url fixture's database")
        # Emptying the run's migrated database is much faster than a database per test.
        _empty_postgres(postgres_url)
        return SqlStore(create_engine_for(postgres_url))
    raise ValueError(kind)


STORE_KINDS = ["memory", "sqlite", "postgres"]
_STORE_MARKS = {"postgres": pytest.mark.postgres}


@pytest.fixture(params=[pytest.param(k, marks=_STORE_MARKS.get(k, ())) for k in STORE_KINDS])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    opened = await open_store(request.param, tmp_path, url)
    yield opened
    await opened.close()
