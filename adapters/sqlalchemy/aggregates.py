"""Pre-aggregated results: per-user and per-variant totals kept current by every write.

Results without a date range read a few rows of ``variant_event_totals`` instead of scanning
events. The totals hold exactly what the counting rule counts: events of assigned users, not
older than the assignment. An event counts when it is stored (if its user is assigned by then)
or when its user is assigned later (events stored early with a timestamp at or after the
assignment are folded in then). Per-user totals make the sum of squared per-user values
incremental: a user's total going from v to v + d adds (v + d)² − v² to the variant's sum.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.sqlalchemy.tables import (
    ANY_TYPE,
    events,
    user_assignments,
    user_event_totals,
    variant_event_totals,
)

_CHUNK = 500  # bound parameters per IN (…): far below every database's limit


@dataclass(frozen=True, slots=True)
class Counted:
    """One event that the counting rule counts, with its user's variant."""

    experiment_id: str
    user_id: str
    variant_id: str
    event_type: str
    value: float | None


@dataclass(frozen=True, slots=True)
class Totals:
    events: int
    users: int
    value_sum: float
    value_sum_squares: float


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def plan(
    counted: Iterable[Counted], existing: dict[tuple[str, str, str], tuple[int, float]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """New per-user rows (absolute) and per-variant increments for a set of counted events."""
    deltas: dict[tuple[str, str, str], list[Any]] = {}
    for c in counted:
        for event_type in (c.event_type, ANY_TYPE):
            delta = deltas.setdefault((c.experiment_id, c.user_id, event_type), [0, 0.0, c.variant_id])
            delta[0] += 1
            delta[1] += c.value or 0.0
    user_rows: list[dict[str, Any]] = []
    per_variant: dict[tuple[str, str, str], list[Any]] = defaultdict(lambda: [0, 0, 0.0, 0.0])
    for (experiment_id, user_id, event_type), (d_events, d_value, variant_id) in deltas.items():
        old_events, old_value = existing.get((experiment_id, user_id, event_type), (0, 0.0))
        new_value = old_value + d_value
        user_rows.append(
            {
                "experiment_id": experiment_id,
                "user_id": user_id,
                "event_type": event_type,
                "events": old_events + d_events,
                "value_sum": new_value,
            }
        )
        totals = per_variant[(experiment_id, variant_id, event_type)]
        totals[0] += d_events
        totals[1] += old_events == 0
        totals[2] += d_value
        totals[3] += new_value * new_value - old_value * old_value
    variant_rows = [
        {
            "experiment_id": experiment_id,
            "variant_id": variant_id,
            "event_type": event_type,
            "events": t[0],
            "users": t[1],
            "value_sum": t[2],
            "value_sum_squares": t[3],
        }
        for (experiment_id, variant_id, event_type), t in per_variant.items()
    ]
    return user_rows, variant_rows


class Aggregates:
    """The SQL side of the totals, for one dialect; every method runs in the caller's transaction."""

    def __init__(self, dialect: str) -> None:
        self._dialect = dialect
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        users = insert(user_event_totals)
        self._upsert_users = users.on_conflict_do_update(
            index_elements=["experiment_id", "user_id", "event_type"],
            set_={"events": users.excluded.events, "value_sum": users.excluded.value_sum},
        )
        v, t = insert(variant_event_totals), variant_event_totals.c
        self._upsert_variants = v.on_conflict_do_update(
            index_elements=["experiment_id", "variant_id", "event_type"],
            set_={
                "events": t.events + v.excluded.events,
                "users": t.users + v.excluded.users,
                "value_sum": t.value_sum + v.excluded.value_sum,
                "value_sum_squares": t.value_sum_squares + v.excluded.value_sum_squares,
            },
        )

    async def lock(self, conn: AsyncConnection, experiment_ids: Iterable[str]) -> None:
        """PostgreSQL: one writer of an experiment's totals at a time (SQLite writers already are).

        Taken by event batches before they read assignments, and by a new assignment before it
        reads its user's earlier events, so an event is counted by exactly one of the two.
        """
        if self._dialect != "postgresql":
            return
        for experiment_id in sorted(set(experiment_ids)):  # one order: no deadlock between batches
            await conn.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:e))"), {"e": experiment_id}
            )

    async def assignments_of(
        self, conn: AsyncConnection, pairs: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[str, int]]:
        """(experiment, user) -> (variant_id, assigned_at) for the pairs that are assigned."""
        by_experiment: dict[str, set[str]] = defaultdict(set)
        for experiment_id, user_id in pairs:
            by_experiment[experiment_id].add(user_id)
        a = user_assignments.c
        found: dict[tuple[str, str], tuple[str, int]] = {}
        for experiment_id, user_ids in by_experiment.items():
            for chunk in _chunks(sorted(user_ids)):
                rows = await conn.execute(
                    select(a.user_id, a.variant_id, a.assigned_at).where(
                        a.experiment_id == experiment_id, a.user_id.in_(chunk)
                    )
                )
                for user_id, variant_id, assigned_at in rows:
                    found[(experiment_id, user_id)] = (variant_id, assigned_at)
        return found

    async def fold(self, conn: AsyncConnection, counted: Sequence[Counted]) -> None:
        if not counted:
            return
        by_experiment: dict[str, set[str]] = defaultdict(set)
        for c in counted:
            by_experiment[c.experiment_id].add(c.user_id)
        u = user_event_totals.c
        existing: dict[tuple[str, str, str], tuple[int, float]] = {}
        for experiment_id, user_ids in by_experiment.items():
            for chunk in _chunks(sorted(user_ids)):
                rows = await conn.execute(
                    select(u.user_id, u.event_type, u.events, u.value_sum).where(
                        u.experiment_id == experiment_id, u.user_id.in_(chunk)
                    )
                )
                for user_id, event_type, n, value_sum in rows:
                    existing[(experiment_id, user_id, event_type)] = (n, value_sum)
        user_rows, variant_rows = plan(counted, existing)
        await conn.execute(self._upsert_users, user_rows)
        await conn.execute(self._upsert_variants, variant_rows)

    async def fold_earlier_events(
        self, conn: AsyncConnection, experiment_id: str, user_id: str, variant_id: str, assigned_at: int
    ) -> None:
        """A new assignment counts the user's events already stored that are not older than it."""
        e = events.c
        rows = await conn.execute(
            select(e.event_type, e.value).where(
                e.experiment_id == experiment_id, e.user_id == user_id, e.timestamp >= assigned_at
            )
        )
        await self.fold(
            conn, [Counted(experiment_id, user_id, variant_id, t, value) for t, value in rows]
        )

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
    async def rebuild(conn: AsyncConnection) -> None:
        """Recompute every total from raw events, in SQL: the repair for any doubt."""
        await conn.execute(delete(variant_event_totals))
        await conn.execute(delete(user_event_totals))
        for statement in REBUILD_SQL:
            await conn.execute(text(statement))


# Plain SQL that SQLite and PostgreSQL both run; migration 0002 backfills with the same text.
REBUILD_SQL = (
    """
    INSERT INTO user_event_totals (experiment_id, user_id, event_type, events, value_sum)
    SELECT e.experiment_id, e.user_id, e.event_type, COUNT(*), SUM(COALESCE(e.value, 0.0))
    FROM events e JOIN user_assignments a
      ON a.experiment_id = e.experiment_id AND a.user_id = e.user_id
    WHERE e.timestamp >= a.assigned_at
    GROUP BY e.experiment_id, e.user_id, e.event_type
    """,
    """
    INSERT INTO user_event_totals (experiment_id, user_id, event_type, events, value_sum)
    SELECT e.experiment_id, e.user_id, '', COUNT(*), SUM(COALESCE(e.value, 0.0))
    FROM events e JOIN user_assignments a
      ON a.experiment_id = e.experiment_id AND a.user_id = e.user_id
    WHERE e.timestamp >= a.assigned_at
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
)
