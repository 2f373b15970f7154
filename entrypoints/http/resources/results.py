"""Results: an experiment's counts, conversion and comparisons with the control, and a holdout's lift."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

import msgspec
from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery

from application.layers import HoldoutResults, LayersAndHoldouts
from application.results import ComputeResults
from domain.errors import FieldError, ValidationFailed
from domain.keys import READ
from domain.results import Comparison, ExperimentResults, VariantResult
from domain.stats import Proportion, TestResult
from entrypoints.http import openapi
from entrypoints.http.disconnects import while_connected
from entrypoints.http.resources.experiments import ExperimentOut
from entrypoints.http.resources.holdouts import HoldoutOut
from entrypoints.http.wire import Id, IntervalOut, Lift, PValue, doc


class FiltersOut(msgspec.Struct):
    """The filters applied, as the service read them; a bare date is shown as its UTC day."""

    start_date: Annotated[datetime | None, doc("Inclusive; RFC 3339, UTC.")]
    end_date: Annotated[datetime | None, doc("Inclusive; RFC 3339, UTC.")]
    event_type: str | None
    variant_id: str | None
    primary_event_type: str | None


class SrmOut(msgspec.Struct):
    """Sample-ratio mismatch: users per variant against the configured split."""

    chi_square: Annotated[float | None, doc("Pearson chi-square; null when undefined.", 3.92)]
    p_value: PValue
    mismatch: Annotated[bool, doc("p_value < 0.001, or any user in a 0% variant.", False)]


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
        float | None, doc("primary_unique_users / users; null when users is 0.", 0.08)
    ]
    value_sum: Annotated[float | None, doc("Sum of `value` over the counted primary events.")]
    value_per_user: Annotated[float | None, doc("value_sum / users; null when users is 0.")]

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
    z_score: Annotated[float | None, doc("Pooled two-proportion z; null when undefined.", 3.05)]
    p_value: PValue
    p_value_adjusted: Annotated[float | None, doc("Holm-Bonferroni over the comparisons.", 0.0023)]
    significant: Annotated[bool, doc("p_value < 0.05; false when it is null.", True)]
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


class ResultsController(Controller):
    """Experiments' results and holdouts' results: the reads that add up totals."""

    path = "/"
    tags = [openapi.RESULTS]
    opt = {"scope": READ}

    @get(
        "/experiments/{experiment_id:str}/results",
        summary="Compute the experiment's results: counts, conversion and statistical comparisons.",
        responses=openapi.results_error_responses(*openapi.AUTHENTICATED, 404, 422),
    )
    async def results(
        self,
        request: Request,
        experiment_id: FromPath[str],
        compute_results: NamedDependency[ComputeResults],
        start_date: FromQuery[str | None] = None,
        end_date: FromQuery[str | None] = None,
        event_type: FromQuery[str | None] = None,
        variant_id: FromQuery[str | None] = None,
        primary_event_type: FromQuery[str | None] = None,
    ) -> ResultsOut:
        """`start_date` and `end_date` are ISO 8601 dates or datetimes, inclusive (a bare date
        is that whole UTC day; anything else is a 422). Each non-control variant is compared
        with the control: two-proportion z-test, Newcombe interval, Holm-adjusted p-values, and
        a Welch t-test of the value per user. Undefined numbers are null (README.md, The
        statistics). Results never pile up on the database: past `RESULTS_MAX_CONCURRENT` being
        computed on this server (after a wait of up to `RESULTS_QUEUE_SECONDS`), or when the
        read runs past `RESULTS_TIMEOUT_SECONDS`, the answer is a 503 with `Retry-After`; a
        client that disconnects cancels its read."""
        errors: list[FieldError] = []
        start = _moment(start_date, "start_date", errors)
        end = _moment(end_date, "end_date", errors)
        if errors:
            raise ValidationFailed(errors)
        try:
            computed = await while_connected(
                request.receive,
                compute_results(
                    experiment_id,
                    start=start,
                    end=end,
                    event_type=event_type,
                    variant_id=variant_id,
                    primary_event_type=primary_event_type,
                ),
            )
        except ValidationFailed as exc:
            raise exc.renamed(RANGE) from None
        return ResultsOut.of(computed)

    @get(
        "/holdouts/{holdout_id:str}/results",
        summary="Compare the held-out users with everyone exposed, on one event type.",
        responses=openapi.results_error_responses(*openapi.AUTHENTICATED, 404, 422),
    )
    async def holdout_results(
        self,
        request: Request,
        holdout_id: FromPath[str],
        event_type: FromQuery[str],
        layers: NamedDependency[LayersAndHoldouts],
    ) -> HoldoutResultsOut:
        """Conversion of each group on `event_type` (required), the lift, a two-proportion
        z-test and a Newcombe interval; counted from raw rows. Busy or slow results are a 503
        with `Retry-After`, as for experiment results."""
        computed = await while_connected(request.receive, layers.holdout_results(holdout_id, event_type))
        return HoldoutResultsOut.of(computed)

RANGE = {"start": "start_date", "end": "end_date"}
"""The core's names of the range, as the query names them."""


def _moment(value: str | None, name: str, errors: list[FieldError]) -> date | datetime | None:
    """An ISO 8601 date (that whole UTC day) or datetime (without an offset: UTC)."""
    if value is None:
        return None
    try:
        if not any(c in value for c in "T t:"):  # 2026-11-28 or 20261128: a whole day
            return date.fromisoformat(value)
        return datetime.fromisoformat(value)
    except ValueError:
        errors.append(FieldError(name, "must be an ISO 8601 date or datetime"))
        return None
