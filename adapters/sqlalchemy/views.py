"""The read side of the SQL store: per-variant aggregates for results, from the folded totals
plus the tail not yet folded, in one snapshot, so that every answer is exact.

A query without a date range reads a few rows per variant. A range is cut into whole UTC days,
whole hours at its edges and the partial hours at its very ends: days and hours read per-user
rows of the period totals, only the partial hours read raw events. Each source gives rows of
(variant, user, event type, events, value sum), and one GROUP BY makes the figures of them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.sqlalchemy.counting import counted
from adapters.sqlalchemy.database import Database
from adapters.sqlalchemy.dialects import Dialect
from adapters.sqlalchemy.folding import (
    MICROS_PER_DAY,
    MICROS_PER_HOUR,
    counted_pairs,
    tail_window,
    user_deltas,
    variant_increments,
)
from adapters.sqlalchemy.tables import ANY_TYPE
from domain.event import to_micros
from domain.experiment import Experiment
from domain.results import EventTotals, ResultQuery, VariantAggregate

# Open ends of a range, as whole days, far outside years 1 to 9999.
OPEN_START = -(2**62 // MICROS_PER_DAY) * MICROS_PER_DAY
OPEN_END = (2**62 // MICROS_PER_DAY) * MICROS_PER_DAY


@dataclass(frozen=True)
class Periods:
    """[start, end) cut into whole days, whole hours and raw edges, together exactly once."""

    days: tuple[int, int] | None = None  # [first, last + 1) in days since the epoch
    hours: list[tuple[int, int]] = field(default_factory=list)  # [first, last + 1) in hours
    raw: list[tuple[int, int]] = field(default_factory=list)  # [start, end) in microseconds


def periods(start: int, end: int) -> Periods:
    """The cheapest sources that cover the microseconds [start, end) exactly."""
    if start >= end:
        return Periods()
    h1, h2 = -(-start // MICROS_PER_HOUR), end // MICROS_PER_HOUR
    if h1 >= h2:
        return Periods(raw=[(start, end)])
    raw = [(a, b) for a, b in ((start, h1 * MICROS_PER_HOUR), (h2 * MICROS_PER_HOUR, end)) if a < b]
    d1, d2 = -(-start // MICROS_PER_DAY), end // MICROS_PER_DAY
    if d1 >= d2:
        return Periods(hours=[(h1, h2)], raw=raw)
    hours = [(a, b) for a, b in ((h1, d1 * 24), (d2 * 24, h2)) if a < b]
    return Periods(days=(d1, d2), hours=hours, raw=raw)


class ResultsView:
    def __init__(self, database: Database, timeout: float | None = None) -> None:
        """``timeout``: seconds a results read may run before the database stops it."""
        self._db = database
        self._timeout = timeout
        d = database.dialect
        self._d = d
        # Without a range: users, folded totals and the tail's increments in one statement (one
        # round trip, where three cost a results request three waits on a busy event loop).
        # kind "u": (variant, users); kind "t": (variant, type, events, users, sum, sum of squares).
        users = (
            "SELECT variant_id, users FROM variant_users WHERE experiment_id = :x"
            f" UNION ALL SELECT a.variant_id, COUNT(*) FROM {d.by_key('user_assignments', 'a')}"
            f" WHERE {d.after(d.assignment_key, 'ah')} AND {d.only('a.experiment_id')} = :x"
            " GROUP BY a.variant_id"
        )
        self._users = text(users)
        self._without_range = text(
            f"WITH counted AS ({counted_pairs(d, tail_window(d), experiment=True)}),"
            f" deltas AS ({user_deltas('counted')}),"
            f" increments AS ({variant_increments(d, 'deltas')}),"
            f" users AS ({users})"
            " SELECT 'u', variant_id, NULL, users, NULL, NULL, NULL FROM users"
            " UNION ALL SELECT 't', variant_id, event_type, events, users, value_sum, value_sum_squares"
            " FROM variant_event_totals WHERE experiment_id = :x"
            " UNION ALL SELECT 't', variant_id, event_type, events, users, value_sum, value_sum_squares"
            " FROM increments"
        )
        self._users_until = text(
            "SELECT variant_id, COUNT(*) FROM user_assignments"
            " WHERE experiment_id = :x AND assigned_at <= :end GROUP BY variant_id"
        )

    async def variant_aggregates(
        self, experiment: Experiment, query: ResultQuery
    ) -> Mapping[str, VariantAggregate]:
        async with self._db.snapshot(self._timeout) as conn:
            eh, ah = (await conn.execute(text("SELECT events_horizon, assignments_horizon FROM fold_state"))).one()
            params = {"x": experiment.id, "eh": eh, "ah": ah}
            if query.start is None and query.end is None:
                return await self._from_totals(conn, experiment, query, params)
            return await self._over_range(conn, experiment, query, params)

    async def _from_totals(
        self, conn: AsyncConnection, experiment: Experiment, query: ResultQuery, params: dict[str, Any]
    ) -> Mapping[str, VariantAggregate]:
        """No date range: the per-variant totals plus the tail's increments to them."""
        users: dict[str, int] = defaultdict(int)
        totals: dict[str, dict[str, EventTotals]] = defaultdict(lambda: defaultdict(EventTotals))
        for kind, variant_id, event_type, n, u, s, s2 in await conn.execute(self._without_range, params):
            if kind == "u":
                users[variant_id] += int(n)
            else:
                totals[variant_id][event_type] += EventTotals(int(n), int(u), float(s), float(s2))
        shown_type = ANY_TYPE if query.event_type is None else query.event_type
        primary_type = ANY_TYPE if query.primary_event_type is None else query.primary_event_type
        result = {}
        for v in experiment.variants:
            by_type = totals.get(v.id, {})
            counts = {
                t: x.events
                for t, x in by_type.items()
                if t != ANY_TYPE and query.event_type in (None, t) and x.events
            }
            primary = by_type.get(primary_type, EventTotals())
            shown = by_type.get(shown_type, EventTotals()).users
            result[v.id] = VariantAggregate(v.id, users[v.id], counts, shown, primary)
        return result

    async def _over_range(
        self, conn: AsyncConnection, experiment: Experiment, query: ResultQuery, params: dict[str, Any]
    ) -> Mapping[str, VariantAggregate]:
        start = OPEN_START if query.start is None else to_micros(query.start)
        end = OPEN_END if query.end is None else to_micros(query.end) + 1
        sql, more = _range_sql(self._d, periods(start, end), query)
        params = {**params, **more, "s": start, "t": end}
        if query.end is None:
            users_q, users_params = self._users, params
        else:
            users_q, users_params = self._users_until, {"x": experiment.id, "end": end - 1}
        users: dict[str, int] = defaultdict(int)
        for variant_id, n in await conn.execute(users_q, users_params):
            users[variant_id] += int(n)
        figures = (await conn.execute(text(sql), params)).all()
        by_type: dict[str, dict[str, int]] = defaultdict(dict)
        uniques: dict[str, int] = {}
        primaries: dict[str, EventTotals] = {}
        for kind, variant_id, event_type, count, n, s, s2 in figures:
            if kind == "type":
                by_type[variant_id][event_type] = int(count)
            elif kind == "uniq":
                uniques[variant_id] = int(count)
            else:
                primaries[variant_id] = EventTotals(int(n or 0), int(count), float(s or 0.0), float(s2 or 0.0))
        return {
            v.id: VariantAggregate(
                v.id, users[v.id], by_type[v.id], uniques.get(v.id, 0), primaries.get(v.id, EventTotals())
            )
            for v in experiment.variants
        }


def _range_sql(d: Dialect, cut: Periods, query: ResultQuery) -> tuple[str, dict[str, Any]]:
    """One statement: every source of (v, u, t, n, s) rows, then the figures over them."""
    params: dict[str, Any] = {}
    types = ""
    if query.event_type is not None and query.primary_event_type is not None:
        # Only these two types show: read no rows of the others.
        params.update(t1=query.event_type, t2=query.primary_event_type)
        types = " AND {} IN (:t1, :t2)"
    sources = []
    if cut.days is not None:
        params.update(d1=cut.days[0], d2=cut.days[1])
        sources.append(
            "SELECT variant_id, user_id, event_type, events, value_sum FROM user_day_totals"
            " WHERE experiment_id = :x AND day >= :d1 AND day < :d2" + types.format("event_type")
        )
    for i, (h1, h2) in enumerate(cut.hours):
        params.update({f"h{i}a": h1, f"h{i}b": h2})
        sources.append(
            "SELECT variant_id, user_id, event_type, events, value_sum FROM user_hour_totals"
            f" WHERE experiment_id = :x AND hour >= :h{i}a AND hour < :h{i}b" + types.format("event_type")
        )
    for i, (r1, r2) in enumerate(cut.raw):
        # Folded events with folded assignments only: the pairs with a new one are the tail's.
        params.update({f"r{i}a": r1, f"r{i}b": r2})
        sources.append(
            "SELECT a.variant_id, e.user_id, e.event_type, 1, COALESCE(e.value, 0.0)"
            f" FROM events e {d.assignment_of('e', 'a')}"
            f" WHERE e.experiment_id = :x AND e.timestamp >= :r{i}a AND e.timestamp < :r{i}b"
            f" AND {d.upto(d.event_key, 'eh')} AND {d.upto(d.assignment_key, 'ah')}"
            f" AND {counted('e', 'a.assigned_at')}" + types.format("e.event_type")
        )
    sources.append(
        f"SELECT variant_id, user_id, event_type, 1, v FROM ({counted_pairs(d, tail_window(d), experiment=True)}) p"
        " WHERE p.ts >= :s AND p.ts < :t" + types.format("p.event_type")
    )
    shown = "" if query.event_type is None else " WHERE t = :shown"
    primary = "" if query.primary_event_type is None else " WHERE t = :primary"
    params.update(shown=query.event_type, primary=query.primary_event_type)
    union = " UNION ALL ".join(sources)
    # Counts per type add up over the sources as they are; only unique users and the
    # per-user value totals need the rows of one user together.
    sql = f"""
    WITH src (v, u, t, n, s) AS ({union})
    SELECT 'type', v, t, SUM(n), CAST(NULL AS BIGINT), CAST(NULL AS DOUBLE PRECISION),
           CAST(NULL AS DOUBLE PRECISION)
    FROM src{shown} GROUP BY v, t
    UNION ALL
    SELECT 'uniq', v, CAST(NULL AS VARCHAR(100)), COUNT(DISTINCT u), CAST(NULL AS BIGINT),
           CAST(NULL AS DOUBLE PRECISION), CAST(NULL AS DOUBLE PRECISION)
    FROM src{shown} GROUP BY v
    UNION ALL
    SELECT 'prim', v, CAST(NULL AS VARCHAR(100)), COUNT(*), SUM(n), SUM(s), SUM(s * s)
    FROM (SELECT v, SUM(n) AS n, SUM(s) AS s FROM src{primary} GROUP BY v, u) pu GROUP BY v
    """
    return sql, params
