"""Pre-aggregated results: per-variant, per-user and per-user-per-day totals kept current by
every write.

Results without a date range read a few rows of ``variant_event_totals`` instead of scanning
events; a range of whole days reads ``user_day_totals``. The totals hold exactly what the counting rule counts: events of assigned users, not
older than the assignment. An event counts when it is stored (if its user is assigned by then)
or when its user is assigned later (events stored early with a timestamp at or after the
assignment are folded in then). Per-user totals make the sum of squared per-user values
incremental: a user's total going from v to v + d adds (v + d)² − v² to the variant's sum.

Folding is set-based SQL that runs inside the database, in the writer's transaction: events
join their assignments once, into scratch tables, and three upserts add the deltas. No row
comes back to Python.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, bindparam, delete, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.sqlalchemy.tables import (
    ANY_TYPE,
    user_day_totals,
    user_event_totals,
    variant_event_totals,
)


@dataclass(frozen=True, slots=True)
class Totals:
    events: int
    users: int
    value_sum: float
    value_sum_squares: float


MICROS_PER_DAY = 86_400_000_000


def day_of(micros: str) -> str:
    """SQL for the UTC day (days since 1970-01-01) of a timestamp in microseconds: a floor
    division, where both databases' integer division truncates towards zero."""
    return (
        f"(CASE WHEN {micros} >= 0 THEN {micros} / {MICROS_PER_DAY}"
        f" ELSE -((-{micros} - 1) / {MICROS_PER_DAY}) - 1 END)"
    )


_SCRATCH = (
    # Per connection, emptied by every fold: what one fold counts, and its per-user deltas.
    "CREATE TEMP TABLE IF NOT EXISTS fold_counted (experiment_id VARCHAR(32), user_id VARCHAR(256),"
    " variant_id VARCHAR(32), event_type VARCHAR(100), day BIGINT, v DOUBLE PRECISION)",
    "CREATE TEMP TABLE IF NOT EXISTS fold_deltas (experiment_id VARCHAR(32), user_id VARCHAR(256),"
    " variant_id VARCHAR(32), event_type VARCHAR(100), n BIGINT, s DOUBLE PRECISION)",
    "DELETE FROM fold_counted",
    "DELETE FROM fold_deltas",
)


def _fold_statements(which_events: str) -> tuple[str, ...]:
    """The statements that fold the events ``which_events`` selects (a condition on ``e``).

    The events are joined to their assignments once, into a scratch table, and every total is
    derived from that: three joins of events to assignments, one per total, cost a third more.
    Variants before users: their increments need each user's totals from before this fold (a
    user with no row yet is a new unique user; the square of the sum grows by (v + d)² − v²).
    """
    counted = f"""
    INSERT INTO fold_counted (experiment_id, user_id, variant_id, event_type, day, v)
    SELECT e.experiment_id, e.user_id, a.variant_id, e.event_type, {day_of("e.timestamp")},
           COALESCE(e.value, 0.0)
    FROM events e JOIN user_assignments a
      ON a.experiment_id = e.experiment_id AND a.user_id = e.user_id
    WHERE {which_events} AND e.timestamp + 0 >= a.assigned_at
    """
    deltas = f"""
    INSERT INTO fold_deltas (experiment_id, user_id, variant_id, event_type, n, s)
    SELECT experiment_id, user_id, variant_id, event_type, COUNT(*), SUM(v)
    FROM fold_counted GROUP BY experiment_id, user_id, variant_id, event_type
    UNION ALL
    SELECT experiment_id, user_id, variant_id, '{ANY_TYPE}', COUNT(*), SUM(v)
    FROM fold_counted GROUP BY experiment_id, user_id, variant_id
    """
    variants = """
    INSERT INTO variant_event_totals
      (experiment_id, variant_id, event_type, events, users, value_sum, value_sum_squares)
    SELECT d.experiment_id, d.variant_id, d.event_type, SUM(d.n),
           SUM(CASE WHEN u.events IS NULL THEN 1 ELSE 0 END), SUM(d.s),
           SUM((COALESCE(u.value_sum, 0.0) + d.s) * (COALESCE(u.value_sum, 0.0) + d.s)
               - COALESCE(u.value_sum, 0.0) * COALESCE(u.value_sum, 0.0))
    FROM fold_deltas d LEFT JOIN user_event_totals u
      ON u.experiment_id = d.experiment_id AND u.user_id = d.user_id
     AND u.event_type = d.event_type
    GROUP BY d.experiment_id, d.variant_id, d.event_type
    ON CONFLICT (experiment_id, variant_id, event_type) DO UPDATE SET
      events = variant_event_totals.events + excluded.events,
      users = variant_event_totals.users + excluded.users,
      value_sum = variant_event_totals.value_sum + excluded.value_sum,
      value_sum_squares = variant_event_totals.value_sum_squares + excluded.value_sum_squares
    """
    users = """
    INSERT INTO user_event_totals (experiment_id, user_id, event_type, events, value_sum)
    SELECT experiment_id, user_id, event_type, n, s FROM fold_deltas WHERE true
    ON CONFLICT (experiment_id, user_id, event_type) DO UPDATE SET
      events = user_event_totals.events + excluded.events,
      value_sum = user_event_totals.value_sum + excluded.value_sum
    """
    days = """
    INSERT INTO user_day_totals (experiment_id, day, user_id, event_type, events, value_sum)
    SELECT experiment_id, day, user_id, event_type, COUNT(*), SUM(v)
    FROM fold_counted GROUP BY experiment_id, day, user_id, event_type
    ON CONFLICT (experiment_id, day, user_id, event_type) DO UPDATE SET
      events = user_day_totals.events + excluded.events,
      value_sum = user_day_totals.value_sum + excluded.value_sum
    """
    return (*_SCRATCH, counted, deltas, variants, users, days)


def _compiled(which_events: str, *params: Any) -> tuple[Any, ...]:
    return tuple(
        text(sql).bindparams(*(p for p in params if f":{p.key}" in sql))
        for sql in _fold_statements(which_events)
    )


# Events of one batch: on SQLite the rowids past the highest before the insert (one writer at a
# time, so they are this batch's); on PostgreSQL the ids the insert returned.
_FOLD_AFTER_ROWID = _compiled("e.id > :after")
_FOLD_IDS = _compiled("e.id = ANY(:ids)", bindparam("ids", type_=postgresql.ARRAY(BigInteger)))
# A new assignment: that user's events stored before it and stamped at or after it. The
# assignment is stamped now, so the index on (experiment_id, timestamp) leads to the few events
# stamped in the future rather than to the user's whole history.
_FOLD_USER = _compiled(
    "e.experiment_id = :experiment_id AND e.timestamp >= :assigned_at AND e.user_id = :user_id"
)


class Aggregates:
    """The SQL side of the totals, for one dialect; every method runs in the caller's transaction."""

    def __init__(self, dialect: str) -> None:
        self._dialect = dialect

    def lock(self, conn: Connection, experiment_ids: Iterable[str]) -> None:
        """PostgreSQL: one writer of an experiment's totals at a time (SQLite writers already are).

        Taken by event batches before they insert, and by a new assignment before it folds its
        user's earlier events, so an event is counted by exactly one of the two.
        """
        if self._dialect != "postgresql":
            return
        for experiment_id in sorted(set(experiment_ids)):  # one order: no deadlock between batches
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:e))"), {"e": experiment_id})

    @staticmethod
    def _fold(conn: Connection, statements: tuple[Any, ...], params: dict[str, Any]) -> None:
        for statement in statements:
            conn.execute(statement, params)

    def fold_after_rowid(self, conn: Connection, after: int) -> None:
        """SQLite: fold the events inserted past rowid ``after`` in this transaction."""
        self._fold(conn, _FOLD_AFTER_ROWID, {"after": after})

    def fold_ids(self, conn: Connection, ids: Sequence[int]) -> None:
        """PostgreSQL: fold the events with these ids, just inserted in this transaction."""
        if ids:
            self._fold(conn, _FOLD_IDS, {"ids": list(ids)})

    def fold_earlier_events(
        self, conn: Connection, experiment_id: str, user_id: str, assigned_at: int
    ) -> None:
        """A new assignment counts the user's events already stored that are not older than it."""
        params = {"experiment_id": experiment_id, "user_id": user_id, "assigned_at": assigned_at}
        self._fold(conn, _FOLD_USER, params)

    @staticmethod
    async def read(conn: AsyncConnection, experiment_id: str) -> dict[str, dict[str, Totals]]:
        """variant_id -> event_type ("" for every type) -> totals."""
        t = variant_event_totals.c
        rows = await conn.execute(
            select(t.variant_id, t.event_type, t.events, t.users, t.value_sum, t.value_sum_squares)
            .where(t.experiment_id == experiment_id)
        )
        out: dict[str, dict[str, Totals]] = defaultdict(dict)
        for variant_id, event_type, n, users, value_sum, value_sq in rows:
            out[variant_id][event_type] = Totals(n, users, value_sum, value_sq)
        return out

    @staticmethod
    def rebuild(conn: Connection) -> None:
        """Recompute every total from raw events, in SQL: the repair for any doubt."""
        conn.execute(delete(variant_event_totals))
        conn.execute(delete(user_event_totals))
        conn.execute(delete(user_day_totals))
        for statement in REBUILD_SQL:
            conn.execute(text(statement))


# Plain SQL that SQLite and PostgreSQL both run; migration 0002 backfilled with the same text
# (but for the ``+ 0``).
#
# ``e.timestamp + 0 >= a.assigned_at``, here and in every join of events to assignments: the
# ``+ 0`` keeps SQLite's planner from reading this as a range on the (experiment_id, timestamp)
# index for each assignment, a scan of events per user (minutes at 1M events). It walks events
# once and looks each user's assignment up by its unique key instead. PostgreSQL is unaffected.
REBUILD_SQL = (
    """
    INSERT INTO user_event_totals (experiment_id, user_id, event_type, events, value_sum)
    SELECT e.experiment_id, e.user_id, e.event_type, COUNT(*), SUM(COALESCE(e.value, 0.0))
    FROM events e JOIN user_assignments a
      ON a.experiment_id = e.experiment_id AND a.user_id = e.user_id
    WHERE e.timestamp + 0 >= a.assigned_at
    GROUP BY e.experiment_id, e.user_id, e.event_type
    """,
    """
    INSERT INTO user_event_totals (experiment_id, user_id, event_type, events, value_sum)
    SELECT e.experiment_id, e.user_id, '', COUNT(*), SUM(COALESCE(e.value, 0.0))
    FROM events e JOIN user_assignments a
      ON a.experiment_id = e.experiment_id AND a.user_id = e.user_id
    WHERE e.timestamp + 0 >= a.assigned_at
    GROUP BY e.experiment_id, e.user_id
    """,
    """
    INSERT INTO variant_event_totals
      (experiment_id, variant_id, event_type, events, users, value_sum, value_sum_squares)
    SELECT u.experiment_id, a.variant_id, u.event_type, SUM(u.events), COUNT(*),
           SUM(u.value_sum), SUM(u.value_sum * u.value_sum)
    FROM user_event_totals u JOIN user_assignments a
      ON a.experiment_id = u.experiment_id AND a.user_id = u.user_id
    GROUP BY u.experiment_id, a.variant_id, u.event_type
    """,
    f"""
    INSERT INTO user_day_totals (experiment_id, day, user_id, event_type, events, value_sum)
    SELECT e.experiment_id, {day_of("e.timestamp")}, e.user_id, e.event_type, COUNT(*),
           SUM(COALESCE(e.value, 0.0))
    FROM events e JOIN user_assignments a
      ON a.experiment_id = e.experiment_id AND a.user_id = e.user_id
    WHERE e.timestamp + 0 >= a.assigned_at
    GROUP BY e.experiment_id, {day_of("e.timestamp")}, e.user_id, e.event_type
    """,
)
