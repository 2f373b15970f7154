"""RatioStatistic and ratio_test: against a reference computed here from the raw per-user values
with numpy and scipy, summable like the groups they summarise, None where undefined, and (seeded
Monte-Carlo) a 95% interval that covers at 95% and an A/A false-positive rate of 5%."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from domain.stats import RatioStatistic, TestResult, ratio_test

REL = 1e-9


def statistic_of(x: np.ndarray, y: np.ndarray) -> RatioStatistic:
    """The sums of the per-user values: integers stay Python ints, floats plain floats."""
    cast = (
        int if np.issubdtype(x.dtype, np.integer) and np.issubdtype(y.dtype, np.integer) else float
    )
    return RatioStatistic(
        len(x),
        cast(x.sum()),
        cast(y.sum()),
        cast((x * x).sum()),
        cast((y * y).sum()),
        cast((x * y).sum()),
    )


# --- the reference, straight from the raw values ----------------------------------------------


def reference_arm(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(Σx / Σy, the delta-method variance of the ratio of means) with numpy's own moments."""
    n = len(x)
    xf, yf = x.astype(float), y.astype(float)
    mean_x, mean_y = xf.mean(), yf.mean()
    var_x, var_y = np.var(xf, ddof=1), np.var(yf, ddof=1)
    cov_xy = np.cov(xf, yf, ddof=1)[0, 1]
    variance = (
        var_x / mean_y**2 - 2 * mean_x * cov_xy / mean_y**3 + mean_x**2 * var_y / mean_y**4
    ) / n
    return float(x.sum() / y.sum()), float(variance)


def reference_test(arm_a: tuple, arm_b: tuple, alpha: float) -> dict[str, Any]:
    ratio_a, var_a = reference_arm(*arm_a)
    ratio_b, var_b = reference_arm(*arm_b)
    diff = ratio_b - ratio_a
    se = math.sqrt(var_a + var_b)
    z = diff / se
    half = stats.norm.ppf(1 - alpha / 2) * se
    return {
        "absolute_lift": diff,
        "relative_lift": diff / ratio_a,
        "statistic": z,
        "p_value": float(2 * stats.norm.sf(abs(z))),
        "lower": diff - half,
        "upper": diff + half,
    }


def clicks_per_session(rng: np.random.Generator, n: int, sessions: float, ctr: float) -> tuple:
    """Sessions per user (Poisson: about e^-sessions of the users have none, so no clicks
    either) and clicks, each session clicked with probability ctr."""
    y = rng.poisson(sessions, n)
    return rng.binomial(y, ctr), y


def revenue_per_order(rng: np.random.Generator, n: int, orders: float, basket: float) -> tuple:
    """Orders per user and the revenue of the orders (float dollars, some refunds)."""
    y = rng.poisson(orders, n)
    per_order = rng.lognormal(math.log(basket), 0.8, n)
    refund = np.where(rng.random(n) < 0.03, -1.0, 1.0)
    return np.round(y * per_order * refund, 2), y


def scenarios() -> list[tuple[str, tuple, tuple, float]]:
    rng = np.random.default_rng(20260311)
    return [
        (
            "clicks per session",
            clicks_per_session(rng, 3_000, 1.5, 0.30),
            clicks_per_session(rng, 2_500, 1.5, 0.33),
            0.05,
        ),
        (
            "few sessions, alpha 0.1",
            clicks_per_session(rng, 400, 0.3, 0.2),
            clicks_per_session(rng, 450, 0.3, 0.25),
            0.1,
        ),
        (
            "revenue per order, float dollars",
            revenue_per_order(rng, 5_000, 0.8, 40.0),
            revenue_per_order(rng, 5_000, 0.8, 43.0),
            0.05,
        ),
        (
            "a drop, 100k users",
            clicks_per_session(rng, 100_000, 2.0, 0.1),
            clicks_per_session(rng, 100_000, 2.0, 0.097),
            0.01,
        ),
        (
            "three users",
            (np.array([1, 0, 4]), np.array([2, 0, 5])),
            (np.array([2, 3, 0]), np.array([2, 4, 1])),
            0.05,
        ),
    ]


@pytest.mark.parametrize(
    ("arm_a", "arm_b", "alpha"),
    [pytest.param(a, b, alpha, id=name) for name, a, b, alpha in scenarios()],
)
def test_ratio_test_matches_the_reference_from_the_raw_values(
    arm_a: tuple, arm_b: tuple, alpha: float
) -> None:
    a, b = statistic_of(*arm_a), statistic_of(*arm_b)
    want = reference_test(arm_a, arm_b, alpha)

    assert a.ratio == pytest.approx(reference_arm(*arm_a)[0], rel=REL)
    assert a.variance == pytest.approx(reference_arm(*arm_a)[1], rel=REL)
    assert b.variance == pytest.approx(reference_arm(*arm_b)[1], rel=REL)

    result = ratio_test(a, b, alpha)
    assert result.interval_method == "delta"
    assert result.degrees_of_freedom is None
    assert result.alpha == alpha
    assert result.interval is not None
    got = {
        "absolute_lift": result.absolute_lift,
        "relative_lift": result.relative_lift,
        "statistic": result.statistic,
        "p_value": result.p_value,
        "lower": result.interval.lower,
        "upper": result.interval.upper,
    }
    assert got == pytest.approx(want, rel=REL, abs=1e-14)


# --- summable ---------------------------------------------------------------------------------

users = st.lists(
    st.tuples(st.integers(-(10**6), 10**6), st.integers(0, 10**4)), min_size=0, max_size=40
)


def exact_statistic(pairs: list[tuple[int, int]]) -> RatioStatistic:
    return RatioStatistic(
        len(pairs),
        sum(x for x, _ in pairs),
        sum(y for _, y in pairs),
        sum(x * x for x, _ in pairs),
        sum(y * y for _, y in pairs),
        sum(x * y for x, y in pairs),
    )


@given(users, st.integers(0, 40))
def test_the_halves_add_up_to_the_whole(pairs: list[tuple[int, int]], cut: int) -> None:
    cut %= len(pairs) + 1
    first, second = exact_statistic(pairs[:cut]), exact_statistic(pairs[cut:])
    whole = exact_statistic(pairs)
    assert first + second == whole == second + first
    assert whole + RatioStatistic() == whole == RatioStatistic() + whole
    assert type(whole.x_sum) is int  # the zero's int sums keep integer sums exact


@given(users)
def test_the_variance_is_the_residual_form_rounded_once(pairs: list[tuple[int, int]]) -> None:
    """Var = n Σ(x − R y)² / ((n − 1) Σy²), R = Σx / Σy: the same delta-method variance from
    the linearised per-user residuals, in exact rationals."""
    statistic = exact_statistic(pairs)
    n, sy = len(pairs), sum(y for _, y in pairs)
    if n < 2 or sy == 0:
        assert statistic.variance is None
        return
    r = Fraction(sum(x for x, _ in pairs), sy)
    residuals = sum((x - r * y) ** 2 for x, y in pairs)
    assert statistic.variance == float(n * residuals / ((n - 1) * sy * sy))


def test_addition_with_anything_else_is_not_defined() -> None:
    with pytest.raises(TypeError):
        RatioStatistic() + 1  # type: ignore[operator]


# --- undefined ---------------------------------------------------------------------------------

SOME = RatioStatistic(4, 6, 10, 14, 30, 20)  # x = (1, 2, 3, 0), y = (2, 3, 4, 1)
NOTHING = TestResult(None, None, None, None, None, None, "delta")


def descriptive(absolute: float, relative: float | None) -> TestResult:
    return TestResult(absolute, relative, None, None, None, None, "delta")


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        pytest.param(RatioStatistic(), SOME, NOTHING, id="empty control"),
        pytest.param(SOME, RatioStatistic(), NOTHING, id="empty variant"),
        pytest.param(RatioStatistic(50), SOME, NOTHING, id="no events in the control"),
        pytest.param(SOME, RatioStatistic(50, 0, 0), NOTHING, id="no events in the variant"),
        pytest.param(
            RatioStatistic(1, 3, 2, 9, 4, 6), SOME, descriptive(-0.9, -0.6), id="one user"
        ),
        pytest.param(
            # every user's x is twice their y, and three times in B: no variance at all
            RatioStatistic(3, 12, 6, 56, 14, 28),
            RatioStatistic(2, 9, 3, 45, 5, 15),
            descriptive(1.0, 0.5),
            id="a constant ratio",
        ),
        pytest.param(
            RatioStatistic(2, float("nan"), 1.0, 1.0, 1.0, 1.0), SOME, NOTHING, id="a NaN sum"
        ),
        pytest.param(
            RatioStatistic(2, 10**400, 1, 10**801, 1, 10**400), SOME, NOTHING, id="past floats"
        ),
    ],
)
def test_undefined_numbers_are_none(
    a: RatioStatistic, b: RatioStatistic, expected: TestResult
) -> None:
    result = ratio_test(a, b)
    assert result.absolute_lift == pytest.approx(expected.absolute_lift)
    assert result.relative_lift == pytest.approx(expected.relative_lift)
    assert result.statistic is None and result.degrees_of_freedom is None
    assert result.p_value is None and result.interval is None
    assert result.interval_method == "delta"


def test_undefined_properties_are_none() -> None:
    assert RatioStatistic().ratio is None and RatioStatistic().variance is None
    assert RatioStatistic(50).ratio is None and RatioStatistic(50).variance is None
    one = RatioStatistic(1, 3, 2, 9, 4, 6)
    assert one.ratio == 1.5 and one.variance is None
    assert RatioStatistic(3, 12, 6, 56, 14, 28).variance == 0.0


def test_a_constant_ratio_of_float_values_has_no_variance() -> None:
    y = np.arange(1, 200, dtype=float)
    x = 0.1 * y  # every sum rounds, but the ratio is the same for every user
    statistic = statistic_of(x, y)
    assert statistic.variance == 0.0
    assert ratio_test(statistic, statistic) == descriptive(0.0, 0.0)


def test_a_bad_alpha_leaves_only_the_interval_undefined() -> None:
    result = ratio_test(SOME, RatioStatistic(4, 8, 10, 24, 30, 24), alpha=1.5)
    assert result.p_value is not None and result.interval is None


# --- seeded Monte-Carlo ------------------------------------------------------------------------

REPLICATIONS = 2_000
USERS = 1_000


def simulated_arms(rng: np.random.Generator, sessions: float, clicks_per_session: float) -> list:
    """REPLICATIONS arms of USERS users: Poisson sessions y (a quarter of the users have none)
    and Poisson clicks x with mean clicks_per_session · y, so x and y are correlated and the
    true ratio is clicks_per_session."""
    y = rng.poisson(sessions, (REPLICATIONS, USERS))
    x = rng.poisson(clicks_per_session * y)
    sums = zip(x.sum(1), y.sum(1), (x * x).sum(1), (y * y).sum(1), (x * y).sum(1), strict=True)
    return [RatioStatistic(USERS, *map(int, row)) for row in sums]


def three_standard_errors(rate: float) -> float:
    return 3.0 * math.sqrt(rate * (1.0 - rate) / REPLICATIONS)


def test_the_interval_covers_the_true_difference_at_its_level() -> None:
    rng = np.random.default_rng(20260312)
    control, variant = simulated_arms(rng, 1.4, 0.30), simulated_arms(rng, 1.4, 0.33)
    covered = 0
    for a, b in zip(control, variant, strict=True):
        interval = ratio_test(a, b).interval
        assert interval is not None
        covered += interval.lower <= 0.33 - 0.30 <= interval.upper
    coverage = covered / REPLICATIONS
    assert abs(coverage - 0.95) <= three_standard_errors(0.95), coverage


def test_a_a_false_positive_rate_is_nominal() -> None:
    rng = np.random.default_rng(20260313)
    control, variant = simulated_arms(rng, 1.4, 0.30), simulated_arms(rng, 1.4, 0.30)
    p_values = [ratio_test(a, b).p_value for a, b in zip(control, variant, strict=True)]
    assert None not in p_values
    rate = sum(p < 0.05 for p in p_values if p is not None) / REPLICATIONS
    assert abs(rate - 0.05) <= three_standard_errors(0.05), rate


def test_the_ratio_read_sequentially_and_bayesianly_follows_the_published_forms() -> None:
    """The confidence sequence of a ratio difference: d ± se·u(N)/√N with se² the two arms'
    delta-method variances (Howard et al. 2021's normal mixture, written out in
    tests/references.py); the flat Bayesian read-out: the normal posterior of the difference."""
    from domain.stats.bayesian import bayesian_ratios
    from domain.stats.sequential import sequential_ratios
    from tests.references import always_valid_p, sequence_half_width

    rng = np.random.default_rng(20261204)
    arms = []
    for lam in (2.0, 2.3):
        y = rng.poisson(3.0, 4_000)
        arms.append((rng.poisson(lam * y), y))
    stats_ = [statistic_of(x, y) for x, y in arms]
    (xa, ya), (xb, yb) = arms
    (ra, va), (rb, vb) = reference_arm(xa, ya), reference_arm(xb, yb)
    d, se = rb - ra, math.sqrt(va + vb)
    users = len(xa) + len(xb)
    seq = sequential_ratios(*stats_, tuning_users=5_000)
    half = sequence_half_width(se, users, 5_000)
    assert seq.interval is not None and seq.p_value is not None
    assert (seq.interval.lower, seq.interval.upper) == pytest.approx((d - half, d + half), rel=1e-9)
    assert seq.p_value == pytest.approx(always_valid_p(d, se, users, 5_000), rel=1e-9, abs=1e-300)
    bayes = bayesian_ratios(*stats_)
    assert bayes.chance_to_beat_control == pytest.approx(stats.norm.cdf(d / se), rel=1e-9)
    assert bayes.absolute.interval is not None
    assert (bayes.absolute.interval.lower, bayes.absolute.interval.upper) == pytest.approx(
        (d - stats.norm.ppf(0.975) * se, d + stats.norm.ppf(0.975) * se), rel=1e-9)
