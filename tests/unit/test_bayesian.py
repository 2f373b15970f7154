"""The Bayesian read-out against seeded Monte-Carlo draws of the same posteriors.

Every figure is a posterior expectation or quantile: each is checked against the mean of
1,000,000 draws (numpy's Beta and normal samplers) within 4 of the draws' own standard errors,
and each interval end by the share of draws below it (within 4 binomial standard errors of
alpha/2). Nothing here computes a figure the way the service does.
"""

from __future__ import annotations

import math
from dataclasses import FrozenInstanceError
from typing import Any

import numpy as np
import pytest
from scipy import stats

from domain.stats.bayesian import (
    MIN_BASELINE_SDS,
    BayesianResult,
    NormalPrior,
    bayesian_means,
    bayesian_proportions,
    chances_to_beat,
)
from domain.stats.values import Proportion, SampleMean
from tests.references import relative_loss_if_kept

DRAWS = 1_000_000
SIGMAS = 4.0


def close_to_draws(actual: float | None, draws: Any, what: str) -> None:
    """actual within 4 standard errors (of the draws' mean) of the draws' mean."""
    assert actual is not None, what
    estimate = float(np.mean(draws))
    error = float(np.std(draws)) / math.sqrt(draws.size)
    assert abs(actual - estimate) <= SIGMAS * error + 1e-12, (what, actual, estimate, error)


def splits_draws(value: float, draws: Any, share: float, what: str) -> None:
    """The share of draws at or below value is ``share``, within 4 binomial errors."""
    below = float(np.mean(draws <= value))
    error = math.sqrt(share * (1 - share) / draws.size)
    assert abs(below - share) <= SIGMAS * error, (what, value, below, share)


def check_against_draws(
    result: BayesianResult, a: Any, b: Any, relative: bool = True, relative_mean: bool = True
) -> None:
    """Every figure of result against draws a (control) and b (variant) of the posteriors;
    the relative ones if ``relative``, their mean and loss if kept if ``relative_mean``."""
    d = b - a
    close_to_draws(result.chance_to_beat_control, (b > a).astype(float), "chance")
    close_to_draws(result.expected_loss_absolute.shipped, np.maximum(0.0, -d), "loss shipped")
    close_to_draws(result.expected_loss_absolute.kept, np.maximum(0.0, d), "loss kept")
    close_to_draws(result.absolute.mean, d, "absolute mean")
    tail = result.alpha / 2
    assert result.absolute.interval is not None
    splits_draws(result.absolute.interval.lower, d, tail, "absolute lower")
    splits_draws(result.absolute.interval.upper, d, 1 - tail, "absolute upper")
    if not relative:
        return
    r = b / a - 1.0
    close_to_draws(result.expected_loss_relative.shipped, np.maximum(0.0, -r), "rel shipped")
    if relative_mean:  # E[R²] finite: the draws' error is meaningful
        close_to_draws(result.expected_loss_relative.kept, np.maximum(0.0, r), "rel kept")
        close_to_draws(result.relative.mean, r, "relative mean")
    assert result.relative.interval is not None
    splits_draws(result.relative.interval.lower, r, tail, "relative lower")
    splits_draws(result.relative.interval.upper, r, 1 - tail, "relative upper")


# --- proportions -------------------------------------------------------------------------------

PROPORTION_CASES = [
    pytest.param((20, 3), (20, 5), id="small n"),
    pytest.param((10_000, 1_000), (10_000, 1_100), id="typical"),
    pytest.param((100_000, 3), (100_000, 9), id="rare events"),
    pytest.param((10_000_000, 1_000_000), (10_000_000, 1_001_000), id="large n"),
    pytest.param((20, 3), (10_000_000, 1_000_000), id="wide control, narrow variant"),
    pytest.param((10_000_000, 1_000_000), (20, 3), id="narrow control, wide variant"),
    pytest.param((50, 47), (60, 60), id="near all converted"),
]


@pytest.mark.parametrize(("arm_a", "arm_b"), PROPORTION_CASES)
def test_proportions_match_monte_carlo(arm_a: tuple[int, int], arm_b: tuple[int, int]) -> None:
    (n_a, x_a), (n_b, x_b) = arm_a, arm_b
    rng = np.random.default_rng(n_a * 31 + x_a * 7 + n_b * 3 + x_b)
    a = rng.beta(1 + x_a, 1 + n_a - x_a, DRAWS)
    b = rng.beta(1 + x_b, 1 + n_b - x_b, DRAWS)
    result = bayesian_proportions(Proportion(n_a, x_a), Proportion(n_b, x_b))
    # E[R²] needs E[1 / p_A²]: finite for 1 + x_A > 2.
    check_against_draws(result, a, b, relative_mean=x_a >= 2)


def test_no_conversion_in_the_control_leaves_the_relative_mean_undefined() -> None:
    # Beta(1, 21): E[1 / p_A] = ∫ 21 (1 − t)²⁰ / t dt diverges, and so do the relative mean
    # and the loss of keeping; the loss of shipping (≤ 1) and the intervals stay defined.
    rng = np.random.default_rng(7)
    a, b = rng.beta(1, 21, DRAWS), rng.beta(6, 999_996, DRAWS)
    result = bayesian_proportions(Proportion(20, 0), Proportion(1_000_000, 5))
    assert result.relative.mean is None
    assert result.expected_loss_relative.kept is None
    check_against_draws(result, a, b, relative_mean=False)


def test_one_conversion_in_the_control_has_a_relative_mean_by_quadrature() -> None:
    # x_A = 1: E[1 / p_A] is finite but E[1 / p_A²] is not, so draws cannot check these two.
    result = bayesian_proportions(Proportion(1_000, 1), Proportion(1_000, 0))
    alpha_a, beta_a, alpha_b, beta_b = 2, 1000, 1, 1001
    c = (alpha_a + beta_a - 1) / (alpha_a - 1)
    kept = relative_loss_if_kept(alpha_a, beta_a, alpha_b, beta_b)
    assert result.expected_loss_relative.kept == pytest.approx(kept, abs=1e-9)
    mean_b = alpha_b / (alpha_b + beta_b)
    assert result.relative.mean == pytest.approx(mean_b * c - 1.0, abs=1e-12)


@pytest.mark.parametrize(("n", "x"), [(100, 0), (10, 10), (10_000, 1_234), (10**8, 10**7)])
def test_identical_arms_are_a_coin_toss(n: int, x: int) -> None:
    result = bayesian_proportions(Proportion(n, x), Proportion(n, x))
    assert result.chance_to_beat_control == pytest.approx(0.5, abs=1e-9)
    loss = result.expected_loss_absolute
    assert loss.shipped is not None and loss.kept is not None
    assert loss.shipped == pytest.approx(loss.kept, rel=1e-7, abs=1e-15)
    assert result.absolute.mean == 0.0
    interval = result.absolute.interval
    assert interval is not None
    assert interval.lower == pytest.approx(-interval.upper, rel=1e-6)


def test_the_losses_differ_by_the_mean_difference() -> None:
    # E[max(0, D)] − E[max(0, −D)] = E[D], and so for R: an identity of the definitions.
    for arm_a, arm_b in [((20, 3), (20, 5)), ((10_000, 1_000), (10_000, 1_100))]:
        result = bayesian_proportions(Proportion(*arm_a), Proportion(*arm_b))
        loss, rel = result.expected_loss_absolute, result.expected_loss_relative
        assert loss.kept is not None and loss.shipped is not None
        assert rel.kept is not None and rel.shipped is not None
        assert loss.kept - loss.shipped == pytest.approx(result.absolute.mean, abs=1e-10)
        assert rel.kept - rel.shipped == pytest.approx(result.relative.mean, abs=1e-9)


def test_a_hundred_million_users_agree_with_the_normal_limit() -> None:
    # At 10⁸ users each Beta posterior is normal to ~10⁻⁴ in its sd: P(p_B > p_A) is then
    # Φ(Δ / √(var_A + var_B)) (scipy), and the posterior is only ~10⁻⁵ wide.
    n, x_a, x_b = 10**8, 10**7, 10**7 + 3_000
    result = bayesian_proportions(Proportion(n, x_a), Proportion(n, x_b))
    # Beta(α, β): mean α / (α + β), variance αβ / ((α + β)² (α + β + 1)) (scipy's
    # beta.stats loses the variance at these sizes).
    mean_a, mean_b = (1 + x_a) / (n + 2), (1 + x_b) / (n + 2)
    var_a, var_b = (m * (1 - m) / (n + 3) for m in (mean_a, mean_b))
    sd = math.sqrt(var_a + var_b)
    assert result.chance_to_beat_control == pytest.approx(
        stats.norm.cdf((mean_b - mean_a) / sd), abs=1e-4
    )
    interval = result.absolute.interval
    assert interval is not None
    assert interval.lower == pytest.approx(mean_b - mean_a - 1.959964 * sd, rel=1e-3)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (Proportion(0, 0), Proportion(100, 5)),
        (Proportion(100, 5), Proportion(0, 0)),
        (Proportion(10, 11), Proportion(100, 5)),
        (Proportion(-5, 0), Proportion(100, 5)),
        (Proportion(100, -1), Proportion(100, 5)),
    ],
)
def test_an_arm_that_is_no_proportion_leaves_everything_undefined(
    a: Proportion, b: Proportion
) -> None:
    for prior in (None, NormalPrior(sd=0.1)):
        result = bayesian_proportions(a, b, prior)
        assert result.chance_to_beat_control is None
        assert result.expected_loss_absolute.shipped is None
        assert result.expected_loss_relative.kept is None
        assert result.absolute.mean is None and result.absolute.interval is None
        assert result.relative.mean is None and result.relative.interval is None


def test_an_invalid_alpha_is_undefined_not_an_error() -> None:
    for alpha in (0.0, 1.0, -0.1, float("nan")):
        result = bayesian_proportions(Proportion(100, 10), Proportion(100, 12), alpha=alpha)
        assert result.chance_to_beat_control is None and result.absolute.interval is None


def test_the_level_follows_alpha() -> None:
    result = bayesian_proportions(Proportion(10_000, 1_000), Proportion(10_000, 1_100), alpha=0.2)
    assert result.level == pytest.approx(0.8)
    rng = np.random.default_rng(11)
    a, b = rng.beta(1_001, 9_001, DRAWS), rng.beta(1_101, 8_901, DRAWS)
    assert result.absolute.interval is not None
    splits_draws(result.absolute.interval.lower, b - a, 0.1, "lower at alpha 0.2")
    splits_draws(result.absolute.interval.upper, b - a, 0.9, "upper at alpha 0.2")


def test_results_are_frozen() -> None:
    result = bayesian_proportions(Proportion(100, 10), Proportion(100, 12))
    with pytest.raises(FrozenInstanceError):
        result.chance_to_beat_control = 1.0  # type: ignore[misc]


# --- means -------------------------------------------------------------------------------------


def revenue(rng: Any, n: int, scale: float, buyers: float) -> Any:
    """Revenue per user in cents: most users 0, buyers log-normally distributed."""
    spend = np.round(rng.lognormal(math.log(scale), 1.0, n))
    return np.where(rng.random(n) < buyers, spend, 0.0).astype(np.int64)


def summary(values: Any) -> tuple[SampleMean, float, float]:
    """The statistic, and (from numpy, not the service) the posterior's mean and sd."""
    n = values.size
    mean, sd = float(values.mean()), float(values.std(ddof=1)) / math.sqrt(n)
    return SampleMean(n, int(values.sum()), int((values * values).sum())), mean, sd


MEAN_CASES = [
    pytest.param(5_000, 2_000, 0.10, 5_000, 2_150, 0.10, id="typical revenue"),
    pytest.param(40, 900, 0.6, 40, 1_100, 0.6, id="small n, control near 0"),
    pytest.param(60, 900, 0.95, 50, 1_000, 0.95, id="small n"),
    pytest.param(200_000, 1_500, 0.05, 200_000, 1_480, 0.05, id="large n"),
    pytest.param(2_000, 2_000, 0.3, 100_000, 2_000, 0.3, id="wide control, narrow variant"),
]


@pytest.mark.parametrize(("n_a", "scale_a", "buy_a", "n_b", "scale_b", "buy_b"), MEAN_CASES)
def test_means_match_monte_carlo(
    n_a: int, scale_a: float, buy_a: float, n_b: int, scale_b: float, buy_b: float
) -> None:
    rng = np.random.default_rng(n_a + n_b + int(scale_b))
    stat_a, mean_a, sd_a = summary(revenue(rng, n_a, scale_a, buy_a))
    stat_b, mean_b, sd_b = summary(revenue(rng, n_b, scale_b, buy_b))
    a = rng.normal(mean_a, sd_a, DRAWS)
    b = rng.normal(mean_b, sd_b, DRAWS)
    result = bayesian_means(stat_a, stat_b)
    # The relative figures need the control's posterior clear of 0 (where draws of 1 / X_A
    # have no finite mean either).
    defined = abs(mean_a) >= MIN_BASELINE_SDS * sd_a
    check_against_draws(result, a, b, relative=defined)
    if not defined:
        assert result.relative.mean is None and result.expected_loss_relative.kept is None


def test_a_negative_control_mean_keeps_the_ratio_sign() -> None:
    # Profit per user can be negative: R = B / A − 1 as the ratio gives it.
    rng = np.random.default_rng(3)
    stat_a, mean_a, sd_a = summary(rng.integers(-8, 3, 1_000))
    stat_b, mean_b, sd_b = summary(rng.integers(-9, 3, 1_000))
    assert mean_a < 0 and abs(mean_a) >= 10 * sd_a
    a = rng.normal(mean_a, sd_a, DRAWS)
    b = rng.normal(mean_b, sd_b, DRAWS)
    check_against_draws(bayesian_means(stat_a, stat_b), a, b, relative_mean=True)


def test_a_control_near_zero_leaves_the_relative_figures_undefined() -> None:
    # Mean 1 and variance 4 over 100 users: a posterior sd of 0.2, the mean 5 sds from 0,
    # inside MIN_BASELINE_SDS.
    stat_a = SampleMean(100, 100, 4 * 99 + 100)
    assert stat_a.mean == 1.0 and stat_a.variance == 4.0
    assert 5.0 < MIN_BASELINE_SDS
    result = bayesian_means(stat_a, SampleMean(100, 200, 4 * 99 + 400))
    assert result.chance_to_beat_control is not None and result.absolute.interval is not None
    assert result.relative.mean is None and result.relative.interval is None
    assert result.expected_loss_relative.shipped is None
    assert result.expected_loss_relative.kept is None


def test_identical_means_are_a_coin_toss() -> None:
    stat = SampleMean(10_000, 123_456, 9_876_543_210)
    result = bayesian_means(stat, stat)
    assert result.chance_to_beat_control == pytest.approx(0.5, abs=1e-12)
    loss = result.expected_loss_absolute
    assert loss.shipped == pytest.approx(loss.kept, rel=1e-12)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (SampleMean(0, 0, 0), SampleMean(100, 500, 9_000)),
        (SampleMean(1, 5, 25), SampleMean(100, 500, 9_000)),
        (SampleMean(100, 500, 9_000), SampleMean(1, 5, 25)),
        (SampleMean(100, float("nan"), 9_000), SampleMean(100, 500, 9_000)),
        (SampleMean(100, 500, float("inf")), SampleMean(100, 500, 9_000)),
    ],
)
def test_a_mean_without_a_variance_leaves_everything_undefined(
    a: SampleMean, b: SampleMean
) -> None:
    for prior in (None, NormalPrior(sd=0.1)):
        result = bayesian_means(a, b, prior)
        assert result.chance_to_beat_control is None
        assert result.absolute.mean is None and result.relative.mean is None
        assert result.expected_loss_absolute.kept is None


def test_no_variance_at_all_gives_the_differences_only() -> None:
    # Everyone spent 9.99 in A and 10.49 in B: the posteriors are points.
    result = bayesian_means(
        SampleMean(50, 50 * 999, 50 * 999**2), SampleMean(40, 40 * 1049, 40 * 1049**2)
    )
    assert result.absolute.mean == pytest.approx(50.0)
    assert result.relative.mean == pytest.approx(1049 / 999 - 1)
    assert result.chance_to_beat_control is None
    assert result.absolute.interval is None and result.relative.interval is None


def test_a_variant_without_variance_has_a_ratio_of_a_normal() -> None:
    # B's mean is known exactly (everyone spent 10): R = 10 / X_A − 1, a monotone function of
    # X_A, whose quantiles are those of X_A mapped (scipy's normal quantiles).
    values_a = np.random.default_rng(5).integers(0, 21, 400)
    stat_a, mean_a, sd_a = summary(values_a)
    result = bayesian_means(stat_a, SampleMean(300, 3_000, 30_000))
    interval = result.relative.interval
    assert interval is not None
    assert interval.lower == pytest.approx(10 / stats.norm.ppf(0.975, mean_a, sd_a) - 1, rel=1e-6)
    assert interval.upper == pytest.approx(10 / stats.norm.ppf(0.025, mean_a, sd_a) - 1, rel=1e-6)
    assert result.chance_to_beat_control == pytest.approx(stats.norm.cdf(10, mean_a, sd_a))


# --- the normal prior on the relative effect ---------------------------------------------------


def weighted(estimate: float | None, values: Any, weights: Any, what: str) -> None:
    """actual against a self-normalised importance-sampling estimate, within 4 of its
    (delta-method) standard errors."""
    assert estimate is not None, what
    total = weights.sum()
    mean = float((weights * values).sum() / total)
    error = float(np.sqrt((weights**2 * (values - mean) ** 2).sum()) / total)
    assert abs(estimate - mean) <= SIGMAS * error + 1e-12, (what, estimate, mean, error)


@pytest.mark.parametrize("kind", ["proportions", "means"])
def test_the_prior_is_combined_with_the_lift_as_monte_carlo_weighs_it(kind: str) -> None:
    # Prior draws of the relative effect θ ~ N(0.02, 0.05), weighted by the normal likelihood
    # of the observed lift given θ (its delta-method variance, written out here): the weighted
    # draws are the posterior, with no precision weighting computed by hand.
    prior = NormalPrior(mean=0.02, sd=0.05)
    if kind == "proportions":
        a, b = Proportion(4_000, 400), Proportion(4_000, 460)
        mean_a, mean_b = 0.1, 0.115
        var_a, var_b = 0.1 * 0.9, 0.115 * 0.885
        n_a = n_b = 4_000
        result = bayesian_proportions(a, b, prior)
    else:
        values = np.random.default_rng(8).integers(0, 200, (2, 3_000))
        values[1] += 8
        stat_a, mean_a, _ = summary(values[0])
        stat_b, mean_b, _ = summary(values[1])
        var_a, var_b = float(values[0].var(ddof=1)), float(values[1].var(ddof=1))
        n_a = n_b = 3_000
        result = bayesian_means(stat_a, stat_b, prior)
    lift = mean_b / mean_a - 1
    data_var = var_b / (n_b * mean_a**2) + var_a * mean_b**2 / (n_a * mean_a**4)
    rng = np.random.default_rng(21)
    theta = rng.normal(prior.mean, prior.sd, DRAWS)
    weights = np.exp(-0.5 * (lift - theta) ** 2 / data_var)
    absolute = theta * mean_a
    weighted(result.chance_to_beat_control, (theta > 0).astype(float), weights, "chance")
    weighted(result.relative.mean, theta, weights, "relative mean")
    weighted(result.expected_loss_relative.kept, np.maximum(0, theta), weights, "rel kept")
    weighted(result.expected_loss_relative.shipped, np.maximum(0, -theta), weights, "rel ship")
    weighted(result.absolute.mean, absolute, weights, "absolute mean")
    weighted(result.expected_loss_absolute.kept, np.maximum(0, absolute), weights, "abs kept")
    weighted(result.expected_loss_absolute.shipped, np.maximum(0, -absolute), weights, "ship")
    for interval, values in (
        (result.relative.interval, theta),
        (result.absolute.interval, absolute),
    ):
        assert interval is not None
        for end, share in ((interval.lower, 0.025), (interval.upper, 0.975)):
            weighted(share, (values <= end).astype(float), weights, "interval end")
    assert "normal approximation" in result.prior


def test_a_vague_prior_gives_the_delta_method_normal() -> None:
    # With a prior sd of 10⁴ the posterior is the likelihood: N(lift, delta-method variance),
    # whose chance to beat control is Φ(lift / sd) (scipy).
    a, b = Proportion(10_000, 1_000), Proportion(10_000, 1_080)
    result = bayesian_proportions(a, b, NormalPrior(sd=1e4))
    lift = 0.108 / 0.1 - 1
    sd = math.sqrt(0.108 * 0.892 / (10_000 * 0.01) + 0.09 * 0.108**2 / (10_000 * 0.1**4))
    assert result.chance_to_beat_control == pytest.approx(stats.norm.cdf(lift / sd), abs=1e-9)
    assert result.relative.interval is not None
    assert result.relative.interval.upper == pytest.approx(lift + 1.959963985 * sd, rel=1e-8)


@pytest.mark.parametrize(
    "prior",
    [
        NormalPrior(sd=0.0),
        NormalPrior(sd=-1.0),
        NormalPrior(sd=float("nan")),
        NormalPrior(mean=float("inf"), sd=0.1),
    ],
)
def test_an_improper_prior_is_undefined_not_an_error(prior: NormalPrior) -> None:
    result = bayesian_proportions(Proportion(100, 10), Proportion(100, 12), prior)
    assert result.chance_to_beat_control is None and result.relative.mean is None


def test_a_prior_over_a_control_of_zero_is_undefined() -> None:
    result = bayesian_proportions(Proportion(100, 0), Proportion(100, 3), NormalPrior(sd=0.1))
    assert result.chance_to_beat_control is None and result.absolute.mean is None


def test_the_prior_must_be_given_by_keyword() -> None:
    assert NormalPrior(sd=0.2).mean == 0.0
    with pytest.raises(TypeError):
        NormalPrior(0.0, 0.2)  # type: ignore[misc]


def test_a_series_chances_match_monte_carlo_and_the_single_read_out() -> None:
    """``chances_to_beat`` (a series' points at once) against the draws of every case above,
    and against ``bayesian_proportions``' chance (itself checked against draws above)."""
    chances = chances_to_beat([(Proportion(*p.values[0]), Proportion(*p.values[1])) for p in PROPORTION_CASES])
    for param, chance in zip(PROPORTION_CASES, chances, strict=True):
        (n_a, x_a), (n_b, x_b) = param.values
        rng = np.random.default_rng(n_a * 13 + x_a * 5 + n_b * 11 + x_b)
        a = rng.beta(1 + x_a, 1 + n_a - x_a, DRAWS)
        b = rng.beta(1 + x_b, 1 + n_b - x_b, DRAWS)
        close_to_draws(chance, (b > a).astype(float), f"series chance {param.id}")
        single = bayesian_proportions(Proportion(n_a, x_a), Proportion(n_b, x_b)).chance_to_beat_control
        assert chance == pytest.approx(single, abs=1e-6)
    assert chances_to_beat([(Proportion(0, 0), Proportion(10, 1)), (Proportion(10, 1), Proportion(5, 9))]) == [None, None]
    assert chances_to_beat([]) == []
