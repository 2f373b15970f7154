"""ResultCalculator: turns per-variant sufficient statistics into rates, lifts and tests."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta

from domain.analysis import Analysis, Method
from domain.errors import FieldError, ValidationFailed, text_error
from domain.event import TimestampOutOfRange, as_utc
from domain.experiment import Experiment, Variant
from domain.scorecard import Scorecard, build_scorecard
from domain.stats import (
    SampleMean,
    SampleRatio,
    TestResult,
    finite,
    holm_adjust,
    srm_check,
    two_proportion_test,
    welch_test,
)
from domain.stats.bayesian import BayesianResult, NormalPrior, bayesian_means, bayesian_proportions
from domain.stats.cuped import (
    CovariateStatistic,
    cuped_adjust,
    cuped_bayesian,
    cuped_sequential,
    cuped_test,
)
from domain.stats.sequential import SequentialResult, sequential_means, sequential_proportions
from domain.stats.sequential_srm import SequentialSampleRatio, sequential_srm_check
from domain.totals import CovariateTotals, VariantAggregate


def counts(event_at: datetime, since: datetime) -> bool:
    """The counting rule: an event counts for its user from the moment they were assigned (or
    held out) on, that moment included, to the microsecond. Every store applies this rule and
    no other: the memory store calls it, the SQL stores render it (adapters/sqlalchemy/counting.py)."""
    return event_at >= since


PRE_PERIOD = timedelta(days=14)
"""CUPED's covariate window: the events of this long before a user's assignment."""


def in_pre_period(event_at: datetime, since: datetime) -> bool:
    """The covariate's rule: an event counts for its user's pre-period when it falls in the
    PRE_PERIOD before the assignment, the assignment's moment excluded (it counts from there
    on, ``counts``), the window's first microsecond included."""
    return since - PRE_PERIOD <= event_at < since


@dataclass(frozen=True, slots=True)
class ResultQuery:
    """The filters of a results request, resolved: bounds are inclusive UTC datetimes."""

    start: datetime | None = None
    end: datetime | None = None
    event_type: str | None = None
    variant_id: str | None = None
    primary_event_type: str | None = None
    # What the experiment's metrics read: the totals of these event types, and the per-user
    # cross sums of these (numerator, denominator) pairs. Empty without metrics.
    metric_types: tuple[str, ...] = ()
    pairs: tuple[tuple[str, str], ...] = ()
    capped_types: tuple[str, ...] = ()  # whose per-user totals capped metrics need
    covariates: bool = False  # CUPED's sums of the primary event type (VariantAggregate.covariate)

    @classmethod
    def resolve(
        cls,
        experiment: Experiment,
        *,
        start: date | datetime | None = None,
        end: date | datetime | None = None,
        event_type: str | None = None,
        variant_id: str | None = None,
        primary_event_type: str | None = None,
    ) -> ResultQuery:
        """Apply the defaults of the contract and check the filters against the experiment.

        A bare date means that whole UTC day: from its first to its last microsecond. Errors
        name the parameters as here (``start``, ``end``); a boundary renames them.
        """
        errors: list[FieldError] = []
        start_at = _bound(start, "start", errors, at_end=False)
        end_at = _bound(end, "end", errors, at_end=True)
        if end is None and experiment.stopped_at is not None:
            end_at = experiment.stopped_at  # a stopped experiment's results: its running window
        if start_at is not None and end_at is not None and start_at > end_at:
            errors.append(FieldError("start", "must not be after the end date"))
        if variant_id is not None and experiment.variant(variant_id) is None:
            errors.append(FieldError("variant_id", "is not a variant of this experiment"))
        for name, value in (("event_type", event_type), ("primary_event_type", primary_event_type)):
            if value is not None and not value:
                errors.append(FieldError(name, "must not be empty"))
            elif value is not None and (error := text_error(value, name)) is not None:
                errors.append(error)
        if errors:
            raise ValidationFailed(errors)
        metrics = experiment.analysis.metrics
        return cls(
            start=start_at,
            end=end_at,
            event_type=event_type,
            variant_id=variant_id,
            primary_event_type=primary_event_type or experiment.primary_event_type or event_type,
            metric_types=tuple(sorted({t for m in metrics for t in m.event_types})),
            pairs=tuple(sorted({p for m in metrics if (p := m.pair) is not None})),
            capped_types=tuple(sorted({m.event_type for m in metrics if m.cap is not None})),
        )


def _bound(
    value: date | datetime | None, field: str, errors: list[FieldError], *, at_end: bool
) -> datetime | None:
    if value is None:
        return None
    try:
        if isinstance(value, datetime):
            return as_utc(value)
        moment = datetime.combine(value, time.min)
        if at_end:
            moment += timedelta(days=1, microseconds=-1)
        return as_utc(moment)
    except TimestampOutOfRange as exc:
        errors.append(FieldError(field, str(exc)))
        return None


@dataclass(frozen=True, slots=True)
class VariantResult:
    variant: Variant
    users: int
    events: int
    unique_users_with_events: int
    event_counts: Mapping[str, int]
    primary_event_count: int
    primary_unique_users: int
    primary_conversion_rate: float | None
    value_sum: float | None
    value_per_user: float | None
    value: SampleMean = SampleMean()  # the value per user's statistics: power starts from them


@dataclass(frozen=True, slots=True)
class Sequential:
    """The always-valid read-out of a comparison: conversion and value per user."""

    conversion: SequentialResult
    p_value_adjusted: float | None  # the conversion's, Holm over every comparison
    value: SequentialResult


@dataclass(frozen=True, slots=True)
class Bayesian:
    conversion: BayesianResult
    value: BayesianResult


@dataclass(frozen=True, slots=True)
class CupedReading:
    """A comparison adjusted by CUPED; with no pre-period data (theta None), the unadjusted
    test itself."""

    test: TestResult
    theta: float | None
    variance_reduction: float | None  # 1 − Var(adjusted difference) / Var(unadjusted)
    sequential: SequentialResult | None = None  # with method=sequential: the adjusted sequence
    bayesian: BayesianResult | None = None  # with method=bayesian: the adjusted arms' posterior


@dataclass(frozen=True, slots=True)
class Cuped:
    conversion: CupedReading
    p_value_adjusted: float | None  # the adjusted conversion's, by the analysis's correction
    value: CupedReading
    sequential_p_value_adjusted: float | None = None  # Holm over the adjusted conversions' sequences


@dataclass(frozen=True, slots=True)
class Comparison:
    """A variant against the control: its conversion (two-proportion z-test) and its value per
    user (Welch's t-test), and the read-out of the method asked for, if any."""

    variant_id: str
    baseline_variant_id: str
    conversion: TestResult
    p_value_adjusted: float | None  # the conversion's, over every comparison: Holm, or BH if asked
    value: TestResult
    sequential: Sequential | None = None
    bayesian: Bayesian | None = None
    cuped: Cuped | None = None


@dataclass(frozen=True, slots=True)
class ExperimentResults:
    experiment: Experiment
    query: ResultQuery
    total_users: int
    total_events: int
    srm: SampleRatio
    variants: list[VariantResult]
    comparisons: list[Comparison]
    analysis: Analysis  # what read them: the request's settings over the experiment's
    srm_sequential: SequentialSampleRatio  # the split checked validly at every look
    scorecard: Scorecard | None = None  # the experiment's declared metrics; None without any


class ResultCalculator:
    """Pure: the same aggregates always give the same results, to the last digit."""

    def compute(
        self,
        experiment: Experiment,
        query: ResultQuery,
        aggregates: Mapping[str, VariantAggregate],
        analysis: Analysis | None = None,
    ) -> ExperimentResults:
        """``analysis``: how to read them; None: the experiment's own default."""
        analysis = experiment.analysis if analysis is None else analysis
        by_variant = {v.id: aggregates.get(v.id) or VariantAggregate(v.id) for v in experiment.variants}
        control = experiment.control
        baseline = by_variant[control.id]
        # The adjustment runs over every comparison of the experiment, even when the report is narrowed.
        comparisons = [
            Comparison(
                variant_id=v.id,
                baseline_variant_id=control.id,
                conversion=two_proportion_test(baseline.conversion, by_variant[v.id].conversion),
                p_value_adjusted=None,
                value=welch_test(baseline.value, by_variant[v.id].value),
            )
            for v in experiment.variants
            if v.id != control.id
        ]
        adjusted = analysis.correct([c.conversion.p_value for c in comparisons])
        comparisons = [
            replace(c, p_value_adjusted=p_adj) for c, p_adj in zip(comparisons, adjusted, strict=True)
        ]
        if analysis.method is Method.SEQUENTIAL:
            comparisons = self._sequential(comparisons, by_variant, baseline, analysis)
        elif analysis.method is Method.BAYESIAN:
            comparisons = [
                replace(c, bayesian=Bayesian(
                    bayesian_proportions(baseline.conversion, by_variant[c.variant_id].conversion, analysis.prior),
                    bayesian_means(baseline.value, by_variant[c.variant_id].value, analysis.prior),
                ))
                for c in comparisons
            ]
        if analysis.cuped:  # after the method's read-out, which it adjusts too (sequential)
            comparisons = self._cuped(comparisons, by_variant, baseline, analysis)
        users = [by_variant[v.id].users for v in experiment.variants]
        shares = [v.traffic_basis_points for v in experiment.variants]
        srm = srm_check(users, shares)
        shown = [v for v in experiment.variants if query.variant_id in (None, v.id)]
        variant_rows = [self._variant(v, by_variant[v.id]) for v in shown]
        shown_ids = {v.id for v in shown}
        srm_sequential = sequential_srm_check(users, shares)
        split_broken = (srm_sequential if analysis.method is Method.SEQUENTIAL else srm).mismatch
        return ExperimentResults(
            experiment=experiment,
            query=query,
            total_users=sum(r.users for r in variant_rows),
            total_events=sum(r.events for r in variant_rows),
            srm=srm,
            variants=variant_rows,
            comparisons=[c for c in comparisons if c.variant_id in shown_ids],
            analysis=analysis,
            srm_sequential=srm_sequential,
            scorecard=build_scorecard(experiment, by_variant, analysis, split_broken),
        )

    @staticmethod
    def _sequential(
        comparisons: list[Comparison],
        by_variant: Mapping[str, VariantAggregate],
        baseline: VariantAggregate,
        analysis: Analysis,
    ) -> list[Comparison]:
        tuning = analysis.sequential_tuning_users
        pairs = [
            (
                sequential_proportions(baseline.conversion, by_variant[c.variant_id].conversion, tuning_users=tuning),
                sequential_means(baseline.value, by_variant[c.variant_id].value, tuning_users=tuning),
            )
            for c in comparisons
        ]
        # Holm over always-valid p-values keeps the family's error at alpha at every look, whatever
        # the correction asked for the fixed horizon: Benjamini-Hochberg's guarantee is for
        # p-values read once, not for a stopping time of their running values.
        adjusted = holm_adjust([conversion.p_value for conversion, _ in pairs])
        return [
            replace(c, sequential=Sequential(conversion, p_adj, value))
            for c, (conversion, value), p_adj in zip(comparisons, pairs, adjusted, strict=True)
        ]

    @staticmethod
    def _cuped(
        comparisons: list[Comparison],
        by_variant: Mapping[str, VariantAggregate],
        baseline: VariantAggregate,
        analysis: Analysis,
    ) -> list[Comparison]:
        """Each comparison's conversion and value adjusted by the users' pre-period (CUPED, theta
        pooled over the two arms), and the adjusted conversions' p-values corrected together;
        with the sequential or Bayesian read-out, that read-out of the adjusted arms too (the
        conversions' always-valid p-values corrected by Holm, as ``_sequential`` does)."""
        base_conversion, base_value = _covariates(baseline)
        readings = []
        for c in comparisons:
            conversion, value = _covariates(by_variant[c.variant_id])
            sequential, bayesian, prior = c.sequential, c.bayesian, analysis.prior
            readings.append((
                _cuped_reading(base_conversion, conversion, c.conversion,
                               sequential and sequential.conversion, bayesian and bayesian.conversion, prior),
                _cuped_reading(base_value, value, c.value,
                               sequential and sequential.value, bayesian and bayesian.value, prior),
            ))
        adjusted = analysis.correct([conversion.test.p_value for conversion, _ in readings])
        sequences = [conversion.sequential for conversion, _ in readings]
        always_valid = holm_adjust([None if s is None else s.p_value for s in sequences])
        return [
            replace(c, cuped=Cuped(conversion, p_adj, value, seq_adj if sequence is not None else None))
            for c, (conversion, value), p_adj, sequence, seq_adj in zip(
                comparisons, readings, adjusted, sequences, always_valid, strict=True
            )
        ]

    @staticmethod
    def _variant(variant: Variant, agg: VariantAggregate) -> VariantResult:
        return VariantResult(
            variant=variant,
            users=agg.users,
            events=agg.events,
            unique_users_with_events=agg.unique_users_with_events,
            event_counts=dict(agg.event_counts),
            primary_event_count=agg.primary.events,
            primary_unique_users=agg.primary.users,
            primary_conversion_rate=agg.conversion.rate,
            value_sum=finite(agg.primary.value_sum),  # a sum can overflow to infinity
            value_per_user=agg.value.mean,
            value=agg.value,
        )


def _covariates(agg: VariantAggregate) -> tuple[CovariateStatistic, CovariateStatistic]:
    """CUPED's statistics of one variant, conversion and value: y a user's counted figure, x the
    same in their pre-period (converted: 1 or 0; value: the sum)."""
    cov = agg.covariate or CovariateTotals()
    conversion = CovariateStatistic(
        n=agg.users, y_sum=agg.primary.users, y_sum_sq=agg.primary.users,
        x_sum=cov.users, x_sum_sq=cov.users, xy_sum=cov.both,
    )
    value = CovariateStatistic(
        n=agg.users, y_sum=agg.primary.value_sum, y_sum_sq=agg.primary.value_sum_squares,
        x_sum=cov.value_sum, x_sum_sq=cov.value_sum_squares, xy_sum=cov.value_products,
    )
    return conversion, value


def _cuped_reading(
    a: CovariateStatistic,
    b: CovariateStatistic,
    unadjusted: TestResult,
    unadjusted_sequence: SequentialResult | None = None,
    unadjusted_posterior: BayesianResult | None = None,
    prior: NormalPrior | None = None,
) -> CupedReading:
    """The adjusted test; and the method's read-out of the adjusted arms where there is an
    unadjusted one: the sequence (at its alpha and tuning), the posterior (at its alpha, under
    ``prior``)."""
    arms = cuped_adjust(a, b)  # once, for the test and the read-outs alike
    if arms is None:  # no pre-period data: nothing to adjust by
        return CupedReading(unadjusted, None, None, unadjusted_sequence, unadjusted_posterior)
    adjusted = cuped_test(a, b, unadjusted.alpha, arms)
    assert adjusted is not None  # defined with the arms
    sequence = posterior = None
    if unadjusted_sequence is not None:
        sequence = cuped_sequential(a, b, unadjusted_sequence.alpha, unadjusted_sequence.tuning_users, arms)
    if unadjusted_posterior is not None:
        posterior = cuped_bayesian(a, b, prior, unadjusted_posterior.alpha, arms)
    return CupedReading(adjusted.test, adjusted.theta, adjusted.variance_reduction, sequence, posterior)
