"""The HTTP contract as msgspec Structs: request bodies in, response bodies out."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Annotated, Any

import msgspec

from application.use_cases import ExperimentPage, HoldoutResults, LayerView
from domain.layers import Holdout
from domain.assignment import MAX_USER_ID_LENGTH, Answer
from domain.event import MAX_EVENT_ID_LENGTH
from domain.experiment import MAX_EVENT_TYPE_LENGTH, Experiment
from domain.results import Comparison, ExperimentResults, VariantResult
from domain.statistics import Interval

# ---- requests: types only, and the domain names every broken rule. Events are the exception:
# a batch is decoded with the domain's limits as msgspec constraints, so that a valid batch is
# checked in C as it is read; a batch that breaks one is decoded again as EventFieldsIn, event by
# event, for the domain to name every fault (entrypoints/decoding.py).


class VariantIn(msgspec.Struct):
    name: str
    traffic_percentage: float
    is_control: bool | None = None


class ExperimentIn(msgspec.Struct):
    name: str
    variants: list[VariantIn]
    description: str | None = None
    primary_event_type: str | None = None
    # Beyond the base contract (docs/api.md): created running for all traffic unless told.
    status: str | None = None
    coverage: float | None = None
    audience: dict[str, Any] | None = None
    layer: LayerPlaceIn | None = None
    holdout_id: str | None = None


class LayerPlaceIn(msgspec.Struct):
    """The layer to sit in and the share of its traffic to own (a free slice is taken)."""

    id: str
    percentage: float


class LayerIn(msgspec.Struct):
    name: str


class HoldoutIn(msgspec.Struct):
    name: str
    percentage: float


class ExperimentPatchIn(msgspec.Struct):
    """A change: only the fields sent change; ``null`` clears description or primary_event_type."""

    name: str | msgspec.UnsetType = msgspec.UNSET
    description: str | None | msgspec.UnsetType = msgspec.UNSET
    primary_event_type: str | None | msgspec.UnsetType = msgspec.UNSET
    coverage: float | msgspec.UnsetType = msgspec.UNSET
    status: str | msgspec.UnsetType = msgspec.UNSET
    winner_variant_id: str | msgspec.UnsetType = msgspec.UNSET
    variants: list[VariantIn] | msgspec.UnsetType = msgspec.UNSET
    audience: dict[str, Any] | None | msgspec.UnsetType = msgspec.UNSET

    def changes(self) -> dict[str, Any]:
        return {
            f: getattr(self, f) for f in self.__struct_fields__ if getattr(self, f) is not msgspec.UNSET
        }


AttributeName = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
AttributeValue = Annotated[str, msgspec.Meta(max_length=1000)] | int | float | bool | None


class AssignmentIn(msgspec.Struct):
    """The user's attributes, for an experiment's audience rules."""

    attributes: Annotated[dict[AttributeName, AttributeValue], msgspec.Meta(max_length=100)] = {}


class OverrideIn(msgspec.Struct):
    variant_id: str


UserId = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_USER_ID_LENGTH)]
EventType = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_EVENT_TYPE_LENGTH)]
EventId = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_EVENT_ID_LENGTH)]
# msgspec refuses a JSON number beyond a double's range (1e999) as it parses; the bounds say in
# the schema that a value is finite, and keep infinity out should a decoder let one through.
FiniteFloat = Annotated[float, msgspec.Meta(ge=-sys.float_info.max, le=sys.float_info.max)]


class EventIn(msgspec.Struct, gc=False):
    """An event, with the limits the decoder checks in C. What a constraint cannot say (no NUL
    in text, a timestamp within years 1 to 9999 in UTC, the properties' serialized size) the
    decoder checks over the batch's columns. ``gc=False``: a batch makes thousands of these,
    and none can be part of a reference cycle, so the collector need not track them."""

    experiment_id: str
    user_id: UserId
    event_type: EventType
    timestamp: datetime | None = None
    value: FiniteFloat | None = None
    properties: dict[str, Any] | None = None
    event_id: EventId | None = None


class EventBatchIn(msgspec.Struct, gc=False):
    events: list[EventIn]


class EventFieldsIn(msgspec.Struct):
    """An event's types alone: a bad batch is decoded event by event with it, and the domain's
    ``event_errors`` names every broken rule."""

    experiment_id: str
    user_id: str
    event_type: str
    timestamp: datetime | None = None
    value: float | None = None
    properties: dict[str, Any] | None = None
    event_id: str | None = None


# ---- responses


class VariantOut(msgspec.Struct):
    id: str
    name: str
    traffic_percentage: float
    is_control: bool


class OverrideOut(msgspec.Struct):
    user_id: str
    variant_id: str
    forced_at: datetime


class LayerSliceOut(msgspec.Struct):
    id: str  # the layer's
    start: int  # the first of its buckets this experiment owns (0..9999)
    end: int  # one past the last


class ExperimentOut(msgspec.Struct):
    id: str
    name: str
    description: str | None
    primary_event_type: str | None
    created_at: datetime
    variants: list[VariantOut]
    status: str
    coverage: float
    audience: dict[str, Any] | None
    winner_variant_id: str | None
    started_at: datetime | None
    stopped_at: datetime | None
    overrides: list[OverrideOut]
    layer: LayerSliceOut | None
    holdout_id: str | None

    @classmethod
    def of(cls, experiment: Experiment) -> ExperimentOut:
        e = experiment
        return cls(
            id=e.id,
            name=e.name,
            description=e.description,
            primary_event_type=e.primary_event_type,
            created_at=e.created_at,
            variants=[VariantOut(v.id, v.name, v.traffic_percentage, v.is_control) for v in e.variants],
            status=e.status.value,
            coverage=e.coverage_basis_points / 100,
            audience=None if e.audience is None else e.audience.source,
            winner_variant_id=e.winner_variant_id,
            started_at=e.started_at,
            stopped_at=e.stopped_at,
            overrides=[OverrideOut(o.user_id, o.variant_id, o.forced_at) for o in e.overrides],
            layer=None if e.layer is None else LayerSliceOut(e.layer.layer_id, e.layer.slice.start, e.layer.slice.end),
            holdout_id=None if e.holdout is None else e.holdout.holdout_id,
        )


class ExperimentListOut(msgspec.Struct):
    items: list[ExperimentOut]
    total: int

    @classmethod
    def of(cls, page: ExperimentPage) -> ExperimentListOut:
        return cls([ExperimentOut.of(e) for e in page.items], page.total)


class AssignmentOut(msgspec.Struct):
    experiment_id: str
    user_id: str
    variant_id: str
    variant_name: str
    assigned_at: datetime | None  # null when nothing is stored: see in_experiment and reason
    in_experiment: bool
    reason: str

    @classmethod
    def of(cls, a: Answer) -> AssignmentOut:
        return cls(a.experiment_id, a.user_id, a.variant_id, a.variant_name, a.assigned_at,
                   a.in_experiment, str(a.reason))


class EventsAcceptedOut(msgspec.Struct):
    accepted: int
    duplicates: int


class HealthOut(msgspec.Struct):
    status: str


class FiltersOut(msgspec.Struct):
    start_date: datetime | None
    end_date: datetime | None
    event_type: str | None
    variant_id: str | None
    primary_event_type: str | None


class SrmOut(msgspec.Struct):
    chi_square: float | None
    p_value: float | None
    mismatch: bool


class SummaryOut(msgspec.Struct):
    total_users: int
    total_events: int
    srm: SrmOut


class VariantResultOut(msgspec.Struct):
    variant_id: str
    variant_name: str
    is_control: bool
    users: int
    events: int
    unique_users_with_events: int
    event_counts: dict[str, int]
    primary_event_count: int
    primary_unique_users: int
    primary_conversion_rate: float | None
    value_sum: float | None
    value_per_user: float | None

    @classmethod
    def of(cls, r: VariantResult) -> VariantResultOut:
        return cls(
            variant_id=r.variant.id,
            variant_name=r.variant.name,
            is_control=r.variant.is_control,
            users=r.users,
            events=r.events,
            unique_users_with_events=r.unique_users_with_events,
            event_counts=dict(r.event_counts),
            primary_event_count=r.primary_event_count,
            primary_unique_users=r.primary_unique_users,
            primary_conversion_rate=r.primary_conversion_rate,
            value_sum=r.value_sum,
            value_per_user=r.value_per_user,
        )


class IntervalOut(msgspec.Struct):
    level: float
    method: str
    lower: float | None
    upper: float | None

    @classmethod
    def of(cls, interval: Interval | None, method: str) -> IntervalOut:
        if interval is None:
            return cls(0.95, method, None, None)
        return cls(0.95, method, interval.lower, interval.upper)


class ValueComparisonOut(msgspec.Struct):
    absolute_lift: float | None
    relative_lift: float | None
    t_statistic: float | None
    p_value: float | None
    significant: bool
    confidence_interval: IntervalOut


class ComparisonOut(msgspec.Struct):
    variant_id: str
    baseline_variant_id: str
    absolute_lift: float | None
    relative_lift: float | None
    z_score: float | None
    p_value: float | None
    p_value_adjusted: float | None
    significant: bool
    confidence_interval: IntervalOut
    value: ValueComparisonOut

    @classmethod
    def of(cls, c: Comparison) -> ComparisonOut:
        v = c.value
        return cls(
            variant_id=c.variant_id,
            baseline_variant_id=c.baseline_variant_id,
            absolute_lift=c.absolute_lift,
            relative_lift=c.relative_lift,
            z_score=c.z_score,
            p_value=c.p_value,
            p_value_adjusted=c.p_value_adjusted,
            significant=c.significant,
            confidence_interval=IntervalOut.of(c.interval, "newcombe"),
            value=ValueComparisonOut(
                absolute_lift=v.absolute_lift,
                relative_lift=v.relative_lift,
                t_statistic=v.t_statistic,
                p_value=v.p_value,
                significant=v.significant,
                confidence_interval=IntervalOut.of(v.interval, "welch"),
            ),
        )


class ResultsOut(msgspec.Struct):
    experiment: ExperimentOut
    filters: FiltersOut
    summary: SummaryOut
    variants: list[VariantResultOut]
    comparisons: list[ComparisonOut]

    @classmethod
    def of(cls, r: ExperimentResults) -> ResultsOut:
        q = r.query
        return cls(
            experiment=ExperimentOut.of(r.experiment),
            filters=FiltersOut(q.start, q.end, q.event_type, q.variant_id, q.primary_event_type),
            summary=SummaryOut(
                r.total_users,
                r.total_events,
                SrmOut(r.srm.chi_square, r.srm.p_value, r.srm.mismatch),
            ),
            variants=[VariantResultOut.of(v) for v in r.variants],
            comparisons=[ComparisonOut.of(c) for c in r.comparisons],
        )


class FieldErrorOut(msgspec.Struct):
    field: str
    message: str


class ProblemOut(msgspec.Struct, omit_defaults=True):
    """RFC 9457 problem details."""

    status: int
    title: str
    detail: str
    type: str = "about:blank"
    errors: list[FieldErrorOut] | None = None


class LayerExperimentOut(msgspec.Struct):
    experiment_id: str
    start: int
    end: int


class LayerOut(msgspec.Struct):
    id: str
    name: str
    seed: str
    created_at: datetime
    experiments: list[LayerExperimentOut]
    free_percentage: float

    @classmethod
    def of(cls, view: LayerView) -> LayerOut:
        layer = view.layer
        return cls(layer.id, layer.name, layer.seed, layer.created_at,
                   [LayerExperimentOut(x, s.start, s.end) for x, s in view.slices], view.free_basis_points / 100)


class LayerListOut(msgspec.Struct):
    items: list[LayerOut]


class HoldoutOut(msgspec.Struct):
    id: str
    name: str
    seed: str
    percentage: float
    created_at: datetime

    @classmethod
    def of(cls, h: Holdout) -> HoldoutOut:
        return cls(h.id, h.name, h.seed, h.basis_points / 100, h.created_at)


class HoldoutListOut(msgspec.Struct):
    items: list[HoldoutOut]


class GroupOut(msgspec.Struct):
    users: int
    converted: int
    conversion_rate: float | None


class HoldoutResultsOut(msgspec.Struct):
    holdout: HoldoutOut
    event_type: str
    held_out: GroupOut
    exposed: GroupOut
    absolute_lift: float | None  # exposed rate minus held-out rate
    relative_lift: float | None
    z_score: float | None
    p_value: float | None
    confidence_interval: IntervalOut  # of the absolute lift

    @classmethod
    def of(cls, r: HoldoutResults) -> HoldoutResultsOut:
        def group(users: int, converted: int) -> GroupOut:
            return GroupOut(users, converted, converted / users if users else None)

        held, exposed = group(*r.held_out), group(*r.exposed)
        lift = None
        if held.conversion_rate is not None and exposed.conversion_rate is not None:
            lift = exposed.conversion_rate - held.conversion_rate
        relative = lift / held.conversion_rate if lift is not None and held.conversion_rate else None
        interval = IntervalOut.of(r.interval, "newcombe")
        return cls(HoldoutOut.of(r.holdout), r.event_type, held, exposed, lift, relative,
                   r.test.z_score, r.test.p_value, interval)
