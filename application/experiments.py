"""Experiments: create, read, list and change them; the cached copy every other use case reads."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from application.paging import MAX_LIMIT, MAX_OFFSET, page_errors
from application.ports import (
    Cache,
    Catalog,
    Clock,
    Experiments,
    IdSource,
)
from application.unit_of_work import UnitOfWork
from domain.assignment import validate_user_id
from domain.audit import (
    EXPERIMENT_CHANGED,
    EXPERIMENT_CREATED,
    AuditEntry,
)
from domain.errors import (
    ConcurrentChange,
    ExperimentNotFound,
    FieldError,
    ValidationFailed,
)
from domain.experiment import BUCKETS, Experiment, VariantDraft, percentage_to_basis_points
from domain.layers import (
    HoldoutRef,
    Layer,
    LayerFull,
    LayerSlot,
    SliceTaken,
    free_slice,
    largest_free,
)


class CreateExperiment:
    def __init__(self, store: Catalog, cache: Cache, clock: Clock, ids: IdSource) -> None:
        self._store, self._cache, self._clock, self._ids = store, cache, clock, ids

    async def __call__(
        self,
        *,
        name: str,
        variants: Sequence[VariantDraft],
        actor: str,
        description: str | None = None,
        primary_event_type: str | None = None,
        status: str | None = None,
        coverage: float | None = None,
        audience: Any = None,
        analysis: Any = None,
        layer_id: str | None = None,
        layer_percentage: float | None = None,
        holdout_id: str | None = None,
    ) -> Experiment:
        now = self._clock.now()
        experiment = Experiment.create(
            name=name,
            description=description,
            primary_event_type=primary_event_type,
            variants=variants,
            new_id=self._ids.new_id,
            created_at=now,
            status=status,
            coverage=coverage,
            audience=audience,
            analysis=analysis,
        )
        errors: list[FieldError] = []
        layer = size = None
        if layer_id is not None:
            layer = await self._store.get_layer(layer_id)
            if layer is None:
                errors.append(FieldError("layer.id", "is not a layer"))
            size = percentage_to_basis_points(layer_percentage) if layer_percentage is not None else None
            if size is None or not 1 <= size <= BUCKETS:
                errors.append(FieldError("layer.percentage", "must be from 0.01 to 100, in 0.01% steps"))
        if holdout_id is not None:
            holdout = await self._store.get_holdout(holdout_id)
            if holdout is None:
                errors.append(FieldError("holdout_id", "is not a holdout"))
            else:
                experiment = replace(experiment, holdout=HoldoutRef(holdout.id, holdout.seed, holdout.basis_points))
        if errors:
            raise ValidationFailed(errors)
        if layer is None:
            await self._add(experiment, actor, now)
        else:
            experiment = await self._add_in_layer(experiment, layer, size, actor, now)  # type: ignore[arg-type]
        return experiment

    async def _add(self, experiment: Experiment, actor: str, now: datetime) -> None:
        async with UnitOfWork() as work:
            work.audit(self._audit(experiment, actor, now))
            work.after_commit(lambda: self._cache.set_experiment(experiment))
            await self._store.add_experiment(experiment)

    def _audit(self, experiment: Experiment, actor: str, now: datetime) -> AuditEntry:
        e = experiment
        return AuditEntry(self._ids.new_id(), now, actor, EXPERIMENT_CREATED, "experiment", e.id, e.document())

    async def _add_in_layer(
        self, experiment: Experiment, layer: Layer, size: int, actor: str, now: datetime
    ) -> Experiment:
        """Take the first free slice of ``size`` buckets; a racing creation in the same layer
        makes the store refuse an overlap, and the slice is picked again."""
        for _ in range(5):
            taken = [s for _, s in await self._store.layer_slices(layer.id)]
            free = free_slice(taken, size)
            if free is None:
                raise LayerFull(largest_free(taken), size)
            placed = replace(experiment, layer=LayerSlot(layer.id, layer.seed, free))
            try:
                await self._add(placed, actor, now)
            except SliceTaken:
                continue
            return placed
        raise ConcurrentChange(layer.id)


class ChangeExperiment:
    """Apply a change to an experiment, store it if the experiment did not change meanwhile
    (ConcurrentChange otherwise: the client reads it again and retries), and make every
    process forget its copy (within the cache's bound). Returns the experiment and the diff."""

    def __init__(self, store: Experiments, cache: Cache, clock: Clock, ids: IdSource) -> None:
        self._store, self._cache, self._clock, self._ids = store, cache, clock, ids

    async def __call__(self, experiment_id: str, actor: str, **changes: Any) -> tuple[Experiment, dict[str, Any]]:
        current = await self._current(experiment_id)
        changed, diff = current.changed(self._clock.now(), self._ids.new_id, **changes)
        if diff:
            await self._save(current, changed, actor, diff)
        return changed, diff

    async def force(self, experiment_id: str, user_id: str, variant_id: str, actor: str) -> Experiment:
        validate_user_id(user_id, "user_id")
        current = await self._current(experiment_id)
        changed = current.forced(user_id, variant_id, self._clock.now())
        before = current.override_for(user_id)
        diff = {"override": {"user_id": user_id, "from": before and before.variant_id, "to": variant_id}}
        await self._save(current, changed, actor, diff)
        return changed

    async def unforce(self, experiment_id: str, user_id: str, actor: str) -> bool:
        """False when the user was not forced."""
        current = await self._current(experiment_id)
        changed = current.unforced(user_id)
        if changed is current:
            return False
        before = current.override_for(user_id)
        diff = {"override": {"user_id": user_id, "from": before and before.variant_id, "to": None}}
        await self._save(current, changed, actor, diff)
        return True

    async def _current(self, experiment_id: str) -> Experiment:
        # From the store, not a cache: a change applies to the latest version.
        experiment = await self._store.get_experiment(experiment_id)
        if experiment is None:
            raise ExperimentNotFound(experiment_id)
        return experiment

    async def _save(self, current: Experiment, changed: Experiment, actor: str, diff: dict[str, Any]) -> None:
        now = self._clock.now()
        async with UnitOfWork() as work:
            work.audit(AuditEntry(self._ids.new_id(), now, actor, EXPERIMENT_CHANGED, "experiment", changed.id, diff))
            work.after_commit(lambda: self._cache.forget_experiment(changed.id))
            await self._store.update_experiment(changed, expected_version=current.version)


class GetExperiment:
    """Read-through: experiments never change, so a cached one is never stale."""

    def __init__(self, store: Experiments, cache: Cache) -> None:
        self._store, self._cache = store, cache

    async def __call__(self, experiment_id: str) -> Experiment:
        experiment = await self._cache.get_experiment(experiment_id)
        if experiment is None:
            experiment = await self._store.get_experiment(experiment_id)
            if experiment is None:
                raise ExperimentNotFound(experiment_id)
            await self._cache.set_experiment(experiment)
        return experiment

    async def unknown(self, experiment_ids: Iterable[str]) -> set[str]:
        """Those of ``experiment_ids`` that name no experiment: the cached ones are known, and
        the store is asked about all the others at once, so the cost of a batch does not grow
        with the number of distinct (perhaps made-up) experiments it names."""
        uncached = set()
        for experiment_id in set(experiment_ids):
            if await self._cache.get_experiment(experiment_id) is None:
                uncached.add(experiment_id)
        if not uncached:
            return uncached
        return uncached - await self._store.existing_experiment_ids(uncached)


@dataclass(frozen=True, slots=True)
class ExperimentPage:
    items: list[Experiment]
    total: int


class ListExperiments:
    MAX_LIMIT, MAX_OFFSET = MAX_LIMIT, MAX_OFFSET

    def __init__(self, store: Experiments) -> None:
        self._store = store

    async def __call__(self, *, limit: int = 100, offset: int = 0) -> ExperimentPage:
        if errors := page_errors(limit, offset):
            raise ValidationFailed(errors)
        items, total = await self._store.list_experiments(limit, offset)
        return ExperimentPage(items, total)


class AllExperiments:
    """Every experiment, read page by page from the store: what clients assign from locally
    (GET /definitions). Read from the store, not a cache, so that a change is seen at once."""

    PAGE = MAX_LIMIT

    def __init__(self, store: Experiments) -> None:
        self._store = store

    async def __call__(self) -> list[Experiment]:
        """Each experiment once: one created while the pages are read pushes the newest-first
        pages down, and the next page then repeats the last one read."""
        found: dict[str, Experiment] = {}
        offset = 0
        while True:
            items, total = await self._store.list_experiments(self.PAGE, offset)
            offset += len(items)
            found.update((e.id, e) for e in items)
            if not items or offset >= total:
                return list(found.values())
