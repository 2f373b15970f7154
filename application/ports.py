"""The ports: what the use cases need from the outside world, named for what they do."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from domain.assignment import Assignment, HeldOut
from domain.audit import AuditEntry
from domain.breakdown import BreakdownTotals
from domain.event import EventBatch
from domain.experiment import Experiment
from domain.keys import ApiKey
from domain.layers import Holdout, Layer, Slice
from domain.rate_limit import Decision
from domain.results import ResultQuery
from domain.series import Period, SeriesTotals
from domain.totals import VariantAggregate


class Experiments(Protocol):
    """Experiments, stored and read back; every write atomic and durable when the call returns."""

    async def add_experiment(self, experiment: Experiment) -> None:
        """Store a new experiment, and the audit entries of the unit of work it runs in
        (application/unit_of_work.py) in the same transaction; raises
        DuplicateExperimentName (storing neither) if its name is taken, and SliceTaken if it
        sits in a layer where a live experiment holds part of its slice."""

    async def get_experiment(self, experiment_id: str) -> Experiment | None: ...

    async def update_experiment(self, experiment: Experiment, expected_version: int) -> None:
        """Replace the stored experiment (its fields, variants and overrides) with
        ``experiment``, and store the unit of work's audit entries in the same transaction, if
        the stored one is still at ``expected_version``; raises
        ConcurrentChange if it is not, DuplicateExperimentName if the new name is taken."""

    async def list_experiments(self, limit: int, offset: int) -> tuple[list[Experiment], int]:
        """A page of experiments, newest first, and the total count."""

    async def existing_experiment_ids(self, experiment_ids: Collection[str]) -> set[str]:
        """Those of ``experiment_ids`` that name a stored experiment, in one lookup however many
        are asked about (a batch of events may name thousands)."""


class Layers(Protocol):
    """Layers and the slices their experiments hold."""

    async def add_layer(self, layer: Layer) -> None:
        """Raises DuplicateName if its name is taken."""

    async def get_layer(self, layer_id: str) -> Layer | None: ...

    async def list_layers(self) -> list[Layer]: ...

    async def layer_slices(self, layer_id: str) -> list[tuple[str, Slice]]:
        """(experiment id, slice) of the layer's experiments that are not archived, by start."""


class Holdouts(Protocol):
    """Holdouts, who was held out, and how the held out and the exposed converted."""

    async def add_holdout(self, holdout: Holdout) -> None:
        """Raises DuplicateName if its name is taken."""

    async def get_holdout(self, holdout_id: str) -> Holdout | None: ...

    async def list_holdouts(self) -> list[Holdout]: ...

    async def holdout_outcomes(self, holdout_id: str, event_type: str) -> tuple[int, int, int, int]:
        """(held-out users, of them converted, exposed users, of them converted), where a user
        converts with an ``event_type`` event in an experiment of the holdout, at or after they
        were first held out or first assigned."""


class Assignments(Protocol):
    """Each user's first assignment to an experiment, stored once, and the first time a user
    was held out."""

    async def get_assignment(self, experiment_id: str, user_id: str) -> Assignment | None: ...

    async def add_assignment(self, assignment: Assignment) -> Assignment:
        """Store the assignment unless one exists for (experiment, user); return the stored one.

        Of many concurrent calls for one user, exactly one stores; all return what it stored.
        """

    async def add_holdout_member(self, holdout_id: str, user_id: str, seen_at: datetime) -> None:
        """Remember that the user was held out, first at ``seen_at`` (a later call keeps it)."""

    async def add_exposures(self, assignments: Sequence[Assignment], held_out: Sequence[HeldOut]) -> list[Assignment]:
        """Store all or none: each assignment unless one exists for (experiment, user), each
        holdout member unless known (``add_assignment`` and ``add_holdout_member``, in one
        transaction). Returns what is stored for each assignment, in order; at most one
        assignment per (experiment, user)."""


class Events(Protocol):
    """What users did, stored all or nothing per batch."""

    async def add_events(self, batch: EventBatch) -> int:
        """Store all events or none; skip those whose event_id is already stored (also within
        ``batch``). Returns how many were stored."""


class Totals(Protocol):
    """The counts and sums results are computed from, aggregated where the data lives."""

    async def variant_aggregates(
        self, experiment: Experiment, query: ResultQuery
    ) -> Mapping[str, VariantAggregate]:
        """Per variant, the counts and sums of the results, computed where the data lives.

        Covers every variant (the query's variant_id does not narrow it), applying the counting
        rule: an event counts only if its user is assigned and it is not older than the assignment.
        """

    async def series_totals(self, experiment: Experiment, event_type: str, period: Period) -> SeriesTotals:
        """The experiment's users per (variant, period of assignment), and per (variant, period
        of assignment, period of the events) the cells of ``domain.series`` on ``event_type``,
        by the same counting rule, up to the last event stored."""

    async def breakdown_totals(self, experiment: Experiment, dimension: str, event_type: str | None) -> BreakdownTotals:
        """Per variant, the experiment's users and their totals of ``event_type`` (None: every
        type), by the counting rule; and the same per value of ``dimension`` over the users
        assigned with that value (``Assignment.dimensions``); both in one snapshot."""

    async def rebuild_aggregates(self, progress: Callable[[int, int, str], None] | None = None) -> None:
        """Recompute whatever the store keeps pre-aggregated from the raw rows it holds;
        ``progress(done, steps, what)`` before each step and once at the end."""


class Keys(Protocol):
    """API keys, by id and by the digest of their secret."""

    async def add_key(self, key: ApiKey) -> None:
        """Store a new key and the unit of work's audit entries, in one transaction."""

    async def get_key(self, key_id: str) -> ApiKey | None: ...

    async def find_key(self, digest: str) -> ApiKey | None:
        """The key whose secret has this hex SHA-256 digest, revoked or expired as well."""

    async def list_keys(self, limit: int, offset: int) -> tuple[list[ApiKey], int]:
        """A page of keys, newest first, and the total count."""

    async def revoke_key(self, key_id: str, at: datetime) -> ApiKey | None:
        """Revoke the key at ``at`` and store the unit of work's audit entries, in one
        transaction; a key already revoked stays as it was and no entry is stored. Returns the
        stored key, None if unknown."""


class AuditTrail(Protocol):
    """The audit entries the admin actions stored with them."""

    async def list_audit(
        self, limit: int, offset: int, *, action: str | None = None, target_id: str | None = None
    ) -> tuple[list[AuditEntry], int]:
        """A page of audit entries, newest first, matching the filters given; and their count."""


class Lifecycle(Protocol):
    """The store as a running thing: its background work, its health, its end."""

    async def start(self) -> None:
        """Start the store's background work (folding), in the running event loop."""

    async def ping(self) -> bool:
        """True when the store answers."""

    async def close(self) -> None:
        """Finish the writes already queued, stop the background work, release connections."""


class Catalog(Experiments, Layers, Holdouts, Protocol):
    """The definitions: experiments and the layers and holdouts they sit in."""


class Store(Experiments, Layers, Holdouts, Assignments, Events, Totals, Keys, AuditTrail, Lifecycle, Protocol):
    """All of the above, as one database adapter provides them; a use case asks only for the
    ports it uses, so its fakes and its reader need know no more."""


class Cache(Protocol):
    """A cache in front of the store, shared by every process of the service or kept by each.

    An assignment never changes once stored, so a cached one is never stale. An experiment may
    change: whoever changes it in the store then calls ``forget_experiment``, and every process
    stops answering with the old copy within a bound each adapter documents. A cache that cannot
    answer behaves as a miss: the store stays the truth.
    """

    async def get_experiment(self, experiment_id: str) -> Experiment | None: ...

    async def set_experiment(self, experiment: Experiment) -> None: ...

    async def get_assignment(self, experiment_id: str, user_id: str) -> Assignment | None: ...

    async def set_assignment(self, assignment: Assignment) -> None: ...

    async def forget_experiment(self, experiment_id: str) -> None:
        """Drop the experiment from this cache at once, and from every other process's copy
        within the adapter's bound. Its assignments stay: they never change."""

    async def close(self) -> None: ...


class RateLimiter(Protocol):
    """Token buckets, one per (identity, route class), each class at the rate it was built with.

    An identity is whatever names a caller (a credential's digest, a key id); a route class
    names a group of routes with one rate. Buckets idle long enough to be full again may be
    forgotten: a bucket that is not there is a full one. A limiter that cannot answer (its
    store is down) allows the request with a decision that is not ``counted``.
    """

    def limits(self, route_class: str) -> bool:
        """Whether ``route_class`` has a rate (classes set to ``off`` have none)."""

    async def take(self, identity: str, route_class: str, cost: int = 1) -> Decision:
        """Take ``cost`` tokens from the bucket if it holds them; say whether it did.
        ``route_class`` is one the limiter ``limits``."""

    async def close(self) -> None: ...


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""


class IdSource(Protocol):
    def new_id(self) -> str:
        """A new opaque, unique id; later ids sort after earlier ones."""
