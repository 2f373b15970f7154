"""PostgreSQL's strategy: a server that writes concurrently and commits in any order.

An id or sequence says nothing about what is still to come, so each row records the id of the
transaction that wrote it (``txid``), and a fold takes every row of transactions below its
snapshot's xmin, all of which have ended (folding.py). Folds take turns on an advisory lock,
and the folder's lease is another one, held by a session of its own.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy import bindparam, create_engine, func, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.util.concurrency import await_

from adapters.coalescing import Coalescer
from adapters.sqlalchemy.dialects.common import (
    EVENT_COLUMNS,
    WAITING_TO_FILL,
    BatchJob,
    DimensionRow,
    FoldScript,
    FoldsOn,
    Row,
    UnsupportedDatabase,
)
from adapters.sqlalchemy.tables import events
from domain.analysis import MAX_DIMENSIONS
from domain.event import EventBatch

T = TypeVar("T")

CONNECT_TIMEOUT_SECONDS = 5
"""A server that does not answer fails a request (and /health) within this, instead of hanging."""
LEASE_LOCK_ID = 0x6578705F6C656173  # advisory locks: the folder's lease
FOLD_LOCK_ID = 0x6578705F666F6C64  # and one fold (or rebuild) at a time
MIGRATION_LOCK_ID = 0x6578705F6D6967  # and one migration


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


async def _autocommit(conn: AsyncConnection, sql: str, key: int) -> Any:
    await conn.execution_options(isolation_level="AUTOCOMMIT")
    value = (await conn.execute(text(sql), {"k": key})).scalar_one()
    await conn.commit()  # ends SQLAlchemy's own view of a transaction; the server had none
    return value


MAX_ITEMS_PER_BATCH = 256
"""Bounds one batched statement (and the wait of the items behind it) under a flood."""


class OwnTransactions:
    """Each write in a transaction of its own, side by side with the others: the server
    groups concurrent commits in its own WAL writer.

    Writes that are many and small (new assignments) are coalesced instead (adapters/coalescing.py):
    the items that arrive while one runs go together in the next run, one statement and one
    commit for all of them."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._batches: dict[BatchJob, Coalescer[Any, Any]] = {}

    async def run(self, job: Callable[[Connection], T], *, one_statement: bool = False) -> T:
        # Through SQLAlchemy's greenlet bridge on asyncpg. One statement needs no BEGIN and
        # COMMIT around it: one round trip.
        if one_statement:
            async with self._engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                return await conn.run_sync(job)
        async with self._engine.begin() as conn:
            return await conn.run_sync(job)

    async def run_batched(self, job: BatchJob, item: Any) -> Any:
        """``job`` over ``item`` and the items of the same job waiting with it, as one statement
        (the job's; a job that reads after its statement reads committed rows): its result."""
        coalescer = self._batches.get(job)
        if coalescer is None:
            coalescer = self._batches[job] = Coalescer(
                lambda items: self.run(lambda conn: job(conn, items), one_statement=True),
                MAX_ITEMS_PER_BATCH,
            )
        return await coalescer.submit(item)

    async def close(self) -> None:
        """Let the batches already waiting run; the engine's pool is the database's to dispose
        of."""
        for coalescer in list(self._batches.values()):
            await coalescer.close()


class PostgresTimeLimit:
    """``statement_timeout`` for this transaction only (``set_config``'s third argument), set
    by its first statement: one round trip, and nothing left on the pooled connection. The
    server cancels a statement that runs past it, whatever it waits on (a lock, the disk)."""

    _SET = text("SELECT set_config('statement_timeout', :ms, true)")
    _QUERY_CANCELED = "57014"  # statement_timeout's SQLSTATE (and a cancel request's)

    @asynccontextmanager
    async def within(
        self, conn: AsyncConnection, timeout: float
    ) -> AsyncIterator[Callable[[DBAPIError], bool]]:
        await conn.execute(self._SET, {"ms": str(max(1, round(timeout * 1000)))})
        yield self._canceled

    def _canceled(self, exc: DBAPIError) -> bool:
        return getattr(exc.orig, "sqlstate", None) == self._QUERY_CANCELED


class AdvisoryLease:
    """A session advisory lock held on a connection of its own for as long as this process
    folds. The server releases it when the session ends (the process died, or the network
    dropped it), so another instance takes over at its next try."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._conn: AsyncConnection | None = None

    @property
    def held(self) -> bool:
        return self._conn is not None

    async def acquire(self) -> bool:
        if self._conn is not None:
            return True
        conn = await self._engine.connect().__aenter__()
        try:
            got = await _autocommit(conn, "SELECT pg_try_advisory_lock(:k)", LEASE_LOCK_ID)
        except BaseException:
            await conn.invalidate()
            raise
        if not got:
            await conn.close()
            return False
        self._conn = conn
        return True

    async def release(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):
                await conn.invalidate()  # ends the session, and the lease with it


def _insert_events_from_arrays() -> Any:
    """A whole batch as one ``INSERT … SELECT FROM unnest(<one array per column>)``: seven
    parameters however large the batch. ON CONFLICT DO NOTHING skips an event_id repeated within
    the batch as it skips one already stored; the count is of the rows really inserted."""
    source = (
        func.unnest(
            *(bindparam(name, type_=postgresql.ARRAY(events.c[name].type)) for name in EVENT_COLUMNS)
        )
        .table_valued(*EVENT_COLUMNS)
        .render_derived()
    )
    inserted = (
        postgresql.insert(events)
        .from_select(list(EVENT_COLUMNS), select(*(source.c[name] for name in EVENT_COLUMNS)))
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(events.c.id)
        .cte("inserted")
    )
    return select(func.count()).select_from(inserted)


class OneRoundTrip:
    """A fold's statements sent in one round trip: compiled once; at each run its parameters
    (integers: horizons and a time) written into the text, and the whole sent as one simple
    query, which PostgreSQL runs statement after statement in the open transaction. Sent one by
    one, each statement waited for a turn of the server's event loop, which under load made a
    fold several times longer, and the unfolded tail every results read adds up grew with it
    (bench/RESULTS.md has the figures)."""

    _PLACEHOLDER = re.compile(r"\$(\d+)")

    def __init__(self, statements: Sequence[TextClause]) -> None:
        dialect = PGDialect_asyncpg()
        compiled = [statement.compile(dialect=dialect) for statement in statements]
        # A fold groups a second of writes: sorted in memory, where the default 4 MB spills to
        # files.
        self._parts = [("SET LOCAL work_mem = '64MB'", ())] + [
            (c.string, tuple(c.positiontup or ())) for c in compiled
        ]

    def text(self, params: Mapping[str, int]) -> str:
        """The script with ``params`` written in: integers only, so it holds digits alone."""
        if not all(type(v) is int for v in params.values()):
            raise TypeError("a fold's parameters are integers")
        return ";\n".join(
            self._PLACEHOLDER.sub(lambda m, names=names: str(params[names[int(m[1]) - 1]]), sql)
            for sql, names in self._parts
        )

    def __call__(self, conn: Connection, params: Mapping[str, int]) -> None:
        script = self.text(params)
        # Through the driver: SQLAlchemy's asyncpg adapter prepares each statement it sends, and
        # a prepared statement is one statement. The adapter has begun the transaction (the
        # window was read in it), and the script runs inside it.
        await_(conn.connection.dbapi_connection.driver_connection.execute(script))


class PostgresDialect:
    name = "postgresql"
    url_example = "postgresql://user@host/database"
    # Snapshot reads: the several statements of one results query see one state of the data.
    snapshot: dict[str, Any] = {"isolation_level": "REPEATABLE READ"}
    time_limit = PostgresTimeLimit()
    # Writers never wait for a fold here (each is its own transaction), and a fold is one round
    # trip (OneRoundTrip), so folding often costs them little and keeps small the tail every
    # results read adds up (bench/RESULTS.md, a fold in one round trip).
    fold_interval = 0.05

    def url(self, url: URL, *, asynchronous: bool) -> URL:
        # asyncpg serves requests: 20-25% faster than psycopg 3 under concurrent requests and on
        # large event batches (bench/db_drivers.py; docs/deployment.md has the numbers). Alembic
        # runs synchronously, so migrations keep psycopg; DATABASE_URL stays in libpq's terms
        # for both.
        url = url.set(drivername="postgresql+asyncpg" if asynchronous else "postgresql+psycopg")
        if "connect_timeout" not in url.query:
            # libpq waits for a silent server forever; migrations and requests alike should fail.
            url = url.update_query_dict({"connect_timeout": str(CONNECT_TIMEOUT_SECONDS)})
        return url

    def engine(self, url: URL) -> AsyncEngine:
        url, connect_args = _libpq_options_for_asyncpg(url)
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
        # rather than opening one of its own, which forks a server process; and four instances
        # stay within PostgreSQL's default of 100 connections. No ping before each checkout: it
        # was a round trip (and a transaction) per request; a connection found dead fails that
        # request with a 503, and SQLAlchemy then replaces every connection of the pool.
        return create_async_engine(url, pool_size=20, max_overflow=0, connect_args=connect_args)

    def migration_engine(self, url: URL) -> Engine:
        return create_engine(url)

    def lock_migrations(self, conn: Connection) -> None:
        # Instances started together would all create the same tables; the lock makes them take
        # turns, and those after the first find the database at head.
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})")

    def check_migrated(self, conn: Connection) -> None:
        """Nothing: PostgreSQL checks foreign keys as each statement runs."""

    def write_lane(self, engine: AsyncEngine) -> OwnTransactions:
        return OwnTransactions(engine)

    def lease(self, engine: AsyncEngine) -> AdvisoryLease:
        return AdvisoryLease(engine)

    async def serialize_fold(self, database: FoldsOn, job: Callable[[Connection], int]) -> int:
        async with database.connect() as conn:
            try:
                await _autocommit(conn, "SELECT pg_advisory_lock(:k)", FOLD_LOCK_ID)
                # Only now the snapshot: it sees the horizon the previous fold stored.
                await conn.execution_options(isolation_level="REPEATABLE READ")
                async with conn.begin():
                    folded = await conn.run_sync(job)
                await _autocommit(conn, "SELECT pg_advisory_unlock(:k)", FOLD_LOCK_ID)
            except BaseException:
                await conn.invalidate()  # ends the session, and the lock with it
                raise
        return folded

    event_key, assignment_key = "e.txid", "a.txid"

    def after(self, key: str, param: str) -> str:
        return f"{key} >= :{param}"

    def upto(self, key: str, param: str) -> str:
        return f"{key} < :{param}"

    def only(self, column: str) -> str:
        """A column compared without its index. The planner would weigh the indexes by their
        statistics, which lag the writes (a young table has none; a generic plan has no value
        to weigh): it then read every event of an experiment, once per assignment, where the
        transaction-id range holds a second of writes."""
        return f"({column} + 0)" if column.endswith("txid") else f"({column} || '')"

    def by_key(self, table: str, alias: str) -> str:
        return f"{table} AS {alias}"

    def assignment_of(self, events: str, alias: str) -> str:
        """A lookup of each event's assignment by its unique key, whatever the statistics say:
        a LATERAL subquery with LIMIT is never flattened into a join the planner could turn
        around (every assignment of the experiment, each scanning the experiment's events)."""
        return (
            f"CROSS JOIN LATERAL (SELECT l.variant_id, l.assigned_at, l.txid FROM user_assignments l"
            f" WHERE l.experiment_id = {events}.experiment_id AND l.user_id = {events}.user_id LIMIT 1) {alias}"
        )

    def prior_events_of(self, assignments: str, alias: str) -> str:
        """Each assignment's prior events by their index, whatever the statistics say (a young
        table has none, and the planner then scanned it once per assignment): OFFSET 0 keeps
        the LATERAL subquery from being flattened into a join it could turn around."""
        return (
            f"CROSS JOIN LATERAL (SELECT q.experiment_id, q.user_id, q.event_type, q.timestamp, q.value"
            f" FROM prior_events q WHERE q.experiment_id = {assignments}.experiment_id"
            f" AND q.user_id = {assignments}.user_id OFFSET 0) {alias}"
        )

    # Ends a subquery whose filters must run before the joins around it: OFFSET 0 keeps a subquery whole: its filters run before the joins around it.
    fence = " OFFSET 0"

    def events_of(self, experiments: str, alias: str) -> str:
        """Each experiment's events by their index on the experiment, never a scan of every
        event for a hash join (OFFSET 0 keeps the LATERAL subquery from being flattened)."""
        return (
            f"CROSS JOIN LATERAL (SELECT q.experiment_id, q.user_id, q.event_type, q.timestamp, q.value, q.txid"
            f" FROM events q WHERE q.experiment_id = {experiments}.experiment_id OFFSET 0) {alias}"
        )

    def assignment_after(self, events: str, alias: str) -> str:
        """``assignment_of``: a LATERAL lookup already keeps the events outside."""
        return self.assignment_of(events, alias)

    def assignment_or_none(self, events: str, alias: str) -> str:
        """As ``assignment_of``, with NULLs for an event whose user has no assignment."""
        return self.assignment_of(events, alias).replace("CROSS JOIN LATERAL", "LEFT JOIN LATERAL", 1) + " ON true"

    def fold_window(self, conn: Connection, limit: int) -> tuple[int, int, int, int, bool]:
        """The stored horizons, and the xmin of this transaction's snapshot as the new ones:
        every transaction below it has ended, so its rows are all visible now and none can
        appear later. It must be the first statement of a REPEATABLE READ transaction, so that
        the fold runs in this very snapshot. No limit: a window is a range of transactions, not
        of rows. A window without a row stays where it is: the previous fold's own transaction
        moves xmin on, and moving the horizon past it would write (and take a transaction id)
        every time, so an idle database would never see an empty fold. Past ``EMPTY_WINDOW``
        transactions it moves anyway, so that the index entries of rolled-back writes in it are
        not looked at again by every fold until autovacuum removes them."""
        eh, ah, horizon, rows, waiting = conn.execute(self._WINDOW).one()
        moves = rows or horizon - min(eh, ah) > self.EMPTY_WINDOW
        return (eh, ah, horizon, horizon, waiting) if moves else (eh, ah, eh, ah, waiting)

    EMPTY_WINDOW = 10_000

    _WINDOW = text(
        "SELECT f.events_horizon, f.assignments_horizon, w.x,"
        " EXISTS (SELECT 1 FROM events WHERE txid >= f.events_horizon AND txid < w.x)"
        " OR EXISTS (SELECT 1 FROM user_assignments WHERE txid >= f.assignments_horizon AND txid < w.x),"
        f" {WAITING_TO_FILL}"
        " FROM fold_state f, (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS x) w"
    )

    def script(self, statements: Sequence[TextClause]) -> FoldScript:
        return OneRoundTrip(statements)

    def unmatchable(self, *keys: str) -> bool:
        """PostgreSQL's text cannot hold NUL, so no stored row has such a key: a lookup by one is
        a miss, where sending it would fail the statement (and answer 503 to a bad id)."""
        return any("\x00" in key for key in keys)

    def totals_of(self, deltas: str, alias: str) -> str:
        """A lookup by key per delta: a hash join read every user's totals for a second of
        writes, a cost that grew with the experiment's users (the soak's results slowed down
        fourfold in five minutes)."""
        return (
            f"LEFT JOIN LATERAL (SELECT t.events, t.value_sum FROM user_event_totals t"
            f" WHERE t.experiment_id = {deltas}.experiment_id AND t.user_id = {deltas}.user_id"
            f" AND t.event_type = {deltas}.event_type LIMIT 1) {alias} ON true"
        )

    def totals_by(
        self, alias: str, experiment: str, user: str, event_type: str, table: str = "user_event_totals"
    ) -> str:
        """A lookup by key, as ``totals_of``."""
        return (
            f"LEFT JOIN LATERAL (SELECT t.events, t.value_sum FROM {table} t"
            f" WHERE t.experiment_id = {experiment} AND t.user_id = {user} AND t.event_type = {event_type}"
            f" LIMIT 1) {alias} ON true"
        )

    def dimensions_of(self, rows: str, alias: str, one: bool) -> str:
        """A lookup by key per row, as ``totals_of``: a hash join would read every user's values
        at every fold. A user has at most MAX_DIMENSIONS values (written once, at assignment)."""
        only = " AND t.dimension = :dim" if one else ""
        return (
            f"CROSS JOIN LATERAL (SELECT t.dimension, t.value FROM assignment_dimensions t"
            f" WHERE t.experiment_id = {rows}.experiment_id AND t.user_id = {rows}.user_id{only}"
            f" LIMIT {MAX_DIMENSIONS}) {alias}"
        )

    # A table is analyzed here when autovacuum has not yet (it wakes once a minute, and a young
    # table grows faster than its threshold) or when it has doubled since: the planner reads a
    # table that has no statistics as a small one, and then walks it.
    _STALE_TABLES = text(
        "SELECT relname FROM pg_stat_user_tables"
        " WHERE schemaname = current_schema() AND relname IN ('events', 'user_assignments', 'user_event_totals')"
        " AND n_live_tup + n_mod_since_analyze >= :least"
        " AND (COALESCE(last_analyze, last_autoanalyze) IS NULL OR n_mod_since_analyze > n_live_tup)"
    )
    STATISTICS_LEAST_ROWS = 100

    def refresh_statistics(self, conn: Connection) -> list[str]:
        """ANALYZE the tables the tail is read from whose statistics are missing or far behind;
        their names."""
        stale = [r[0] for r in conn.execute(self._STALE_TABLES, {"least": self.STATISTICS_LEAST_ROWS})]
        for table in stale:
            conn.exec_driver_sql(f"ANALYZE {table}")
        return stale

    _INSERT_EVENTS = _insert_events_from_arrays()

    # One round trip for all the new users of a moment, and for a known one alike: the insert
    # returns the rows it made, the join finds those stored before (the statement's snapshot
    # cannot see a racing insert that commits while it waits on the conflict; then nothing
    # comes back for that user, and the caller reads the winner). A user twice in one batch is
    # inserted once; both get that row.
    _GET_OR_INSERT_ASSIGNMENTS = text(
        "WITH wanted AS (SELECT * FROM unnest(CAST(:x AS varchar[]), CAST(:u AS varchar[]),"
        " CAST(:v AS varchar[]), CAST(:at AS bigint[])) WITH ORDINALITY AS w(x, u, v, at, n)),"
        " inserted AS (INSERT INTO user_assignments (experiment_id, user_id, variant_id, assigned_at)"
        " SELECT x, u, v, at FROM wanted ORDER BY n ON CONFLICT (experiment_id, user_id) DO NOTHING"
        " RETURNING experiment_id, user_id, variant_id, assigned_at),"
        # The dimensions of the assignments inserted here, in the same statement (one transaction).
        " dimensions AS (INSERT INTO assignment_dimensions (experiment_id, user_id, dimension, value)"
        " SELECT d.x, d.u, d.name, d.value FROM unnest(CAST(:dx AS varchar[]), CAST(:du AS varchar[]),"
        " CAST(:dn AS varchar[]), CAST(:dv AS varchar[])) AS d(x, u, name, value)"
        " JOIN inserted i ON i.experiment_id = d.x AND i.user_id = d.u"
        " ON CONFLICT (experiment_id, user_id, dimension) DO NOTHING)"
        " SELECT COALESCE(i.variant_id, s.variant_id), COALESCE(i.assigned_at, s.assigned_at)"
        " FROM wanted w"
        " LEFT JOIN inserted i ON i.experiment_id = w.x AND i.user_id = w.u"
        " LEFT JOIN user_assignments s ON s.experiment_id = w.x AND s.user_id = w.u"
        " ORDER BY w.n"
    )

    def insert_assignments(
        self, conn: Connection, rows: list[Row], dimensions: list[DimensionRow]
    ) -> list[tuple[str, int] | None]:
        columns = {"x": [r[0] for r in rows], "u": [r[1] for r in rows],
                   "v": [r[2] for r in rows], "at": [r[3] for r in rows],
                   "dx": [d[0] for d in dimensions], "du": [d[1] for d in dimensions],
                   "dn": [d[2] for d in dimensions], "dv": [d[3] for d in dimensions]}
        found = conn.execute(self._GET_OR_INSERT_ASSIGNMENTS, columns).all()
        return [None if variant is None else (variant, at) for variant, at in found]

    def insert_events(self, conn: Connection, batch: EventBatch) -> int:
        columns = {
            "experiment_id": batch.experiment_ids,
            "user_id": batch.user_ids,
            "event_type": batch.event_types,
            "timestamp": batch.timestamps,
            "value": batch.values,
            "properties": batch.properties,
            "event_id": batch.event_ids,
        }
        return conn.execute(self._INSERT_EVENTS, columns).scalar_one()
