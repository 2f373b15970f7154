"""The Store on SQLAlchemy Core: atomic writes, and the results aggregated in SQL by GROUP BY."""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import (
    BigInteger,
    Float,
    String,
    and_,
    bindparam,
    cast,
    func,
    literal,
    null,
    select,
    union_all,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from adapters.sqlalchemy.aggregates import ANY_TYPE, MICROS_PER_DAY, Aggregates, Totals
from adapters.sqlalchemy.engine import BEGIN_IMMEDIATE, sqlite_writer_engine
from adapters.sqlalchemy.group_commit import GroupCommit
from adapters.sqlalchemy.tables import (
    events,
    experiments,
    user_assignments,
    user_day_totals,
    variants,
)
from domain.assignment import Assignment
from domain.errors import DuplicateExperimentName, StoreUnavailable
from domain.event import EventBatch
from domain.experiment import Experiment, Variant
from domain.results import ResultQuery, VariantAggregate

P = ParamSpec("P")
T = TypeVar("T")
U = TypeVar("U")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def to_micros(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND


def from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


_EVENT_COLUMNS = ("experiment_id", "user_id", "event_type", "timestamp", "value", "properties", "event_id")


def _insert_events_from_arrays() -> Any:
    """PostgreSQL: a whole batch as one ``INSERT … SELECT FROM unnest(<one array per column>)``.

    One statement sends seven parameters however large the batch; ON CONFLICT DO NOTHING skips
    an event_id repeated within the batch as it skips one already stored, and RETURNING names
    exactly the events stored: those are the ones counted and folded into the totals.
    """
    source = (
        func.unnest(
            *(bindparam(name, type_=postgresql.ARRAY(events.c[name].type)) for name in _EVENT_COLUMNS)
        )
        .table_valued(*_EVENT_COLUMNS)
        .render_derived()
    )
    return (
        postgresql.insert(events)
        .from_select(list(_EVENT_COLUMNS), select(*(source.c[name] for name in _EVENT_COLUMNS)))
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(events.c.id)
    )


_INSERT_EVENTS_FROM_ARRAYS = _insert_events_from_arrays()
# SQLite: the DBAPI's executemany, without SQLAlchemy's per-row parameter processing, which
# adds nothing to plain strings, integers and floats.
_INSERT_EVENTS_SQLITE = (
    f"INSERT INTO events ({', '.join(_EVENT_COLUMNS)}) VALUES ({', '.join('?' * len(_EVENT_COLUMNS))})"
    " ON CONFLICT (event_id) DO NOTHING"
)


def _unavailable_on_connection_loss(method: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """A lost or refused connection is StoreUnavailable, so callers need not know the driver."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(*args, **kwargs)
        except IntegrityError:
            raise
        except (DBAPIError, OSError) as exc:
            raise StoreUnavailable(type(exc).__name__) from exc

    return wrapper


class SqlStore:
    def __init__(self, engine: AsyncEngine, *, use_totals: bool = True) -> None:
        """``use_totals=False`` answers every results query by scanning raw events: the
        reference the pre-aggregated totals are tested against."""
        self._engine = engine
        self._dialect = engine.dialect.name
        self._totals = Aggregates(self._dialect)
        self._use_totals = use_totals
        self._insert = postgresql.insert if self._dialect == "postgresql" else sqlite.insert
        # Snapshot reads: the several statements of one results query see one state of the data.
        self._snapshot = (
            {"isolation_level": "REPEATABLE READ"} if self._dialect == "postgresql" else {}
        )
        # SQLite has one writer at a time: waiting writes share a transaction and its sync.
        # PostgreSQL writes concurrently and groups commits in its own WAL writer.
        self._group = (
            GroupCommit(sqlite_writer_engine(engine), {BEGIN_IMMEDIATE: True})
            if self._dialect == "sqlite"
            else None
        )

    async def _transact(self, job: Callable[[Connection], U]) -> U:
        """Run ``job``, plain synchronous SQLAlchemy, in a write transaction; return once it has
        committed. Written once for both databases: SQLite's writer thread runs it on sqlite3,
        PostgreSQL runs it on asyncpg through SQLAlchemy's greenlet bridge."""
        if self._group is not None:
            return await self._group.run(job)
        async with self._engine.begin() as conn:
            return await conn.run_sync(job)

    def _unmatchable(self, *keys: str) -> bool:
        """PostgreSQL's text cannot hold NUL, so no stored row has such a key: a lookup by one is
        a miss, where sending it would fail the statement (and answer 503 to a bad id)."""
        return self._dialect == "postgresql" and any("\x00" in key for key in keys)

    @_unavailable_on_connection_loss
    async def add_experiment(self, experiment: Experiment) -> None:
        def insert(conn: Connection) -> None:
            conn.execute(
                experiments.insert().values(
                    id=experiment.id,
                    name=experiment.name,
                    description=experiment.description,
                    primary_event_type=experiment.primary_event_type,
                    created_at=to_micros(experiment.created_at),
                )
            )
            conn.execute(
                variants.insert(),
                [
                    {
                        "id": v.id,
                        "experiment_id": experiment.id,
                        "position": position,
                        "name": v.name,
                        "traffic_basis_points": v.traffic_basis_points,
                        "is_control": v.is_control,
                    }
                    for position, v in enumerate(experiment.variants)
                ],
            )

        try:
            await self._transact(insert)
        except IntegrityError as exc:
            raise DuplicateExperimentName(experiment.name) from exc

    @_unavailable_on_connection_loss
    async def get_experiment(self, experiment_id: str) -> Experiment | None:
        if self._unmatchable(experiment_id):
            return None
        async with self._engine.connect() as conn:
            found = await self._load_experiments(conn, select(experiments).where(experiments.c.id == experiment_id))
        return found[0] if found else None

    @_unavailable_on_connection_loss
    async def list_experiments(self, limit: int, offset: int) -> tuple[list[Experiment], int]:
        page = (
            select(experiments)
            .order_by(experiments.c.created_at.desc(), experiments.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        async with self._engine.connect() as conn:
            total = (await conn.execute(select(func.count()).select_from(experiments))).scalar_one()
            items = await self._load_experiments(conn, page)
        return items, total

    async def _load_experiments(self, conn: AsyncConnection, query: Any) -> list[Experiment]:
        rows = (await conn.execute(query)).all()
        if not rows:
            return []
        by_experiment: dict[str, list[Variant]] = defaultdict(list)
        variant_rows = await conn.execute(
            select(variants)
            .where(variants.c.experiment_id.in_([r.id for r in rows]))
            .order_by(variants.c.experiment_id, variants.c.position)
        )
        for v in variant_rows:
            by_experiment[v.experiment_id].append(
                Variant(v.id, v.name, v.traffic_basis_points, bool(v.is_control))
            )
        return [
            Experiment(
                id=r.id,
                name=r.name,
                description=r.description,
                primary_event_type=r.primary_event_type,
                created_at=from_micros(r.created_at),
                variants=tuple(by_experiment[r.id]),
            )
            for r in rows
        ]

    _assignment_query = select(
        user_assignments.c.experiment_id,
        user_assignments.c.user_id,
        user_assignments.c.variant_id,
        variants.c.name,
        user_assignments.c.assigned_at,
    ).join(variants, variants.c.id == user_assignments.c.variant_id)

    def _assignment_where(self, experiment_id: str, user_id: str) -> Any:
        return self._assignment_query.where(
            user_assignments.c.experiment_id == experiment_id,
            user_assignments.c.user_id == user_id,
        )

    @staticmethod
    def _assignment_of(row: Any) -> Assignment | None:
        if row is None:
            return None
        return Assignment(row[0], row[1], row[2], row[3], from_micros(row[4]))

    @_unavailable_on_connection_loss
    async def get_assignment(self, experiment_id: str, user_id: str) -> Assignment | None:
        if self._unmatchable(experiment_id, user_id):
            return None
        async with self._engine.connect() as conn:
            return self._assignment_of((await conn.execute(self._assignment_where(experiment_id, user_id))).first())

    @_unavailable_on_connection_loss
    async def add_assignment(self, assignment: Assignment) -> Assignment:
        def insert(conn: Connection) -> Assignment | None:
            inserted = conn.execute(
                self._insert(user_assignments)
                .values(
                    experiment_id=assignment.experiment_id,
                    user_id=assignment.user_id,
                    variant_id=assignment.variant_id,
                    assigned_at=to_micros(assignment.assigned_at),
                )
                .on_conflict_do_nothing(index_elements=["experiment_id", "user_id"])
            )
            if inserted.rowcount == 1:
                self._totals.lock(conn, [assignment.experiment_id])
                self._totals.fold_earlier_events(
                    conn, assignment.experiment_id, assignment.user_id, to_micros(assignment.assigned_at)
                )
            # Whoever inserted first (this call or a racing one) is the assignment for good.
            return self._assignment_of(
                conn.execute(self._assignment_where(assignment.experiment_id, assignment.user_id)).first()
            )

        stored = await self._transact(insert)
        assert stored is not None, "an assignment just inserted or found conflicting must exist"
        return stored

    @_unavailable_on_connection_loss
    async def add_events(self, batch: EventBatch) -> int:
        """Store the batch, skipping event_ids already stored; return how many were stored."""
        if not len(batch):
            return 0
        rows = batch.rows()
        if self._dialect == "postgresql":
            return await self._transact(lambda conn: self._add_events_postgresql(conn, rows))
        return await self._transact(lambda conn: self._add_events_sqlite(conn, rows))

    def _add_events_sqlite(self, conn: Connection, rows: list[tuple[Any, ...]]) -> int:
        # The write lock is held: every rowid past the highest now is one of this batch.
        highest = conn.exec_driver_sql("SELECT COALESCE(MAX(id), 0) FROM events").scalar_one()
        inserted = conn.exec_driver_sql(_INSERT_EVENTS_SQLITE, rows)
        self._totals.fold_after_rowid(conn, highest)
        # executemany's rowcount sums over the rows: the ones not skipped as duplicates.
        return inserted.rowcount

    def _add_events_postgresql(self, conn: Connection, rows: list[tuple[Any, ...]]) -> int:
        self._totals.lock(conn, {row[0] for row in rows})
        columns = {name: [row[i] for row in rows] for i, name in enumerate(_EVENT_COLUMNS)}
        stored = conn.execute(_INSERT_EVENTS_FROM_ARRAYS, columns).scalars().all()
        self._totals.fold_ids(conn, stored)
        return len(stored)

    @_unavailable_on_connection_loss
    async def rebuild_aggregates(self) -> None:
        def rebuild(conn: Connection) -> None:
            self._totals.lock(conn, ["*rebuild*"])
            self._totals.rebuild(conn)

        await self._transact(rebuild)

    @_unavailable_on_connection_loss
    async def variant_aggregates(
        self, experiment: Experiment, query: ResultQuery
    ) -> Mapping[str, VariantAggregate]:
        if self._use_totals and query.start is None and query.end is None:
            return await self._from_totals(experiment, query)
        a = user_assignments
        assigned = [a.c.experiment_id == experiment.id]
        if query.end is not None:
            assigned.append(a.c.assigned_at <= to_micros(query.end))
        days = self._whole_days(query) if self._use_totals else None
        per_type = (
            self._per_type_from_days(experiment, *days)
            if days is not None
            else self._per_type_from_events(experiment, query)
        )
        shown = [per_type.c.t == query.event_type] if query.event_type is not None else []
        primary_only = (
            [per_type.c.t == query.primary_event_type] if query.primary_event_type is not None else []
        )
        per_user = (
            select(
                per_type.c.v.label("v"),
                func.sum(per_type.c.n).label("n"),
                func.sum(per_type.c.s).label("s"),
            )
            .where(*primary_only)
            .group_by(per_type.c.v, per_type.c.u)
            .subquery()
        )
        none_text, none_int, none_float = (cast(null(), t) for t in (String, BigInteger, Float))
        figures_q = union_all(
            select(literal("type"), per_type.c.v, per_type.c.t, func.sum(per_type.c.n),
                   none_int, none_float, none_float)
            .where(*shown).group_by(per_type.c.v, per_type.c.t),
            select(literal("uniq"), per_type.c.v, none_text, func.count(per_type.c.u.distinct()),
                   none_int, none_float, none_float)
            .where(*shown).group_by(per_type.c.v),
            select(literal("prim"), per_user.c.v, none_text, func.count(), func.sum(per_user.c.n),
                   func.sum(per_user.c.s), func.sum(per_user.c.s * per_user.c.s))
            .group_by(per_user.c.v),
        )
        users_q = select(a.c.variant_id, func.count()).where(*assigned).group_by(a.c.variant_id)

        async with self._engine.connect() as conn:
            conn = await conn.execution_options(**self._snapshot)
            async with conn.begin():
                users = {row[0]: row[1] for row in await conn.execute(users_q)}
                figures = (await conn.execute(figures_q)).all()
        by_type: dict[str, dict[str, int]] = defaultdict(dict)
        uniques: dict[str, int] = {}
        primaries: dict[str, tuple[Any, ...]] = {}
        for kind, variant_id, event_type, count, *sums in figures:
            if kind == "type":
                by_type[variant_id][event_type] = int(count)
            elif kind == "uniq":
                uniques[variant_id] = int(count)
            else:
                primaries[variant_id] = (count, *sums)
        result = {}
        for v in experiment.variants:
            converters, count, value_sum, value_sq = primaries.get(v.id, (0, 0, 0.0, 0.0))
            result[v.id] = VariantAggregate(
                variant_id=v.id,
                users=users.get(v.id, 0),
                events=sum(by_type[v.id].values()),
                unique_users_with_events=uniques.get(v.id, 0),
                event_counts=by_type[v.id],
                primary_event_count=int(count or 0),
                primary_unique_users=int(converters or 0),
                value_sum=float(value_sum or 0.0),
                value_sum_squares=float(value_sq or 0.0),
            )
        return result

    @staticmethod
    def _whole_days(query: ResultQuery) -> tuple[int | None, int | None] | None:
        """The first and last UTC day of a range made of whole days, or None if it is not one
        (or has no bounds at all: that is the plain totals' case)."""
        start = None if query.start is None else to_micros(query.start)
        end = None if query.end is None else to_micros(query.end)
        if start is None and end is None:
            return None
        if (start is not None and start % MICROS_PER_DAY) or (end is not None and (end + 1) % MICROS_PER_DAY):
            return None
        return (
            None if start is None else start // MICROS_PER_DAY,
            None if end is None else (end + 1) // MICROS_PER_DAY - 1,
        )

    @staticmethod
    def _per_type_from_events(experiment: Experiment, query: ResultQuery) -> Any:
        """Per variant, user and type, in one walk over the events in range: the fallback for
        a range with a time of day. (Three joins over events, one per figure, took three times
        as long.)"""
        a, e = user_assignments.c, events.c
        counted = [
            e.experiment_id == experiment.id,
            e.timestamp + 0 >= a.assigned_at,  # + 0: see REBUILD_SQL in aggregates.py
        ]
        if query.start is not None:
            counted.append(e.timestamp >= to_micros(query.start))
        if query.end is not None:
            counted.append(e.timestamp <= to_micros(query.end))
        return (
            select(
                a.variant_id.label("v"),
                e.user_id.label("u"),
                e.event_type.label("t"),
                func.count().label("n"),
                func.sum(func.coalesce(e.value, 0.0)).label("s"),
            )
            .select_from(
                events.join(
                    user_assignments,
                    and_(a.experiment_id == e.experiment_id, a.user_id == e.user_id),
                )
            )
            .where(*counted)
            .group_by(a.variant_id, e.user_id, e.event_type)
            .cte("per_type")
        )

    @staticmethod
    def _per_type_from_days(experiment: Experiment, first: int | None, last: int | None) -> Any:
        """Per variant, user and type over whole days, from the per-day totals. They hold only
        events counted (stamped at or after the assignment), so an event up to the range's end
        implies an assignment up to it too."""
        a, d = user_assignments.c, user_day_totals.c
        within = [d.experiment_id == experiment.id]
        if first is not None:
            within.append(d.day >= first)
        if last is not None:
            within.append(d.day <= last)
        return (
            select(
                a.variant_id.label("v"),
                d.user_id.label("u"),
                d.event_type.label("t"),
                func.sum(d.events).label("n"),
                func.sum(d.value_sum).label("s"),
            )
            .select_from(
                user_day_totals.join(
                    user_assignments,
                    and_(a.experiment_id == d.experiment_id, a.user_id == d.user_id),
                )
            )
            .where(*within)
            .group_by(a.variant_id, d.user_id, d.event_type)
            .cte("per_type")
        )

    async def _from_totals(
        self, experiment: Experiment, query: ResultQuery
    ) -> Mapping[str, VariantAggregate]:
        """No date range: a few rows of pre-aggregated totals, whatever the number of events."""
        a = user_assignments.c
        users_q = (
            select(a.variant_id, func.count())
            .where(a.experiment_id == experiment.id)
            .group_by(a.variant_id)
        )
        async with self._engine.connect() as conn:
            conn = await conn.execution_options(**self._snapshot)
            async with conn.begin():
                users = {row[0]: row[1] for row in await conn.execute(users_q)}
                totals = await Aggregates.read(conn, experiment.id)
        nothing = Totals(0, 0, 0.0, 0.0)
        shown_type = ANY_TYPE if query.event_type is None else query.event_type
        primary_type = ANY_TYPE if query.primary_event_type is None else query.primary_event_type
        result = {}
        for v in experiment.variants:
            by_type = totals.get(v.id, {})
            counts = {
                t: x.events
                for t, x in by_type.items()
                if t != ANY_TYPE and query.event_type in (None, t)
            }
            primary = by_type.get(primary_type, nothing)
            result[v.id] = VariantAggregate(
                variant_id=v.id,
                users=users.get(v.id, 0),
                events=sum(counts.values()),
                unique_users_with_events=by_type.get(shown_type, nothing).users,
                event_counts=counts,
                primary_event_count=primary.events,
                primary_unique_users=primary.users,
                value_sum=float(primary.value_sum),
                value_sum_squares=float(primary.value_sum_squares),
            )
        return result

    async def ping(self) -> bool:
        try:
            async with self._engine.connect() as conn:
                await conn.exec_driver_sql("SELECT 1")
        except (SQLAlchemyError, OSError):
            return False
        return True

    async def close(self) -> None:
        if self._group is not None:
            await self._group.close()
        await self._engine.dispose()
