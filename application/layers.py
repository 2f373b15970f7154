"""Layers and holdouts: experiments that never share a user, users kept out of them, and their lift."""

from __future__ import annotations

from dataclasses import dataclass

from application.ports import (
    Catalog,
    Clock,
    IdSource,
)
from application.results import ResultsSlots
from domain.errors import (
    FieldError,
    NotFound,
    ValidationFailed,
    text_error,
)
from domain.experiment import BUCKETS
from domain.layers import (
    Holdout,
    Layer,
    Slice,
)
from domain.stats import Proportion, TestResult, two_proportion_test


@dataclass(frozen=True, slots=True)
class LayerView:
    layer: Layer
    slices: list[tuple[str, Slice]]  # (experiment id, slice) of its live experiments

    @property
    def free_basis_points(self) -> int:
        return BUCKETS - sum(s.size for _, s in self.slices)


@dataclass(frozen=True, slots=True)
class HoldoutResults:
    holdout: Holdout
    event_type: str
    held_out: Proportion  # of the held-out users, those who converted
    exposed: Proportion
    test: TestResult  # exposed against held out


class LayersAndHoldouts:
    """Create and read layers (namespaces) and holdouts; a holdout's results."""

    def __init__(self, store: Catalog, clock: Clock, ids: IdSource, slots: ResultsSlots) -> None:
        self._store, self._clock, self._ids = store, clock, ids
        self._slots = slots

    async def create_layer(self, name: str) -> LayerView:
        layer = Layer.create(name, self._ids.new_id, seed=self._ids.new_id(), created_at=self._clock.now())
        await self._store.add_layer(layer)
        return LayerView(layer, [])

    async def layer(self, layer_id: str) -> LayerView:
        layer = await self._store.get_layer(layer_id)
        if layer is None:
            raise NotFound("layer", layer_id)
        return LayerView(layer, await self._store.layer_slices(layer_id))

    async def layers(self) -> list[LayerView]:
        return [LayerView(layer, await self._store.layer_slices(layer.id)) for layer in await self._store.list_layers()]

    async def create_holdout(self, name: str, percentage: float) -> Holdout:
        holdout = Holdout.create(name, percentage, self._ids.new_id, seed=self._ids.new_id(), created_at=self._clock.now())
        await self._store.add_holdout(holdout)
        return holdout

    async def holdout(self, holdout_id: str) -> Holdout:
        holdout = await self._store.get_holdout(holdout_id)
        if holdout is None:
            raise NotFound("holdout", holdout_id)
        return holdout

    async def holdouts(self) -> list[Holdout]:
        return await self._store.list_holdouts()

    async def holdout_results(self, holdout_id: str, event_type: str | None) -> HoldoutResults:
        holdout = await self.holdout(holdout_id)
        error = text_error(event_type, "event_type") if event_type else FieldError("event_type", "is required")
        if error is not None:
            raise ValidationFailed([error])
        held_users, held_converted, exposed_users, exposed_converted = await self._slots.shared(
            ("holdout", holdout_id, event_type), lambda: self._store.holdout_outcomes(holdout_id, event_type)
        )
        held_out, exposed = Proportion(held_users, held_converted), Proportion(exposed_users, exposed_converted)
        return HoldoutResults(holdout, event_type, held_out, exposed, two_proportion_test(held_out, exposed))
