"""The read side of the SQL store: per-variant aggregates for results, from the folded totals
plus the tail not yet folded, in one snapshot, so that every answer is exact.

A query without a date range reads a few rows per variant. A range is cut into whole UTC days,
whole hours at its edges and the partial hours at its very ends: days and hours read per-user
rows of the period totals, only the partial hours read raw events. Each source gives rows of
(variant, user, event type, events, value sum), and one GROUP BY makes the figures of them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.sqlalchemy.counting import counted, in_pre_period
from adapters.sqlalchemy.database import Database
from adapters.sqlalchemy.dialects import Dialect
from adapters.sqlalchemy.folding import (
    MICROS_PER_DAY,
    MICROS_PER_HOUR,
    counted_pairs,
    covariate_increments,
    floor_div,
    pair_increments,
    slice_users_of,
    tail_window,
    user_deltas,
    variant_increments,
)
from adapters.sqlalchemy.tables import ANY_TYPE
from domain.breakdown import BreakdownTotals, SliceCell
from domain.errors import CovariatesFilling
from domain.event import to_micros
from domain.experiment import Experiment
from domain.results import ResultQuery
from domain.series import Period, SeriesCell, SeriesTotals
from domain.totals import CovariateTotals, CrossTotals, EventTotals, VariantAggregate

# The horizons, and whether the experiment's CUPED totals are filled (NULL: not registered),
# in one round trip.
_HORIZONS = text(
    "SELECT events_horizon, assignments_horizon,"
    " (SELECT filled FROM covariate_experiments WHERE experiment_id = :x) FROM fold_state"
)

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
        # The experiment's counted pairs past the stored horizons: what every read adds up.
        self._tail = counted_pairs(d, tail_window(d), experiment=True)
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
            f"WITH counted AS ({self._tail}),"
            f" deltas AS ({user_deltas('counted')}),"
            f" increments AS ({variant_increments(d, 'deltas')}),"
            f" users AS ({users})"
            " SELECT 'u', variant_id, NULL, users, NULL, NULL, NULL, NULL FROM users"
            " UNION ALL SELECT 't', variant_id, event_type, events, users, value_sum, value_sum_squares,"
            " events_sum_squares FROM variant_event_totals WHERE experiment_id = :x"
            " UNION ALL SELECT 't', variant_id, event_type, events, users, value_sum, value_sum_squares,"
            " events_sum_squares FROM increments"
        )
        # The ratio pairs' cross sums: folded, plus the tail's increments to them, for the
        # experiment's filled pairs (kind "x"); and which pairs are filled (kind "f").
        self._pairs = text(
            f"WITH counted AS ({self._tail}),"
            f" deltas AS ({user_deltas('counted')}),"
            f" increments AS ({pair_increments(d, 'deltas', ' AND p.filled = true')})"
            " SELECT 'x', variant_id, numerator_type, denominator_type, events_products, value_products"
            " FROM variant_pair_totals WHERE experiment_id = :x"
            " UNION ALL SELECT 'x', variant_id, numerator_type, denominator_type, events_products, value_products"
            " FROM increments"
            " UNION ALL SELECT 'f', NULL, numerator_type, denominator_type, NULL, NULL"
            " FROM metric_pairs WHERE experiment_id = :x AND filled = true"
        )
        # Per user, the folded totals of the ratio metrics' event types, and the tail's pairs:
        # the rows a ratio's cross sums group (_cross_sql), for a pair no fold has filled yet.
        self._per_user_totals = (
            "SELECT a.variant_id, ut.user_id, ut.event_type, ut.events, ut.value_sum"
            " FROM user_event_totals ut JOIN user_assignments a"
            " ON a.experiment_id = ut.experiment_id AND a.user_id = ut.user_id"
            " WHERE ut.experiment_id = :x AND ut.event_type IN ({types})"
            " UNION ALL SELECT variant_id, user_id, event_type, 1, v"
            f" FROM ({self._tail}) p WHERE p.event_type IN ({{types}})"
        )
        self._tail_pre = tail_pre_period(d)
        # CUPED's sums without a range, for a primary event type (False) or every type (True):
        # the folded per-variant sums, plus what the tail's pre-period and counted events add
        # to them, given the totals of the tail's users (one lookup by key each).
        self._covariates_sql: dict[bool, Any] = {}
        for every_type in (False, True):
            of_type = "" if every_type else " AND q.event_type = :pt"
            ids = "CAST(:x AS VARCHAR(32)), q.user_id, q.variant_id, CAST(:pt AS VARCHAR(100))"
            named = (
                "CAST(:x AS VARCHAR(32)) AS experiment_id, q.user_id AS user_id,"
                " q.variant_id AS variant_id, CAST(:pt AS VARCHAR(100)) AS event_type"
            )
            tail_rows = (
                f"SELECT {named}, 1 AS xn, q.v AS xs, 0 AS yn, 0.0 AS ys"
                f" FROM ({self._tail_pre}) q WHERE 1 = 1{of_type}"
                f" UNION ALL SELECT {ids}, 0, 0.0, 1, q.v FROM ({self._tail}) q WHERE 1 = 1{of_type}"
            )
            columns = "variant_id, users, users_counted, value_sum, value_sum_squares, value_products"
            self._covariates_sql[every_type] = text(
                f"SELECT {columns} FROM variant_covariate_totals WHERE experiment_id = :x AND event_type = :pt"
                f" UNION ALL SELECT {columns} FROM ({covariate_increments(d, tail_rows)}) i"
            )
        self._users_until = text(
            "SELECT variant_id, COUNT(*) FROM user_assignments"
            " WHERE experiment_id = :x AND assigned_at <= :end GROUP BY variant_id"
        )
        self._series = {period: _series_sql(self._tail, period) for period in Period}
        # A breakdown's slices of one dimension (:dim): users, folded and the tail's (kind "u");
        # totals of one event type (:pt), folded and the tail's increments (kind "t").
        new_users = slice_users_of(
            d,
            d.by_key("user_assignments", "a"),
            f"{d.after(d.assignment_key, 'ah')} AND {d.only('a.experiment_id')} = :x",
            one=True,
        )
        totals = "events, users, value_sum, value_sum_squares, events_sum_squares"
        self._slices = text(
            f"WITH counted AS ({self._tail}),"
            f" deltas AS ({user_deltas('counted')}),"
            f" increments AS ({variant_increments(d, 'deltas', slices='one')})"
            # The typed rows first: PostgreSQL types two NULLs in a row as text.
            f" SELECT 't', value, variant_id, {totals} FROM slice_event_totals"
            " WHERE experiment_id = :x AND dimension = :dim AND event_type = :pt"
            f" UNION ALL SELECT 't', value, variant_id, {totals} FROM increments WHERE event_type = :pt"
            " UNION ALL SELECT 'u', value, variant_id, users, NULL, NULL, NULL, NULL FROM slice_users"
            " WHERE experiment_id = :x AND dimension = :dim"
            f" UNION ALL SELECT 'u', value, variant_id, users, NULL, NULL, NULL, NULL FROM ({new_users}) n"
        )

    async def variant_aggregates(
        self, experiment: Experiment, query: ResultQuery
    ) -> Mapping[str, VariantAggregate]:
        async with self._db.snapshot(self._timeout) as conn:
            eh, ah, filled = (await conn.execute(_HORIZONS, {"x": experiment.id})).one()
            if query.covariates and not filled:
                raise CovariatesFilling(experiment.id)  # registered since the last fold
            params = {"x": experiment.id, "eh": eh, "ah": ah}
            if query.start is None and query.end is None:
                return await self._from_totals(conn, experiment, query, params)
            return await self._over_range(conn, experiment, query, params)

    async def series_totals(self, experiment: Experiment, event_type: str, period: Period) -> SeriesTotals:
        """Users per (variant, period assigned); per (variant, period assigned, period of the
        events) the cells of domain/series.py: the folded per-user period totals and the tail,
        each user's cumulative figures by a window over their periods."""
        async with self._db.snapshot(self._timeout) as conn:
            eh, ah, _ = (await conn.execute(_HORIZONS, {"x": experiment.id})).one()
            params = {"x": experiment.id, "eh": eh, "ah": ah, "pt": event_type}
            users: dict[tuple[str, int], int] = {}
            cells: dict[tuple[str, int, int], SeriesCell] = {}
            for kind, v, a, p, n, conv, s, s2 in await conn.execute(self._series[period], params):
                if kind == "u":
                    users[v, int(a)] = int(n)
                else:
                    cells[v, int(a), int(p)] = SeriesCell(int(conv), int(n), float(s), float(s2))
        return SeriesTotals(users, cells)

    async def breakdown_totals(self, experiment: Experiment, dimension: str, event_type: str | None) -> BreakdownTotals:
        """The experiment's users and ``event_type`` totals (None: every type) per variant, and
        the same per value of ``dimension``: folded plus the tail's, in one snapshot, so that
        the slice "unknown" (the experiment's less its known slices') is exact too."""
        pt = ANY_TYPE if event_type is None else event_type
        async with self._db.snapshot(self._timeout) as conn:
            eh, ah, _ = (await conn.execute(_HORIZONS, {"x": experiment.id})).one()
            params = {"x": experiment.id, "eh": eh, "ah": ah}
            users, totals = await self._variant_totals(conn, params)
            slice_users: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
            slice_totals: dict[str, dict[str, EventTotals]] = defaultdict(lambda: defaultdict(EventTotals))
            for kind, value, variant_id, n, u, s, s2, n2 in await conn.execute(
                self._slices, {**params, "dim": dimension, "pt": pt}
            ):
                if kind == "u":
                    slice_users[value][variant_id] += int(n)
                else:
                    slice_totals[value][variant_id] += EventTotals(int(n), int(u), float(s), float(s2), int(n2))
        return BreakdownTotals(
            {v: SliceCell(users[v], totals[v].get(pt, EventTotals())) for v in users.keys() | totals.keys()},
            {
                value: {
                    v: SliceCell(slice_users[value].get(v, 0), slice_totals[value].get(v, EventTotals()))
                    for v in slice_users[value].keys() | slice_totals[value].keys()
                }
                for value in slice_users.keys() | slice_totals.keys()
            },
        )

    async def _variant_totals(
        self, conn: AsyncConnection, params: dict[str, Any]
    ) -> tuple[dict[str, int], dict[str, dict[str, EventTotals]]]:
        """Per variant: its users, and its totals per event type (and "" for every type),
        folded plus the tail's increments."""
        users: dict[str, int] = defaultdict(int)
        totals: dict[str, dict[str, EventTotals]] = defaultdict(lambda: defaultdict(EventTotals))
        for kind, variant_id, event_type, n, u, s, s2, n2 in await conn.execute(self._without_range, params):
            if kind == "u":
                users[variant_id] += int(n)
            else:
                totals[variant_id][event_type] += EventTotals(int(n), int(u), float(s), float(s2), int(n2))
        return users, totals

    async def _from_totals(
        self, conn: AsyncConnection, experiment: Experiment, query: ResultQuery, params: dict[str, Any]
    ) -> Mapping[str, VariantAggregate]:
        """No date range: the per-variant totals plus the tail's increments to them."""
        users, totals = await self._variant_totals(conn, params)
        cross: dict[str, dict[tuple[str, str], CrossTotals]] = defaultdict(lambda: defaultdict(CrossTotals))
        if query.pairs:
            filled: set[tuple[str, str]] = set()
            for kind, variant_id, a, b, products, value_products in await conn.execute(self._pairs, params):
                if kind == "f":
                    filled.add((a, b))
                elif (a, b) in query.pairs:
                    cross[variant_id][a, b] += CrossTotals(int(products), float(value_products))
            if unfilled := tuple(p for p in query.pairs if p not in filled):
                # Declared since the last fold: summed over the users' totals, this once.
                for variant_id, sums in (await self._cross_per_user(conn, unfilled, params)).items():
                    cross[variant_id].update(sums)
        per_user = await self._per_user(conn, query.capped_types, params) if query.capped_types else {}
        covariates = await self._covariates(conn, query, params) if query.covariates else {}
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
            metric_totals = {t: by_type.get(t, EventTotals()) for t in query.metric_types}
            result[v.id] = VariantAggregate(
                v.id, users[v.id], counts, shown, primary, metric_totals, dict(cross.get(v.id, {})),
                _users_of(per_user.get(v.id, {}), query.capped_types),
                covariates.get(v.id, CovariateTotals()) if query.covariates else None,
            )
        return result

    async def _covariates(
        self, conn: AsyncConnection, query: ResultQuery, params: dict[str, Any]
    ) -> dict[str, CovariateTotals]:
        """CUPED's sums per variant, over the users with a pre-period event of the primary type:
        the folder's, plus the tail's increments. O(variants) and the tail's users."""
        primary = query.primary_event_type
        sql = self._covariates_sql[primary is None]
        found: dict[str, CovariateTotals] = defaultdict(CovariateTotals)
        pt = ANY_TYPE if primary is None else primary
        for variant_id, users, counted_users, sx, sxx, sxy in await conn.execute(sql, {**params, "pt": pt}):
            found[variant_id] += CovariateTotals(
                int(users or 0), float(sx or 0.0), float(sxx or 0.0), int(counted_users or 0), float(sxy or 0.0)
            )
        return found

    def _per_user_source(self, types: Sequence[str]) -> tuple[str, dict[str, str]]:
        """Rows (variant, user, type, events, value sum) of ``types``: the users' folded totals
        and the tail's pairs; and the parameters that name the types."""
        names = {f"m{i}": t for i, t in enumerate(types)}
        return self._per_user_totals.format(types=", ".join(f":{k}" for k in names)), names

    async def _per_user(
        self, conn: AsyncConnection, types: tuple[str, ...], params: dict[str, Any]
    ) -> dict[str, dict[str, list[tuple[int, float]]]]:
        """Every user's totals of ``types`` (capped metrics': domain/capping.py), folded plus
        the tail's: one row per user with a counted event of a type."""
        source, names = self._per_user_source(types)
        sql = f"WITH src (v, u, t, n, s) AS ({source}) SELECT v, t, SUM(n), SUM(s) FROM src GROUP BY v, u, t"
        found: dict[str, dict[str, list[tuple[int, float]]]] = defaultdict(lambda: defaultdict(list))
        for variant_id, event_type, n, total in await conn.execute(text(sql), {**params, **names}):
            found[variant_id][event_type].append((int(n), float(total)))
        return found

    async def _cross_per_user(
        self, conn: AsyncConnection, pairs: tuple[tuple[str, str], ...], params: dict[str, Any]
    ) -> dict[str, dict[tuple[str, str], CrossTotals]]:
        types = sorted({t for pair in pairs for t in pair})
        source, names = self._per_user_source(types)
        cross_sql, more = _cross_sql("SELECT v, u, t, n, s FROM src", pairs)
        sql = f"WITH src (v, u, t, n, s) AS ({source}) {cross_sql}"
        found: dict[str, dict[tuple[str, str], CrossTotals]] = defaultdict(dict)
        for _, variant_id, _, i, _, xs, ys, _ in await conn.execute(text(sql), {**params, **names, **more}):
            found[variant_id][pairs[int(i)]] = CrossTotals(float(xs or 0), float(ys or 0))
        return found

    async def _over_range(
        self, conn: AsyncConnection, experiment: Experiment, query: ResultQuery, params: dict[str, Any]
    ) -> Mapping[str, VariantAggregate]:
        start = OPEN_START if query.start is None else to_micros(query.start)
        end = OPEN_END if query.end is None else to_micros(query.end) + 1
        sql, more = _range_sql(self._d, periods(start, end), query, self._tail_pre)
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
        metric_totals: dict[str, dict[str, EventTotals]] = defaultdict(dict)
        cross: dict[str, dict[tuple[str, str], CrossTotals]] = defaultdict(dict)
        per_user: dict[str, dict[str, list[tuple[int, float]]]] = defaultdict(lambda: defaultdict(list))
        covariates: dict[str, CovariateTotals] = defaultdict(CovariateTotals)
        for kind, variant_id, event_type, count, n, s, s2, n2 in figures:
            if kind in ("cov", "cxy"):
                covariates[variant_id] += _covariate_row(kind, count, n, s, s2)
            elif kind == "user":
                per_user[variant_id][event_type].append((int(count), float(s or 0.0)))
            elif kind == "type":
                by_type[variant_id][event_type] = int(count)
            elif kind == "uniq":
                uniques[variant_id] = int(count)
            elif kind == "prim":
                primaries[variant_id] = EventTotals(int(n or 0), int(count), float(s or 0.0), float(s2 or 0.0))
            elif kind == "metric":
                metric_totals[variant_id][event_type] = EventTotals(
                    int(n or 0), int(count), float(s or 0.0), float(s2 or 0.0), int(n2 or 0)
                )
            else:
                cross[variant_id][query.pairs[int(count)]] = CrossTotals(float(s or 0), float(s2 or 0))
        return {
            v.id: VariantAggregate(
                v.id,
                users[v.id],
                by_type[v.id],
                uniques.get(v.id, 0),
                primaries.get(v.id, EventTotals()),
                {t: metric_totals[v.id].get(t, EventTotals()) for t in query.metric_types},
                cross.get(v.id, {}),
                _users_of(per_user.get(v.id, {}), query.capped_types),
                covariates[v.id] if query.covariates else None,
            )
            for v in experiment.variants
        }


def tail_pre_period(d: Dialect) -> str:
    """The pre-period's events (``in_pre_period``) not yet folded into user_pre_totals, of the
    experiment :x: events past the stored horizon :eh with their user's assignment, and the
    prior events (kept by user) of assignments past :ah. Columns: variant_id, user_id,
    event_type, since (the assignment's time), v."""
    return f"""
    SELECT a.variant_id AS variant_id, e.user_id AS user_id, e.event_type AS event_type,
           a.assigned_at AS since, COALESCE(e.value, 0.0) AS v
    FROM events e {d.assignment_of("e", "a")}
    WHERE {d.after(d.event_key, "eh")} AND {d.only("e.experiment_id")} = :x AND {in_pre_period("e", "a.assigned_at")}
    UNION ALL
    SELECT a.variant_id, p.user_id, p.event_type, a.assigned_at, p.value
    FROM {d.by_key("user_assignments", "a")} {d.prior_events_of("a", "p")}
    WHERE {d.after(d.assignment_key, "ah")} AND {d.only("a.experiment_id")} = :x
      AND {in_pre_period("p", "a.assigned_at")}
    """


def covariate_ctes(tail_pre: str, of_type: str, ys: str, until: str) -> str:
    """The common table expressions ``_COVARIATE_FIGURES`` reads: ``xs``, each user's
    pre-period total (v, u, n, s), and ``ys``, each user's counted total (u, n, s). ``ys``: the
    counted rows (u, n, s); ``of_type``: the tail's condition on the primary type (``q``);
    ``until``: a condition on the assignment's time ``{since}`` (users assigned by a range's end)."""
    return f"""
    xr (v, u, n, s) AS (
      SELECT a.variant_id, p.user_id, p.events, p.value_sum FROM user_pre_totals p
      JOIN user_assignments a ON a.experiment_id = p.experiment_id AND a.user_id = p.user_id
      WHERE p.experiment_id = :x AND p.event_type = :pt{until.format(since="a.assigned_at")}
      UNION ALL SELECT q.variant_id, q.user_id, 1, q.v FROM ({tail_pre}) q
      WHERE 1 = 1{of_type}{until.format(since="q.since")}),
    xs AS (SELECT v, u, SUM(n) AS n, SUM(s) AS s FROM xr GROUP BY v, u),
    yr (u, n, s) AS ({ys}),
    ys AS (SELECT u, SUM(n) AS n, SUM(s) AS s FROM yr GROUP BY u)"""


# CUPED's sums per variant, as rows shaped as the range figures are: ('cov', v, NULL, users,
# both, Σx, Σx², NULL) and ('cxy', v, NULL, NULL, NULL, Σxy, NULL, NULL).
_COVARIATE_FIGURES = """
    SELECT 'cov', xs.v, CAST(NULL AS VARCHAR(100)), COUNT(*), SUM(CASE WHEN ys.n > 0 THEN 1 ELSE 0 END),
           SUM(xs.s), SUM(xs.s * xs.s), CAST(NULL AS BIGINT)
    FROM xs LEFT JOIN ys ON ys.u = xs.u GROUP BY xs.v
    UNION ALL
    SELECT 'cxy', xs.v, CAST(NULL AS VARCHAR(100)), CAST(NULL AS BIGINT), CAST(NULL AS BIGINT),
           SUM(xs.s * COALESCE(ys.s, 0.0)), CAST(NULL AS DOUBLE PRECISION), CAST(NULL AS BIGINT)
    FROM xs LEFT JOIN ys ON ys.u = xs.u GROUP BY xs.v"""


def _series_sql(tail: str, period: Period) -> Any:
    """Kind "u": users per variant and period of assignment. Kind "c": per variant, period of
    assignment and period of events, the users whose first counted event of the type is in
    it, the events, the value and what it adds to Σ (cumulative value)² over its users:
    s × (2 × cumulative − s) = cumulative² − (cumulative − s)². A user's rows (the folded
    period totals, the tail's events) are read in order of period by one window, without
    grouping them first: two rows of one period telescope as one would, and only the user's
    first row has a cumulative count equal to its own."""
    table, column = ("user_day_totals", "day") if period is Period.DAY else ("user_hour_totals", "hour")
    unit = period.micros
    assigned = floor_div("a.assigned_at", unit)
    return text(f"""
    WITH src (v, u, p, n, s) AS (
        SELECT variant_id, user_id, {column}, events, value_sum FROM {table}
        WHERE experiment_id = :x AND event_type = :pt
        UNION ALL
        SELECT q.variant_id, q.user_id, {floor_div("q.ts", unit)}, 1, q.v FROM ({tail}) q WHERE q.event_type = :pt
    ),
    cum (v, u, p, n, s, cn, cs) AS (
        SELECT v, u, p, n, s,
               SUM(n) OVER (PARTITION BY u ORDER BY p ROWS UNBOUNDED PRECEDING),
               SUM(s) OVER (PARTITION BY u ORDER BY p ROWS UNBOUNDED PRECEDING)
        FROM src
    )
    SELECT 'u', a.variant_id, {assigned}, CAST(NULL AS BIGINT), COUNT(*), CAST(NULL AS BIGINT),
           CAST(NULL AS DOUBLE PRECISION), CAST(NULL AS DOUBLE PRECISION)
    FROM user_assignments a WHERE a.experiment_id = :x GROUP BY a.variant_id, {assigned}
    UNION ALL
    SELECT 'c', c.v, {assigned}, c.p, SUM(c.n), SUM(CASE WHEN c.cn = c.n THEN 1 ELSE 0 END), SUM(c.s),
           SUM(c.s * (2 * c.cs - c.s))
    FROM cum c JOIN user_assignments a ON a.experiment_id = :x AND a.user_id = c.u
    GROUP BY c.v, {assigned}, c.p
    """)


def _covariate_row(kind: str, users: Any, both: Any, s: Any, s2: Any) -> CovariateTotals:
    if kind == "cxy":
        return CovariateTotals(value_products=float(s or 0.0))
    return CovariateTotals(int(users or 0), float(s or 0.0), float(s2 or 0.0), int(both or 0))


def _users_of(
    found: Mapping[str, list[tuple[int, float]]], types: tuple[str, ...]
) -> dict[str, tuple[tuple[int, float], ...]]:
    return {t: tuple(found.get(t, ())) for t in types}


def _range_sql(d: Dialect, cut: Periods, query: ResultQuery, tail_pre: str) -> tuple[str, dict[str, Any]]:
    """One statement: every source of (v, u, t, n, s) rows, then the figures over them."""
    params: dict[str, Any] = {}
    types = ""
    if query.event_type is not None and query.primary_event_type is not None:
        # Only these types show: read no rows of the others.
        wanted = sorted({query.event_type, query.primary_event_type, *query.metric_types})
        params.update({f"t{i}": t for i, t in enumerate(wanted)})
        types = " AND {} IN (" + ", ".join(f":t{i}" for i in range(len(wanted))) + ")"
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
    metrics = ""
    if query.metric_types:
        params.update({f"mt{i}": t for i, t in enumerate(query.metric_types)})
        listed = ", ".join(f":mt{i}" for i in range(len(query.metric_types)))
        metrics = f"""
    UNION ALL
    SELECT 'metric', v, t, COUNT(*), SUM(n), SUM(s), SUM(s * s), SUM(n * n)
    FROM (SELECT v, u, t, SUM(n) AS n, SUM(s) AS s FROM src WHERE t IN ({listed}) GROUP BY v, u, t) mu
    GROUP BY v, t"""
    if query.pairs:
        cross, more = _cross_sql("SELECT v, u, t, n, s FROM src", query.pairs)
        params.update(more)
        metrics += f"\n    UNION ALL {cross}"
    if query.capped_types:
        # Capped metrics need every user's figures (domain/capping.py): a row per user and type.
        params.update({f"ct{i}": t for i, t in enumerate(query.capped_types)})
        listed = ", ".join(f":ct{i}" for i in range(len(query.capped_types)))
        metrics += f"""
    UNION ALL
    SELECT 'user', v, t, SUM(n), CAST(NULL AS BIGINT), SUM(s), CAST(NULL AS DOUBLE PRECISION),
           CAST(NULL AS BIGINT)
    FROM src WHERE t IN ({listed}) GROUP BY v, u, t"""
    covariates = ""
    if query.covariates:
        params["pt"] = ANY_TYPE if query.primary_event_type is None else query.primary_event_type
        of_type = "" if query.primary_event_type is None else " AND q.event_type = :pt"
        until = ""
        if query.end is not None:
            params["uend"] = to_micros(query.end)
            until = " AND {since} <= :uend"
        ys = f"SELECT u, n, s FROM src{primary}"
        covariates = f", {covariate_ctes(tail_pre, of_type, ys, until)}"
        metrics += f"\n    UNION ALL {_COVARIATE_FIGURES}"
    sql = f"""
    WITH src (v, u, t, n, s) AS ({union}){covariates}
    SELECT 'type', v, t, SUM(n), CAST(NULL AS BIGINT), CAST(NULL AS DOUBLE PRECISION),
           CAST(NULL AS DOUBLE PRECISION), CAST(NULL AS BIGINT)
    FROM src{shown} GROUP BY v, t
    UNION ALL
    SELECT 'uniq', v, CAST(NULL AS VARCHAR(100)), COUNT(DISTINCT u), CAST(NULL AS BIGINT),
           CAST(NULL AS DOUBLE PRECISION), CAST(NULL AS DOUBLE PRECISION), CAST(NULL AS BIGINT)
    FROM src{shown} GROUP BY v
    UNION ALL
    SELECT 'prim', v, CAST(NULL AS VARCHAR(100)), COUNT(*), SUM(n), SUM(s), SUM(s * s), CAST(NULL AS BIGINT)
    FROM (SELECT v, SUM(n) AS n, SUM(s) AS s FROM src{primary} GROUP BY v, u) pu GROUP BY v{metrics}
    """
    return sql, params


def _cross_sql(source: str, pairs: tuple[tuple[str, str], ...]) -> tuple[str, dict[str, Any]]:
    """Per ratio pair (its index in ``pairs``) and variant, over ``source``'s rows of (v, u, t,
    n, s): the sums of per-user products Σ aᵢ·bᵢ and Σ vᵢ·bᵢ (CrossTotals), in rows shaped as
    the range figures are: ('cross', v, NULL, pair index, NULL, Σab, Σvb, NULL)."""
    params: dict[str, Any] = {}
    parts = []
    for i, (a, b) in enumerate(pairs):
        params.update({f"xa{i}": a, f"xb{i}": b})
        parts.append(
            f"SELECT 'cross', v, CAST(NULL AS VARCHAR(100)), {i}, CAST(NULL AS BIGINT),"
            " SUM(CAST(na AS DOUBLE PRECISION) * nb), SUM(sa * nb), CAST(NULL AS BIGINT)"
            f" FROM (SELECT v, u, SUM(CASE WHEN t = :xa{i} THEN n ELSE 0 END) AS na,"
            f" SUM(CASE WHEN t = :xa{i} THEN s ELSE 0.0 END) AS sa,"
            f" SUM(CASE WHEN t = :xb{i} THEN n ELSE 0 END) AS nb"
            f" FROM ({source}) x{i} WHERE t IN (:xa{i}, :xb{i}) GROUP BY v, u) c{i} GROUP BY v"
        )
    return " UNION ALL ".join(parts), params
