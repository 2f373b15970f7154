"""The HTTP contract as msgspec Structs: request bodies in, response bodies out."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from application.use_cases import AuditPage, ExperimentPage, HoldoutResults, KeyPage, LayerView, NewKey
from domain.audit import AuditEntry
from domain.assignment import MAX_USER_ID_LENGTH, Answer
from domain.event import MAX_BATCH, MAX_EVENT_ID_LENGTH, MAX_PROPERTIES_BYTES
from domain.experiment import (
    MAX_DESCRIPTION_LENGTH,
    MAX_EVENT_TYPE_LENGTH,
    MAX_NAME_LENGTH,
    MAX_VARIANTS,
    MIN_VARIANTS,
    Experiment,
)
from domain.keys import ApiKey
from domain.layers import Holdout
from domain.results import Comparison, ExperimentResults, VariantResult
from domain.stats import Proportion, TestResult

# ---- requests: types only, and the domain names every broken rule. Events are the exception:
# a batch is decoded with the domain's limits as msgspec constraints, so that a valid batch is
# checked in C as it is read; a batch that breaks one is decoded again as EventFieldsIn, event by
# event, for the domain to name every fault (entrypoints/decoding.py).


def _doc(description: str, *examples: Any) -> msgspec.Meta:
    return msgspec.Meta(description=description, examples=list(examples) or None)


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
    name: Annotated[str, _doc("Unique among layers; 1 to 200 characters.", "checkout page")]


class HoldoutIn(msgspec.Struct):
    name: Annotated[str, _doc("Unique among holdouts; 1 to 200 characters.", "global 2027")]
    percentage: Annotated[float, _doc("Share of all users held out: 0.01 to 50, in 0.01 steps.", 5)]


class ExperimentPatchIn(msgspec.Struct):
    """A change: only the fields sent change; ``null`` clears description or primary_event_type."""

    name: Annotated[str, _doc("A new name, unique among experiments.", "checkout-button-color-v2")] | msgspec.UnsetType = msgspec.UNSET
    description: Annotated[str, _doc("New free text.", "Green won in November.")] | None | msgspec.UnsetType = msgspec.UNSET
    primary_event_type: Annotated[str, _doc("The new default conversion event.", "signup")] | None | msgspec.UnsetType = msgspec.UNSET
    coverage: Annotated[float, _doc("Percentage of eligible traffic that enters; only grows once started.", 50)] | msgspec.UnsetType = msgspec.UNSET
    status: Annotated[str, _doc("draft, running, paused, stopped or archived; the lifecycle's moves only.", "stopped")] | msgspec.UnsetType = msgspec.UNSET
    winner_variant_id: Annotated[str, _doc("With status stopped: the variant served to everyone.", "0b7e6a52c1d94f40")] | msgspec.UnsetType = msgspec.UNSET
    variants: list[VariantIn] | msgspec.UnsetType = msgspec.UNSET
    audience: Annotated[dict[str, Any], _doc("In draft only: a new audience rule.", {"attribute": "country", "op": "eq", "value": "DE"})] | None | msgspec.UnsetType = msgspec.UNSET

    def changes(self) -> dict[str, Any]:
        return {
            f: getattr(self, f) for f in self.__struct_fields__ if getattr(self, f) is not msgspec.UNSET
        }


AttributeName = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
# Whole numbers decode as floats: JSON has one number type, and a schema offering integer and
# number both would match 0 twice (oneOf).
AttributeValue = Annotated[str, msgspec.Meta(max_length=1000)] | float | bool | None


class AssignmentIn(msgspec.Struct):
    """The user's attributes, for an experiment's audience rules."""

    attributes: Annotated[
        dict[AttributeName, AttributeValue],
        msgspec.Meta(
            max_length=100,
            description="Up to 100 attributes: strings (at most 1,000 characters), numbers, booleans or null.",
            examples=[{"country": "DE", "app_version": "3.1.0", "age": 34}],
        ),
    ] = {}


class OverrideIn(msgspec.Struct):
    variant_id: Annotated[str, _doc("The variant to force the user into.", "0b7e6a52c1d94f40")]


# ---- the same request as the OpenAPI document shows it: the limits the domain checks, as
# constraints a client (or a fuzzer) can read. Decoding keeps to the types alone, above, so that
# the domain still names every broken rule at once rather than msgspec the first.

VariantName = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_NAME_LENGTH,
        description="Unique within the experiment; not blank.",
        examples=["control"],
    ),
]
TrafficPercentage = Annotated[
    float,
    msgspec.Meta(
        ge=0,
        le=100,
        description="Share of users, 0 to 100 with at most two decimals; the variants' shares "
        "sum to exactly 100.",
        examples=[50],
    ),
]


class NewVariant(msgspec.Struct):
    """A variant of a new experiment."""

    name: VariantName
    traffic_percentage: TrafficPercentage
    is_control: Annotated[
        bool | None,
        msgspec.Meta(description="At most one variant is the control; if none is, the first is."),
    ] = None


class NewExperiment(msgspec.Struct):
    """An experiment to create: 2 to 20 variants whose traffic percentages sum to 100."""

    name: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=MAX_NAME_LENGTH,
            description="Unique among experiments (a duplicate is a 409); not blank.",
            examples=["checkout-button-color"],
        ),
    ]
    variants: Annotated[
        list[NewVariant],
        msgspec.Meta(
            min_length=MIN_VARIANTS,
            max_length=MAX_VARIANTS,
            examples=[
                [
                    {"name": "control", "traffic_percentage": 50, "is_control": True},
                    {"name": "green", "traffic_percentage": 50},
                ]
            ],
        ),
    ]
    description: (
        Annotated[
            str,
            msgspec.Meta(
                max_length=MAX_DESCRIPTION_LENGTH, examples=["Does a green button sell more?"]
            ),
        ]
        | None
    ) = None
    primary_event_type: (
        Annotated[
            str,
            msgspec.Meta(
                min_length=1,
                max_length=MAX_EVENT_TYPE_LENGTH,
                description="The default conversion event of the results.",
                examples=["purchase"],
            ),
        ]
        | None
    ) = None
    status: Annotated[
        str | None,
        msgspec.Meta(description="`draft` or `running` (the default): docs/experiments-that-live.md.", examples=["running"]),
    ] = None
    coverage: (
        Annotated[
            float,
            msgspec.Meta(ge=0, le=100, description="Percentage of eligible traffic that enters, in 0.01 steps (default 100).", examples=[100]),
        ]
        | None
    ) = None
    audience: Annotated[
        dict[str, Any] | None,
        msgspec.Meta(
            description="A rule over user attributes: comparisons and all/any/not (docs/experiments-that-live.md).",
            examples=[{"attribute": "country", "op": "in", "value": ["DE", "AT"]}],
        ),
    ] = None
    layer: Annotated[
        LayerPlaceIn | None,
        msgspec.Meta(description="The layer to sit in and the share of it to own.", examples=[{"id": "0b7e6a52c1d94f3e", "percentage": 30}]),
    ] = None
    holdout_id: Annotated[str | None, msgspec.Meta(description="The holdout this experiment opts into.")] = None


UserId = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_USER_ID_LENGTH,
        description="The client's id of the user; no NUL character.",
        examples=["u-123"],
    ),
]
EventType = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_EVENT_TYPE_LENGTH,
        description="What the user did; no NUL character.",
        examples=["purchase"],
    ),
]
EventId = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_EVENT_ID_LENGTH,
        description="Idempotency key: an event whose `event_id` is already stored is skipped and "
        "counted as a duplicate.",
        examples=["order-1001"],
    ),
]
class KeyIn(msgspec.Struct):
    """``expires_at``: RFC 3339; without an offset, UTC."""

    name: str
    scopes: list[str]
    expires_at: datetime | None = None
# msgspec refuses a JSON number beyond a double's range (1e999) as it parses; the bounds say in
# the schema that a value is finite, and keep infinity out should a decoder let one through.
FiniteFloat = Annotated[float, msgspec.Meta(ge=-sys.float_info.max, le=sys.float_info.max)]


class EventIn(msgspec.Struct, gc=False):
    """An event, with the limits the decoder checks in C. What a constraint cannot say (no NUL
    in text, a timestamp within years 1 to 9999 in UTC, the properties' serialized size) the
    decoder checks over the batch's columns. ``gc=False``: a batch makes thousands of these,
    and none can be part of a reference cycle, so the collector need not track them."""

    experiment_id: Annotated[
        str, msgspec.Meta(description="An existing experiment's id.", examples=["0b7e6a52c1d94f3e"])
    ]
    user_id: UserId
    event_type: EventType
    timestamp: Annotated[
        datetime | None,
        msgspec.Meta(
            description="RFC 3339, within years 1 to 9999 in UTC; without an offset it is UTC. "
            "Default: the time received.",
            examples=["2026-11-28T14:03:00Z"],
        ),
    ] = None
    value: Annotated[
        FiniteFloat | None,
        msgspec.Meta(description="A finite number, for value metrics.", examples=[19.99]),
    ] = None
    properties: Annotated[
        dict[str, Any] | None,
        msgspec.Meta(
            description=f"Any JSON object, at most {MAX_PROPERTIES_BYTES} bytes serialized.",
            examples=[{"sku": "A-1"}],
        ),
    ] = None
    event_id: EventId | None = None


class EventBatchIn(msgspec.Struct, gc=False):
    events: list[EventIn]


class EventBatch(msgspec.Struct):
    """A batch of events, stored all or nothing: EventBatchIn as the OpenAPI document shows it.
    Its size is the use case's rule, so the decoder leaves it out."""

    events: Annotated[list[EventIn], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


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


# ---- responses: every field described, with the example of a real response


Id = Annotated[str, _doc("An opaque id generated by the service.", "0b7e6a52c1d94f3e")]
Rate = Annotated[float | None, _doc("A share from 0 to 1; null when undefined.", 0.08)]
Lift = Annotated[float | None, _doc("Null when undefined for the data.", 0.012)]
PValue = Annotated[float | None, _doc("Two-sided; null when undefined for the data.", 0.0023)]


class VariantOut(msgspec.Struct):
    id: Id
    name: Annotated[str, _doc("Unique within the experiment.", "control")]
    traffic_percentage: Annotated[float, _doc("Share of users, 0 to 100.", 50.0)]
    is_control: Annotated[bool, _doc("Exactly one variant is the control.", True)]


class OverrideOut(msgspec.Struct):
    user_id: str
    variant_id: str
    forced_at: datetime


class LayerSliceOut(msgspec.Struct):
    id: str  # the layer's
    start: int  # the first of its buckets this experiment owns (0..9999)
    end: int  # one past the last


class ExperimentOut(msgspec.Struct):
    """An experiment and its variants, in their order."""

    id: Id
    name: Annotated[str, _doc("Unique among experiments.", "checkout-button-color")]
    description: Annotated[str | None, _doc("Free text.", "Does a green button sell more?")]
    primary_event_type: Annotated[
        str | None, _doc("The default conversion event of the results.", "purchase")
    ]
    created_at: Annotated[datetime, _doc("RFC 3339, UTC.", "2026-11-28T14:00:00Z")]
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
    """A page of experiments, newest first."""

    items: list[ExperimentOut]
    total: Annotated[int, _doc("How many experiments there are in all.", 1)]

    @classmethod
    def of(cls, page: ExperimentPage) -> ExperimentListOut:
        return cls([ExperimentOut.of(e) for e in page.items], page.total)


class AssignmentOut(msgspec.Struct):
    """A user's variant: decided by the hash on the first call, the same on every call after."""

    experiment_id: Id
    user_id: Annotated[str, _doc("As the client sent it.", "u-123")]
    variant_id: Id
    variant_name: Annotated[str, _doc("The variant's name.", "green")]
    assigned_at: Annotated[
        datetime | None,
        _doc("When the assignment was first stored; RFC 3339, UTC. Null when nothing is stored "
             "(see in_experiment and reason).", "2026-11-28T14:00:05Z"),
    ]
    in_experiment: Annotated[bool, _doc("Whether the user is in the experiment (docs/experiments-that-live.md).", True)]
    reason: Annotated[
        str,
        _doc("Why: assigned, forced, winner, draft, paused, archived, audience, holdout, layer, coverage.", "assigned"),
    ]

    @classmethod
    def of(cls, a: Answer) -> AssignmentOut:
        return cls(a.experiment_id, a.user_id, a.variant_id, a.variant_name, a.assigned_at,
                   a.in_experiment, str(a.reason))


class EventsAcceptedOut(msgspec.Struct):
    """The events are durably committed."""

    accepted: Annotated[int, msgspec.Meta(ge=0, description="Events stored.", examples=[998])]
    duplicates: Annotated[
        int,
        msgspec.Meta(ge=0, description="Events skipped: their event_id was stored.", examples=[2]),
    ]


class HealthOut(msgspec.Struct):
    status: Annotated[
        Literal["ok", "unavailable"],
        _doc("`ok` when the service can reach its store, else `unavailable` (a 503).", "ok"),
    ]


class FiltersOut(msgspec.Struct):
    """The filters applied, as the service read them; a bare date is shown as its UTC day."""

    start_date: Annotated[datetime | None, _doc("Inclusive; RFC 3339, UTC.")]
    end_date: Annotated[datetime | None, _doc("Inclusive; RFC 3339, UTC.")]
    event_type: str | None
    variant_id: str | None
    primary_event_type: str | None


class SrmOut(msgspec.Struct):
    """Sample-ratio mismatch: users per variant against the configured split."""

    chi_square: Annotated[float | None, _doc("Pearson chi-square; null when undefined.", 3.92)]
    p_value: PValue
    mismatch: Annotated[bool, _doc("p_value < 0.001, or any user in a 0% variant.", False)]


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
    primary_conversion_rate: Annotated[
        float | None, _doc("primary_unique_users / users; null when users is 0.", 0.08)
    ]
    value_sum: Annotated[float | None, _doc("Sum of `value` over the counted primary events.")]
    value_per_user: Annotated[float | None, _doc("value_sum / users; null when users is 0.")]

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
    """A confidence interval for the difference; its bounds null when undefined."""

    level: Annotated[float, _doc("The confidence level.", 0.95)]
    method: Annotated[Literal["newcombe", "welch"], _doc("How it was computed.", "newcombe")]
    lower: Lift
    upper: Lift

    @classmethod
    def of(cls, test: TestResult) -> IntervalOut:
        interval = test.interval
        if interval is None:
            return cls(test.level, test.interval_method, None, None)
        return cls(test.level, test.interval_method, interval.lower, interval.upper)


class ValueComparisonOut(msgspec.Struct):
    absolute_lift: float | None
    relative_lift: float | None
    t_statistic: float | None
    p_value: float | None
    significant: bool
    confidence_interval: IntervalOut

    @classmethod
    def of(cls, t: TestResult) -> ValueComparisonOut:
        return cls(t.absolute_lift, t.relative_lift, t.statistic, t.p_value, t.significant, IntervalOut.of(t))


class ComparisonOut(msgspec.Struct):
    """A variant against the control: the two-proportion z-test and the value's Welch t-test."""

    variant_id: Id
    baseline_variant_id: Id
    absolute_lift: Lift
    relative_lift: Lift
    z_score: Annotated[float | None, _doc("Pooled two-proportion z; null when undefined.", 3.05)]
    p_value: PValue
    p_value_adjusted: Annotated[float | None, _doc("Holm-Bonferroni over the comparisons.", 0.0023)]
    significant: Annotated[bool, _doc("p_value < 0.05; false when it is null.", True)]
    confidence_interval: IntervalOut
    value: ValueComparisonOut

    @classmethod
    def of(cls, c: Comparison) -> ComparisonOut:
        z = c.conversion
        return cls(
            variant_id=c.variant_id,
            baseline_variant_id=c.baseline_variant_id,
            absolute_lift=z.absolute_lift,
            relative_lift=z.relative_lift,
            z_score=z.statistic,
            p_value=z.p_value,
            p_value_adjusted=c.p_value_adjusted,
            significant=z.significant,
            confidence_interval=IntervalOut.of(z),
            value=ValueComparisonOut.of(c.value),
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
    field: Annotated[str, _doc("The path of the field.", "variants[1].traffic_percentage")]
    message: Annotated[str, _doc("The rule it broke.", "must have at most two decimals")]


class ProblemOut(msgspec.Struct, omit_defaults=True):
    """RFC 9457 problem details: the body of every error."""

    status: Annotated[int, _doc("The HTTP status code.", 422)]
    title: Annotated[str, _doc("The status code's phrase.", "Unprocessable Entity")]
    detail: Annotated[str, _doc("What went wrong, for a human.")]
    type: Annotated[str, _doc("Always `about:blank`: the status says it all.")] = "about:blank"
    errors: Annotated[
        list[FieldErrorOut] | None, _doc("Each invalid field, for validation errors (422, 409).")
    ] = None


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

    @classmethod
    def of(cls, p: Proportion) -> GroupOut:
        return cls(p.n, p.x, p.rate)


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
        t = r.test
        return cls(HoldoutOut.of(r.holdout), r.event_type, GroupOut.of(r.held_out), GroupOut.of(r.exposed),
                   t.absolute_lift, t.relative_lift, t.statistic, t.p_value, IntervalOut.of(t))


class KeyOut(msgspec.Struct):
    """A key as listed: never its secret, nor its digest."""

    id: str
    name: str
    scopes: list[str]
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> KeyOut:
        return cls(key.id, key.name, list(key.scopes), key.created_at, key.created_by, key.expires_at, key.revoked_at)


class KeyCreatedOut(KeyOut):
    """A new key, with its secret: shown this once, stored nowhere but as a digest."""

    key: str

    @classmethod
    def created(cls, new: NewKey) -> KeyCreatedOut:
        k = new.key
        return cls(k.id, k.name, list(k.scopes), k.created_at, k.created_by, k.expires_at, k.revoked_at, new.secret)


class KeyListOut(msgspec.Struct):
    items: list[KeyOut]
    total: int

    @classmethod
    def of(cls, page: KeyPage) -> KeyListOut:
        return cls([KeyOut.of(k) for k in page.items], page.total)


class AuditTargetOut(msgspec.Struct):
    type: str
    id: str


class AuditEntryOut(msgspec.Struct):
    id: str
    at: datetime
    actor: str
    action: str
    target: AuditTargetOut
    details: dict[str, Any]

    @classmethod
    def of(cls, e: AuditEntry) -> AuditEntryOut:
        return cls(e.id, e.at, e.actor, e.action, AuditTargetOut(e.target_type, e.target_id), dict(e.details))


class AuditListOut(msgspec.Struct):
    items: list[AuditEntryOut]
    total: int

    @classmethod
    def of(cls, page: AuditPage) -> AuditListOut:
        return cls([AuditEntryOut.of(e) for e in page.items], page.total)
