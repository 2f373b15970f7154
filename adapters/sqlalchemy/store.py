"""The Store on SQLAlchemy Core, for SQLite and PostgreSQL: writes that append (writes.py), a
folder that folds them into totals behind them (folding.py), and results read from the totals
plus the tail not yet folded (views.py), over one unit of work (database.py)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.sqlalchemy.access import AuditTrail, Keys
from adapters.sqlalchemy.database import Database, unavailable_on_connection_loss
from adapters.sqlalchemy.folding import Folder, Progress
from adapters.sqlalchemy.views import ResultsView
from adapters.sqlalchemy.writes import Assignments, Events, Experiments, Layers
from domain.assignment import Assignment, HeldOut
from domain.audit import AuditEntry
from domain.breakdown import BreakdownTotals
from domain.event import EventBatch, to_micros
from domain.experiment import Experiment
from domain.keys import ApiKey
from domain.layers import Holdout, Layer, Slice
from domain.results import ResultQuery
from domain.series import Period, SeriesTotals
from domain.totals import VariantAggregate


class SqlStore:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        fold_interval: float | None = None,
        results_timeout: float | None = None,
        now: Callable[[], datetime] | None = None,
        backdating: timedelta = timedelta(0),
    ) -> None:
        """``fold_interval``: the folder's rest between folds, seconds; None: the database's
        default (its dialect's ``fold_interval``). ``results_timeout``: seconds a results read
        (an experiment's, a holdout's) may run before the database stops it and ReadTimedOut is
        raised; None: no limit. ``now`` and ``backdating``: the service's clock, and how far
        before its arrival an assignment's time may be; the folder keeps prior events that long
        plus the pre-period before the clock's time (all of them without a clock)."""
        self.database = Database(engine)
        self._experiments = Experiments(self.database)
        self._layers = Layers(self.database, results_timeout)
        self._assignments = Assignments(self.database)
        self._events = Events(self.database)
        self._results = ResultsView(self.database, results_timeout)
        self._keys = Keys(self.database)
        self._audit = AuditTrail(self.database)
        self.folder = Folder(self.database, interval=fold_interval, now=now, backdating=backdating)

    async def start(self) -> None:
        """Start folding in the background (this process folds while it holds the lease)."""
        self.folder.start()

    @unavailable_on_connection_loss
    async def add_experiment(self, experiment: Experiment) -> None:
        await self._experiments.add(experiment)

    @unavailable_on_connection_loss
    async def get_experiment(self, experiment_id: str) -> Experiment | None:
        return await self._experiments.get(experiment_id)

    @unavailable_on_connection_loss
    async def add_layer(self, layer: Layer) -> None:
        await self._layers.add_layer(layer)

    @unavailable_on_connection_loss
    async def get_layer(self, layer_id: str) -> Layer | None:
        found = await self._layers.layers(layer_id)
        return found[0] if found else None

    @unavailable_on_connection_loss
    async def list_layers(self) -> list[Layer]:
        return await self._layers.layers()

    @unavailable_on_connection_loss
    async def layer_slices(self, layer_id: str) -> list[tuple[str, Slice]]:
        return await self._layers.slices(layer_id)

    @unavailable_on_connection_loss
    async def add_holdout(self, holdout: Holdout) -> None:
        await self._layers.add_holdout(holdout)

    @unavailable_on_connection_loss
    async def get_holdout(self, holdout_id: str) -> Holdout | None:
        found = await self._layers.holdouts(holdout_id)
        return found[0] if found else None

    @unavailable_on_connection_loss
    async def list_holdouts(self) -> list[Holdout]:
        return await self._layers.holdouts()

    @unavailable_on_connection_loss
    async def add_holdout_member(self, holdout_id: str, user_id: str, seen_at: datetime) -> None:
        await self._layers.add_member(holdout_id, user_id, to_micros(seen_at))

    @unavailable_on_connection_loss
    async def holdout_outcomes(self, holdout_id: str, event_type: str) -> tuple[int, int, int, int]:
        return await self._layers.outcomes(holdout_id, event_type)

    @unavailable_on_connection_loss
    async def update_experiment(self, experiment: Experiment, expected_version: int) -> None:
        await self._experiments.update(experiment, expected_version)

    @unavailable_on_connection_loss
    async def existing_experiment_ids(self, experiment_ids: Collection[str]) -> set[str]:
        return await self._experiments.existing(experiment_ids)

    @unavailable_on_connection_loss
    async def list_experiments(self, limit: int, offset: int) -> tuple[list[Experiment], int]:
        return await self._experiments.page(limit, offset)

    @unavailable_on_connection_loss
    async def get_assignment(self, experiment_id: str, user_id: str) -> Assignment | None:
        return await self._assignments.get(experiment_id, user_id)

    @unavailable_on_connection_loss
    async def add_assignment(self, assignment: Assignment) -> Assignment:
        self.folder.start()
        return await self._assignments.add(assignment)

    @unavailable_on_connection_loss
    async def add_exposures(self, assignments: Sequence[Assignment], held_out: Sequence[HeldOut]) -> list[Assignment]:
        self.folder.start()
        return await self._assignments.add_exposures(assignments, held_out)

    @unavailable_on_connection_loss
    async def add_events(self, batch: EventBatch) -> int:
        self.folder.start()
        return await self._events.add(batch)

    @unavailable_on_connection_loss
    async def series_totals(self, experiment: Experiment, event_type: str, period: Period) -> SeriesTotals:
        return await self._results.series_totals(experiment, event_type, period)

    async def breakdown_totals(self, experiment: Experiment, dimension: str, event_type: str | None) -> BreakdownTotals:
        return await self._results.breakdown_totals(experiment, dimension, event_type)

    @unavailable_on_connection_loss
    async def variant_aggregates(
        self, experiment: Experiment, query: ResultQuery
    ) -> Mapping[str, VariantAggregate]:
        return await self._results.variant_aggregates(experiment, query)

    @unavailable_on_connection_loss
    async def add_key(self, key: ApiKey) -> None:
        await self._keys.add(key)

    @unavailable_on_connection_loss
    async def get_key(self, key_id: str) -> ApiKey | None:
        return await self._keys.get(key_id)

    @unavailable_on_connection_loss
    async def find_key(self, digest: str) -> ApiKey | None:
        return await self._keys.find(digest)

    @unavailable_on_connection_loss
    async def list_keys(self, limit: int, offset: int) -> tuple[list[ApiKey], int]:
        return await self._keys.page(limit, offset)

    @unavailable_on_connection_loss
    async def revoke_key(self, key_id: str, at: datetime) -> ApiKey | None:
        return await self._keys.revoke(key_id, at)

    @unavailable_on_connection_loss
    async def list_audit(
        self, limit: int, offset: int, *, action: str | None = None, target_id: str | None = None
    ) -> tuple[list[AuditEntry], int]:
        return await self._audit.page(limit, offset, action, target_id)

    @unavailable_on_connection_loss
    async def fold(self) -> int:
        """Fold what is pending now, whoever holds the lease; returns once committed."""
        return await self.folder.fold()

    @unavailable_on_connection_loss
    async def rebuild_aggregates(self, progress: Progress | None = None) -> None:
        await self.folder.rebuild(progress)

    async def ping(self) -> bool:
        return await self.database.ping()

    async def close(self) -> None:
        await self.folder.close()
        await self.database.close()
