"""Scorecards: every metric an experiment declares (domain/metrics.py), for every variant, with a
correction across metrics × variants, guardrails judged against their tolerated harm, and a
decision per variant in plain words. Pure: the same totals always give the same scorecard.

The rule of the decision, in order (docs/statistics.md, Scorecards):

1. ``unhealthy``: the split of users does not match the traffic split (the SRM check of the
   method: the sequential one under ``sequential``, the chi-square otherwise). Nothing else
   can be trusted until its cause is found.
2. ``roll_back``: a guardrail is breached (its whole interval lies beyond the tolerated harm),
   or the primary metric moved the wrong way (significant after the correction).
3. ``ship``: the primary metric moved the desired way (significant after the correction) and no
   guardrail is breached.
4. ``keep_running``: anything else: the evidence does not yet decide.

"Significant" follows the method: the adjusted fixed-horizon p-value under ``fixed`` (Holm or
Benjamini–Hochberg over the primary and secondary metrics × variants), the always-valid p-value
adjusted by Holm over the same family under ``sequential``, and a chance to beat the control of
at least 1 − alpha (or at most alpha) under ``bayesian``. Guardrails are kept out of the family:
each is judged on its own interval (the method's: the fixed-horizon interval, the confidence
sequence, or the posterior interval of the difference).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from domain.analysis import Analysis, Correction, Method
from domain.capping import capped_mean
from domain.experiment import Experiment
from domain.metrics import Direction, Measure, Metric, MetricKind, Role
from domain.stats import (
    ALPHA,
    Interval,
    Proportion,
    SampleMean,
    TestResult,
    holm_adjust,
    two_proportion_test,
    welch_test,
)
from domain.stats.bayesian import (
    BayesianResult,
    bayesian_means,
    bayesian_proportions,
    bayesian_ratios,
)
from domain.stats.ratio import RatioStatistic, ratio_test
from domain.stats.sequential import (
    SequentialResult,
    sequential_means,
    sequential_proportions,
    sequential_ratios,
)
from domain.totals import EventTotals, VariantAggregate

Statistic = Proportion | SampleMean | RatioStatistic


class Outcome(StrEnum):
    BETTER = "better"  # moved the desired way, by the method's reading
    WORSE = "worse"
    INCONCLUSIVE = "inconclusive"


class Guard(StrEnum):
    OK = "ok"  # the interval rules out harm beyond the tolerance
    AT_RISK = "at_risk"  # it does not rule it out yet
    BREACHED = "breached"  # the whole interval lies beyond the tolerated harm


class Verdict(StrEnum):
    SHIP = "ship"
    KEEP_RUNNING = "keep_running"
    ROLL_BACK = "roll_back"
    UNHEALTHY = "unhealthy"


@dataclass(frozen=True, slots=True)
class MetricValue:
    """One variant's figure on one metric: ``numerator`` over ``denominator``."""

    variant_id: str
    estimate: float | None  # the rate, the mean per user or the ratio
    numerator: float  # converters, the sum over users, or the ratio's numerator sum
    denominator: float  # users, or the ratio's denominator sum


@dataclass(frozen=True, slots=True)
class MetricComparison:
    variant_id: str
    test: TestResult  # fixed horizon
    p_value_adjusted: float | None  # over the family (primary and secondary); None for guardrails
    sequential: SequentialResult | None
    sequential_p_value_adjusted: float | None
    bayesian: BayesianResult | None
    outcome: Outcome | None  # None: the method's figures are undefined
    guardrail: Guard | None  # guardrails only; None also when the interval is undefined


@dataclass(frozen=True, slots=True)
class MetricCard:
    metric: Metric
    values: list[MetricValue]
    comparisons: list[MetricComparison]
    capped_at: float | None = None  # a capped metric's c (domain/capping.py); None: not capped


@dataclass(frozen=True, slots=True)
class Decision:
    variant_id: str
    verdict: Verdict
    reasons: list[str]  # plain words: why


@dataclass(frozen=True, slots=True)
class Scorecard:
    method: Method
    correction: Correction | None  # what decides: the analysis's, Holm under sequential, None under bayesian
    alpha: float
    metrics: list[MetricCard]
    decisions: list[Decision]


def statistic(metric: Metric, agg: VariantAggregate) -> Statistic:
    """The metric's summable statistic in one variant, from its totals alone."""
    totals = agg.by_type.get(metric.event_type, EventTotals())
    if metric.kind is MetricKind.CONVERSION:
        return Proportion(agg.users, totals.users)
    if metric.kind is MetricKind.COUNT:
        return SampleMean(agg.users, totals.events, totals.events_sum_squares)
    if metric.kind is MetricKind.VALUE:
        return SampleMean(agg.users, totals.value_sum, totals.value_sum_squares)
    pair = metric.pair
    assert pair is not None
    below = agg.by_type.get(pair[1], EventTotals())
    cross = agg.cross.get(pair)
    by_value = metric.numerator is Measure.VALUE
    return RatioStatistic(
        n=agg.users,
        x_sum=totals.value_sum if by_value else totals.events,
        y_sum=below.events,
        x_sum_sq=totals.value_sum_squares if by_value else totals.events_sum_squares,
        y_sum_sq=below.events_sum_squares,
        xy_sum=0 if cross is None else (cross.value_products if by_value else cross.events_products),
    )


def _capped(metric: Metric, by_variant: Mapping[str, VariantAggregate]) -> tuple[dict[str, Statistic], float | None]:
    """A capped metric's mean per user in every variant, each user's figure capped at one c for
    all variants (domain/capping.py), and that c."""
    assert metric.cap is not None
    measure = 0 if metric.kind is MetricKind.COUNT else 1  # (events, value sum)
    figures = {
        variant_id: [row[measure] for row in agg.per_user.get(metric.event_type, ())]
        for variant_id, agg in by_variant.items()
    }
    at = metric.cap.threshold([m for f in figures.values() for m in f])
    stats: dict[str, Statistic] = {
        variant_id: capped_mean(agg.users, figures[variant_id], at) for variant_id, agg in by_variant.items()
    }
    return stats, at


def build_scorecard(
    experiment: Experiment,
    aggregates: Mapping[str, VariantAggregate],
    analysis: Analysis,
    split_broken: bool,
    alpha: float = ALPHA,
) -> Scorecard | None:
    """The scorecard of the analysis's metrics; None when it declares none."""
    if not analysis.metrics:
        return None
    control = experiment.control
    others = [v for v in experiment.variants if v.id != control.id]
    by_variant = {v.id: aggregates.get(v.id) or VariantAggregate(v.id) for v in experiment.variants}
    cards: list[tuple[Metric, list[MetricValue], list[_Raw]]] = []
    caps: dict[int, float | None] = {}
    for i, metric in enumerate(analysis.metrics):
        if metric.cap is None:
            stats = {v.id: statistic(metric, by_variant[v.id]) for v in experiment.variants}
        else:
            stats, caps[i] = _capped(metric, by_variant)
        values = [_value(v.id, stats[v.id]) for v in experiment.variants]
        raws = [_compare(stats[control.id], stats[v.id], v.id, analysis, alpha) for v in others]
        cards.append((metric, values, raws))
    # The family: primary and secondary metrics × variants; guardrails stand alone.
    family = [(i, j) for i, (m, _, raws) in enumerate(cards) if m.role is not Role.GUARDRAIL for j in range(len(raws))]
    fixed = dict(zip(family, analysis.correct([cards[i][2][j].test.p_value for i, j in family]), strict=True))
    always_valid = dict(zip(
        family,
        holm_adjust([_p(cards[i][2][j].sequential) for i, j in family]),
        strict=True,
    ))
    metrics = []
    for i, (metric, values, raws) in enumerate(cards):
        control_estimate = next(v.estimate for v in values if v.variant_id == control.id)
        comparisons = []
        for j, raw in enumerate(raws):
            p_adj = fixed.get((i, j))
            seq_adj = always_valid.get((i, j)) if raw.sequential is not None else None
            comparisons.append(MetricComparison(
                variant_id=raw.variant_id,
                test=raw.test,
                p_value_adjusted=p_adj,
                sequential=raw.sequential,
                sequential_p_value_adjusted=seq_adj,
                bayesian=raw.bayesian,
                outcome=_outcome(metric, raw, analysis.method, p_adj, seq_adj, alpha),
                guardrail=_guard(metric, raw, analysis.method, control_estimate),
            ))
        metrics.append(MetricCard(metric, values, comparisons, caps.get(i)))
    decisions = [_decide(v.id, metrics, split_broken) for v in others]
    correction = {Method.FIXED: analysis.correction, Method.SEQUENTIAL: Correction.HOLM}.get(analysis.method)
    return Scorecard(analysis.method, correction, alpha, metrics, decisions)


@dataclass(frozen=True, slots=True)
class _Raw:
    variant_id: str
    test: TestResult
    sequential: SequentialResult | None
    bayesian: BayesianResult | None


def _value(variant_id: str, s: Statistic) -> MetricValue:
    if isinstance(s, Proportion):
        return MetricValue(variant_id, s.rate, s.x, s.n)
    if isinstance(s, SampleMean):
        return MetricValue(variant_id, s.mean, s.total, s.n)
    return MetricValue(variant_id, s.ratio, s.x_sum, s.y_sum)


# Per kind of statistic: its fixed-horizon test, its confidence sequence, its Bayesian read-out.
_READINGS: dict[type, tuple[Callable[..., TestResult], Callable[..., SequentialResult], Callable[..., BayesianResult]]] = {
    Proportion: (two_proportion_test, sequential_proportions, bayesian_proportions),
    SampleMean: (welch_test, sequential_means, bayesian_means),
    RatioStatistic: (ratio_test, sequential_ratios, bayesian_ratios),
}


def _compare(a: Statistic, b: Statistic, variant_id: str, analysis: Analysis, alpha: float) -> _Raw:
    test, sequence, posterior = _READINGS[type(a)]
    sequential = bayesian = None
    if analysis.method is Method.SEQUENTIAL:
        sequential = sequence(a, b, alpha, analysis.sequential_tuning_users)
    elif analysis.method is Method.BAYESIAN:
        bayesian = posterior(a, b, analysis.prior, alpha)
    return _Raw(variant_id, test(a, b, alpha), sequential, bayesian)


def _p(result: SequentialResult | None) -> float | None:
    return None if result is None else result.p_value


def _desired(metric: Metric, difference: float) -> bool:
    return difference > 0 if metric.direction is Direction.INCREASE else difference < 0


def _outcome(
    metric: Metric, raw: _Raw, method: Method, p_adj: float | None, seq_adj: float | None, alpha: float
) -> Outcome | None:
    guardrail = metric.role is Role.GUARDRAIL
    if method is Method.BAYESIAN:
        chance = None if raw.bayesian is None else raw.bayesian.chance_to_beat_control
        if chance is None:
            return None
        if alpha < chance < 1 - alpha:
            return Outcome.INCONCLUSIVE
        return Outcome.BETTER if _desired(metric, 1.0 if chance >= 1 - alpha else -1.0) else Outcome.WORSE
    if method is Method.SEQUENTIAL:
        seq = raw.sequential
        p = None if seq is None else (seq.p_value if guardrail else seq_adj)
        difference = None if seq is None else seq.absolute_lift
    else:
        p = raw.test.p_value if guardrail else p_adj
        difference = raw.test.absolute_lift
    if p is None or difference is None:
        return None
    if p >= alpha or difference == 0:
        return Outcome.INCONCLUSIVE
    return Outcome.BETTER if _desired(metric, difference) else Outcome.WORSE


def _interval(raw: _Raw, method: Method) -> Interval | None:
    if method is Method.SEQUENTIAL:
        return None if raw.sequential is None else raw.sequential.interval
    if method is Method.BAYESIAN:
        return None if raw.bayesian is None else raw.bayesian.absolute.interval
    return raw.test.interval


def _guard(metric: Metric, raw: _Raw, method: Method, control_estimate: float | None) -> Guard | None:
    """Where the method's interval of the difference lies against the tolerated harm, which is
    ``tolerance`` times the control's figure, on the undesired side."""
    if metric.role is not Role.GUARDRAIL:
        return None
    interval = _interval(raw, method)
    if interval is None or control_estimate is None:
        return None
    tolerated = metric.tolerated * abs(control_estimate)
    if metric.direction is Direction.INCREASE:  # harm: below −tolerated
        if interval.upper < -tolerated:
            return Guard.BREACHED
        return Guard.OK if interval.lower > -tolerated else Guard.AT_RISK
    if interval.lower > tolerated:  # harm: above +tolerated
        return Guard.BREACHED
    return Guard.OK if interval.upper < tolerated else Guard.AT_RISK


def _decide(variant_id: str, cards: list[MetricCard], split_broken: bool) -> Decision:
    if split_broken:
        return Decision(variant_id, Verdict.UNHEALTHY, [(
            "the users' split across variants does not match the traffic split (sample ratio "
            "mismatch): find the cause before reading any result"
        )])
    mine = [(card.metric, c) for card in cards for c in card.comparisons if c.variant_id == variant_id]
    breached = [m.name for m, c in mine if c.guardrail is Guard.BREACHED]
    at_risk = [m.name for m, c in mine if c.guardrail is Guard.AT_RISK]
    primary = next(((m, c) for m, c in mine if m.role is Role.PRIMARY), None)
    reasons: list[str] = []
    if breached:
        reasons.append(f"guardrail {_names(breached)} got worse than its tolerance allows")
    if primary is not None and primary[1].outcome is Outcome.WORSE:
        reasons.append(f"the primary metric {primary[0].name!r} moved the wrong way")
    if reasons:
        return Decision(variant_id, Verdict.ROLL_BACK, reasons)
    if primary is not None and primary[1].outcome is Outcome.BETTER:
        reasons.append(f"the primary metric {primary[0].name!r} moved the desired way")
        if at_risk:
            reasons.append(f"guardrail {_names(at_risk)} cannot yet rule out harm beyond its tolerance")
        return Decision(variant_id, Verdict.SHIP, reasons)
    if primary is None or primary[1].outcome is None:
        reasons.append("the primary metric has no defined result yet (too few users or no variance)")
    else:
        reasons.append(f"the primary metric {primary[0].name!r} shows no significant difference yet")
    if at_risk:
        reasons.append(f"guardrail {_names(at_risk)} cannot yet rule out harm beyond its tolerance")
    return Decision(variant_id, Verdict.KEEP_RUNNING, reasons)


def _names(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names)
