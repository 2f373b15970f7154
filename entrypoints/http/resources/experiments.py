"""Experiments: create, list, read and change them, with their wire types."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

import msgspec
from litestar import Controller, Response, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody

from application.experiments import (
    ChangeExperiment,
    CreateExperiment,
    ExperimentPage,
    GetExperiment,
    ListExperiments,
)
from domain.analysis import MAX_TUNING_USERS, MIN_TUNING_USERS
from domain.experiment import (
    MAX_DESCRIPTION_LENGTH,
    MAX_EVENT_TYPE_LENGTH,
    MAX_NAME_LENGTH,
    MAX_VARIANTS,
    MIN_VARIANTS,
    Experiment,
    VariantDraft,
)
from domain.keys import ADMIN, READ
from domain.stats.sequential import DEFAULT_TUNING_USERS
from entrypoints.http import openapi
from entrypoints.http.decoding import StrictDTO
from entrypoints.http.wire import Id, doc


class VariantIn(msgspec.Struct):
    name: str
    traffic_percentage: float
    is_control: bool | None = None


class LayerPlaceIn(msgspec.Struct):
    """The layer to sit in and the share of its traffic to own (a free slice is taken)."""

    id: str
    percentage: float


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
    analysis: dict[str, Any] | None = None


class ExperimentPatchIn(msgspec.Struct):
    """A change: only the fields sent change; ``null`` clears description or primary_event_type."""

    name: Annotated[str, doc("A new name, unique among experiments.", "checkout-button-color-v2")] | msgspec.UnsetType = msgspec.UNSET
    description: Annotated[str, doc("New free text.", "Green won in November.")] | None | msgspec.UnsetType = msgspec.UNSET
    primary_event_type: Annotated[str, doc("The new default conversion event.", "signup")] | None | msgspec.UnsetType = msgspec.UNSET
    coverage: Annotated[float, doc("Percentage of eligible traffic that enters; only grows once started.", 50)] | msgspec.UnsetType = msgspec.UNSET
    status: Annotated[str, doc("draft, running, paused, stopped or archived; the lifecycle's moves only.", "stopped")] | msgspec.UnsetType = msgspec.UNSET
    winner_variant_id: Annotated[str, doc("With status stopped: the variant served to everyone.", "0b7e6a52c1d94f40")] | msgspec.UnsetType = msgspec.UNSET
    variants: list[VariantIn] | msgspec.UnsetType = msgspec.UNSET
    audience: Annotated[dict[str, Any], doc("In draft only: a new audience rule.", {"attribute": "country", "op": "eq", "value": "DE"})] | None | msgspec.UnsetType = msgspec.UNSET
    analysis: Annotated[dict[str, Any], doc("At any time: how results are read by default (replaced whole; null: the defaults).", {"method": "sequential"})] | None | msgspec.UnsetType = msgspec.UNSET

    def changes(self) -> dict[str, Any]:
        return {
            f: getattr(self, f) for f in self.__struct_fields__ if getattr(self, f) is not msgspec.UNSET
        }


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
    analysis: Annotated[
        AnalysisIn | None,
        msgspec.Meta(description="How results are read by default (docs/statistics.md); every key optional."),
    ] = None


class PriorOut(msgspec.Struct):
    """A normal prior on the relative effect (0.1 is +10%)."""

    mean: Annotated[float, doc("The prior's mean relative effect.", 0.0)]
    sd: Annotated[float, doc("Its standard deviation, above 0.", 0.3)]


class CapOut(msgspec.Struct, omit_defaults=True):
    """Exactly one of the two (docs/statistics.md, Capping outliers)."""

    value: Annotated[float | None, doc("Cap each user's figure at this value, above 0.", 500.0)] = None
    percentile: Annotated[
        float | None,
        doc("Cap each user's figure at this percentile of the figures of users with an event of event_type, "
            "all variants pooled (nearest rank), as a share between 0 and 1.", 0.99),
    ] = None


class MetricOut(msgspec.Struct):
    """A metric of the scorecard (docs/statistics.md, Scorecards): one figure per user, from
    the events counted for the user."""

    name: Annotated[str, doc("Unique among the experiment's metrics; 1 to 100 characters.", "checkout rate")]
    kind: Annotated[
        Literal["conversion", "count", "value", "ratio"],
        doc("conversion: has an event of event_type; count: events per user; value: sum of value per "
            "user; ratio: the numerator over the count of denominator_event_type, by the delta method.",
            "conversion"),
    ]
    event_type: Annotated[str, doc("The event type measured (a ratio's numerator).", "purchase")]
    role: Annotated[
        Literal["primary", "secondary", "guardrail"],
        doc("Exactly one primary decides; secondaries inform; guardrails must not get worse than "
            "their tolerance allows. Default secondary.", "primary"),
    ]
    direction: Annotated[Literal["increase", "decrease"], doc("Which way is better. Default increase.", "increase")]
    tolerance: Annotated[
        float | None,
        doc("Guardrails: the relative harm tolerated, 0 to 10 (0.02: 2% worse than the control). "
            "Default 0; null for other roles.", 0.02),
    ] = None
    denominator_event_type: Annotated[
        str | None, doc("Ratios: the event type whose count per user is the denominator.", "session")
    ] = None
    numerator: Annotated[
        Literal["count", "value"] | None,
        doc("Ratios: what the numerator sums of event_type's events, their count or their value. "
            "Default count.", "value"),
    ] = None
    cap: Annotated[
        CapOut | None,
        doc("Count and value metrics: cap each user's figure, at a value or a percentile; null: not capped."),
    ] = None


class AnalysisOut(msgspec.Struct):
    """How the experiment's results are read unless a request asks otherwise."""

    method: Annotated[
        Literal["fixed", "sequential", "bayesian"],
        doc("fixed: the fixed-horizon tests alone; sequential: confidence sequences valid at every look; "
            "bayesian: chance to beat the control and expected loss.", "sequential"),
    ]
    sequential_tuning_users: Annotated[
        int, doc("Users (both arms) at which the confidence sequence is tightest.", DEFAULT_TUNING_USERS)
    ]
    prior: Annotated[PriorOut | None, doc("Bayesian: a normal prior on the relative effect; null: flat.")]
    correction: Annotated[
        Literal["holm", "bh"],
        doc("Of p_value_adjusted over the variants: holm (family-wise error) or bh (false discovery rate).", "holm"),
    ]
    metrics: Annotated[list[MetricOut], doc("The scorecard's metrics; empty: results carry no scorecard.")]
    cuped: Annotated[
        bool, doc("Results carry the comparisons adjusted by the users' pre-period (CUPED) beside them.", False)
    ]
    dimensions: Annotated[
        list[str], doc("Attributes stored with each assignment, that results may be split by (breakdowns).",
                       ["platform", "country"])
    ]


class AnalysisIn(msgspec.Struct):
    """How results are read by default; a key left out takes its default. Documentation of
    the body only: domain/analysis.py checks it, naming each invalid field."""

    method: Annotated[
        Literal["fixed", "sequential", "bayesian"], doc("Default fixed.", "sequential")
    ] = "fixed"
    sequential_tuning_users: Annotated[
        int,
        msgspec.Meta(
            ge=MIN_TUNING_USERS, le=MAX_TUNING_USERS, description=f"Default {DEFAULT_TUNING_USERS:,}: docs/statistics.md."
        ),
    ] = DEFAULT_TUNING_USERS
    prior: Annotated[PriorOut | None, doc("Bayesian: a normal prior on the relative effect; null: flat.")] = None
    correction: Annotated[Literal["holm", "bh"], doc("Default holm.", "bh")] = "holm"
    metrics: Annotated[
        list[MetricOut],
        msgspec.Meta(max_length=20, description="Up to 20, exactly one of them primary; default none."),
    ] = []
    cuped: Annotated[bool, doc("Default false.", True)] = False
    dimensions: Annotated[
        list[str],
        msgspec.Meta(max_length=5, description=(
            "Up to 5 distinct attribute names (1 to 100 characters) whose values, as sent with the "
            "assignment call that assigns a user, are stored with the assignment for breakdowns; "
            "default none. Users assigned before a dimension is named are in its slice unknown."
        )),
    ] = []


class VariantOut(msgspec.Struct):
    id: Id
    name: Annotated[str, doc("Unique within the experiment.", "control")]
    traffic_percentage: Annotated[float, doc("Share of users, 0 to 100.", 50.0)]
    is_control: Annotated[bool, doc("Exactly one variant is the control.", True)]


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
    name: Annotated[str, doc("Unique among experiments.", "checkout-button-color")]
    description: Annotated[str | None, doc("Free text.", "Does a green button sell more?")]
    primary_event_type: Annotated[
        str | None, doc("The default conversion event of the results.", "purchase")
    ]
    created_at: Annotated[datetime, doc("RFC 3339, UTC.", "2026-11-28T14:00:00Z")]
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
    analysis: AnalysisOut

    @classmethod
    def of(cls, experiment: Experiment) -> ExperimentOut:
        """The experiment's one JSON form (``Experiment.document``), typed for the wire."""
        return msgspec.convert(experiment.document(), cls)


class ExperimentListOut(msgspec.Struct):
    """A page of experiments, newest first."""

    items: list[ExperimentOut]
    total: Annotated[int, doc("How many experiments there are in all.", 1)]

    @classmethod
    def of(cls, page: ExperimentPage) -> ExperimentListOut:
        return cls([ExperimentOut.of(e) for e in page.items], page.total)


class ExperimentDTO(StrictDTO[ExperimentIn]):
    closed = True
    schema: ClassVar[Any] = NewExperiment


class ExperimentPatchDTO(StrictDTO[ExperimentPatchIn]):
    closed = True


def variant_drafts(variants: list[VariantIn]) -> list[VariantDraft]:
    return [VariantDraft(v.name, v.traffic_percentage, v.is_control) for v in variants]


class ExperimentsController(Controller):
    path = "/experiments"
    tags = [openapi.EXPERIMENTS]
    opt = {"scope": READ}

    @post(
        dto=ExperimentDTO,
        return_dto=None,
        status_code=201,
        summary="Create an experiment with its variants and traffic split.",
        response_description="The experiment, as stored.",
        response_headers=openapi.location_header(),
        responses=openapi.error_responses(*openapi.AUTHENTICATED, *openapi.WITH_BODY, 409),
        opt={"scope": ADMIN},
    )
    async def create_experiment(
        self,
        data: JSONBody[ExperimentIn],
        create_experiment: NamedDependency[CreateExperiment],
        actor: NamedDependency[str],
    ) -> Response[ExperimentOut]:
        """2 to 20 variants with unique names, whose traffic percentages (at most two decimals)
        sum to exactly 100. At most one variant is the control; if none is, the first is. Every
        broken rule is named in the 422. The `Location` header is the new experiment's path."""
        experiment = await create_experiment(
            actor=actor,
            name=data.name,
            description=data.description,
            primary_event_type=data.primary_event_type,
            variants=variant_drafts(data.variants),
            status=data.status,
            coverage=data.coverage,
            audience=data.audience,
            analysis=data.analysis,
            layer_id=None if data.layer is None else data.layer.id,
            layer_percentage=None if data.layer is None else data.layer.percentage,
            holdout_id=data.holdout_id,
        )
        return Response(
            ExperimentOut.of(experiment),
            status_code=201,
            headers={"Location": f"/experiments/{experiment.id}"},
        )

    @get(
        summary="List experiments, newest first.",
        responses=openapi.error_responses(*openapi.AUTHENTICATED, 422),
    )
    async def list_experiments(
        self,
        list_experiments: NamedDependency[ListExperiments],
        limit: FromQuery[int] = 100,
        offset: FromQuery[int] = 0,
    ) -> ExperimentListOut:
        """A page of experiments: `limit` 1 to 500 (default 100), `offset` 0 or more; `total`
        counts them all. A limit or offset out of range is a 422."""
        return ExperimentListOut.of(await list_experiments(limit=limit, offset=offset))

    @get(
        "/{experiment_id:str}",
        summary="Get one experiment and its variants.",
        responses=openapi.error_responses(*openapi.AUTHENTICATED, 404),
    )
    async def get_experiment(
        self, experiment_id: FromPath[str], get_experiment: NamedDependency[GetExperiment]
    ) -> ExperimentOut:
        """The experiment as created; a 404 when no experiment has this id."""
        return ExperimentOut.of(await get_experiment(experiment_id))

    @patch(
        "/{experiment_id:str}",
        dto=ExperimentPatchDTO,
        return_dto=None,
        summary="Change an experiment: its name, description, primary metric, coverage or state.",
        responses=openapi.error_responses(*openapi.AUTHENTICATED, *openapi.WITH_BODY, 404, 409),
        opt={"scope": ADMIN},
    )
    async def change_experiment(
        self,
        experiment_id: FromPath[str],
        data: JSONBody[ExperimentPatchIn],
        change_experiment: NamedDependency[ChangeExperiment],
        actor: NamedDependency[str],
    ) -> ExperimentOut:
        """Only the fields sent change (docs/experiments-that-live.md). An illegal state move,
        lowering the coverage of a started experiment, or changing its split or audience once
        started is a 409 naming the current state; so is a change made meanwhile by another
        request."""
        changes = data.changes()
        if "variants" in changes:
            changes["variants"] = variant_drafts(changes["variants"])
        experiment, _ = await change_experiment(experiment_id, actor, **changes)
        return ExperimentOut.of(experiment)
