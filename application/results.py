"""Results: the experiment's figures, and the bound that keeps results reads from piling up."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import replace
from datetime import date, datetime
from typing import Any, Generic, TypeVar

from application.experiments import GetExperiment
from application.ports import Clock, Totals
from domain.analysis import Analysis, AnalysisOverrides
from domain.breakdown import Breakdown, breakdown
from domain.errors import FieldError, ResultsBusy, ValidationFailed
from domain.experiment import Experiment
from domain.results import ExperimentResults, ResultCalculator, ResultQuery
from domain.series import (
    Period,
    TimeSeries,
    calendar_series,
    event_type_of,
    exposure_series,
    period_of,
)

T = TypeVar("T")


class ResultsSlots:
    """At most ``limit`` results read from the store at once in this process, so that a burst
    of results requests cannot pile queries onto the database (each holds a connection and
    reads many rows). A request past the bound waits up to ``wait_seconds`` for a slot, first
    come first served, and is then refused with ResultsBusy; with a wait of 0 it is refused
    at once. One set of slots serves experiment and holdout results alike."""

    RETRY_AFTER_SECONDS = 1
    """A slot frees as soon as one results read ends: usually well within a second."""

    def __init__(self, limit: int, wait_seconds: float) -> None:
        if limit < 1:
            raise ValueError("a results bound needs at least one slot")
        self._limit, self._wait = limit, wait_seconds
        self._free = limit
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._unstarted: dict[Hashable, _SharedRead[Any]] = {}

    async def shared(self, key: Hashable, read: Callable[[], Awaitable[T]]) -> T:
        """``read()`` within a slot, shared by every request for the same ``key`` that arrives
        before it starts: a burst of the same results costs the store one read, not one each.

        Only a read that has not begun is shared. It begins (takes its snapshot of the store)
        after it has its slot, and from then on a new request starts a read of its own: whoever
        shares a read arrived before its snapshot, so every answer holds what was acknowledged
        before its request, as an unshared read would. A request that goes away (its client
        disconnected) stops waiting; the read is cancelled once no request waits for it."""
        entry = self._unstarted.get(key)
        if entry is None:
            entry = _SharedRead()
            entry.task = asyncio.ensure_future(self._read_in_slot(key, entry, read))
            # Retrieved here, so that a failure seen by no one (they all left) is not reported.
            entry.task.add_done_callback(lambda t: t.cancelled() or t.exception())
            self._unstarted[key] = entry
        entry.waiting += 1
        try:
            return await asyncio.shield(entry.task)
        finally:
            entry.waiting -= 1
            if entry.waiting == 0 and not entry.task.done():
                self._forget(key, entry)  # so that no request joins a read being cancelled
                entry.task.cancel()  # no one waits for it any more: its statement stops too

    async def _read_in_slot(self, key: Hashable, entry: _SharedRead[T], read: Callable[[], Awaitable[T]]) -> T:
        try:
            async with self:
                self._forget(key, entry)  # begins now: later requests read anew
                return await read()
        finally:
            self._forget(key, entry)

    def _forget(self, key: Hashable, entry: _SharedRead[Any]) -> None:
        if self._unstarted.get(key) is entry:
            del self._unstarted[key]

    @property
    def running(self) -> int:
        return self._limit - self._free

    async def __aenter__(self) -> None:
        if self._free and not self._waiters:
            self._free -= 1
            return
        if self._wait <= 0:
            raise ResultsBusy(self._limit, self.RETRY_AFTER_SECONDS)
        loop = asyncio.get_running_loop()
        turn: asyncio.Future[None] = loop.create_future()
        self._waiters.append(turn)
        expiry = loop.call_later(self._wait, self._expire, turn)
        try:
            await turn
        except BaseException:
            if turn.done() and not turn.cancelled() and turn.exception() is None:
                self._release()  # handed a slot just as this request was cancelled: pass it on
            elif turn in self._waiters:
                self._waiters.remove(turn)
            raise
        finally:
            expiry.cancel()

    async def __aexit__(self, *_: object) -> None:
        self._release()

    def _expire(self, turn: asyncio.Future[None]) -> None:
        if not turn.done():
            self._waiters.remove(turn)
            turn.set_exception(ResultsBusy(self._limit, self.RETRY_AFTER_SECONDS))

    def _release(self) -> None:
        # The slot goes straight to the first waiter, so that no newcomer takes it in between.
        while self._waiters:
            turn = self._waiters.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self._free += 1


class _SharedRead(Generic[T]):
    """A read that requests share until it begins, and how many of them wait for it."""

    task: asyncio.Future[T]

    def __init__(self) -> None:
        self.waiting = 0


class ComputeTimeSeries:
    """Results over time (domain/series.py), read under the same bound as results."""

    def __init__(self, experiments: GetExperiment, store: Totals, clock: Clock, slots: ResultsSlots) -> None:
        self._experiments, self._store, self._clock, self._slots = experiments, store, clock, slots

    async def __call__(self, experiment_id: str, period: str, event_type: str | None = None) -> TimeSeries:
        experiment = await self._experiments(experiment_id)
        chosen = event_type_of(experiment, event_type)
        try:
            every = Period(period)
        except ValueError:
            raise ValidationFailed([FieldError("period", "must be day or hour")]) from None
        # A stopped experiment's series ends where its results do (docs/experiments-that-live.md).
        now = self._clock.now()
        until = min(now, experiment.stopped_at or now)
        tuning = experiment.analysis.sequential_tuning_users
        key = ("series", experiment.id, tuple(v.id for v in experiment.variants), chosen, every)

        totals = await self._slots.shared(key, lambda: self._store.series_totals(experiment, chosen, every))
        by_day = totals if every is Period.DAY else totals.by_day()  # one read: hours add up to days
        return TimeSeries(
            experiment,
            chosen,
            every,
            calendar_series(experiment, totals, period_of(until, every), tuning),
            exposure_series(experiment, by_day, period_of(until, Period.DAY), tuning),
        )


def resolved(
    experiment: Experiment, overrides: AnalysisOverrides | None, errors: list[FieldError], **filters: Any
) -> tuple[ResultQuery, Analysis]:
    """A results request's query (``ResultQuery.resolve`` of ``filters``) and analysis (the
    experiment's under ``overrides``); raises ValidationFailed naming every fault of both, and
    the ``errors`` the caller found before."""
    query = analysis = None
    try:
        query = ResultQuery.resolve(experiment, **filters)
    except ValidationFailed as exc:
        errors.extend(exc.errors)
    try:
        analysis = (overrides or AnalysisOverrides()).over(experiment.analysis)
    except ValidationFailed as exc:
        errors.extend(exc.errors)
    if errors or query is None or analysis is None:
        raise ValidationFailed(errors)
    return query, analysis


class ComputeBreakdown:
    """Results split by one of the experiment's dimensions (domain/breakdown.py), read under the
    same bound as results."""

    def __init__(
        self, experiments: GetExperiment, store: Totals, calculator: ResultCalculator, slots: ResultsSlots
    ) -> None:
        self._experiments, self._store, self._calculator, self._slots = experiments, store, calculator, slots

    async def __call__(
        self,
        experiment_id: str,
        dimension: str,
        *,
        primary_event_type: str | None = None,
        overrides: AnalysisOverrides | None = None,
    ) -> Breakdown:
        experiment = await self._experiments(experiment_id)
        errors: list[FieldError] = []
        declared = experiment.analysis.dimensions
        if dimension not in declared:
            named = ", ".join(declared) if declared else "none: set its analysis.dimensions first"
            errors.append(FieldError("dimension", f"is not a dimension of this experiment (it has {named})"))
        query, analysis = resolved(experiment, overrides, errors, primary_event_type=primary_event_type)
        chosen = query.primary_event_type
        key = ("breakdown", experiment.id, tuple(v.id for v in experiment.variants), dimension, chosen)
        totals = await self._slots.shared(key, lambda: self._store.breakdown_totals(experiment, dimension, chosen))
        return breakdown(experiment, dimension, query, totals, analysis, self._calculator)


class ComputeResults:
    def __init__(
        self,
        experiments: GetExperiment,
        store: Totals,
        calculator: ResultCalculator,
        slots: ResultsSlots,
    ) -> None:
        self._experiments, self._store, self._calculator = experiments, store, calculator
        self._slots = slots

    async def __call__(
        self,
        experiment_id: str,
        *,
        start: date | datetime | None = None,
        end: date | datetime | None = None,
        event_type: str | None = None,
        variant_id: str | None = None,
        primary_event_type: str | None = None,
        overrides: AnalysisOverrides | None = None,
        scorecard: bool = True,
    ) -> ExperimentResults:
        """The experiment's results; ``overrides`` read them otherwise than the experiment's
        default analysis does, for this request alone. Without ``scorecard``, the declared
        metrics are neither read (their totals, a capped metric's per-user figures) nor
        scored: for a caller that needs the plain figures only."""
        experiment = await self._experiments(experiment_id)
        query, analysis = resolved(
            experiment, overrides, [], start=start, end=end, event_type=event_type, variant_id=variant_id,
            primary_event_type=primary_event_type,
        )
        if analysis.cuped:  # read only when asked for
            query = replace(query, covariates=True)
        if not scorecard:
            query = replace(query, metric_types=(), pairs=(), capped_types=())
            analysis = replace(analysis, metrics=())
        # The same results asked for at once are read once (the variants are part of the key:
        # the aggregates are keyed by them).
        key = ("experiment", experiment.id, tuple(v.id for v in experiment.variants), query)
        aggregates = await self._slots.shared(key, lambda: self._store.variant_aggregates(experiment, query))
        return self._calculator.compute(experiment, query, aggregates, analysis)
