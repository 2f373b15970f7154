"""The folder: moves what writers appended into the pre-aggregated totals, behind the writes.

Writers only insert rows and commit. The folder, one per database, folds in large groups:
every event written since its last fold joined to its user's assignment, and every event
written earlier whose user was assigned since (an event counts once its user is assigned and it
is not older than the assignment). Each fold is one transaction that adds to the totals and
moves the horizon, so a crash at any point leaves the totals and the horizon as they were
before it, or as they are after it, never in between.

Which rows a fold takes (the dialects say how, dialects/):
- SQLite has one writer at a time, so rowids are committed in order, and a fold runs under the
  write lock: the rows past the stored horizon, up to the highest rowid now, are exactly the
  new ones, and no row can later appear below that.
- PostgreSQL commits concurrent transactions in any order: a row with a lower id may commit
  after one with a higher id. Each row carries the id of the transaction that wrote it; a fold
  runs in a REPEATABLE READ snapshot whose first statement reads the snapshot's xmin. Every
  transaction below xmin has ended, so all rows it committed are visible to the fold, and no row
  with a txid below xmin can ever be committed later. The fold takes the rows with txid in
  [stored horizon, xmin) and stores xmin as the new horizon: no row is skipped (a row of a
  transaction still running has a txid >= xmin and is taken by a later fold), none is taken
  twice (the windows do not overlap). Folds are serialized by an advisory lock taken before the
  snapshot, so each sees the horizon the previous one stored.

A pair (event, assignment) is counted once both are folded. A fold counts the pairs in which
one is new: new events with the assignments up to the new horizon, and events folded before
with assignments new to this fold. Results add the pairs not yet folded (the tail) in the same
snapshot as they read the totals and the horizon (views.py), so they are exact at any moment.

Per-user totals make the sum of squared per-user values incremental: a user's total going from
v to v + d adds (v + d)² − v² to the variant's sum.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from adapters.sqlalchemy.counting import counted, in_pre_period
from adapters.sqlalchemy.database import Database
from adapters.sqlalchemy.dialects import Dialect
from adapters.sqlalchemy.dialects.common import FoldScript
from adapters.sqlalchemy.tables import ANY_TYPE
from domain.event import to_micros
from domain.results import PRE_PERIOD
from domain.series import MICROS_PER_DAY, MICROS_PER_HOUR

log = logging.getLogger("experiments.folder")

MAX_EVENTS_PER_FOLD = 500_000
"""SQLite: bounds one fold's transaction (and the writes waiting behind it) after a backlog."""
IDLE_REST_SECONDS = 1.0
"""The longest rest after folds that found nothing: an idle database is asked once a second,
not twenty times (the rest doubles from the interval after each empty fold)."""
STATISTICS_INTERVAL_SECONDS = 5.0
"""How often the folder asks whether the planner's statistics of the pair tables are behind."""
PRUNE_INTERVAL_SECONDS = 60.0
"""How often the folder drops the prior events no future assignment can reach (``prune``)."""


def floor_div(micros: str, unit: int) -> str:
    """SQL for the floor division of a timestamp in microseconds (days or hours since the
    epoch), where both databases' integer division truncates towards zero."""
    return f"(CASE WHEN {micros} >= 0 THEN {micros} / {unit} ELSE -((-{micros} - 1) / {unit}) - 1 END)"


@dataclass(frozen=True)
class Window:
    """The conditions that select one side's rows of a pair: ``e`` events, ``a`` assignments."""

    new_events: str
    assignments: str  # which assignments the new events pair with
    old_events: str
    new_assignments: str


def fold_window(d: Dialect) -> Window:
    """A fold from the stored horizons (:eh, :ah) to the new ones (:et, :at)."""
    e, a = d.event_key, d.assignment_key
    return Window(
        new_events=f"{d.after(e, 'eh')} AND {d.upto(e, 'et')}",
        assignments=d.upto(d.only(a), "at"),  # a filter: the new events lead (see rebuild)
        old_events=d.upto(d.only(e), "eh"),
        new_assignments=f"{d.after(a, 'ah')} AND {d.upto(a, 'at')}",
    )


def tail_window(d: Dialect) -> Window:
    """Everything past the stored horizons (:eh, :ah): what results add to the totals."""
    e, a = d.event_key, d.assignment_key
    return Window(
        new_events=d.after(e, "eh"),
        assignments="1 = 1",
        old_events=d.upto(d.only(e), "eh"),
        new_assignments=d.after(a, "ah"),
    )


def counted_pairs(d: Dialect, w: Window, *, experiment: bool = False) -> str:
    """Events joined to their users' assignments, counted by the rule, where the event or the
    assignment is new. Columns: experiment_id, user_id, variant_id, event_type, ts, v.

    What each branch reads is the tail, never an experiment's history: the new events by their
    key, each one's assignment by its unique key (``assignment_of``); the earlier events of new
    assignments as one range of the time index per experiment, from its oldest new assignment
    on, not one range per assignment. ``+ 0`` on a timestamp or key keeps a planner from taking
    a comparison meant as a filter for the way in (SQLite would read the time index once per
    assignment; either database would walk every folded event by its key).
    """
    of_e = f" AND {d.only('e.experiment_id')} = :x" if experiment else ""
    of_a = f" AND {d.only('a.experiment_id')} = :x" if experiment else ""
    return f"""
    SELECT e.experiment_id AS experiment_id, e.user_id AS user_id, a.variant_id AS variant_id,
           e.event_type AS event_type, e.timestamp AS ts, COALESCE(e.value, 0.0) AS v
    FROM events e {d.assignment_of("e", "a")}
    WHERE {w.new_events} AND {w.assignments} AND {counted("e", "a.assigned_at")}{of_e}
    UNION ALL
    SELECT e.experiment_id, e.user_id, a.variant_id, e.event_type, e.timestamp, COALESCE(e.value, 0.0)
    FROM (SELECT a.experiment_id AS x, MIN(a.assigned_at) AS since
          FROM {d.by_key("user_assignments", "a")} WHERE {w.new_assignments}{of_a} GROUP BY a.experiment_id) f
    JOIN events e ON e.experiment_id = f.x AND e.timestamp >= f.since
    {d.assignment_of("e", "a")}
    WHERE {w.new_assignments} AND {w.old_events} AND {counted("e", "a.assigned_at")}
    """


def user_deltas(counted: str) -> str:
    """Per user, variant and event type (and "" for every type): events and value sum."""
    return f"""
    SELECT experiment_id, user_id, variant_id, event_type, COUNT(*) AS n, SUM(v) AS s
    FROM {counted} GROUP BY experiment_id, user_id, variant_id, event_type
    UNION ALL
    SELECT experiment_id, user_id, variant_id, '{ANY_TYPE}', COUNT(*), SUM(v)
    FROM {counted} GROUP BY experiment_id, user_id, variant_id
    """


def variant_increments(d: Dialect, deltas: str, *, slices: str | None = None) -> str:
    """What user deltas add to the per-variant totals, given each user's totals before them:
    a user without a row yet is a new unique user. Each delta's totals are one lookup by key
    (``totals_of``), never a scan of every user's totals.

    ``slices``: per slice (dimension, value) and variant instead (slice_event_totals): each
    delta joined by key to its user's dimension values ``ud`` (``dimensions_of``), of "every"
    dimension or of "one", named :dim. A user without a value adds to no slice."""
    keys = ["d.experiment_id", "d.variant_id", "d.event_type"]
    join = ""
    if slices is not None:
        keys[1:1] = ["ud.dimension", "ud.value"]
        join = " " + d.dimensions_of("d", "ud", one=slices == "one")
    named = ", ".join(f"{k} AS {k.split('.')[1]}" for k in keys)
    return f"""
    SELECT {named},
           SUM(d.n) AS events, SUM(CASE WHEN u.events IS NULL THEN 1 ELSE 0 END) AS users,
           SUM(d.s) AS value_sum,
           SUM((COALESCE(u.value_sum, 0.0) + d.s) * (COALESCE(u.value_sum, 0.0) + d.s)
               - COALESCE(u.value_sum, 0.0) * COALESCE(u.value_sum, 0.0)) AS value_sum_squares,
           SUM((COALESCE(u.events, 0) + d.n) * (COALESCE(u.events, 0) + d.n)
               - COALESCE(u.events, 0) * COALESCE(u.events, 0)) AS events_sum_squares
    FROM {deltas} d{join} {d.totals_of("d", "u")}
    GROUP BY {", ".join(keys)}
    """


def adding(table: str, key: str, columns: str) -> str:
    """An upsert's tail that adds each of ``columns`` (comma-separated) to the stored row of
    ``key``: how the folder keeps every total."""
    sums = ",\n      ".join(f"{c} = {table}.{c} + excluded.{c}" for c in columns.replace(" ", "").split(","))
    return f"ON CONFLICT ({key}) DO UPDATE SET\n      {sums}"


EVENT_TOTALS = "events, users, value_sum, value_sum_squares, events_sum_squares"
"""The columns of variant_event_totals and slice_event_totals past their keys."""


def pair_increments(d: Dialect, deltas: str, only: str = "") -> str:
    """What user deltas add to each registered ratio pair's cross sums (variant_pair_totals),
    given each user's totals before them: a user's counts going from (a, b) to (a + da, b + db)
    add (a + da)(b + db) − a·b, and alike for the numerator's value. ``only``: a condition on
    the pairs ``p`` (the experiment's, the filled ones)."""
    a_events, b_events = "COALESCE(ua.events, 0)", "COALESCE(ub.events, 0)"
    a_value = "COALESCE(ua.value_sum, 0.0)"
    return f"""
    SELECT g.experiment_id AS experiment_id, g.variant_id AS variant_id, g.a AS numerator_type,
           g.b AS denominator_type,
           SUM(({a_events} + g.dna) * ({b_events} + g.dnb) - {a_events} * {b_events}) AS events_products,
           SUM(({a_value} + g.dsa) * ({b_events} + g.dnb) - {a_value} * {b_events}) AS value_products
    FROM (SELECT dl.experiment_id AS experiment_id, dl.user_id AS user_id, dl.variant_id AS variant_id,
                 p.numerator_type AS a, p.denominator_type AS b,
                 SUM(CASE WHEN dl.event_type = p.numerator_type THEN dl.n ELSE 0 END) AS dna,
                 SUM(CASE WHEN dl.event_type = p.numerator_type THEN dl.s ELSE 0.0 END) AS dsa,
                 SUM(CASE WHEN dl.event_type = p.denominator_type THEN dl.n ELSE 0 END) AS dnb
          FROM {deltas} dl JOIN metric_pairs p ON p.experiment_id = dl.experiment_id
            AND (dl.event_type = p.numerator_type OR dl.event_type = p.denominator_type){only}
          GROUP BY dl.experiment_id, dl.user_id, dl.variant_id, p.numerator_type, p.denominator_type) g
    {d.totals_by("ua", "g.experiment_id", "g.user_id", "g.a")}
    {d.totals_by("ub", "g.experiment_id", "g.user_id", "g.b")}
    GROUP BY g.experiment_id, g.variant_id, g.a, g.b
    """


def pair_backfill(only_unfilled: bool) -> str:
    """The cross sums of registered pairs from the users' folded totals: when a pair is first
    declared (the fold fills it), and in a rebuild."""
    where = " WHERE p.filled = false" if only_unfilled else ""
    return f"""
    INSERT INTO variant_pair_totals
      (experiment_id, variant_id, numerator_type, denominator_type, events_products, value_products)
    SELECT p.experiment_id, a.variant_id, p.numerator_type, p.denominator_type,
           SUM(ua.events * ub.events), SUM(ua.value_sum * ub.events)
    FROM metric_pairs p
    JOIN user_event_totals ua ON ua.experiment_id = p.experiment_id AND ua.event_type = p.numerator_type
    JOIN user_event_totals ub ON ub.experiment_id = ua.experiment_id AND ub.user_id = ua.user_id
      AND ub.event_type = p.denominator_type
    JOIN user_assignments a ON a.experiment_id = ua.experiment_id AND a.user_id = ua.user_id{where}
    GROUP BY p.experiment_id, a.variant_id, p.numerator_type, p.denominator_type
    """


def slice_users_of(d: Dialect, assignments: str, where: str, one: bool = False) -> str:
    """The users per slice and variant of the assignments ``a`` of ``assignments`` that meet
    ``where``, each joined by key to its dimension values (``dimensions_of``)."""
    return f"""SELECT a.experiment_id AS experiment_id, ud.dimension AS dimension, ud.value AS value,
        a.variant_id AS variant_id, COUNT(*) AS users FROM {assignments} {d.dimensions_of("a", "ud", one)}
        WHERE {where} GROUP BY a.experiment_id, ud.dimension, ud.value, a.variant_id"""


_PAIRS_FILLED = "UPDATE metric_pairs SET filled = true WHERE filled = false"
_COVARIATES_FILLED = "UPDATE covariate_experiments SET filled = true WHERE filled = false"


def _period_upsert(table: str, period: str, source: str) -> str:
    return f"""
    INSERT INTO {table} (experiment_id, {period}, event_type, user_id, variant_id, events, value_sum)
    {source}
    ON CONFLICT (experiment_id, {period}, event_type, user_id) DO UPDATE SET
      events = {table}.events + excluded.events,
      value_sum = {table}.value_sum + excluded.value_sum
    """


_SCRATCH = (
    # Per connection, emptied by every fold: what one fold counts per user and hour, and per user;
    # and the events of its window that are a user's pre-period (assigned 1) or have no
    # assignment yet (assigned 0).
    (
        "CREATE TEMP TABLE IF NOT EXISTS fold_hours (experiment_id VARCHAR(32), user_id VARCHAR(256),"
        " variant_id VARCHAR(32), event_type VARCHAR(100), hour BIGINT, n BIGINT, s DOUBLE PRECISION)"
    ),
    (
        "CREATE TEMP TABLE IF NOT EXISTS fold_deltas (experiment_id VARCHAR(32), user_id VARCHAR(256),"
        " variant_id VARCHAR(32), event_type VARCHAR(100), n BIGINT, s DOUBLE PRECISION)"
    ),
    (
        "CREATE TEMP TABLE IF NOT EXISTS fold_prior (experiment_id VARCHAR(32), user_id VARCHAR(256),"
        " variant_id VARCHAR(32), event_type VARCHAR(100), ts BIGINT, v DOUBLE PRECISION, assigned INTEGER)"
    ),
    # Per user and event type (and "" for every type): what one fold adds to the pre-period's totals.
    (
        "CREATE TEMP TABLE IF NOT EXISTS fold_pre (experiment_id VARCHAR(32), user_id VARCHAR(256),"
        " variant_id VARCHAR(32), event_type VARCHAR(100), n BIGINT, s DOUBLE PRECISION)"
    ),
    "DELETE FROM fold_hours",
    "DELETE FROM fold_deltas",
    "DELETE FROM fold_prior",
    "DELETE FROM fold_pre",
)


def covariate_increments(d: Dialect, rows: str) -> str:
    """What users' deltas add to CUPED's per-variant sums (variant_covariate_totals), given each
    user's pre-period and counted totals before them, looked up by key. A user's pre-period
    value going from x to x + dx and counted value from y to y + dy add (x + dx)² − x² to Σx²
    and (x + dx)(y + dy) − x·y to Σxy; a user whose pre-period count leaves 0 is one more user,
    and one whose two counts both become positive one more counted user. Users with no
    pre-period, before or after, add nothing and are left out. ``rows``: (experiment_id,
    user_id, variant_id, event_type, xn, xs, yn, ys), the pre-period's and the counted deltas,
    any number of rows per user."""
    x_n, x_s = "COALESCE(x.events, 0)", "COALESCE(x.value_sum, 0.0)"
    y_n, y_s = "COALESCE(y.events, 0)", "COALESCE(y.value_sum, 0.0)"
    return f"""
    SELECT g.experiment_id AS experiment_id, g.variant_id AS variant_id, g.event_type AS event_type,
           SUM(CASE WHEN {x_n} = 0 AND g.xn > 0 THEN 1 ELSE 0 END) AS users,
           SUM(g.xs) AS value_sum,
           SUM(({x_s} + g.xs) * ({x_s} + g.xs) - {x_s} * {x_s}) AS value_sum_squares,
           SUM(CASE WHEN {x_n} + g.xn > 0 AND {y_n} + g.yn > 0 THEN 1 ELSE 0 END
               - CASE WHEN {x_n} > 0 AND {y_n} > 0 THEN 1 ELSE 0 END) AS users_counted,
           SUM(({x_s} + g.xs) * ({y_s} + g.ys) - {x_s} * {y_s}) AS value_products
    FROM (SELECT r.experiment_id AS experiment_id, r.user_id AS user_id, r.variant_id AS variant_id,
                 r.event_type AS event_type, SUM(r.xn) AS xn, SUM(r.xs) AS xs, SUM(r.yn) AS yn,
                 SUM(r.ys) AS ys
          FROM ({rows}) r GROUP BY r.experiment_id, r.user_id, r.variant_id, r.event_type) g
    {d.totals_by("x", "g.experiment_id", "g.user_id", "g.event_type", "user_pre_totals")}
    {d.totals_by("y", "g.experiment_id", "g.user_id", "g.event_type")}
    WHERE g.xn > 0 OR x.events IS NOT NULL
    GROUP BY g.experiment_id, g.variant_id, g.event_type
    """


def covariate_backfill(only_unfilled: bool) -> str:
    """CUPED's per-variant sums from the users' folded totals: when an experiment is first
    registered (the fold fills it), and in a rebuild."""
    where = " WHERE c.filled = false" if only_unfilled else ""
    return f"""
    INSERT INTO variant_covariate_totals
      (experiment_id, variant_id, event_type, users, value_sum, value_sum_squares, users_counted,
       value_products)
    SELECT p.experiment_id, a.variant_id, p.event_type, COUNT(*), SUM(p.value_sum),
           SUM(p.value_sum * p.value_sum), SUM(CASE WHEN u.events > 0 THEN 1 ELSE 0 END),
           SUM(p.value_sum * COALESCE(u.value_sum, 0.0))
    FROM covariate_experiments c
    JOIN user_pre_totals p ON p.experiment_id = c.experiment_id
    JOIN user_assignments a ON a.experiment_id = p.experiment_id AND a.user_id = p.user_id
    LEFT JOIN user_event_totals u ON u.experiment_id = p.experiment_id AND u.user_id = p.user_id
      AND u.event_type = p.event_type{where}
    GROUP BY p.experiment_id, a.variant_id, p.event_type
    """


def covariate_fill(d: Dialect, events_upto: str, assignments_upto: str, *, only_unfilled: bool) -> tuple[str, ...]:
    """CUPED's tables (migration 0011) for the registered experiments, from raw rows up to the
    horizons named: the events whose user had no assignment then, and every user's pre-period
    totals. In a fold, for the experiments registered since the last one (``only_unfilled``),
    from what was folded before it; in a rebuild, for all. The caller then adds the per-variant
    sums (``covariate_backfill``: at once in a fold, after the counted totals in a rebuild) and
    marks the experiments filled. Each reads the events of its experiments, by the
    experiment's index."""
    e_in = d.upto(d.event_key, events_upto)
    a_in = d.upto(d.only(d.assignment_key), assignments_upto)
    which = "filled = false" if only_unfilled else "1 = 1"
    # The registrations lead: a fold with none to fill reads no event.
    events_of = f"(SELECT experiment_id FROM covariate_experiments WHERE {which}) c {d.events_of('c', 'e')}"
    pre = f"""
    FROM {events_of} {d.assignment_after("e", "a")}
    WHERE {in_pre_period("e", "a.assigned_at")} AND {e_in} AND {a_in}"""
    return (
        f"""INSERT INTO prior_events (experiment_id, user_id, event_type, timestamp, value)
        SELECT e.experiment_id, e.user_id, e.event_type, e.timestamp, COALESCE(e.value, 0.0) FROM {events_of}
        WHERE {e_in} AND NOT EXISTS (SELECT 1 FROM user_assignments a WHERE a.experiment_id = e.experiment_id
          AND a.user_id = e.user_id AND {d.upto(d.assignment_key, assignments_upto)})""",
        f"""INSERT INTO user_pre_totals (experiment_id, user_id, event_type, events, value_sum)
        SELECT e.experiment_id, e.user_id, e.event_type, COUNT(*), SUM(COALESCE(e.value, 0.0)) {pre}
        GROUP BY e.experiment_id, e.user_id, e.event_type
        UNION ALL
        SELECT e.experiment_id, e.user_id, '{ANY_TYPE}', COUNT(*), SUM(COALESCE(e.value, 0.0)) {pre}
        GROUP BY e.experiment_id, e.user_id""",
    )


def covariate_statements(d: Dialect) -> tuple[str, ...]:
    """A fold's part for CUPED, for the registered experiments (the others cost a lookup in a
    table of a few rows): each new assignment's earlier events kept by user (prior_events,
    within the pre-period), and the new events, each with its user's assignment if any: in its
    user's pre-period, or kept as a prior event while the user has none; then what those and
    the counted deltas (fold_deltas) add to the per-variant sums, and the users' pre-period
    totals. Reads only the fold's window and, per new assignment or user with a delta, its
    user's rows. First, the experiments registered since the last fold are filled
    (``covariate_fill``)."""
    w = fold_window(d)
    assigned = d.upto(d.only(d.assignment_key), "at")
    registered = "IN (SELECT experiment_id FROM covariate_experiments)"
    return (
        *covariate_fill(d, "eh", "ah", only_unfilled=True),
        covariate_backfill(only_unfilled=True),
        _COVARIATES_FILLED,
        f"""INSERT INTO fold_prior (experiment_id, user_id, variant_id, event_type, ts, v, assigned)
        SELECT p.experiment_id, p.user_id, a.variant_id, p.event_type, p.timestamp, p.value, 1
        FROM {d.by_key("user_assignments", "a")} {d.prior_events_of("a", "p")}
        WHERE {w.new_assignments} AND {d.only("a.experiment_id")} {registered}
          AND {in_pre_period("p", "a.assigned_at")}""",
        f"""INSERT INTO fold_prior (experiment_id, user_id, variant_id, event_type, ts, v, assigned)
        SELECT e.experiment_id, e.user_id, a.variant_id, e.event_type, e.timestamp, COALESCE(e.value, 0.0),
               CASE WHEN a.assigned_at IS NOT NULL AND {assigned} THEN 1 ELSE 0 END
        FROM (SELECT e.experiment_id, e.user_id, e.event_type, e.timestamp, e.value FROM {d.by_key("events", "e")}
              WHERE {w.new_events} AND {d.only("e.experiment_id")} {registered}{d.fence}) e
        {d.assignment_or_none("e", "a")}
        WHERE a.assigned_at IS NULL OR NOT ({assigned}) OR ({in_pre_period("e", "a.assigned_at")})""",
        """INSERT INTO prior_events (experiment_id, user_id, event_type, timestamp, value)
        SELECT experiment_id, user_id, event_type, ts, v FROM fold_prior WHERE assigned = 0""",
        f"""INSERT INTO fold_pre (experiment_id, user_id, variant_id, event_type, n, s)
        SELECT experiment_id, user_id, variant_id, event_type, COUNT(*), SUM(v) FROM fold_prior
        WHERE assigned = 1 GROUP BY experiment_id, user_id, variant_id, event_type
        UNION ALL
        SELECT experiment_id, user_id, variant_id, '{ANY_TYPE}', COUNT(*), SUM(v) FROM fold_prior
        WHERE assigned = 1 GROUP BY experiment_id, user_id, variant_id""",
        # Before the users' totals take this fold's deltas: the increments need them as they were.
        """INSERT INTO variant_covariate_totals
             (experiment_id, variant_id, event_type, users, value_sum, value_sum_squares,
              users_counted, value_products)
        """ + covariate_increments(
            d,
            "SELECT experiment_id, user_id, variant_id, event_type, n AS xn, s AS xs, 0 AS yn,"
            " 0.0 AS ys FROM fold_pre"
            " UNION ALL SELECT experiment_id, user_id, variant_id, event_type, 0, 0.0, n, s"
            f" FROM fold_deltas WHERE experiment_id {registered}",
        ) + """
        ON CONFLICT (experiment_id, variant_id, event_type) DO UPDATE SET
          users = variant_covariate_totals.users + excluded.users,
          value_sum = variant_covariate_totals.value_sum + excluded.value_sum,
          value_sum_squares = variant_covariate_totals.value_sum_squares + excluded.value_sum_squares,
          users_counted = variant_covariate_totals.users_counted + excluded.users_counted,
          value_products = variant_covariate_totals.value_products + excluded.value_products""",
        """INSERT INTO user_pre_totals (experiment_id, user_id, event_type, events, value_sum)
        SELECT experiment_id, user_id, event_type, n, s FROM fold_pre WHERE true
        ON CONFLICT (experiment_id, user_id, event_type) DO UPDATE SET
          events = user_pre_totals.events + excluded.events,
          value_sum = user_pre_totals.value_sum + excluded.value_sum""",
    )


def fold_statements(d: Dialect) -> tuple[Any, ...]:
    """The statements of one fold; parameters :eh :ah (stored horizons), :et :at (new), :now.

    The counted pairs are grouped once, per user and hour, into a scratch table; every total
    derives from those rows, fewer than the events. Variants before users: their increments
    need each user's totals from before this fold.
    """
    w = fold_window(d)
    hour = floor_div("p.ts", MICROS_PER_HOUR)
    day = floor_div("hour", 24)
    statements = (
        *_SCRATCH,
        f"""INSERT INTO fold_hours (experiment_id, user_id, variant_id, event_type, hour, n, s)
        SELECT p.experiment_id, p.user_id, p.variant_id, p.event_type, {hour}, COUNT(*), SUM(p.v)
        FROM ({counted_pairs(d, w)}) p
        GROUP BY p.experiment_id, p.user_id, p.variant_id, p.event_type, {hour}""",
        f"""INSERT INTO fold_deltas (experiment_id, user_id, variant_id, event_type, n, s)
        SELECT experiment_id, user_id, variant_id, event_type, SUM(n), SUM(s)
        FROM fold_hours GROUP BY experiment_id, user_id, variant_id, event_type
        UNION ALL
        SELECT experiment_id, user_id, variant_id, '{ANY_TYPE}', SUM(n), SUM(s)
        FROM fold_hours GROUP BY experiment_id, user_id, variant_id""",
        *covariate_statements(d),
        # Pairs first declared since the last fold: their sums so far, then this fold's on top.
        pair_backfill(only_unfilled=True),
        _PAIRS_FILLED,
        """INSERT INTO variant_pair_totals
             (experiment_id, variant_id, numerator_type, denominator_type, events_products, value_products)
        """ + pair_increments(d, "fold_deltas") + """
        ON CONFLICT (experiment_id, variant_id, numerator_type, denominator_type) DO UPDATE SET
          events_products = variant_pair_totals.events_products + excluded.events_products,
          value_products = variant_pair_totals.value_products + excluded.value_products
        """,
        f"""INSERT INTO variant_event_totals (experiment_id, variant_id, event_type, {EVENT_TOTALS})
        {variant_increments(d, "fold_deltas")}
        {adding("variant_event_totals", "experiment_id, variant_id, event_type", EVENT_TOTALS)}""",
        f"""INSERT INTO slice_event_totals (experiment_id, dimension, value, variant_id, event_type, {EVENT_TOTALS})
        {variant_increments(d, "fold_deltas", slices="every")}
        {adding("slice_event_totals", "experiment_id, dimension, value, variant_id, event_type", EVENT_TOTALS)}""",
        """INSERT INTO user_event_totals (experiment_id, user_id, event_type, events, value_sum)
        SELECT experiment_id, user_id, event_type, n, s FROM fold_deltas WHERE true
        ON CONFLICT (experiment_id, user_id, event_type) DO UPDATE SET
          events = user_event_totals.events + excluded.events,
          value_sum = user_event_totals.value_sum + excluded.value_sum
        """,
        _period_upsert(
            "user_hour_totals", "hour",
            "SELECT experiment_id, hour, event_type, user_id, variant_id, n, s FROM fold_hours WHERE true",
        ),
        _period_upsert(
            "user_day_totals", "day",
            f"SELECT experiment_id, {day}, event_type, user_id, variant_id, SUM(n), SUM(s) FROM fold_hours"
            f" GROUP BY experiment_id, {day}, event_type, user_id, variant_id",
        ),
        f"""INSERT INTO variant_users (experiment_id, variant_id, users)
        SELECT a.experiment_id, a.variant_id, COUNT(*) FROM {d.by_key("user_assignments", "a")}
        WHERE {w.new_assignments} GROUP BY a.experiment_id, a.variant_id
        {adding("variant_users", "experiment_id, variant_id", "users")}""",
        f"""INSERT INTO slice_users (experiment_id, dimension, value, variant_id, users)
        {slice_users_of(d, d.by_key("user_assignments", "a"), w.new_assignments)}
        {adding("slice_users", "experiment_id, dimension, value, variant_id", "users")}""",
        _SET_HORIZONS,
    )
    return tuple(text(s) for s in statements)


_PRUNE = text("DELETE FROM prior_events WHERE timestamp < :cutoff")
_SET_HORIZONS = "UPDATE fold_state SET events_horizon = :et, assignments_horizon = :at, folded_at = :now"


def rebuild_statements(d: Dialect) -> tuple[Any, ...]:
    """Every total recomputed from raw rows up to the new horizons (:et, :at): the repair for
    any doubt. Plain SQL both databases run, grouped per user in one pass each."""
    e_in = d.upto(d.event_key, "et")
    # A filter on each assignment, never the way in: driven by the assignments' rowids, SQLite
    # reads every event of the experiment once per assignment.
    a_in = d.upto(d.only(d.assignment_key), "at")
    pairs = f"""
    FROM events e JOIN user_assignments a
      ON a.experiment_id = e.experiment_id AND a.user_id = e.user_id
    WHERE {counted("e", "a.assigned_at")} AND {e_in} AND {a_in}"""

    def per_period(table: str, period: str, unit: int) -> str:
        bucket = floor_div("e.timestamp", unit)
        return f"""
        INSERT INTO {table} (experiment_id, {period}, event_type, user_id, variant_id, events, value_sum)
        SELECT e.experiment_id, {bucket}, e.event_type, e.user_id, a.variant_id, COUNT(*),
               SUM(COALESCE(e.value, 0.0)) {pairs}
        GROUP BY e.experiment_id, {bucket}, e.event_type, e.user_id, a.variant_id
        """

    statements = (
        "DELETE FROM variant_event_totals",
        "DELETE FROM user_event_totals",
        "DELETE FROM user_day_totals",
        "DELETE FROM user_hour_totals",
        "DELETE FROM variant_users",
        "DELETE FROM variant_pair_totals",
        "DELETE FROM prior_events",
        "DELETE FROM user_pre_totals",
        "DELETE FROM variant_covariate_totals",
        "DELETE FROM slice_event_totals",
        "DELETE FROM slice_users",
        *covariate_fill(d, "et", "at", only_unfilled=False),
        _COVARIATES_FILLED,
        f"""INSERT INTO user_event_totals (experiment_id, user_id, event_type, events, value_sum)
        SELECT e.experiment_id, e.user_id, e.event_type, COUNT(*), SUM(COALESCE(e.value, 0.0)) {pairs}
        GROUP BY e.experiment_id, e.user_id, e.event_type""",
        f"""INSERT INTO user_event_totals (experiment_id, user_id, event_type, events, value_sum)
        SELECT e.experiment_id, e.user_id, '{ANY_TYPE}', COUNT(*), SUM(COALESCE(e.value, 0.0)) {pairs}
        GROUP BY e.experiment_id, e.user_id""",
        """INSERT INTO variant_event_totals
          (experiment_id, variant_id, event_type, events, users, value_sum, value_sum_squares,
           events_sum_squares)
        SELECT u.experiment_id, a.variant_id, u.event_type, SUM(u.events), COUNT(*),
               SUM(u.value_sum), SUM(u.value_sum * u.value_sum), SUM(u.events * u.events)
        FROM user_event_totals u JOIN user_assignments a
          ON a.experiment_id = u.experiment_id AND a.user_id = u.user_id
        GROUP BY u.experiment_id, a.variant_id, u.event_type""",
        f"""INSERT INTO slice_event_totals (experiment_id, dimension, value, variant_id, event_type, {EVENT_TOTALS})
        SELECT u.experiment_id, ud.dimension, ud.value, a.variant_id, u.event_type, SUM(u.events), COUNT(*),
               SUM(u.value_sum), SUM(u.value_sum * u.value_sum), SUM(u.events * u.events)
        FROM user_event_totals u JOIN user_assignments a
          ON a.experiment_id = u.experiment_id AND a.user_id = u.user_id
        JOIN assignment_dimensions ud ON ud.experiment_id = u.experiment_id AND ud.user_id = u.user_id
        GROUP BY u.experiment_id, ud.dimension, ud.value, a.variant_id, u.event_type""",
        pair_backfill(only_unfilled=False),
        _PAIRS_FILLED,
        covariate_backfill(only_unfilled=False),
        per_period("user_day_totals", "day", MICROS_PER_DAY),
        per_period("user_hour_totals", "hour", MICROS_PER_HOUR),
        f"""INSERT INTO variant_users (experiment_id, variant_id, users)
        SELECT a.experiment_id, a.variant_id, COUNT(*) FROM user_assignments a WHERE {a_in}
        GROUP BY a.experiment_id, a.variant_id""",
        (f"INSERT INTO slice_users (experiment_id, dimension, value, variant_id, users) "
         f"{slice_users_of(d, 'user_assignments a', a_in)}"),
        _SET_HORIZONS,
    )
    return tuple(text(s) for s in statements)


Progress = Callable[[int, int, str], None]


def step_name(sql: str) -> str:
    """What a rebuild statement does, in a few words: ``clear user_day_totals``."""
    words = sql.split()
    verb = words[0].upper()
    table = words[1] if verb == "UPDATE" else words[2]
    # The horizon; or what is filled (ratio pairs, CUPED's tables).
    updated = "advance" if "events_horizon" in sql else "mark"
    return {"DELETE": "clear", "INSERT": "fill", "UPDATE": updated}.get(verb, verb.lower()) + " " + table


def _now_micros() -> int:
    return time.time_ns() // 1000


class Folder:
    """Folds in the background while this process holds the database's lease; any process may
    also fold on demand (``fold``), serialized with the others."""

    def __init__(
        self,
        database: Database,
        *,
        interval: float | None = None,
        now: Callable[[], datetime] | None = None,
        backdating: timedelta = timedelta(0),
    ) -> None:
        """``interval``: seconds of rest between folds; None: the database's own default.
        ``now``: the service's clock, whose time less ``backdating`` (an exposure's own time,
        within the clock-skew bound) is the earliest an assignment made from now on can carry:
        prior events older than the pre-period before that are dropped (``prune``). Without a
        clock, none are."""
        self._db = database
        self._now = now
        self._reach = backdating + PRE_PERIOD
        self._d = database.dialect
        self.interval = self._d.fold_interval if interval is None else interval
        self._fold = self._d.script(fold_statements(self._d))
        self._rebuild = rebuild_statements(self._d)
        self._lease = self._d.lease(database.engine)
        self._task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None  # made in the loop that runs the task
        self._failing = False

    def _job(self, script: FoldScript, limit: int) -> Any:
        def run(conn: Connection) -> int:
            eh, ah, et, at, waiting = self._d.fold_window(conn, limit)  # first: on PostgreSQL, the snapshot
            if script is self._fold and (et, at) == (eh, ah) and not waiting:
                return 0  # nothing new, and no ratio pair or CUPED experiment waiting to be filled
            script(conn, {"eh": eh, "ah": ah, "et": et, "at": at, "now": _now_micros()})
            return max(et - eh, 0)

        return run

    @property
    def holds_lease(self) -> bool:
        return self._lease.held

    async def fold(self) -> int:
        """Fold what is pending now; the number of event ids the horizon moved (SQLite) or of
        transactions (PostgreSQL). Returns once committed."""
        return await self._serialized(self._job(self._fold, MAX_EVENTS_PER_FOLD))

    async def rebuild(self, progress: Progress | None = None) -> None:
        """Recompute every total from raw rows, in one transaction, with no folder in between.
        ``progress(done, steps, what)`` is called before each statement and once at the end, from
        the thread that runs them: the rebuild of a large store takes minutes."""
        statements = self._rebuild

        def script(conn: Connection, params: Mapping[str, int]) -> None:
            for done, statement in enumerate(statements):
                if progress is not None:
                    progress(done, len(statements), step_name(statement.text))
                conn.execute(statement, params)
            if progress is not None:
                progress(len(statements), len(statements), "done")

        await self._serialized(self._job(script, 2**62))

    async def prune(self) -> int:
        """Drop the prior events (kept for CUPED until their user is assigned) that no
        assignment from now on can have in its pre-period: older than the PRE_PERIOD before the
        earliest time an assignment made now may carry. Returns how many were dropped."""
        if self._now is None:
            return 0
        cutoff = to_micros(self._now() - self._reach)

        def run(conn: Connection) -> int:
            return conn.execute(_PRUNE, {"cutoff": cutoff}).rowcount or 0

        return await self._serialized(run)

    async def _serialized(self, job: Any) -> int:
        return await self._d.serialize_fold(self._db, job)

    def start(self) -> None:
        """Start the background loop in the running event loop (once)."""
        if self._task is None:
            self._stop = asyncio.Event()
            self._task = asyncio.create_task(self._run(), name="folder")

    async def refresh_statistics(self) -> list[str]:
        """Analyze the tables whose statistics are missing or far behind (dialects/postgresql.py)."""
        async with self._db.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            return await conn.run_sync(self._d.refresh_statistics)

    async def _run(self) -> None:
        assert self._stop is not None
        checked = pruned = 0.0
        rest, idle = self.interval, max(self.interval, IDLE_REST_SECONDS)
        while not self._stop.is_set():
            more = False
            try:
                if await self._lease.acquire():
                    folded = await self.fold()
                    more = folded >= MAX_EVENTS_PER_FOLD
                    rest = self.interval if folded else min(rest * 2, idle)
                    if time.monotonic() - checked >= STATISTICS_INTERVAL_SECONDS:
                        checked = time.monotonic()
                        if analyzed := await self.refresh_statistics():
                            log.info("analyzed %s: their statistics were missing or behind", ", ".join(analyzed))
                    if time.monotonic() - pruned >= PRUNE_INTERVAL_SECONDS:
                        pruned = time.monotonic()
                        if dropped := await self.prune():
                            log.info("dropped %d prior events no assignment can reach any more", dropped)
                if self._failing:
                    self._failing = False
                    log.warning("folding again")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is away: keep trying, say so once
                if not self._failing:
                    self._failing = True
                    log.warning("folding failed (%s); retrying", type(exc).__name__)
                await self._lease.release()
            if more:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), rest)

    async def close(self) -> None:
        """Stop the loop after the fold under way; fold what is left if this is the holder."""
        if self._task is None:
            return
        assert self._stop is not None
        self._stop.set()
        await self._task
        with contextlib.suppress(Exception):
            if self._lease.held:
                await self.fold()
        await self._lease.release()


PENDING_COUNT_LIMIT = 1_000_000
"""A scrape counts at most this many unfolded events: a backlog beyond it reads as the limit."""


def pending_events_query(d: Dialect) -> Any:
    """When the last fold committed (microseconds, UTC) and how many events wait past the
    stored horizon: for a metrics scrape, a range of the events' key from the horizon on."""
    e = d.after(d.event_key, "eh").replace(":eh", "f.events_horizon")
    return text(
        f"""SELECT f.folded_at, (SELECT COUNT(*) FROM (SELECT 1 FROM {d.by_key("events", "e")}
        WHERE {e} LIMIT {PENDING_COUNT_LIMIT}) p) FROM fold_state f"""
    )
