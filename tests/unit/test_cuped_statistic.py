"""CUPED (domain/stats/cuped.py) against numpy on per-user values, and by seeded simulation: the
variance of the adjusted difference is 1 − ρ² of the plain one's, its interval covers, and with
no pre-period data there is nothing to adjust."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from domain.stats.bayesian import bayesian_means
from domain.stats.cuped import (
    CovariateStatistic,
    cuped_adjust,
    cuped_bayesian,
    cuped_sequential,
    cuped_test,
    pooled_theta,
)
from domain.stats.sequential import sequential_means
from tests.references import always_valid_p, sequence_half_width


def statistic(x: np.ndarray, y: np.ndarray) -> CovariateStatistic:
    return CovariateStatistic(len(x), float(y.sum()), float((y * y).sum()), float(x.sum()),
                              float((x * x).sum()), float((x * y).sum()))


def test_the_adjusted_means_are_the_regression_adjusted_ones() -> None:
    """Each arm's mean ȳ − θ (x̄ − x̄_pooled), its variance that of y − θ x (ddof 1)."""
    rng = np.random.default_rng(3)
    xa, xb = rng.normal(10, 3, 400), rng.normal(10, 3, 700)
    ya, yb = 2 + 0.8 * xa + rng.normal(0, 2, 400), 2.5 + 0.8 * xb + rng.normal(0, 2, 700)
    got = cuped_adjust(statistic(xa, ya), statistic(xb, yb))
    assert got is not None
    adj_a, adj_b, theta = got
    x, y = np.concatenate([xa, xb]), np.concatenate([ya, yb])
    assert theta == pytest.approx(np.cov(x, y)[0, 1] / np.var(x, ddof=1), rel=1e-12)
    for adj, xs, ys in ((adj_a, xa, ya), (adj_b, xb, yb)):
        assert adj.mean == pytest.approx(ys.mean() - theta * (xs.mean() - x.mean()), rel=1e-12)
        assert adj.variance == pytest.approx(np.var(ys - theta * xs, ddof=1), rel=1e-9)
        assert adj.unadjusted_mean == pytest.approx(ys.mean(), rel=1e-12)
        assert adj.units == float(len(xs))


@settings(max_examples=100)
@given(st.lists(st.tuples(st.integers(-50, 50), st.integers(-50, 50)), min_size=0, max_size=30),
       st.lists(st.tuples(st.integers(-50, 50), st.integers(-50, 50)), min_size=0, max_size=30))
def test_the_statistic_is_summable(first: list[tuple[int, int]], second: list[tuple[int, int]]) -> None:
    def of(users: list[tuple[int, int]]) -> CovariateStatistic:
        return CovariateStatistic(len(users), sum(y for _, y in users), sum(y * y for _, y in users),
                                  sum(x for x, _ in users), sum(x * x for x, _ in users),
                                  sum(x * y for x, y in users))

    assert of(first) + of(second) == of(first + second)


def test_without_pre_period_data_there_is_nothing_to_adjust() -> None:
    a = CovariateStatistic(100, 40, 40, 0, 0, 0)
    b = CovariateStatistic(100, 50, 50, 0, 0, 0)
    assert pooled_theta(a, b) is None and cuped_test(a, b) is None
    # Every user with the same pre-period figure: no variance of x either.
    assert pooled_theta(CovariateStatistic(10, 4, 4, 10, 10, 4), CovariateStatistic(10, 5, 5, 10, 10, 5)) is None


def test_undefined_figures_are_none_never_nan() -> None:
    one = CovariateStatistic(1, 1, 1, 1, 1, 1)
    assert cuped_test(one, CovariateStatistic()) is None  # no users in B
    result = cuped_test(CovariateStatistic(1, 1, 1, 0, 0, 0), CovariateStatistic(1, 0, 0, 1, 1, 0))
    assert result is not None and result.test.p_value is None and result.test.interval is None
    assert cuped_test(CovariateStatistic(5, math.inf, 1, 1, 1, 1), one) is None
    assert cuped_test(CovariateStatistic(5, 1, math.nan, 1, 1, 1), CovariateStatistic(5, 1, 1, 2, 2, 1)) is None
    # A control with no outcome at all: no relative lift.
    flat = cuped_test(CovariateStatistic(4, 0, 0, 2, 2, 0), CovariateStatistic(4, 2, 2, 1, 1, 1))
    assert flat is not None and flat.test.relative_lift is None


def test_the_sequential_and_bayesian_read_outs_take_the_adjusted_arms() -> None:
    rng = np.random.default_rng(8)
    xa, xb = rng.normal(5, 2, 3000), rng.normal(5, 2, 3000)
    ya, yb = xa + rng.normal(0, 1, 3000), xb + 0.2 + rng.normal(0, 1, 3000)
    got = cuped_adjust(statistic(xa, ya), statistic(xb, yb))
    assert got is not None
    adj_a, adj_b, _ = got
    difference = adj_b.mean - adj_a.mean
    assert sequential_means(adj_a, adj_b).absolute_lift == pytest.approx(difference)
    assert bayesian_means(adj_a, adj_b).absolute.mean == pytest.approx(difference)
    assert sequential_means(adj_a, adj_b).interval is not None


@pytest.mark.parametrize("tuning_users", [2_000, 10_000])
def test_the_adjusted_sequence_is_the_reference_sequence_of_the_adjusted_values(tuning_users: int) -> None:
    """``cuped_sequential``: the normal-mixture confidence sequence and always-valid p-value
    (tests/references.py, from the papers) over per-user values adjusted by numpy, y − θ (x −
    x̄), θ the pooled regression slope; each arm's variance with ddof 1."""
    rng = np.random.default_rng(21)
    xa, xb = rng.gamma(2, 10, 2500), rng.gamma(2, 10, 2600)
    ya, yb = 0.6 * xa + rng.normal(3, 8, 2500), 0.6 * xb + rng.normal(3.9, 8, 2600)
    got = cuped_sequential(statistic(xa, ya), statistic(xb, yb), tuning_users=tuning_users)
    assert got is not None and got.interval is not None and got.p_value is not None
    x, y = np.concatenate([xa, xb]), np.concatenate([ya, yb])
    theta = np.cov(x, y)[0, 1] / np.var(x, ddof=1)
    adj_a, adj_b = ya - theta * (xa - x.mean()), yb - theta * (xb - x.mean())
    difference = adj_b.mean() - adj_a.mean()
    se = math.sqrt(np.var(adj_a, ddof=1) / len(adj_a) + np.var(adj_b, ddof=1) / len(adj_b))
    half = sequence_half_width(se, len(x), tuning_users)
    assert got.absolute_lift == pytest.approx(difference, rel=1e-9)
    assert (got.interval.lower, got.interval.upper) == pytest.approx((difference - half, difference + half), rel=1e-9)
    assert got.p_value == pytest.approx(always_valid_p(difference, se, len(x), tuning_users), rel=1e-9)
    # Narrower than the sequence of the plain values, by the variance the pre-period explains.
    plain_se = math.sqrt(np.var(ya, ddof=1) / len(ya) + np.var(yb, ddof=1) / len(yb))
    assert half < sequence_half_width(plain_se, len(x), tuning_users)


def test_without_pre_period_data_there_is_no_adjusted_sequence_nor_posterior() -> None:
    a, b = CovariateStatistic(100, 40, 40, 0, 0, 0), CovariateStatistic(100, 50, 50, 0, 0, 0)
    assert cuped_sequential(a, b) is None and cuped_bayesian(a, b) is None


def test_the_adjusted_posterior_is_the_normal_posterior_of_the_adjusted_values() -> None:
    """``cuped_bayesian`` with a flat prior: the difference of the adjusted arms ~ Normal(Δ,
    se²), Δ and se from per-user values adjusted by numpy; chance to beat Φ(Δ / se), the 95%
    credible interval Δ ± z₀.₉₇₅ se, the expected loss if shipped se φ(Δ/se) − Δ Φ(−Δ/se)."""
    rng = np.random.default_rng(34)
    xa, xb = rng.gamma(2, 10, 3000), rng.gamma(2, 10, 3100)
    ya, yb = 0.5 * xa + rng.normal(3, 6, 3000), 0.5 * xb + rng.normal(3.3, 6, 3100)
    got = cuped_bayesian(statistic(xa, ya), statistic(xb, yb))
    assert got is not None
    x, y = np.concatenate([xa, xb]), np.concatenate([ya, yb])
    theta = np.cov(x, y)[0, 1] / np.var(x, ddof=1)
    adj_a, adj_b = ya - theta * (xa - x.mean()), yb - theta * (xb - x.mean())
    d = adj_b.mean() - adj_a.mean()
    se = math.sqrt(np.var(adj_a, ddof=1) / len(adj_a) + np.var(adj_b, ddof=1) / len(adj_b))
    assert got.chance_to_beat_control == pytest.approx(stats.norm.cdf(d / se), rel=1e-9)
    assert got.absolute.mean == pytest.approx(d, rel=1e-9)
    assert got.absolute.interval is not None
    half = stats.norm.ppf(0.975) * se
    assert (got.absolute.interval.lower, got.absolute.interval.upper) == pytest.approx((d - half, d + half), rel=1e-9)
    shipped = se * stats.norm.pdf(d / se) - d * stats.norm.cdf(-d / se)
    assert got.expected_loss_absolute.shipped == pytest.approx(shipped, rel=1e-6)


@pytest.mark.parametrize("rho", [0.3, 0.7])
def test_the_variance_cut_is_rho_squared_and_the_interval_covers(rho: float) -> None:
    """400 A/A experiments of 2,000 users an arm, (x, y) bivariate normal with correlation ρ:
    the adjusted differences' variance over the plain ones' is 1 − ρ² within 4 standard errors
    of that ratio (each variance from 400 draws has a relative error of about sqrt(2/399)); the
    reported reduction averages ρ²; the 95% interval covers 0 in 95% ± 3 standard errors."""
    rng = np.random.default_rng(int(rho * 100))
    runs, n = 400, 2000
    cov = [[1.0, rho], [rho, 1.0]]
    adjusted, plain, reductions, covered = [], [], [], 0
    for _ in range(runs):
        (xa, ya), (xb, yb) = (rng.multivariate_normal([0, 0], cov, n).T for _ in range(2))
        result = cuped_test(statistic(xa, ya), statistic(xb, yb))
        assert result is not None and result.test.interval is not None
        adjusted.append(result.test.absolute_lift)
        plain.append(yb.mean() - ya.mean())
        reductions.append(result.variance_reduction)
        covered += result.test.interval.lower <= 0 <= result.test.interval.upper
    ratio = np.var(adjusted, ddof=1) / np.var(plain, ddof=1)
    # The two variances are correlated estimates; 4 × sqrt(2/399) × 2 bounds the ratio's error.
    assert abs(ratio - (1 - rho**2)) < 4 * 2 * math.sqrt(2 / (runs - 1)) * (1 - rho**2)
    assert np.mean(reductions) == pytest.approx(rho**2, abs=0.01)
    share = covered / runs
    assert abs(share - 0.95) <= 3 * math.sqrt(0.95 * 0.05 / runs)


def test_the_test_matches_a_regression_z_test_in_large_samples() -> None:
    """With many users, CUPED's z is the treatment coefficient's in the regression of y on the
    arm and the centred covariate (Deng et al.: the two coincide asymptotically)."""
    rng = np.random.default_rng(11)
    n = 20_000
    xa, xb = rng.gamma(2, 2, n), rng.gamma(2, 2, n)
    ya, yb = 1 + 0.5 * xa + rng.normal(0, 1, n), 1.05 + 0.5 * xb + rng.normal(0, 1, n)
    result = cuped_test(statistic(xa, ya), statistic(xb, yb))
    x, y, arm = np.concatenate([xa, xb]), np.concatenate([ya, yb]), np.repeat([0.0, 1.0], n)
    design = np.column_stack([np.ones(2 * n), arm, x - x.mean()])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ coef
    sigma2 = residual @ residual / (2 * n - 3)
    se = math.sqrt(sigma2 * np.linalg.inv(design.T @ design)[1, 1])
    assert result is not None
    assert result.test.absolute_lift == pytest.approx(coef[1], rel=1e-3)
    assert result.test.statistic == pytest.approx(coef[1] / se, rel=1e-2)
    assert result.test.p_value == pytest.approx(2 * stats.norm.sf(abs(coef[1] / se)), rel=0.05, abs=1e-12)
