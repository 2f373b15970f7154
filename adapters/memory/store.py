"""An in-memory Store: the reference the SQL adapters are held to by the contract suite."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime

from adapters.memory.series import series_totals
from application.unit_of_work import take_audit_entries
from domain.assignment import Assignment, HeldOut
from domain.audit import AuditEntry
from domain.breakdown import BreakdownTotals, SliceCell
from domain.errors import ConcurrentChange, DuplicateExperimentName, DuplicateName
from domain.event import Event, EventBatch
from domain.experiment import Experiment
from domain.keys import ApiKey
from domain.layers import Holdout, Layer, Slice, SliceTaken
from domain.lifecycle import Status
from domain.results import ResultQuery, counts, in_pre_period
from domain.series import Period, SeriesTotals
from domain.totals import CovariateTotals, CrossTotals, EventTotals, VariantAggregate


class MemoryStore:
    def __init__(self) -> None:
        self._experiments: dict[str, Experiment] = {}
        self._names: set[str] = set()
        self._assignments: dict[tuple[str, str], Assignment] = {}
        self._events: dict[str, list[Event]] = defaultdict(list)
        self._event_ids: set[str] = set()
        self._layers: dict[str, Layer] = {}
        self._holdouts: dict[str, Holdout] = {}
        self._members: dict[tuple[str, str], datetime] = {}
        self._keys: dict[str, ApiKey] = {}
        self._key_ids_by_digest: dict[str, str] = {}
        self._audit: list[AuditEntry] = []

    async def add_experiment(self, experiment: Experiment) -> None:
        entries = take_audit_entries()
        if experiment.name in self._names:
            raise DuplicateExperimentName(experiment.name)
        if (slot := experiment.layer) is not None:
            if any(slot.slice.overlaps(s) for _, s in await self.layer_slices(slot.layer_id)):
                raise SliceTaken(slot.layer_id)
        self._names.add(experiment.name)
        self._experiments[experiment.id] = experiment
        self._audit.extend(entries)

    async def get_experiment(self, experiment_id: str) -> Experiment | None:
        return self._experiments.get(experiment_id)

    async def add_layer(self, layer: Layer) -> None:
        if any(other.name == layer.name for other in self._layers.values()):
            raise DuplicateName("layer", layer.name)
        self._layers[layer.id] = layer

    async def get_layer(self, layer_id: str) -> Layer | None:
        return self._layers.get(layer_id)

    async def list_layers(self) -> list[Layer]:
        return sorted(self._layers.values(), key=lambda x: (x.created_at, x.id), reverse=True)

    async def layer_slices(self, layer_id: str) -> list[tuple[str, Slice]]:
        return sorted(
            ((e.id, e.layer.slice) for e in self._experiments.values()
             if e.layer is not None and e.layer.layer_id == layer_id and e.status is not Status.ARCHIVED),
            key=lambda pair: pair[1].start,
        )

    async def add_holdout(self, holdout: Holdout) -> None:
        if any(other.name == holdout.name for other in self._holdouts.values()):
            raise DuplicateName("holdout", holdout.name)
        self._holdouts[holdout.id] = holdout

    async def get_holdout(self, holdout_id: str) -> Holdout | None:
        return self._holdouts.get(holdout_id)

    async def list_holdouts(self) -> list[Holdout]:
        return sorted(self._holdouts.values(), key=lambda x: (x.created_at, x.id), reverse=True)

    async def add_holdout_member(self, holdout_id: str, user_id: str, seen_at: datetime) -> None:
        self._members.setdefault((holdout_id, user_id), seen_at)

    async def add_exposures(self, assignments: Sequence[Assignment], held_out: Sequence[HeldOut]) -> list[Assignment]:
        for member in held_out:
            self._members.setdefault((member.holdout_id, member.user_id), member.seen_at)
        return [self._assignments.setdefault((a.experiment_id, a.user_id), a) for a in assignments]

    async def holdout_outcomes(self, holdout_id: str, event_type: str) -> tuple[int, int, int, int]:
        opted = {e.id for e in self._experiments.values() if e.holdout and e.holdout.holdout_id == holdout_id}
        held = {u: t for (h, u), t in self._members.items() if h == holdout_id}
        exposed: dict[str, datetime] = {}
        for (x, u), a in self._assignments.items():
            if x in opted and (u not in exposed or a.assigned_at < exposed[u]):
                exposed[u] = a.assigned_at
        outcomes: list[int] = []
        for group in (held, exposed):
            converted = {
                ev.user_id for x in opted for ev in self._events.get(x, [])
                if ev.event_type == event_type and ev.user_id in group and counts(ev.timestamp, group[ev.user_id])
            }
            outcomes += [len(group), len(converted)]
        return outcomes[0], outcomes[1], outcomes[2], outcomes[3]

    async def update_experiment(self, experiment: Experiment, expected_version: int) -> None:
        entries = take_audit_entries()
        stored = self._experiments.get(experiment.id)
        if stored is None or stored.version != expected_version:
            raise ConcurrentChange(experiment.id)
        if experiment.name != stored.name:
            if experiment.name in self._names:
                raise DuplicateExperimentName(experiment.name)
            self._names.discard(stored.name)
            self._names.add(experiment.name)
        self._experiments[experiment.id] = experiment
        self._audit.extend(entries)

    async def existing_experiment_ids(self, experiment_ids: Collection[str]) -> set[str]:
        return {i for i in experiment_ids if i in self._experiments}

    async def list_experiments(self, limit: int, offset: int) -> tuple[list[Experiment], int]:
        newest_first = sorted(
            self._experiments.values(), key=lambda e: (e.created_at, e.id), reverse=True
        )
        return newest_first[offset : offset + limit], len(newest_first)

    async def get_assignment(self, experiment_id: str, user_id: str) -> Assignment | None:
        return self._assignments.get((experiment_id, user_id))

    async def add_assignment(self, assignment: Assignment) -> Assignment:
        return self._assignments.setdefault((assignment.experiment_id, assignment.user_id), assignment)

    async def add_events(self, batch: EventBatch) -> int:
        events = batch.events()
        fresh: list[Event] = []
        seen: set[str] = set()
        for event in events:
            if event.event_id is not None:
                if event.event_id in self._event_ids or event.event_id in seen:
                    continue
                seen.add(event.event_id)
            fresh.append(event)
        self._event_ids |= seen
        for event in fresh:
            self._events[event.experiment_id].append(event)
        return len(fresh)

    async def series_totals(self, experiment: Experiment, event_type: str, period: Period) -> SeriesTotals:
        assignments = {u: a for (x, u), a in self._assignments.items() if x == experiment.id}
        return series_totals(assignments, self._events.get(experiment.id, ()), event_type, period)

    async def breakdown_totals(self, experiment: Experiment, dimension: str, event_type: str | None) -> BreakdownTotals:
        assignments = {u: a for (x, u), a in self._assignments.items() if x == experiment.id}
        values = {u: dict(a.dimensions).get(dimension) for u, a in assignments.items()}
        counted: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])  # user -> [events, value]
        for event in self._events.get(experiment.id, ()):
            mine = assignments.get(event.user_id)
            if mine is not None and counts(event.timestamp, mine.assigned_at) and event_type in (None, event.event_type):
                counted[event.user_id][0] += 1
                counted[event.user_id][1] += event.value or 0.0
        overall: dict[str, SliceCell] = defaultdict(SliceCell)
        by_value: dict[str, dict[str, SliceCell]] = defaultdict(lambda: defaultdict(SliceCell))
        for user_id, assignment in assignments.items():
            n, v = counted.get(user_id, (0, 0.0))
            cell = SliceCell(1, EventTotals(int(n), 1, v, v * v, int(n * n)) if n else EventTotals())
            overall[assignment.variant_id] += cell
            if (value := values[user_id]) is not None:
                by_value[value][assignment.variant_id] += cell
        return BreakdownTotals(dict(overall), {k: dict(c) for k, c in by_value.items()})

    async def variant_aggregates(
        self, experiment: Experiment, query: ResultQuery
    ) -> Mapping[str, VariantAggregate]:
        users: dict[str, int] = defaultdict(int)
        for (experiment_id, _), assignment in self._assignments.items():
            if experiment_id == experiment.id and (
                query.end is None or assignment.assigned_at <= query.end
            ):
                users[assignment.variant_id] += 1
        event_counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        users_with_events: dict[str, set[str]] = defaultdict(set)
        primary_counts: dict[str, int] = defaultdict(int)
        user_values: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        metric_types = set(query.metric_types)
        # (variant, type) -> user -> [events, value total], for the metrics' event types.
        per_user: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(lambda: [0, 0.0]))
        for event in self._events.get(experiment.id, ()):
            assignment = self._assignments.get((experiment.id, event.user_id))
            if assignment is None or not counts(event.timestamp, assignment.assigned_at):
                continue
            if (query.start is not None and event.timestamp < query.start) or (
                query.end is not None and event.timestamp > query.end
            ):
                continue
            variant_id = assignment.variant_id
            if query.event_type is None or event.event_type == query.event_type:
                event_counts[variant_id][event.event_type] += 1
                users_with_events[variant_id].add(event.user_id)
            if query.primary_event_type is None or event.event_type == query.primary_event_type:
                primary_counts[variant_id] += 1
                user_values[variant_id][event.user_id] += event.value or 0.0
            if event.event_type in metric_types:
                totals = per_user[variant_id, event.event_type][event.user_id]
                totals[0] += 1
                totals[1] += event.value or 0.0

        def covariate(variant_id: str) -> CovariateTotals | None:
            """Each assigned user's pre-period total of the primary type, against their counted one."""
            if not query.covariates:
                return None
            found = CovariateTotals()
            for user_id, x in pre[variant_id].items():
                y = user_values[variant_id].get(user_id)
                found += CovariateTotals(1, x, x * x, int(y is not None), x * (y or 0.0))
            return found

        # Per variant, user: the pre-period's value total of the primary type (users assigned
        # by the end, as the users counted), for users with a pre-period event of it.
        pre: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        if query.covariates:
            for event in self._events.get(experiment.id, ()):
                assignment = self._assignments.get((experiment.id, event.user_id))
                if assignment is None or not in_pre_period(event.timestamp, assignment.assigned_at):
                    continue
                if query.end is not None and assignment.assigned_at > query.end:
                    continue
                if query.primary_event_type in (None, event.event_type):
                    pre[assignment.variant_id][event.user_id] += event.value or 0.0

        def by_type(variant_id: str) -> dict[str, EventTotals]:
            found = {}
            for t in query.metric_types:
                users = per_user.get((variant_id, t), {})
                found[t] = EventTotals(
                    events=int(sum(n for n, _ in users.values())),
                    users=len(users),
                    value_sum=sum(v for _, v in users.values()),
                    value_sum_squares=sum(v * v for _, v in users.values()),
                    events_sum_squares=int(sum(n * n for n, _ in users.values())),
                )
            return found

        def cross(variant_id: str) -> dict[tuple[str, str], CrossTotals]:
            found = {}
            for a, b in query.pairs:
                numerators, denominators = per_user.get((variant_id, a), {}), per_user.get((variant_id, b), {})
                both = numerators.keys() & denominators.keys()
                found[a, b] = CrossTotals(
                    sum(numerators[u][0] * denominators[u][0] for u in both),
                    sum(numerators[u][1] * denominators[u][0] for u in both),
                )
            return found

        return {
            v.id: VariantAggregate(
                variant_id=v.id,
                users=users[v.id],
                event_counts=dict(event_counts[v.id]),
                unique_users_with_events=len(users_with_events[v.id]),
                primary=EventTotals(
                    events=primary_counts[v.id],
                    users=len(user_values[v.id]),
                    value_sum=sum(user_values[v.id].values()),
                    value_sum_squares=sum(t * t for t in user_values[v.id].values()),
                ),
                by_type=by_type(v.id),
                cross=cross(v.id),
                per_user={
                    t: tuple((int(n), float(s)) for n, s in per_user.get((v.id, t), {}).values())
                    for t in query.capped_types
                },
                covariate=covariate(v.id),
            )
            for v in experiment.variants
        }

    async def add_key(self, key: ApiKey) -> None:
        entries = take_audit_entries()
        self._keys[key.id] = key
        self._key_ids_by_digest[key.digest] = key.id
        self._audit.extend(entries)

    async def get_key(self, key_id: str) -> ApiKey | None:
        return self._keys.get(key_id)

    async def find_key(self, digest: str) -> ApiKey | None:
        key_id = self._key_ids_by_digest.get(digest)
        return None if key_id is None else self._keys[key_id]

    async def list_keys(self, limit: int, offset: int) -> tuple[list[ApiKey], int]:
        newest_first = sorted(self._keys.values(), key=lambda k: (k.created_at, k.id), reverse=True)
        return newest_first[offset : offset + limit], len(newest_first)

    async def revoke_key(self, key_id: str, at: datetime) -> ApiKey | None:
        entries = take_audit_entries()
        key = self._keys.get(key_id)
        if key is None or key.revoked_at is not None:
            return key
        self._keys[key_id] = key = key.revoked(at)
        self._audit.extend(entries)
        return key

    async def list_audit(
        self, limit: int, offset: int, *, action: str | None = None, target_id: str | None = None
    ) -> tuple[list[AuditEntry], int]:
        matching = [
            e
            for e in self._audit
            if (action is None or e.action == action) and (target_id is None or e.target_id == target_id)
        ]
        matching.sort(key=lambda e: (e.at, e.id), reverse=True)
        return matching[offset : offset + limit], len(matching)

    async def rebuild_aggregates(self, progress: Callable[[int, int, str], None] | None = None) -> None:
        if progress is not None:  # it aggregates raw events at every read: nothing kept to rebuild
            progress(1, 1, "done")

    async def start(self) -> None:
        pass

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        pass
