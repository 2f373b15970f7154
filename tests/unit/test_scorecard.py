"""The scorecard's rule, case by case: each verdict, each guardrail state, each direction, over
hand-made totals whose figures are plain (the statistics themselves are checked against their
references in test_vectors_* and tests/e2e/test_scorecards.py)."""

from __future__ import annotations

import pytest
from scipy import stats

from domain.analysis import Analysis, Method
from domain.metrics import Direction, Metric, MetricKind, Role
from domain.scorecard import Guard, Outcome, Verdict, build_scorecard
from domain.totals import EventTotals, VariantAggregate
from tests.factories import an_experiment

EXPERIMENT = an_experiment("card", (50, 50))
CONTROL, TREATMENT = (v.id for v in EXPERIMENT.variants)


def conversion(name: str = "buyers", role: Role = Role.PRIMARY, **fields: object) -> Metric:
    return Metric(name, MetricKind.CONVERSION, "buy", role, **fields)  # type: ignore[arg-type]


def totals(control_buyers: int, treatment_buyers: int, users: int = 10_000) -> dict[str, VariantAggregate]:
    return {
        CONTROL: VariantAggregate(CONTROL, users, by_type={"buy": EventTotals(control_buyers, control_buyers)}),
        TREATMENT: VariantAggregate(TREATMENT, users, by_type={"buy": EventTotals(treatment_buyers, treatment_buyers)}),
    }


def card(metrics: tuple[Metric, ...], aggregates: dict[str, VariantAggregate], *, method: Method = Method.FIXED,
         split_broken: bool = False):  # type: ignore[no-untyped-def]
    scorecard = build_scorecard(EXPERIMENT, aggregates, Analysis(method=method, metrics=metrics), split_broken)
    assert scorecard is not None
    return scorecard


def test_no_metrics_no_scorecard() -> None:
    assert build_scorecard(EXPERIMENT, totals(1, 2), Analysis(), False) is None


@pytest.mark.parametrize(
    ("direction", "control_buyers", "treatment_buyers", "outcome", "verdict"),
    [
        (Direction.INCREASE, 1_000, 1_200, Outcome.BETTER, Verdict.SHIP),
        (Direction.INCREASE, 1_200, 1_000, Outcome.WORSE, Verdict.ROLL_BACK),
        (Direction.INCREASE, 1_000, 1_010, Outcome.INCONCLUSIVE, Verdict.KEEP_RUNNING),
        (Direction.DECREASE, 1_000, 1_200, Outcome.WORSE, Verdict.ROLL_BACK),  # e.g. churned users
        (Direction.DECREASE, 1_200, 1_000, Outcome.BETTER, Verdict.SHIP),
    ],
)
def test_the_primary_metric_decides_in_its_desired_direction(
    direction: Direction, control_buyers: int, treatment_buyers: int, outcome: Outcome, verdict: Verdict
) -> None:
    scorecard = card((conversion(direction=direction),), totals(control_buyers, treatment_buyers))
    (comparison,) = scorecard.metrics[0].comparisons
    assert comparison.outcome is outcome
    (decision,) = scorecard.decisions
    assert decision.verdict is verdict and decision.reasons


def test_a_broken_split_makes_every_variant_unhealthy_whatever_the_metrics_say() -> None:
    scorecard = card((conversion(),), totals(1_000, 1_200), split_broken=True)
    assert [d.verdict for d in scorecard.decisions] == [Verdict.UNHEALTHY]
    assert "sample ratio mismatch" in scorecard.decisions[0].reasons[0]


def guard_of(control_buyers: int, treatment_buyers: int, tolerance: float, direction: Direction) -> Guard | None:
    metrics = (conversion("primary", Role.SECONDARY), conversion("g", Role.GUARDRAIL, direction=direction,
                                                              tolerance=tolerance))
    primary = Metric("p", MetricKind.CONVERSION, "other", Role.PRIMARY)
    scorecard = card((primary, *metrics), totals(control_buyers, treatment_buyers))
    return scorecard.metrics[2].comparisons[0].guardrail


def test_guardrails_compare_the_interval_with_the_tolerated_harm() -> None:
    # 10% vs 8% (-2 points, interval about ±0.8 points); the harm tolerated is a share of 10%.
    assert guard_of(1_000, 800, 0.05, Direction.INCREASE) is Guard.BREACHED  # beyond -0.5 points
    assert guard_of(1_000, 800, 0.5, Direction.INCREASE) is Guard.OK  # well within -5 points
    assert guard_of(1_000, 800, 0.25, Direction.INCREASE) is Guard.AT_RISK  # -2.5 points inside it
    assert guard_of(1_000, 800, 0.05, Direction.DECREASE) is Guard.OK  # fewer is better here
    assert guard_of(800, 1_000, 0.05, Direction.DECREASE) is Guard.BREACHED


def test_guardrails_stay_out_of_the_correction_and_a_breach_rolls_back() -> None:
    metrics = (conversion(), Metric("errors", MetricKind.CONVERSION, "buy", Role.GUARDRAIL, Direction.DECREASE))
    scorecard = card(metrics, totals(1_000, 1_200))
    primary, guardrail = (m.comparisons[0] for m in scorecard.metrics)
    assert primary.p_value_adjusted == primary.test.p_value  # a family of one
    assert guardrail.p_value_adjusted is None and guardrail.guardrail is Guard.BREACHED
    assert scorecard.decisions[0].verdict is Verdict.ROLL_BACK
    assert "'errors'" in scorecard.decisions[0].reasons[0]


def test_holm_runs_over_the_primary_and_secondary_metrics() -> None:
    metrics = (conversion(), conversion("again", Role.SECONDARY), conversion("third", Role.SECONDARY))
    scorecard = card(metrics, totals(1_000, 1_090))
    p = scorecard.metrics[0].comparisons[0].test.p_value
    assert p is not None and p < 0.05 < 3 * p  # significant alone, not after the correction
    assert [m.comparisons[0].p_value_adjusted for m in scorecard.metrics] == pytest.approx([min(1, 3 * p)] * 3)
    assert scorecard.decisions[0].verdict is Verdict.KEEP_RUNNING


def test_bayesian_outcomes_read_the_chance_to_beat_the_control() -> None:
    scorecard = card((conversion(),), totals(1_000, 1_090), method=Method.BAYESIAN)
    comparison = scorecard.metrics[0].comparisons[0]
    assert comparison.bayesian is not None and comparison.sequential is None
    chance = comparison.bayesian.chance_to_beat_control
    # Beta posteriors of 10,000 users: close to the one-sided normal of the z-test.
    assert chance == pytest.approx(stats.norm.cdf(comparison.test.statistic), abs=0.01)
    assert comparison.outcome is Outcome.BETTER and scorecard.correction is None


def test_sequential_outcomes_read_the_always_valid_p_value() -> None:
    scorecard = card((conversion(),), totals(1_000, 1_090), method=Method.SEQUENTIAL)
    comparison = scorecard.metrics[0].comparisons[0]
    assert comparison.test.p_value < 0.05  # the fixed horizon would call it
    assert comparison.sequential is not None and comparison.sequential.p_value > 0.05
    assert comparison.outcome is Outcome.INCONCLUSIVE
    assert scorecard.decisions[0].verdict is Verdict.KEEP_RUNNING


def test_undefined_figures_keep_it_running_and_say_why() -> None:
    scorecard = card((conversion(),), totals(0, 0, users=0))
    assert scorecard.metrics[0].comparisons[0].outcome is None
    assert scorecard.decisions[0].verdict is Verdict.KEEP_RUNNING
    assert "no defined result" in scorecard.decisions[0].reasons[0]
