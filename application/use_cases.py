"""The use cases: each one a callable object built once by the container."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any, Generic, TypeVar

from application.ports import Cache, Clock, IdSource, Store
from domain.assignment import Answer, Assignment, validate_user_id
from domain.audit import (
    ACTIONS,
    EXPERIMENT_CHANGED,
    EXPERIMENT_CREATED,
    KEY_CREATED,
    KEY_REVOKED,
    AuditEntry,
)
from domain.eligibility import NOT_STARTED, Gate, Reason
from domain.errors import (
    ConcurrentChange,
    EventsAhead,
    ExperimentNotFound,
    FieldError,
    KeyNotFound,
    NotFound,
    ResultsBusy,
    UnknownExperiments,
    ValidationFailed,
)
from domain.event import NewEvents, batch_size_error, events_ahead, text_error
from domain.experiment import BUCKETS, Experiment, VariantDraft, percentage_to_basis_points
from domain.keys import ApiKey, Principal, key_errors, new_secret
from domain.layers import (
    Holdout,
    HoldoutRef,
    Layer,
    LayerFull,
    LayerSlot,
    Slice,
    SliceTaken,
    free_slice,
    largest_free,
)
from domain.lifecycle import Status
from domain.results import ExperimentResults, ResultCalculator, ResultQuery
from domain.stats import Proportion, TestResult, two_proportion_test

T = TypeVar("T")


class CreateExperiment:
    def __init__(self, store: Store, cache: Cache, clock: Clock, ids: IdSource) -> None:
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
            await self._store.add_experiment(experiment, self._audit(experiment, actor, now))
        else:
            experiment = await self._add_in_layer(experiment, layer, size, actor, now)  # type: ignore[arg-type]
        await self._cache.set_experiment(experiment)
        return experiment

    def _audit(self, experiment: Experiment, actor: str, now: datetime) -> AuditEntry:
        e = experiment
        details = {
            "name": e.name,
            "description": e.description,
            "primary_event_type": e.primary_event_type,
            "variants": [
                {"id": v.id, "name": v.name, "traffic_percentage": v.traffic_percentage, "is_control": v.is_control}
                for v in e.variants
            ],
            "status": e.status.value,
            "coverage": e.coverage_basis_points / 100,
            "audience": None if e.audience is None else e.audience.source,
            "layer": None if e.layer is None else {"id": e.layer.layer_id, "start": e.layer.slice.start, "end": e.layer.slice.end},
            "holdout_id": None if e.holdout is None else e.holdout.holdout_id,
        }
        return AuditEntry(self._ids.new_id(), now, actor, EXPERIMENT_CREATED, "experiment", e.id, details)

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
                await self._store.add_experiment(placed, self._audit(placed, actor, now))
            except SliceTaken:
                continue
            return placed
        raise ConcurrentChange(layer.id)


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

    def __init__(self, store: Store, clock: Clock, ids: IdSource, slots: ResultsSlots) -> None:
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


class ChangeExperiment:
    """Apply a change to an experiment, store it if the experiment did not change meanwhile
    (ConcurrentChange otherwise: the client reads it again and retries), and make every
    process forget its copy (within the cache's bound). Returns the experiment and the diff."""

    def __init__(self, store: Store, cache: Cache, clock: Clock, ids: IdSource) -> None:
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
        audit = AuditEntry(self._ids.new_id(), now, actor, EXPERIMENT_CHANGED, "experiment", changed.id, diff)
        await self._store.update_experiment(changed, expected_version=current.version, audit=audit)
        await self._cache.forget_experiment(changed.id)


class GetExperiment:
    """Read-through: experiments never change, so a cached one is never stale."""

    def __init__(self, store: Store, cache: Cache) -> None:
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


MAX_LIMIT = 500
MAX_OFFSET = 2**53  # past what any store holds, and within every database's integers


def page_errors(limit: int, offset: int) -> list[FieldError]:
    """The rules of limit and offset, alike for every listing."""
    errors = []
    if not 1 <= limit <= MAX_LIMIT:
        errors.append(FieldError("limit", f"must be from 1 to {MAX_LIMIT}"))
    if not 0 <= offset <= MAX_OFFSET:
        errors.append(FieldError("offset", f"must be from 0 to {MAX_OFFSET}"))
    return errors


class ListExperiments:
    MAX_LIMIT, MAX_OFFSET = MAX_LIMIT, MAX_OFFSET

    def __init__(self, store: Store) -> None:
        self._store = store

    async def __call__(self, *, limit: int = 100, offset: int = 0) -> ExperimentPage:
        if errors := page_errors(limit, offset):
            raise ValidationFailed(errors)
        items, total = await self._store.list_experiments(limit, offset)
        return ExperimentPage(items, total)


class AssignUser:
    """What a user is served. A QA override first; then the experiment's state: only a running
    experiment assigns (draft, paused and archived ones serve the control, a stopped one its
    winner, storing nothing); then a stored assignment, kept for good; then the gates of a
    running experiment (audience, coverage), and the hash decides once, for good."""

    def __init__(self, experiments: GetExperiment, store: Store, cache: Cache, clock: Clock) -> None:
        self._experiments, self._store, self._cache, self._clock = experiments, store, cache, clock

    async def __call__(
        self, experiment_id: str, user_id: str, attributes: Mapping[str, Any] | None = None
    ) -> Answer:
        validate_user_id(user_id, "user_id")
        experiment = await self._experiments(experiment_id)
        if (forced := experiment.override_for(user_id)) is not None:
            return Answer.served(experiment, user_id, forced.variant_id, Reason.FORCED, forced.forced_at, True)
        if experiment.status is not Status.RUNNING:
            if experiment.status is Status.STOPPED:
                return Answer.served(experiment, user_id, experiment.winner.id, Reason.WINNER)
            return Answer.served(experiment, user_id, experiment.control.id, NOT_STARTED[experiment.status])
        assignment = await self._cache.get_assignment(experiment_id, user_id)
        if assignment is not None:
            return Answer.of(assignment)
        if (gate := Gate.of(experiment)) is not None:
            if (reason := gate.exclusion(user_id, attributes or {})) is not None:
                # Coverage only grows while an experiment runs, so whoever it leaves out was
                # never assigned; attributes may differ from call to call, so a user the
                # audience leaves out now may have been assigned before, and keeps that.
                stored = await self._store.get_assignment(experiment_id, user_id) if reason is Reason.AUDIENCE else None
                if stored is None:
                    if reason is Reason.HOLDOUT:  # the holdout's results count whoever it held out
                        await self._store.add_holdout_member(experiment.holdout.holdout_id, user_id, self._clock.now())  # type: ignore[union-attr]
                    return Answer.served(experiment, user_id, experiment.control.id, reason)
                await self._cache.set_assignment(stored)
                return Answer.of(stored)
        decided = Assignment.decide(experiment, user_id, self._clock.now())
        # Get-or-create in one call: the store keeps the first assignment ever stored (of
        # racing ones too) and returns it, so a known user gets theirs back, not this one.
        assignment = await self._store.add_assignment(decided)
        await self._cache.set_assignment(assignment)
        return Answer.of(assignment)


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
        store: Store,
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


class ComputeResults:
    def __init__(
        self,
        experiments: GetExperiment,
        store: Store,
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
    ) -> ExperimentResults:
        experiment = await self._experiments(experiment_id)
        query = ResultQuery.resolve(
            experiment,
            start=start,
            end=end,
            event_type=event_type,
            variant_id=variant_id,
            primary_event_type=primary_event_type,
        )
        # The same results asked for at once are read once (the variants are part of the key:
        # the aggregates are keyed by them).
        key = ("experiment", experiment.id, tuple(v.id for v in experiment.variants), query)
        aggregates = await self._slots.shared(key, lambda: self._store.variant_aggregates(experiment, query))
        return self._calculator.compute(experiment, query, aggregates)


class CheckHealth:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def __call__(self) -> bool:
        return await self._store.ping()


# ---- API keys and the audit trail


class KeyRing:
    """Resolves a bearer token's digest to the principal of an active key, for the auth hook.

    Each process keeps what it resolved for ``ttl_seconds``: known keys, and digests that named
    no key (so that a flood of random tokens costs a dict lookup each, not a store query). A key
    created or revoked elsewhere takes effect here within the TTL; ``forget`` makes a change
    made by this process take effect at once. Both maps are bounded: the oldest entry goes first.
    Expiry is checked on every call, so a cached key stops working the moment it expires.
    """

    def __init__(self, store: Store, clock: Clock, ttl_seconds: float, max_entries: int = 10_000) -> None:
        self._store, self._clock = store, clock
        self._ttl = timedelta(seconds=ttl_seconds)
        self._max = max_entries
        self._known: dict[bytes, tuple[datetime, ApiKey, Principal]] = {}
        self._unknown: dict[bytes, datetime] = {}
        self._changes = 0  # how many times forget was called: a look-up racing one is not kept

    def cached(self, digest: bytes) -> Principal | None | bool:
        """Without waiting: the principal, or None (no active key), as this process knows them;
        False when only the store can tell."""
        now = self._clock.now()
        cached = self._known.get(digest)
        if cached is not None and now < cached[0]:
            return cached[2] if cached[1].is_active(now) else None
        if (until := self._unknown.get(digest)) is not None and now < until:
            return None
        return False

    async def principal(self, digest: bytes) -> Principal | None:
        found = self.cached(digest)
        return await self.look_up(digest) if found is False else found

    async def look_up(self, digest: bytes) -> Principal | None:
        """Read the store and remember what it said."""
        changes = self._changes
        key = await self._store.find_key(digest.hex())
        now = self._clock.now()
        if changes == self._changes:
            # Not when a key was created or revoked here meanwhile: what the store said may
            # predate that, and this process must see its own change at once.
            self._drop(digest)
            if key is None:
                self._remember(self._unknown, digest, now + self._ttl)
            else:
                self._remember(self._known, digest, (now + self._ttl, key, key.principal))
        return key.principal if key is not None and key.is_active(now) else None

    def forget(self, digest: bytes) -> None:
        self._changes += 1
        self._drop(digest)

    def _drop(self, digest: bytes) -> None:
        self._known.pop(digest, None)
        self._unknown.pop(digest, None)

    def _remember(self, entries: dict, digest: bytes, value: object) -> None:  # type: ignore[type-arg]
        if len(entries) >= self._max:
            del entries[next(iter(entries))]  # dicts keep insertion order: the oldest goes
        entries[digest] = value


@dataclass(frozen=True, slots=True)
class NewKey:
    key: ApiKey
    secret: str  # shown to the creator once; the store keeps only its digest


class CreateKey:
    def __init__(self, store: Store, clock: Clock, ids: IdSource, keys: KeyRing) -> None:
        self._store, self._clock, self._ids, self._keys = store, clock, ids, keys

    async def __call__(
        self, *, name: str, scopes: Sequence[str], expires_at: datetime | None, actor: str
    ) -> NewKey:
        now = self._clock.now()
        secret = new_secret()
        key = ApiKey.create(
            name=name,
            scopes=scopes,
            expires_at=expires_at,
            secret=secret,
            created_by=actor,
            new_id=self._ids.new_id,
            now=now,
        )
        details = {
            "name": key.name,
            "scopes": list(key.scopes),
            "expires_at": None if key.expires_at is None else key.expires_at.isoformat().replace("+00:00", "Z"),
        }
        audit = AuditEntry(self._ids.new_id(), now, actor, KEY_CREATED, "key", key.id, details)
        await self._store.add_key(key, audit)
        self._keys.forget(bytes.fromhex(key.digest))
        return NewKey(key, secret)

    def errors(self, name: str, scopes: Sequence[str], expires_at: datetime | None) -> list[FieldError]:
        """The rules such a key would break now, without making it."""
        return key_errors(name, list(scopes), expires_at, self._clock.now())


class GetKey:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def __call__(self, key_id: str) -> ApiKey:
        key = await self._store.get_key(key_id)
        if key is None:
            raise KeyNotFound(key_id)
        return key


@dataclass(frozen=True, slots=True)
class KeyPage:
    items: list[ApiKey]
    total: int


class ListKeys:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def __call__(self, *, limit: int = 100, offset: int = 0) -> KeyPage:
        if errors := page_errors(limit, offset):
            raise ValidationFailed(errors)
        items, total = await self._store.list_keys(limit, offset)
        return KeyPage(items, total)


class RevokeKey:
    """Idempotent: revoking a revoked key changes nothing and answers the key as it is."""

    def __init__(self, store: Store, clock: Clock, ids: IdSource, keys: KeyRing) -> None:
        self._store, self._clock, self._ids, self._keys = store, clock, ids, keys

    async def __call__(self, key_id: str, *, actor: str) -> ApiKey:
        audit = AuditEntry(self._ids.new_id(), self._clock.now(), actor, KEY_REVOKED, "key", key_id, {})
        key = await self._store.revoke_key(key_id, audit)
        if key is None:
            raise KeyNotFound(key_id)
        self._keys.forget(bytes.fromhex(key.digest))
        return key


@dataclass(frozen=True, slots=True)
class AuditPage:
    items: list[AuditEntry]
    total: int


class ListAudit:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def __call__(
        self,
        *,
        limit: int = 100,
        offset: int = 0,
        action: str | None = None,
        target_id: str | None = None,
    ) -> AuditPage:
        errors = page_errors(limit, offset)
        if action is not None and action not in ACTIONS:
            errors.append(FieldError("action", f"must be one of {', '.join(sorted(ACTIONS))}"))
        if errors:
            raise ValidationFailed(errors)
        items, total = await self._store.list_audit(limit, offset, action=action, target_id=target_id)
        return AuditPage(items, total)
