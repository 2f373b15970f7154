"""The write side of the SQL store, and the reads a write needs: experiments, assignments and
events. Writes only insert rows and commit; the folder (folding.py) does the rest later."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.sqlalchemy.access import insert_audit
from adapters.sqlalchemy.database import Database
from adapters.sqlalchemy.tables import experiments, user_assignments, variants
from domain.assignment import Assignment
from domain.audit import AuditEntry
from domain.errors import DuplicateExperimentName
from domain.event import EventBatch, from_micros, to_micros
from domain.experiment import Experiment, Variant


class Experiments:
    IDS_PER_STATEMENT = 1000  # well within SQLite's 32,766 bound parameters

    def __init__(self, database: Database) -> None:
        self._db = database

    async def add(self, experiment: Experiment, audit: AuditEntry | None = None) -> None:
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
            if audit is not None:
                insert_audit(conn, audit)

        try:
            await self._db.write(insert)
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

    def _add_all(self, conn: Connection, decided: Sequence[Assignment]) -> list[Assignment]:
        rows = [(a.experiment_id, a.user_id, a.variant_id, to_micros(a.assigned_at)) for a in decided]
        stored = self._db.dialect.insert_assignments(conn, rows)
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
