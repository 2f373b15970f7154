"""Tracking: what users did, recorded all or nothing per batch."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from application.experiments import GetExperiment
from application.ports import (
    Clock,
    Events,
)
from domain.errors import (
    EventsAhead,
    UnknownExperiments,
    ValidationFailed,
)
from domain.event import NewEvents, batch_size_error, events_ahead


@dataclass(frozen=True, slots=True)
class RecordOutcome:
    accepted: int
    duplicates: int


class RecordEvents:
    """Store events all or none: each of an existing experiment, timed when received if the
    client did not say, and not stamped further ahead of the clock than ``future_skew``. The
    rules of each event alone were checked where the events came in."""

    DEFAULT_FUTURE_SKEW = timedelta(days=7)

    def __init__(
        self,
        experiments: GetExperiment,
        store: Events,
        clock: Clock,
        future_skew: timedelta = DEFAULT_FUTURE_SKEW,
    ) -> None:
        self._experiments, self._store, self._clock = experiments, store, clock
        self._future_skew = future_skew

    @property
    def future_skew(self) -> timedelta:
        return self._future_skew

    async def __call__(self, events: NewEvents) -> RecordOutcome:
        """Raises EventsAhead, naming every event stamped too far ahead, then UnknownExperiments,
        naming every event of an experiment that does not exist."""
        if (error := batch_size_error(len(events))) is not None:
            raise ValidationFailed([error])
        now = self._clock.now()
        if ahead := self.too_far_ahead(events.timestamps, now):
            raise EventsAhead(ahead, self._future_skew)
        experiment_ids = events.experiment_ids
        if unknown := await self.unknown_experiments(experiment_ids):
            raise UnknownExperiments(
                {i: x for i, x in enumerate(experiment_ids) if x in unknown}
            )
        batch = events.stamped(now)
        accepted = await self._store.add_events(batch)
        return RecordOutcome(accepted=accepted, duplicates=len(batch) - accepted)

    def too_far_ahead(self, timestamps: Iterable[int | None], now: datetime | None = None) -> list[int]:
        """The positions of the timestamps later than the clock plus the allowed skew."""
        return events_ahead(timestamps, now or self._clock.now(), self._future_skew)

    async def unknown_experiments(self, experiment_ids: Iterable[str]) -> set[str]:
        """Those of ``experiment_ids`` that name no experiment, in one store lookup at most."""
        return await self._experiments.unknown(experiment_ids)
