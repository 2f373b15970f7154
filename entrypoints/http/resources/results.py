"""Results: an experiment's counts, conversion and comparisons with the control, and a holdout's lift."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

import msgspec
from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery

from application.layers import HoldoutResults, LayersAndHoldouts
from application.results import ComputeResults
from domain.analysis import AnalysisOverrides
from domain.errors import FieldError, ValidationFailed
from domain.keys import READ
from domain.results import Comparison, Cuped, CupedReading, ExperimentResults, VariantResult
from domain.scorecard import MetricCard, MetricComparison, MetricValue, Scorecard
from domain.stats import Interval, Proportion, finite
from domain.stats.bayesian import BayesianResult
from domain.stats.sequential import SequentialResult
from entrypoints.http import openapi
from entrypoints.http.disconnects import while_connected
from entrypoints.http.resources.experiments import AnalysisOut, ExperimentOut, MetricOut
from entrypoints.http.resources.holdouts import HoldoutOut
from entrypoints.http.wire import Id, IntervalOut, Lift, PValue, doc


class FiltersOut(msgspec.Struct):
    """The filters applied, as the service read them; a bare date is shown as its UTC day."""

    start_date: Annotated[datetime | None, doc("Inclusive; RFC 3339, UTC.")]
    end_date: Annotated[datetime | None, doc("Inclusive; RFC 3339, UTC.")]
    event_type: str | None
    variant_id: str | None
    primary_event_type: str | None


class SequentialSrmOut(msgspec.Struct):
    """The split checked in a way that stays valid however often it is looked at: the
    Dirichlet-multinomial Bayes factor of Lindon & Malek (2022), docs/statistics.md."""

    log_bayes_factor: Annotated[float | None, doc("Natural log; null when undefined.", -2.3)]
    p_value: Annotated[float | None, doc("Anytime-valid: min(1, 1 / Bayes factor).", 1.0)]
    mismatch: Annotated[bool, doc("p_value < 0.001, or any user in a 0% variant.", False)]


class SrmOut(msgspec.Struct):
    """Sample-ratio mismatch: users per variant against the configured split."""

    chi_square: Annotated[float | None, doc("Pearson chi-square; null when undefined.", 3.92)]
    p_value: PValue
    mismatch: Annotated[bool, doc("p_value < 0.001, or any user in a 0% variant.", False)]
    sequential: SequentialSrmOut


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


class BoundsOut(msgspec.Struct):
    level: Annotated[float, doc("The confidence or credibility level.", 0.95)]
    lower: Lift
    upper: Lift

    @classmethod
    def of(cls, level: float, interval: Interval | None) -> BoundsOut:
        return cls(level, None, None) if interval is None else cls(level, interval.lower, interval.upper)


class SequentialOut(msgspec.Struct, omit_defaults=True):
    """Always valid: a confidence sequence of the absolute lift and its p-value, which hold at
    every look however often results are read (docs/statistics.md)."""

    absolute_lift: Lift
    confidence_interval: Annotated[BoundsOut, doc("Of the absolute lift; bounds null when undefined.")]
    p_value: Annotated[float | None, doc("Always valid; null when undefined.", 0.012)]
    significant: Annotated[bool, doc("p_value < 0.05: the sequence excludes 0.", True)]
    tuning_users: Annotated[int, doc("Users of both arms at which the sequence is tightest.", 10000)]
    p_value_adjusted: Annotated[
        float | None, doc("Conversion only: Holm over the comparisons' always-valid p-values.")
    ] = None

    @classmethod
    def of(cls, r: SequentialResult, adjusted: float | None = None) -> SequentialOut:
        return cls(
            r.absolute_lift, BoundsOut.of(r.level, r.interval), r.p_value, r.significant, int(r.tuning_users), adjusted
        )


class LossOut(msgspec.Struct):
    """Expected loss (risk): what a wrong choice costs on average, in the lift's units."""

    if_shipped: Annotated[float | None, doc("Expected shortfall of the variant below the control if shipped.", 0.0004)]
    if_kept: Annotated[float | None, doc("Expected shortfall of the control below the variant if kept.", 0.0031)]


class LossesOut(msgspec.Struct):
    absolute: Annotated[LossOut, doc("On the absolute lift (variant − control).")]
    relative: Annotated[LossOut, doc("On the relative lift (variant / control − 1).")]


class PosteriorOut(msgspec.Struct):
    mean: Lift
    credible_interval: Annotated[BoundsOut, doc("Equal-tailed; bounds null when undefined.")]


class BayesianOut(msgspec.Struct):
    """The posterior of the lift: chance to beat the control and expected loss, on the absolute
    and the relative lift (docs/statistics.md)."""

    chance_to_beat_control: Annotated[float | None, doc("P(variant > control); null when undefined.", 0.97)]
    expected_loss: LossesOut
    absolute_lift: PosteriorOut
    relative_lift: PosteriorOut
    prior: Annotated[str, doc("The prior used.", "flat")]

    @classmethod
    def of(cls, r: BayesianResult) -> BayesianOut:
        return cls(
            chance_to_beat_control=r.chance_to_beat_control,
            expected_loss=LossesOut(
                LossOut(r.expected_loss_absolute.shipped, r.expected_loss_absolute.kept),
                LossOut(r.expected_loss_relative.shipped, r.expected_loss_relative.kept),
            ),
            absolute_lift=PosteriorOut(r.absolute.mean, BoundsOut.of(1.0 - r.alpha, r.absolute.interval)),
            relative_lift=PosteriorOut(r.relative.mean, BoundsOut.of(1.0 - r.alpha, r.relative.interval)),
            prior=r.prior,
        )


class CupedValueOut(msgspec.Struct, omit_defaults=True):
    """The comparison adjusted by CUPED (docs/statistics.md, CUPED): the difference less theta
    times the arms' difference in the pre-period, with its normal test and interval. With no
    pre-period data, theta is null and the figures are the unadjusted ones."""

    theta: Annotated[float | None, doc("Pooled over the two arms: Cov(x, y) / Var(x); null without pre-period data.", 0.42)]
    variance_reduction: Annotated[
        float | None, doc("1 − the adjusted difference's variance over the unadjusted one's.", 0.31)
    ]
    absolute_lift: Lift
    relative_lift: Annotated[float | None, doc("The adjusted difference over the control's (unadjusted) figure.", 0.05)]
    statistic: Annotated[float | None, doc("z of the adjusted difference (t for the unadjusted value's Welch test).", 2.1)]
    p_value: PValue
    significant: Annotated[bool, doc("p_value < 0.05; false when it is null.", True)]
    confidence_interval: IntervalOut
    sequential: Annotated[
        SequentialOut | None,
        doc("With method=sequential: the confidence sequence of the adjusted difference (the "
            "unadjusted one when theta is null)."),
    ] = None
    bayesian: Annotated[
        BayesianOut | None,
        doc("With method=bayesian: the posterior of the adjusted arms, each Normal(adjusted mean, "
            "adjusted variance / n) (the unadjusted read-out when theta is null)."),
    ] = None

    @classmethod
    def of(cls, r: CupedReading, sequential_adjusted: float | None = None) -> CupedValueOut:
        t = r.test
        sequential = None if r.sequential is None else SequentialOut.of(r.sequential, sequential_adjusted)
        bayesian = None if r.bayesian is None else BayesianOut.of(r.bayesian)
        return cls(r.theta, r.variance_reduction, t.absolute_lift, t.relative_lift, t.statistic, t.p_value,
                   t.significant, IntervalOut.of(t), sequential, bayesian)


class CupedConversionOut(CupedValueOut, kw_only=True):
    p_value_adjusted: Annotated[
        float | None, doc("Over the comparisons' adjusted conversions, by the analysis's correction.", 0.004)
    ]

    @classmethod
    def of_comparison(cls, c: Cuped) -> CupedConversionOut:
        value = CupedValueOut.of(c.conversion, c.sequential_p_value_adjusted)
        return cls(**msgspec.structs.asdict(value), p_value_adjusted=c.p_value_adjusted)


class ValueComparisonOut(msgspec.Struct, omit_defaults=True):
    absolute_lift: float | None
    relative_lift: float | None
    t_statistic: float | None
    p_value: float | None
    significant: bool
    confidence_interval: IntervalOut
    sequential: Annotated[SequentialOut | None, doc("With method=sequential.")] = None
    bayesian: Annotated[BayesianOut | None, doc("With method=bayesian.")] = None
    cuped: Annotated[CupedValueOut | None, doc("With cuped=true: the value adjusted by the pre-period.")] = None

    @classmethod
    def of(cls, c: Comparison) -> ValueComparisonOut:
        t = c.value
        return cls(
            t.absolute_lift, t.relative_lift, t.statistic, t.p_value, t.significant, IntervalOut.of(t),
            None if c.sequential is None else SequentialOut.of(c.sequential.value),
            None if c.bayesian is None else BayesianOut.of(c.bayesian.value),
            None if c.cuped is None else CupedValueOut.of(c.cuped.value),
        )


class ComparisonOut(msgspec.Struct, omit_defaults=True):
    """A variant against the control: the two-proportion z-test and the value's Welch t-test."""

    variant_id: Id
    baseline_variant_id: Id
    absolute_lift: Lift
    relative_lift: Lift
    z_score: Annotated[float | None, doc("Pooled two-proportion z; null when undefined.", 3.05)]
    p_value: PValue
    p_value_adjusted: Annotated[
        float | None, doc("Over the comparisons: Holm-Bonferroni, or Benjamini-Hochberg with correction=bh.", 0.0023)
    ]
    significant: Annotated[bool, doc("p_value < 0.05; false when it is null.", True)]
    confidence_interval: IntervalOut
    value: ValueComparisonOut
    sequential: Annotated[SequentialOut | None, doc("With method=sequential: the conversion's.")] = None
    bayesian: Annotated[BayesianOut | None, doc("With method=bayesian: the conversion's.")] = None
    cuped: Annotated[
        CupedConversionOut | None, doc("With cuped=true: the conversion adjusted by the pre-period.")
    ] = None

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
            value=ValueComparisonOut.of(c),
            sequential=None if c.sequential is None else SequentialOut.of(
                c.sequential.conversion, c.sequential.p_value_adjusted
            ),
            bayesian=None if c.bayesian is None else BayesianOut.of(c.bayesian.conversion),
            cuped=None if c.cuped is None else CupedConversionOut.of_comparison(c.cuped),
        )


class MetricValueOut(msgspec.Struct):
    variant_id: Id
    estimate: Annotated[float | None, doc("The rate, the mean per user or the ratio; null when undefined.", 0.081)]
    numerator: Annotated[
        float | None, doc("Converters, the sum over users, or the ratio's numerator sum; null if it overflows.", 812)
    ]
    denominator: Annotated[float | None, doc("Users, or the ratio's denominator sum; null if it overflows.", 10000)]

    @classmethod
    def of(cls, v: MetricValue) -> MetricValueOut:
        return cls(v.variant_id, v.estimate, finite(v.numerator), finite(v.denominator))


class MetricComparisonOut(msgspec.Struct, omit_defaults=True):
    """A variant against the control on one metric."""

    variant_id: Id
    absolute_lift: Lift
    relative_lift: Lift
    statistic: Annotated[float | None, doc("z (conversion, ratio) or Welch's t (count, value).", 2.4)]
    p_value: PValue
    p_value_adjusted: Annotated[
        float | None,
        doc("Over the primary and secondary metrics × variants, by the analysis's correction; null for "
            "guardrails, which are kept out of the family.", 0.031),
    ]
    confidence_interval: IntervalOut
    outcome: Annotated[
        Literal["better", "worse", "inconclusive"] | None,
        doc("By the method's reading (docs/statistics.md, Scorecards), in the metric's desired direction; "
            "null when undefined.", "better"),
    ]
    guardrail: Annotated[
        Literal["ok", "at_risk", "breached"] | None,
        doc("Guardrails: ok (the interval rules out harm beyond the tolerance), at_risk (not yet), "
            "breached (the whole interval lies beyond it); null for other roles.", "ok"),
    ]
    sequential: Annotated[
        SequentialOut | None, doc("With method=sequential; its p_value_adjusted is Holm over the family.")
    ] = None
    bayesian: Annotated[BayesianOut | None, doc("With method=bayesian.")] = None

    @classmethod
    def of(cls, c: MetricComparison) -> MetricComparisonOut:
        t = c.test
        return cls(
            variant_id=c.variant_id,
            absolute_lift=t.absolute_lift,
            relative_lift=t.relative_lift,
            statistic=t.statistic,
            p_value=t.p_value,
            p_value_adjusted=c.p_value_adjusted,
            confidence_interval=IntervalOut.of(t),
            outcome=None if c.outcome is None else c.outcome.value,
            guardrail=None if c.guardrail is None else c.guardrail.value,
            sequential=None if c.sequential is None else SequentialOut.of(c.sequential, c.sequential_p_value_adjusted),
            bayesian=None if c.bayesian is None else BayesianOut.of(c.bayesian),
        )


class MetricCardOut(msgspec.Struct, omit_defaults=True):
    metric: MetricOut
    variants: Annotated[list[MetricValueOut], doc("Every variant, in the experiment's order.")]
    comparisons: Annotated[list[MetricComparisonOut], doc("Every variant but the control, against it.")]
    capped_at: Annotated[
        float | None,
        doc("A capped metric's cap: the value each user's figure was capped at (a percentile's, as found "
            "in this answer's data); absent for a metric without a cap, or while no user has a figure.",
            412.5),
    ] = None

    @classmethod
    def of(cls, card: MetricCard) -> MetricCardOut:
        return cls(
            msgspec.convert(card.metric.document(), MetricOut),
            [MetricValueOut.of(v) for v in card.values],
            [MetricComparisonOut.of(c) for c in card.comparisons],
            card.capped_at,
        )


class DecisionOut(msgspec.Struct):
    variant_id: Id
    decision: Annotated[
        Literal["ship", "keep_running", "roll_back", "unhealthy"],
        doc("By the documented rule (docs/statistics.md, Scorecards).", "keep_running"),
    ]
    reasons: Annotated[list[str], doc("Why, in plain words.")]


class ScorecardOut(msgspec.Struct):
    """Every declared metric for every variant, and a decision per variant."""

    method: Annotated[Literal["fixed", "sequential", "bayesian"], doc("What the outcomes and decisions read.")]
    correction: Annotated[
        Literal["holm", "bh"] | None,
        doc("Of the family that decides: the analysis's under fixed, holm under sequential, null under bayesian."),
    ]
    alpha: Annotated[float, doc("The significance level.", 0.05)]
    metrics: list[MetricCardOut]
    decisions: Annotated[list[DecisionOut], doc("Every variant but the control.")]

    @classmethod
    def of(cls, s: Scorecard) -> ScorecardOut:
        return cls(
            s.method.value,
            None if s.correction is None else s.correction.value,
            s.alpha,
            [MetricCardOut.of(c) for c in s.metrics],
            [DecisionOut(d.variant_id, d.verdict.value, d.reasons) for d in s.decisions],
        )


class ResultsOut(msgspec.Struct, omit_defaults=True):
    experiment: ExperimentOut
    filters: FiltersOut
    summary: SummaryOut
    variants: list[VariantResultOut]
    comparisons: list[ComparisonOut]
    analysis: Annotated[AnalysisOut, doc("How these results were read: the request's or the experiment's.")]
    scorecard: Annotated[
        ScorecardOut | None,
        doc("When the experiment declares metrics (analysis.metrics): every metric for every variant, and "
            "a decision per variant. Absent otherwise."),
    ] = None

    @classmethod
    def of(cls, r: ExperimentResults) -> ResultsOut:
        q, seq = r.query, r.srm_sequential
        return cls(
            experiment=ExperimentOut.of(r.experiment),
            filters=FiltersOut(q.start, q.end, q.event_type, q.variant_id, q.primary_event_type),
            summary=SummaryOut(
                r.total_users,
                r.total_events,
                SrmOut(
                    r.srm.chi_square, r.srm.p_value, r.srm.mismatch,
                    SequentialSrmOut(seq.log_bayes_factor, seq.p_value, seq.mismatch),
                ),
            ),
            variants=[VariantResultOut.of(v) for v in r.variants],
            comparisons=[ComparisonOut.of(c) for c in r.comparisons],
            analysis=msgspec.convert(r.analysis.document(), AnalysisOut),
            scorecard=None if r.scorecard is None else ScorecardOut.of(r.scorecard),
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
        method: FromQuery[str | None] = None,
        sequential_tuning_users: FromQuery[int | None] = None,
        prior_mean: FromQuery[float | None] = None,
        prior_sd: FromQuery[float | None] = None,
        correction: FromQuery[str | None] = None,
        cuped: FromQuery[bool | None] = None,
    ) -> ResultsOut:
        """`start_date` and `end_date` are ISO 8601 dates or datetimes, inclusive (a bare date
        is that whole UTC day; anything else is a 422). Each non-control variant is compared
        with the control: two-proportion z-test, Newcombe interval, Holm-adjusted p-values, and
        a Welch t-test of the value per user. `method` (`fixed`, `sequential` or `bayesian`;
        default: the experiment's `analysis`) adds that read-out beside them, with
        `sequential_tuning_users`, `prior_mean`, `prior_sd`, `correction` (`holm` or `bh`, of
        `p_value_adjusted`) and `cuped` (`false` leaves out, `true` asks for, the comparisons
        adjusted by the users' pre-period, for an experiment with `analysis.cuped`) for this
        request alone
        (docs/statistics.md). Undefined numbers are null (README.md, The statistics). Results
        never pile up on the database: past `RESULTS_MAX_CONCURRENT` being
        computed on this server (after a wait of up to `RESULTS_QUEUE_SECONDS`), or when the
        read runs past `RESULTS_TIMEOUT_SECONDS`, the answer is a 503 with `Retry-After`; a
        client that disconnects cancels its read."""
        overrides = AnalysisOverrides(method, sequential_tuning_users, prior_mean, prior_sd, correction, cuped)
        computed = await read_results(
            request,
            compute_results,
            experiment_id,
            start_date=start_date,
            end_date=end_date,
            event_type=event_type,
            variant_id=variant_id,
            primary_event_type=primary_event_type,
            overrides=overrides,
        )
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

async def read_results(
    request: Request,
    compute_results: ComputeResults,
    experiment_id: str,
    *,
    start_date: str | None,
    end_date: str | None,
    event_type: str | None = None,
    variant_id: str | None = None,
    primary_event_type: str | None = None,
    overrides: AnalysisOverrides,
) -> ExperimentResults:
    """Results as the query asks for them, for the API and the pages alike: the range read
    from its ISO 8601 text, every fault named by its query parameter in one 422, the read
    cancelled when the client goes away."""
    errors: list[FieldError] = []
    start = _moment(start_date, "start_date", errors)
    end = _moment(end_date, "end_date", errors)
    if errors:  # the settings' own faults too, so that one answer names them all
        raise ValidationFailed(errors + overrides.errors())
    try:
        return await while_connected(
            request.receive,
            compute_results(
                experiment_id,
                start=start,
                end=end,
                event_type=event_type,
                variant_id=variant_id,
                primary_event_type=primary_event_type,
                overrides=overrides,
            ),
        )
    except ValidationFailed as exc:
        raise exc.renamed(RANGE) from None


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
