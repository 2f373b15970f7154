"""What differs between SQLite and PostgreSQL, one strategy object each: the store's other
modules ask these instead of branching on the dialect's name.

The folder's bookkeeping is the main difference. SQLite has one writer at a time, so rowids are
committed in order: everything up to a rowid is a fixed set once committed. PostgreSQL commits
concurrent transactions in any order, so an id or sequence says nothing about what is still to
come; each row records the id of the transaction that wrote it (``txid``), and a fold takes
every row of transactions below its snapshot's xmin, all of which have ended (folding.py).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from adapters.sqlalchemy.tables import events
from domain.event import EventBatch

Row = tuple[str, str, str, int]  # an assignment: experiment_id, user_id, variant_id, assigned_at
EVENT_COLUMNS = ("experiment_id", "user_id", "event_type", "timestamp", "value", "properties", "event_id")


class SqliteDialect:
    name = "sqlite"
    snapshot: dict[str, Any] = {}  # a SQLite read transaction is a snapshot already
    insert = staticmethod(sqlite.insert)

    # The folder's windows. ``e`` is events, ``a`` user_assignments.
    event_key, assignment_key = "e.id", "a.rowid"

    def after(self, key: str, param: str) -> str:
        """Rows written after the horizon ``param``."""
        return f"{key} > :{param}"

    def upto(self, key: str, param: str) -> str:
        """Rows at or before the horizon ``param``: folded, once it is the stored horizon."""
        return f"{key} <= :{param}"

    def only(self, column: str) -> str:
        """A column compared without its index: SQLite's planner would otherwise pick the
        index on the experiment over the rowid range, and walk every row of the experiment."""
        return f"+{column}"

    def by_key(self, table: str, alias: str) -> str:
        """A table read by its rowid range alone: without statistics, SQLite's planner takes a
        scan of a covering index over an open-ended rowid range, every row of the table."""
        return f"{table} AS {alias} NOT INDEXED"

    def assignment_of(self, events: str, alias: str) -> str:
        """Join each event of ``events`` to its user's assignment, as ``alias``: a lookup by the
        unique key per event (the events lead; ``counted_pairs`` says how)."""
        return (
            f"JOIN user_assignments {alias}"
            f" ON {alias}.experiment_id = {events}.experiment_id AND {alias}.user_id = {events}.user_id"
        )

    def fold_window(self, conn: Connection, limit: int) -> tuple[int, int]:
        """The horizons a fold may advance to: the newest rows (the write lock is held, so
        nothing else can commit meanwhile), at most ``limit`` events past the stored horizon."""
        return conn.exec_driver_sql(
            "SELECT MIN((SELECT COALESCE(MAX(id), 0) FROM events), events_horizon + ?),"
            " (SELECT COALESCE(MAX(rowid), 0) FROM user_assignments) FROM fold_state",
            (limit,),
        ).one()

    def unmatchable(self, *keys: str) -> bool:
        return False

    def totals_of(self, deltas: str, alias: str) -> str:
        """Each delta's user totals so far, as ``alias`` (NULLs for a user without any)."""
        return (
            f"LEFT JOIN user_event_totals {alias} ON {alias}.experiment_id = {deltas}.experiment_id"
            f" AND {alias}.user_id = {deltas}.user_id AND {alias}.event_type = {deltas}.event_type"
        )

    def refresh_statistics(self, conn: Connection) -> list[str]:
        """Nothing: the SQLite queries are written for a planner without statistics."""
        return []

    _INSERT_EVENTS = (
        f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) VALUES ({', '.join('?' * len(EVENT_COLUMNS))})"
        " ON CONFLICT (event_id) DO NOTHING"
    )

    _INSERT_ASSIGNMENT = (
        "INSERT INTO user_assignments (experiment_id, user_id, variant_id, assigned_at)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (experiment_id, user_id) DO NOTHING"
    )

    def insert_assignments(self, conn: Connection, rows: list[Row]) -> list[tuple[str, int] | None]:
        """A group's assignments in one statement, then what is stored for each: the row just
        inserted, or the one that was there first. The write lock is held, so both are final."""
        conn.exec_driver_sql(self._INSERT_ASSIGNMENT, rows)
        stored: dict[tuple[str, str], tuple[str, int]] = {}
        for experiment_id in {row[0] for row in rows}:
            users = list({row[1] for row in rows if row[0] == experiment_id})
            found = conn.exec_driver_sql(
                "SELECT user_id, variant_id, assigned_at FROM user_assignments"
                f" WHERE experiment_id = ? AND user_id IN ({', '.join('?' * len(users))})",
                (experiment_id, *users),
            )
            stored.update({(experiment_id, u): (v, at) for u, v, at in found})
        return [stored[(row[0], row[1])] for row in rows]

    def insert_events(self, conn: Connection, batch: EventBatch) -> int:
        # The DBAPI's executemany, without SQLAlchemy's per-row parameter processing, which
        # adds nothing to plain strings, integers and floats. Its rowcount sums over the rows:
        # the ones not skipped as duplicates.
        return conn.exec_driver_sql(self._INSERT_EVENTS, batch.rows()).rowcount


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


class PostgresDialect:
    name = "postgresql"
    # Snapshot reads: the several statements of one results query see one state of the data.
    snapshot: dict[str, Any] = {"isolation_level": "REPEATABLE READ"}
    insert = staticmethod(postgresql.insert)

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

    def fold_window(self, conn: Connection, limit: int) -> tuple[int, int]:
        """The xmin of this transaction's snapshot: every transaction below it has ended, so its
        rows are all visible now and none can appear later. It must be the first statement of a
        REPEATABLE READ transaction, so that the fold runs in this very snapshot. No limit: a
        window is a range of transactions, not of rows."""
        horizon = conn.execute(text("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")).scalar_one()
        # A fold groups a second of writes: sorted in memory, where the default 4 MB spills to
        # files.
        conn.execute(text("SET LOCAL work_mem = '64MB'"))
        return horizon, horizon

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

    # One round trip for a new user and for a known one alike: the insert returns the new row,
    # or the select finds the one stored before (the statement's snapshot cannot see a racing
    # insert that commits while it waits on the conflict; then nothing comes back).
    _GET_OR_INSERT_ASSIGNMENT = text(
        "WITH inserted AS (INSERT INTO user_assignments (experiment_id, user_id, variant_id, assigned_at)"
        " VALUES (:x, :u, :v, :at) ON CONFLICT (experiment_id, user_id) DO NOTHING"
        " RETURNING variant_id, assigned_at)"
        " SELECT variant_id, assigned_at FROM inserted UNION ALL"
        " SELECT variant_id, assigned_at FROM user_assignments WHERE experiment_id = :x AND user_id = :u"
    )

    def insert_assignments(self, conn: Connection, rows: list[Row]) -> list[tuple[str, int] | None]:
        out: list[tuple[str, int] | None] = []
        for x, u, v, at in rows:
            found = conn.execute(self._GET_OR_INSERT_ASSIGNMENT, {"x": x, "u": u, "v": v, "at": at}).first()
            out.append(None if found is None else (found[0], found[1]))
        return out

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


Dialect = SqliteDialect | PostgresDialect


def dialect_of(name: str) -> Dialect:
    return PostgresDialect() if name == "postgresql" else SqliteDialect()


