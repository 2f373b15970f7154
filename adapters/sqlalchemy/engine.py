"""Engines from DATABASE_URL: the async one the store runs on, the sync one migrations run on."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

# asyncpg serves requests: 20-25% faster than psycopg 3 under concurrent requests and on large
# event batches (bench/db_drivers.py; docs/deployment.md has the numbers). Alembic runs
# synchronously, so migrations keep psycopg; DATABASE_URL stays in libpq's terms for both.
_ASYNC_DRIVERS = {"sqlite": "aiosqlite", "postgresql": "asyncpg"}
_SYNC_DRIVERS = {"sqlite": "pysqlite", "postgresql": "psycopg"}

BEGIN_IMMEDIATE = "begin_immediate"
"""Execution option: on SQLite, take the write lock at BEGIN rather than at the first write.

A deferred transaction that reads and then writes can fail at once with SQLITE_BUSY when
another connection wrote meanwhile; one that starts IMMEDIATE waits its turn instead.
"""


POSTGRES_CONNECT_TIMEOUT_SECONDS = 5
"""A server that does not answer fails a request (and /health) within this, instead of hanging."""


class UnsupportedDatabase(ValueError):
    pass


def parse_url(url: str, *, asynchronous: bool) -> URL:
    """Map ``sqlite://`` and ``postgresql://`` to the drivers this project ships with."""
    try:
        parsed = make_url(url)
    except Exception as exc:  # SQLAlchemy raises ArgumentError with the URL in it
        raise UnsupportedDatabase("DATABASE_URL is not a valid database URL") from exc
    backend = parsed.get_backend_name()
    drivers = _ASYNC_DRIVERS if asynchronous else _SYNC_DRIVERS
    if backend not in drivers:
        raise UnsupportedDatabase(
            f"DATABASE_URL scheme {backend!r} is not supported; use sqlite:/// or postgresql://"
        )
    parsed = parsed.set(drivername=f"{backend}+{drivers[backend]}")
    if backend == "postgresql" and "connect_timeout" not in parsed.query:
        # libpq waits for a silent server forever; migrations and requests alike should fail.
        parsed = parsed.update_query_dict({"connect_timeout": str(POSTGRES_CONNECT_TIMEOUT_SECONDS)})
    return parsed


def ensure_sqlite_directory(url: URL) -> None:
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def configure_sqlite(sync_engine: Engine) -> None:
    """WAL, durable commits, waiting on locks, foreign keys: for every engine on a SQLite file."""

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        # Let SQLAlchemy's "begin" hook below emit BEGIN, instead of the driver's own guesswork.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before it is acknowledged, also across a power loss.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")
        # 64 MiB of page cache (the default is 2 MiB): inserts land at random places in the
        # indexes of events, and once those outgrow the cache every insert reads pages back.
        cursor.execute("PRAGMA cache_size=-65536")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(BEGIN_IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def sqlite_writer_engine(engine: AsyncEngine) -> Engine:
    """The synchronous sqlite3 engine for SQLite's one writer thread (group_commit.py), on the
    file that ``engine`` reads: one connection, used by that thread alone."""
    writer = create_engine(
        engine.url.set(drivername="sqlite+pysqlite"),
        pool_size=1,
        max_overflow=0,
        connect_args={"check_same_thread": False},
    )
    configure_sqlite(writer)
    return writer


def create_engine_for(url: str) -> AsyncEngine:
    parsed = parse_url(url, asynchronous=True)
    ensure_sqlite_directory(parsed)
    if parsed.get_backend_name() == "sqlite":
        # Readers of a WAL file run side by side. Opening one costs a thread and the pragmas
        # below, so the pool keeps as many as requests commonly run at once; past the
        # default five, every burst opened and closed connections of its own.
        engine = create_async_engine(parsed, pool_size=32, max_overflow=32)
        configure_sqlite(engine.sync_engine)
        return engine
    connect_args: dict[str, object] = {}
    if parsed.get_driver_name() == "asyncpg":
        parsed, connect_args = _libpq_options_for_asyncpg(parsed)
        # asyncpg prepares every statement once per connection, and PostgreSQL then settles on a
        # generic plan, made without the parameters' values and kept for the connection's life.
        # The reads of the unfolded tail depend on those values (a transaction-id range that
        # holds a second of writes), and a generic plan made while the tables were small kept
        # walking them once they had grown. Each execution is planned for its own values; the
        # statements stay prepared, so only the planning is repeated (tens of microseconds).
        settings = connect_args.setdefault("server_settings", {})
        assert isinstance(settings, dict)
        settings["plan_cache_mode"] = "force_custom_plan"
        # No JIT: once the events outgrow a million or so rows, the planner's cost of the results
        # tail and of a fold passes jit_above_cost, and PostgreSQL compiles each execution's
        # expressions with LLVM: 90 ms of a 100 ms tail read, then 2-3 s with inlining and
        # optimization (the soak's throughput fell by two thirds at 1.4M events). Every
        # statement here reads or writes a few thousand rows at most: compiling never pays.
        settings["jit"] = "off"
    # Twenty connections, no more: a request past them waits for one (up to 30 s, then 503)
    # rather than opening one of its own, which forks a server process; and four instances stay
    # within PostgreSQL's default of 100 connections. No ping before each checkout: it was a round trip (and a
    # transaction) per request; a connection found dead fails that request with a 503, and
    # SQLAlchemy then replaces every connection of the pool.
    return create_async_engine(parsed, pool_size=20, max_overflow=0, connect_args=connect_args)


def _libpq_options_for_asyncpg(url: URL) -> tuple[URL, dict[str, object]]:
    """asyncpg takes URL query options as its own keyword arguments: translate the libpq ones
    that psycopg (migrations) understands, so one DATABASE_URL serves both."""
    query = {k: v if isinstance(v, str) else v[-1] for k, v in url.query.items()}
    connect_args: dict[str, object] = {}
    if "connect_timeout" in query:
        try:
            connect_args["timeout"] = float(query.pop("connect_timeout"))
        except ValueError:
            raise UnsupportedDatabase("DATABASE_URL connect_timeout must be a number") from None
    if "sslmode" in query:
        connect_args["ssl"] = query.pop("sslmode")  # asyncpg knows libpq's mode names
    if "application_name" in query:
        connect_args["server_settings"] = {"application_name": query.pop("application_name")}
    if query:
        # Else asyncpg would reject them at the first request, long after a clean start.
        raise UnsupportedDatabase(
            f"DATABASE_URL options {sorted(query)} are not supported; use connect_timeout,"
            " sslmode or application_name"
        )
    return url.set(query={}), connect_args
