"""Breakdowns: an experiment's results split by a dimension users were assigned with."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery

from application.results import ComputeBreakdown
from domain.analysis import AnalysisOverrides
from domain.breakdown import Breakdown, SliceResults
from domain.errors import ValidationFailed
from domain.keys import READ
from domain.results import VariantResult
from entrypoints.http import openapi
from entrypoints.http.disconnects import while_connected
from entrypoints.http.resources.results import ComparisonOut, SequentialSrmOut, SrmOut
from entrypoints.http.wire import Id, doc


class SliceVariantOut(msgspec.Struct):
    variant_id: Id
    variant_name: str
    is_control: bool
    users: Annotated[int, doc("The variant's users assigned with this slice's value.")]
    conversions: Annotated[int, doc("Of them, those with a counted primary event.")]
    conversion_rate: Annotated[float | None, doc("conversions / users; null when users is 0.", 0.08)]
    value_sum: Annotated[float | None, doc("Sum of `value` over their counted primary events.")]
    value_per_user: Annotated[float | None, doc("value_sum / users; null when users is 0.")]

    @classmethod
    def of(cls, r: VariantResult) -> SliceVariantOut:
        return cls(
            r.variant.id, r.variant.name, r.variant.is_control, r.users, r.primary_unique_users,
            r.primary_conversion_rate, r.value_sum, r.value_per_user,
        )


class SliceComparisonOut(ComparisonOut, kw_only=True):
    p_value_adjusted_across_slices: Annotated[
        float | None,
        doc("The conversion's p-value adjusted over every slice × variant of this answer, by the "
            "correction (holm or bh): the one to read before calling a slice a winner.", 0.21),
    ]


class SliceOut(msgspec.Struct):
    kind: Annotated[
        Literal["value", "other", "unknown"],
        doc("value: the users assigned with `value`; other: those of the values past the 50 shown; "
            "unknown: those assigned without one (or before the dimension was named).", "value"),
    ]
    value: Annotated[str | None, doc("The attribute's value as text; null for other and unknown.", "ios")]
    values: Annotated[int, doc("How many values the slice sums: 1, those past the 50 (other), 0 (unknown).", 1)]
    users: int
    srm: Annotated[SrmOut, doc("The slice's split against the experiment's.")]
    variants: list[SliceVariantOut]
    comparisons: Annotated[
        list[SliceComparisonOut],
        doc("Every variant but the control, against it, within the slice; `p_value_adjusted` is over "
            "the slice's variants, `p_value_adjusted_across_slices` over every slice."),
    ]

    @classmethod
    def of(cls, s: SliceResults) -> SliceOut:
        r, seq = s.results, s.results.srm_sequential
        comparisons = [
            SliceComparisonOut(
                **msgspec.structs.asdict(ComparisonOut.of(c)),
                p_value_adjusted_across_slices=s.p_values_adjusted.get(c.variant_id),
            )
            for c in r.comparisons
        ]
        return cls(
            s.slice.kind.value,
            s.slice.value,
            s.slice.values,
            r.total_users,
            SrmOut(r.srm.chi_square, r.srm.p_value, r.srm.mismatch,
                   SequentialSrmOut(seq.log_bayes_factor, seq.p_value, seq.mismatch)),
            [SliceVariantOut.of(v) for v in r.variants],
            comparisons,
        )


class BreakdownOut(msgspec.Struct):
    experiment_id: Id
    dimension: Annotated[str, doc("The attribute the users are split by.", "platform")]
    primary_event_type: Annotated[str | None, doc("What converts; null: any event.", "purchase")]
    method: Annotated[Literal["fixed", "sequential", "bayesian"], doc("The read-out beside the fixed tests.")]
    correction: Annotated[Literal["holm", "bh"], doc("Of `p_value_adjusted_across_slices` and `p_value_adjusted`.")]
    slices: Annotated[
        list[SliceOut],
        doc("The values with the most users first (at most 50), then other, then unknown; a slice "
            "without users is left out."),
    ]

    @classmethod
    def of(cls, b: Breakdown) -> BreakdownOut:
        return cls(
            b.experiment.id, b.dimension, b.primary_event_type, b.analysis.method.value,
            b.analysis.correction.value, [SliceOut.of(s) for s in b.slices],
        )


class BreakdownController(Controller):
    path = "/experiments/{experiment_id:str}/results/breakdown"
    tags = [openapi.RESULTS]
    opt = {"scope": READ}

    @get(
        summary="Results split by a dimension: per slice, each variant's conversion and the tests.",
        responses=openapi.results_error_responses(*openapi.AUTHENTICATED, 404, 422),
    )
    async def breakdown(
        self,
        request: Request,
        experiment_id: FromPath[str],
        compute_breakdown: NamedDependency[ComputeBreakdown],
        dimension: FromQuery[str],
        primary_event_type: FromQuery[str | None] = None,
        method: FromQuery[str | None] = None,
        sequential_tuning_users: FromQuery[int | None] = None,
        prior_mean: FromQuery[float | None] = None,
        prior_sd: FromQuery[float | None] = None,
        correction: FromQuery[str | None] = None,
    ) -> BreakdownOut:
        """`dimension` is one of the experiment's `analysis.dimensions`: the attributes whose
        values are stored with each assignment from the moment it is named. Per slice (a value;
        the values past the 50 with the most users summed as `other`; users without a value as
        `unknown`), each variant's users and conversions on the primary event type, and each
        comparison with the control as in results (the method's read-out beside it), its
        conversion p-value adjusted over every slice × variant. Counted over the whole
        experiment, as results without a date range (docs/api.md, Breakdowns). Busy or slow
        reads are a 503 with `Retry-After`, as for results."""
        overrides = AnalysisOverrides(method, sequential_tuning_users, prior_mean, prior_sd, correction)
        if errors := overrides.errors():
            raise ValidationFailed(errors)
        computed = await while_connected(
            request.receive,
            compute_breakdown(experiment_id, dimension, primary_event_type=primary_event_type, overrides=overrides),
        )
        return BreakdownOut.of(computed)
