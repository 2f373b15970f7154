"""ResultCalculator: turns per-variant sufficient statistics into rates, lifts and tests."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta

from domain.analysis import Analysis, Correction, Method
from domain.errors import FieldError, ValidationFailed
from domain.event import TimestampOutOfRange, as_utc, text_error
from domain.experiment import Experiment, Variant
from domain.stats import (
    Proportion,
    SampleMean,
    SampleRatio,
    TestResult,
    benjamini_hochberg_adjust,
    finite,
    holm_adjust,
    srm_check,
    two_proportion_test,
    welch_test,
)
from domain.stats.bayesian import BayesianResult, bayesian_means, bayesian_proportions
from domain.stats.sequential import SequentialResult, sequential_means, sequential_proportions
from domain.stats.sequential_srm import SequentialSampleRatio, sequential_srm_check


def counts(event_at: datetime, since: datetime) -> bool:
    """The counting rule: an event counts for its user from the moment they were assigned (or
    held out) on, that moment included, to the microsecond. Every store applies this rule and
    no other: the memory store calls it, the SQL stores render it (adapters/sqlalchemy/counting.py)."""
    return event_at >= since



@dataclass(frozen=True, slots=True)
class EventTotals:
    """The sufficient statistics of one event type (or of every type) in one variant: events,
    users with at least one, and the sum and sum of squares of each such user's value total.

    Summable like gbstats' ``SampleMeanStatistic``: adding totals of disjoint sets of users adds
    them, and so does adding an increment computed against the totals it is added to (a user
    already counted adds 0 users, and (v + d)² − v² to the squares).
    """

    events: int = 0
    users: int = 0
    value_sum: float = 0.0
    value_sum_squares: float = 0.0

    def __add__(self, other: EventTotals) -> EventTotals:
        return EventTotals(
            self.events + other.events,
            self.users + other.users,
            self.value_sum + other.value_sum,
            self.value_sum_squares + other.value_sum_squares,
        )


@dataclass(frozen=True, slots=True)
class VariantAggregate:
    """What the store answers for one variant: counts and sums only, never raw events.

    ``primary`` covers the counted primary events; users without one count as 0, so its
    ``value_sum``/``value_sum_squares`` over ``users`` give the mean and variance per user.
    """

    variant_id: str
    users: int = 0
    event_counts: Mapping[str, int] = field(default_factory=dict)
    unique_users_with_events: int = 0
    primary: EventTotals = EventTotals()

    @property
    def events(self) -> int:
        return sum(self.event_counts.values())

    @property
    def conversion(self) -> Proportion:
        """Of the variant's users, those with a counted primary event."""
        return Proportion(self.users, self.primary.users)

    @property
    def value(self) -> SampleMean:
        """The primary events' value per user of the variant."""
        return SampleMean(self.users, self.primary.value_sum, self.primary.value_sum_squares)


@dataclass(frozen=True, slots=True)
class ResultQuery:
    """The filters of a results request, resolved: bounds are inclusive UTC datetimes."""

    start: datetime | None = None
    end: datetime | None = None
    event_type: str | None = None
    variant_id: str | None = None
    primary_event_type: str | None = None

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
        return cls(
            start=start_at,
            end=end_at,
            event_type=event_type,
            variant_id=variant_id,
            primary_event_type=primary_event_type or experiment.primary_event_type or event_type,
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
        adjust = benjamini_hochberg_adjust if analysis.correction is Correction.BH else holm_adjust
        adjusted = adjust([c.conversion.p_value for c in comparisons])
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
        users = [by_variant[v.id].users for v in experiment.variants]
        shares = [v.traffic_basis_points for v in experiment.variants]
        srm = srm_check(users, shares)
        shown = [v for v in experiment.variants if query.variant_id in (None, v.id)]
        variant_rows = [self._variant(v, by_variant[v.id]) for v in shown]
        shown_ids = {v.id for v in shown}
        return ExperimentResults(
            experiment=experiment,
            query=query,
            total_users=sum(r.users for r in variant_rows),
            total_events=sum(r.events for r in variant_rows),
            srm=srm,
            variants=variant_rows,
            comparisons=[c for c in comparisons if c.variant_id in shown_ids],
            analysis=analysis,
            srm_sequential=sequential_srm_check(users, shares),
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
