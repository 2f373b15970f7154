"""The write side of the SQL store, and the reads a write needs: experiments, assignments and
events. Writes only insert rows and commit; the folder (folding.py) does the rest later."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import Table, and_, func, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.sqlalchemy.access import insert_audit
from adapters.sqlalchemy.counting import counted
from adapters.sqlalchemy.database import Database
from adapters.sqlalchemy.experiment_rows import (
    ExperimentRows,
    experiment_from_rows,
    experiment_to_rows,
)
from adapters.sqlalchemy.tables import (
    events,
    experiment_overrides,
    experiments,
    holdout_members,
    holdouts,
    layers,
    user_assignments,
    variants,
)
from application.unit_of_work import take_audit_entries
from domain.assignment import Assignment, HeldOut
from domain.errors import ConcurrentChange, DuplicateExperimentName, DuplicateName
from domain.event import EventBatch, from_micros, to_micros
from domain.experiment import Experiment
from domain.layers import Holdout, HoldoutRef, Layer, Slice, SliceTaken
from domain.lifecycle import Status


def _check_slice(conn: Connection, experiment: Experiment) -> None:
    """In the creating transaction: the layer row locked (PostgreSQL; SQLite has one writer),
    then no live experiment of the layer may hold a bucket of the new slice."""
    slot = experiment.layer
    if slot is None:
        return
    conn.execute(select(layers.c.id).where(layers.c.id == slot.layer_id).with_for_update())
    taken = conn.execute(
        select(experiments.c.slice_start, experiments.c.slice_end).where(
            experiments.c.layer_id == slot.layer_id,
            experiments.c.status != Status.ARCHIVED.value,
            experiments.c.id != experiment.id,
        )
    )
    if any(slot.slice.overlaps(Slice(start, end)) for start, end in taken):
        raise SliceTaken(slot.layer_id)


def _insert_parts(conn: Connection, rows: ExperimentRows, *, variants_too: bool) -> None:
    if variants_too:
        conn.execute(variants.insert(), rows.variants)
    if rows.overrides:
        conn.execute(experiment_overrides.insert(), rows.overrides)


_REGISTER_PAIR = text(
    "INSERT INTO metric_pairs (experiment_id, numerator_type, denominator_type, filled)"
    " VALUES (:x, :a, :b, :filled) ON CONFLICT (experiment_id, numerator_type, denominator_type) DO NOTHING"
)


def _register_pairs(conn: Connection, experiment: Experiment) -> None:
    """The ratio metrics' pairs, for the folder to keep their cross sums (folding.py); a pair
    stays registered when a metric is dropped, so that declaring it again costs nothing."""
    pairs = sorted({p for m in experiment.analysis.metrics if (p := m.pair) is not None})
    if pairs:
        conn.execute(_REGISTER_PAIR, [{"x": experiment.id, "a": a, "b": b, "filled": False} for a, b in pairs])


_REGISTER_COVARIATES = text(
    "INSERT INTO covariate_experiments (experiment_id, filled) VALUES (:x, :filled)"
    " ON CONFLICT (experiment_id) DO NOTHING"
)


def _register_covariates(conn: Connection, experiment: Experiment, *, new: bool) -> None:
    """An experiment with ``analysis.cuped``, for the folder to keep its users' pre-periods
    (folding.py). A new one has nothing to fill (no event can name an experiment before it
    exists); one changed to it is filled by the next fold from the events already stored. It
    stays registered when CUPED is turned off, so that turning it on again costs nothing."""
    if experiment.analysis.cuped:
        conn.execute(_REGISTER_COVARIATES, {"x": experiment.id, "filled": new})


class Experiments:
    IDS_PER_STATEMENT = 1000  # well within SQLite's 32,766 bound parameters

    def __init__(self, database: Database) -> None:
        self._db = database

    async def add(self, experiment: Experiment) -> None:
        rows = experiment_to_rows(experiment)
        entries = take_audit_entries()

        def insert(conn: Connection) -> None:
            _check_slice(conn, experiment)
            conn.execute(experiments.insert().values(**rows.experiment))
            _insert_parts(conn, rows, variants_too=True)
            _register_pairs(conn, experiment)
            _register_covariates(conn, experiment, new=True)
            insert_audit(conn, entries)

        try:
            await self._db.write(insert)
        except IntegrityError as exc:
            raise DuplicateExperimentName(experiment.name) from exc

    async def update(self, experiment: Experiment, expected_version: int) -> None:
        """One transaction: the row if still at ``expected_version``, and its parts replaced."""
        stored_variants = None
        entries = take_audit_entries()
        rows = experiment_to_rows(experiment)
        columns = {k: v for k, v in rows.experiment.items() if k != "id"}  # the key stays

        def update(conn: Connection) -> None:
            nonlocal stored_variants
            changed = conn.execute(
                experiments.update()
                .where(experiments.c.id == experiment.id, experiments.c.version == expected_version)
                .values(**columns)
            ).rowcount
            if changed != 1:
                raise ConcurrentChange(experiment.id)
            stored_variants = [
                r[0] for r in conn.execute(
                    select(variants.c.id).where(variants.c.experiment_id == experiment.id).order_by(variants.c.position)
                )
            ]
            new_split = stored_variants != [v.id for v in experiment.variants]
            conn.execute(experiment_overrides.delete().where(experiment_overrides.c.experiment_id == experiment.id))
            if new_split:  # in draft only (the domain refuses it later): no assignment names them
                conn.execute(variants.delete().where(variants.c.experiment_id == experiment.id))
            _insert_parts(conn, rows, variants_too=new_split)
            _register_pairs(conn, experiment)
            _register_covariates(conn, experiment, new=False)
            insert_audit(conn, entries)

        try:
            await self._db.write(update)
        except IntegrityError as exc:
            raise DuplicateExperimentName(experiment.name) from exc

    async def existing(self, experiment_ids: Collection[str]) -> set[str]:
        """One connection, one statement per thousand ids: a batch naming 10,000 experiments
        costs ten index probes of a round trip each, not 10,000 lookups."""
        longest = experiments.c.id.type.length  # no longer id was ever stored: no need to ask
        wanted = sorted(
            {i for i in experiment_ids if len(i) <= longest and not self._db.dialect.unmatchable(i)}
        )
        found: set[str] = set()
        if not wanted:
            return found
        async with self._db.connect() as conn:
            for start in range(0, len(wanted), self.IDS_PER_STATEMENT):
                chunk = wanted[start : start + self.IDS_PER_STATEMENT]
                rows = await conn.execute(select(experiments.c.id).where(experiments.c.id.in_(chunk)))
                found.update(row[0] for row in rows)
        return found

    async def get(self, experiment_id: str) -> Experiment | None:
        if self._db.dialect.unmatchable(experiment_id):
            return None
        async with self._db.connect() as conn:
            found = await self._load(conn, select(experiments).where(experiments.c.id == experiment_id))
        return found[0] if found else None

    async def page(self, limit: int, offset: int) -> tuple[list[Experiment], int]:
        page = (
            select(experiments)
            .order_by(experiments.c.created_at.desc(), experiments.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        async with self._db.connect() as conn:
            total = (await conn.execute(select(func.count()).select_from(experiments))).scalar_one()
            items = await self._load(conn, page)
        return items, total

    @staticmethod
    async def _load(conn: AsyncConnection, query: Any) -> list[Experiment]:
        rows = (await conn.execute(query)).all()
        if not rows:
            return []
        variants_of: dict[str, list[Any]] = defaultdict(list)
        variant_rows = await conn.execute(
            select(variants)
            .where(variants.c.experiment_id.in_([r.id for r in rows]))
            .order_by(variants.c.experiment_id, variants.c.position)
        )
        for v in variant_rows:
            variants_of[v.experiment_id].append(v._mapping)
        overrides_of: dict[str, list[Any]] = defaultdict(list)
        override_rows = await conn.execute(
            select(experiment_overrides)
            .where(experiment_overrides.c.experiment_id.in_([r.id for r in rows]))
            .order_by(experiment_overrides.c.forced_at, experiment_overrides.c.user_id)
        )
        for o in override_rows:
            overrides_of[o.experiment_id].append(o._mapping)
        layer_seeds = {
            r.id: r.seed
            for r in await conn.execute(
                select(layers.c.id, layers.c.seed).where(layers.c.id.in_({r.layer_id for r in rows if r.layer_id}))
            )
        }
        holdout_refs = {
            r.id: HoldoutRef(r.id, r.seed, r.basis_points)
            for r in await conn.execute(
                select(holdouts.c.id, holdouts.c.seed, holdouts.c.basis_points).where(
                    holdouts.c.id.in_({r.holdout_id for r in rows if r.holdout_id})
                )
            )
        }
        return [
            experiment_from_rows(r._mapping, variants_of[r.id], overrides_of[r.id], layer_seeds, holdout_refs)
            for r in rows
        ]


_a = user_assignments.c
_ASSIGNMENT = select(_a.experiment_id, _a.user_id, _a.variant_id, variants.c.name, _a.assigned_at).join(
    variants, variants.c.id == _a.variant_id
)


def _assignment_of(row: Any) -> Assignment:
    return Assignment(row[0], row[1], row[2], row[3], from_micros(row[4]))


class Assignments:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def get(self, experiment_id: str, user_id: str) -> Assignment | None:
        if self._db.dialect.unmatchable(experiment_id, user_id):
            return None
        query = _ASSIGNMENT.where(_a.experiment_id == experiment_id, _a.user_id == user_id)
        async with self._db.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _assignment_of(row)

    async def add(self, assignment: Assignment) -> Assignment:
        """Insert unless one exists; return the stored one (the first of racing inserts)."""
        return await self._db.write_batched(self._add_all, assignment)

    async def add_exposures(self, decided: Sequence[Assignment], held_out: Sequence[HeldOut]) -> list[Assignment]:
        """The assignments and holdout members in one transaction: all stored, or none."""
        members = [{"h": m.holdout_id, "u": m.user_id, "t": to_micros(m.seen_at)} for m in held_out]

        def job(conn: Connection) -> list[Assignment]:
            if members:
                conn.execute(_ADD_MEMBER, members)
            return self._add_all(conn, decided) if decided else []

        return await self._db.write(job)

    def _add_all(self, conn: Connection, decided: Sequence[Assignment]) -> list[Assignment]:
        rows = [(a.experiment_id, a.user_id, a.variant_id, to_micros(a.assigned_at)) for a in decided]
        dimensions = [(a.experiment_id, a.user_id, name, value) for a in decided for name, value in a.dimensions]
        stored = self._db.dialect.insert_assignments(conn, rows, dimensions)
        out = []
        for a, found in zip(decided, stored, strict=True):
            if found is not None and found[0] == a.variant_id:
                out.append(Assignment(a.experiment_id, a.user_id, a.variant_id, a.variant_name, from_micros(found[1])))
            else:  # a race lost to an insert this statement could not see yet: read the winner
                query = _ASSIGNMENT.where(_a.experiment_id == a.experiment_id, _a.user_id == a.user_id)
                out.append(_assignment_of(conn.execute(query).one()))
        return out


class Events:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def add(self, batch: EventBatch) -> int:
        """Store the batch, skipping event_ids already stored; return how many were stored."""
        if not len(batch):
            return 0
        d = self._db.dialect
        return await self._db.write(lambda conn: d.insert_events(conn, batch), one_statement=True)


_ADD_MEMBER = text(
    "INSERT INTO holdout_members (holdout_id, user_id, first_seen_at) VALUES (:h, :u, :t)"
    " ON CONFLICT (holdout_id, user_id) DO NOTHING"
)


class Layers:
    """Layers and holdouts: few rows, read with the experiments that use them."""

    def __init__(self, database: Database, results_timeout: float | None = None) -> None:
        """``results_timeout``: seconds a holdout's outcomes may be read before the database
        stops the read."""
        self._db = database
        self._results_timeout = results_timeout

    async def add_layer(self, layer: Layer) -> None:
        row = {"id": layer.id, "name": layer.name, "seed": layer.seed, "created_at": to_micros(layer.created_at)}
        await self._add_named(layers, "layer", row)

    async def layers(self, layer_id: str | None = None) -> list[Layer]:
        rows = await self._newest_first(layers, layer_id)
        return [Layer(r.id, r.name, r.seed, from_micros(r.created_at)) for r in rows]

    async def slices(self, layer_id: str) -> list[tuple[str, Slice]]:
        query = (
            select(experiments.c.id, experiments.c.slice_start, experiments.c.slice_end)
            .where(experiments.c.layer_id == layer_id, experiments.c.status != Status.ARCHIVED.value)
            .order_by(experiments.c.slice_start)
        )
        async with self._db.connect() as conn:
            return [(r[0], Slice(r[1], r[2])) for r in await conn.execute(query)]

    async def add_holdout(self, holdout: Holdout) -> None:
        row = {"id": holdout.id, "name": holdout.name, "seed": holdout.seed,
               "basis_points": holdout.basis_points, "created_at": to_micros(holdout.created_at)}
        await self._add_named(holdouts, "holdout", row)

    async def holdouts(self, holdout_id: str | None = None) -> list[Holdout]:
        rows = await self._newest_first(holdouts, holdout_id)
        return [Holdout(r.id, r.name, r.seed, r.basis_points, from_micros(r.created_at)) for r in rows]

    async def _add_named(self, table: Table, kind: str, row: dict[str, Any]) -> None:
        """Layers and holdouts alike: a row whose name is unique (DuplicateName otherwise)."""
        try:
            await self._db.write(lambda conn: conn.execute(table.insert().values(**row)))
        except IntegrityError as exc:
            raise DuplicateName(kind, row["name"]) from exc

    async def _newest_first(self, table: Table, row_id: str | None) -> list[Any]:
        query = select(table).order_by(table.c.created_at.desc(), table.c.id.desc())
        if row_id is not None:
            query = query.where(table.c.id == row_id)
        async with self._db.connect() as conn:
            return list(await conn.execute(query))

    async def add_member(self, holdout_id: str, user_id: str, seen_at: int) -> None:
        def insert(conn: Connection) -> None:
            conn.execute(_ADD_MEMBER, {"h": holdout_id, "u": user_id, "t": seen_at})

        await self._db.write(insert, one_statement=True)

    async def outcomes(self, holdout_id: str, event_type: str) -> tuple[int, int, int, int]:
        """Held-out users and those of them who did ``event_type`` (in an experiment of the
        holdout, at or after they were first held out); exposed users (assigned in one) and
        those who did it at or after their first assignment. Counted from raw rows."""
        m, e, a, x = holdout_members.c, events.c, user_assignments.c, experiments.c
        opted = select(x.id).where(x.holdout_id == holdout_id).scalar_subquery()
        held = select(m.user_id.label("user_id"), m.first_seen_at.label("since")).where(m.holdout_id == holdout_id)
        exposed = (
            select(a.user_id.label("user_id"), func.min(a.assigned_at).label("since"))
            .where(a.experiment_id.in_(opted))
            .group_by(a.user_id)
        )
        counts = []
        async with self._db.snapshot(self._results_timeout) as conn:
            for group in (held.subquery("g"), exposed.subquery("g")):
                users = (await conn.execute(select(func.count()).select_from(group))).scalar_one()
                converted = (
                    await conn.execute(
                        select(func.count(func.distinct(group.c.user_id))).select_from(
                            group.join(events, and_(e.user_id == group.c.user_id, text(counted("events", "g.since"))))
                        ).where(e.experiment_id.in_(opted), e.event_type == event_type)
                    )
                ).scalar_one()
                counts += [users, converted]
        return counts[0], counts[1], counts[2], counts[3]
