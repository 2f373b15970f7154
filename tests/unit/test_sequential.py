"""The normal-mixture boundary and the confidence sequences of B − A, checked against confseq
(when installed), a first-principles mixture computed by quadrature, and gbstats' formulas."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
from dataclasses import FrozenInstanceError
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, optimize, stats

from domain.stats import Proportion, SampleMean
from tests.references import reference_library
from domain.stats.sequential import (
    DEFAULT_TUNING_USERS,
    TUNING_ALPHA,
    SequentialResult,
    mixture_rho,
    normal_mixture_bound,
    sequential_means,
    sequential_proportions,
)

GRID_V = [0.0, 1e-6, 0.3, 1.0, 7.0, 100.0, 2_345.0, 1e4, 1e5, 1e6, 3e7, 1e9, 1e12, 1e15]
GRID_ALPHA = [1e-10, 1e-6, 1e-3, 0.01, 0.025, 0.05, 0.1, 0.2, 0.32, 0.5, 0.8, 0.95]
GRID_V_OPT = [1e-3, 0.5, 1.0, 30.0, 1_000.0, 5_000.0, 1e4, 1e5, 1e7, 1e10]


# --- the boundary -------------------------------------------------------------------------------


def test_bound_matches_confseq_over_a_wide_grid() -> None:
    boundaries = reference_library("confseq.boundaries")
    v, alpha, v_opt = (a.ravel() for a in np.meshgrid(GRID_V, GRID_ALPHA, GRID_V_OPT))
    expected = boundaries.normal_mixture_bound(v, alpha, v_opt, alpha, False)
    fixed_tuning = boundaries.normal_mixture_bound(v, alpha, v_opt, TUNING_ALPHA, False)
    worst = 0.0
    for i in range(v.size):
        for want, got in (
            (expected[i], normal_mixture_bound(v[i], alpha[i], v_opt[i])),
            (fixed_tuning[i], normal_mixture_bound(v[i], alpha[i], v_opt[i], TUNING_ALPHA)),
        ):
            assert got is not None
            worst = max(worst, abs(got - want) / want)
    assert worst <= 1e-9, worst


def test_rho_matches_confseq_mixture() -> None:
    boundaries = reference_library("confseq.boundaries")
    # confseq's two-sided log-mixture at s = 0 is ½ ln(rho / (v + rho)), which gives its rho back.
    for v_opt in GRID_V_OPT:
        for alpha_opt in (0.001, 0.05, 0.3):
            v = 1.0 * v_opt
            log_mg = float(boundaries.normal_log_mixture(0.0, v, v_opt, alpha_opt, False))
            ratio = math.exp(2.0 * log_mg)  # rho / (v + rho)
            rho = ratio * v / (1.0 - ratio)
            assert mixture_rho(v_opt, alpha_opt) == pytest.approx(rho, rel=1e-9)


def _mixture(s: float, v: float, rho: float) -> float:
    # The normal mixture from first principles: exp(λs − λ²v/2) averaged over λ ~ N(0, 1/rho).
    scale = 1.0 / math.sqrt(rho)

    def integrand(lam: float) -> float:
        return math.exp(lam * s - lam * lam * v / 2.0) * stats.norm.pdf(lam, scale=scale)

    peak = s / (v + rho)  # where the integrand is largest
    width = 12.0 / math.sqrt(v + rho)
    return integrate.quad(integrand, peak - width, peak + width, epsabs=0, epsrel=1e-12)[0]


@pytest.mark.parametrize(
    ("v", "alpha", "v_opt"),
    [(1.0, 0.05, 1.0), (50.0, 0.01, 200.0), (400.0, 0.2, 100.0), (10.0, 0.5, 10.0)],
)
def test_bound_is_where_the_mixture_martingale_reaches_one_over_alpha(
    v: float, alpha: float, v_opt: float
) -> None:
    rho = mixture_rho(v_opt, alpha)
    assert rho is not None
    crossing = optimize.brentq(
        lambda s: math.log(_mixture(s, v, rho)) - math.log(1.0 / alpha),
        0.0,
        20.0 * math.sqrt(v + rho),
        xtol=1e-13,
        rtol=1e-13,
    )
    assert normal_mixture_bound(v, alpha, v_opt) == pytest.approx(crossing, rel=1e-8)


@pytest.mark.parametrize("alpha", [0.001, 0.01, 0.05, 0.2, 0.5])
@pytest.mark.parametrize("v_opt", [10.0, 1e4, 1e8])
def test_rho_makes_the_bound_nearly_tightest_at_v_opt(alpha: float, v_opt: float) -> None:
    rho = mixture_rho(v_opt, alpha)
    assert rho is not None

    def bound_at(log_rho: float) -> float:
        r = math.exp(log_rho)
        return math.sqrt((v_opt + r) * (math.log(1 + v_opt / r) + 2 * math.log(1 / alpha)))

    best = optimize.minimize_scalar(
        bound_at, bounds=(math.log(rho) - 5, math.log(rho) + 5), method="bounded"
    )
    bound = normal_mixture_bound(v_opt, alpha, v_opt)
    assert bound is not None
    assert best.fun <= bound <= best.fun * 1.005  # Howard et al.'s rho: near the optimum


def test_bound_is_wider_than_the_fixed_time_quantile() -> None:
    # Valid at every time, so at any one time it is at least the normal quantile.
    for v in (1.0, 100.0, 1e4, 1e8):
        for alpha in (0.001, 0.05, 0.3):
            bound = normal_mixture_bound(v, alpha, 1e4)
            assert bound is not None
            assert bound > stats.norm.isf(alpha / 2) * math.sqrt(v)


@pytest.mark.parametrize(
    ("v", "alpha", "v_opt"),
    [
        (-1.0, 0.05, 10.0),
        (10.0, 0.0, 10.0),
        (10.0, 1.0, 10.0),
        (10.0, -0.1, 10.0),
        (10.0, 0.05, 0.0),
        (10.0, 0.05, -3.0),
        (math.nan, 0.05, 10.0),
        (math.inf, 0.05, 10.0),
        (10.0, math.nan, 10.0),
        (10.0, 0.05, math.inf),
        (1e308, 0.05, 1e-300),
    ],
)
def test_bound_is_none_where_undefined(v: float, alpha: float, v_opt: float) -> None:
    assert normal_mixture_bound(v, alpha, v_opt) is None


def test_rho_is_none_where_undefined() -> None:
    assert mixture_rho(0.0) is None
    assert mixture_rho(-5.0) is None
    assert mixture_rho(math.nan) is None
    assert mixture_rho(5e-324) is None  # rho would underflow to 0
    assert mixture_rho(100.0, 0.0) is None
    assert mixture_rho(100.0, 1.0) is None


# --- the sequences ------------------------------------------------------------------------------


def _gbstats(d: float, se_sq: float, n: float, tuning: float, alpha: float) -> tuple[float, float]:
    # gbstats' sequential_rho, sequential_interval_halfwidth and sequential_p_value (Waudby-Smith
    # et al. 2023, eqs. 161, 9, 155 of arXiv:2103.06476v7), rho at gbstats' own alpha.
    log_a = math.log(alpha)
    rho = math.sqrt((-2 * log_a + math.log(-2 * log_a + 1)) / tuning)
    s2 = se_sq * n
    c = n * rho**2 + 1
    half = math.sqrt(s2) * math.sqrt(2 * c * math.log(math.sqrt(c) / alpha) / (n * rho) ** 2)
    t_sq = d**2 * n / se_sq
    log_evalue = rho**2 * t_sq / (2 * c) - 0.5 * math.log(c)
    return half, (1.0 if log_evalue <= 0 else min(math.exp(-log_evalue), 1.0))


def test_proportions_are_gbstats_at_alpha_005() -> None:
    rng = np.random.default_rng(7)
    for _ in range(300):
        n_a, n_b = (int(n) for n in rng.integers(20, 2_000_000, size=2))
        rate = rng.uniform(0.01, 0.9)
        x_a = int(rng.binomial(n_a, rate))
        x_b = int(rng.binomial(n_b, min(1.0, rate * rng.uniform(0.9, 1.1))))
        tuning = float(rng.choice([100, 5_000, 10_000, 1e6]))
        result = sequential_proportions(Proportion(n_a, x_a), Proportion(n_b, x_b), 0.05, tuning)
        p_a, p_b = x_a / n_a, x_b / n_b
        se_sq = p_a * (1 - p_a) / n_a + p_b * (1 - p_b) / n_b
        half, p = _gbstats(p_b - p_a, se_sq, n_a + n_b, tuning, 0.05)
        assert result.absolute_lift == pytest.approx(p_b - p_a, rel=1e-12, abs=1e-15)
        assert result.interval is not None and result.p_value is not None
        assert result.interval.lower == pytest.approx(
            max(-1.0, p_b - p_a - half), rel=1e-9, abs=1e-14
        )
        assert result.interval.upper == pytest.approx(
            min(1.0, p_b - p_a + half), rel=1e-9, abs=1e-14
        )
        assert result.p_value == pytest.approx(p, rel=1e-9, abs=1e-300)


def test_means_are_gbstats_at_alpha_005() -> None:
    rng = np.random.default_rng(8)
    for _ in range(40):
        a = np.round(rng.lognormal(3, 1, size=rng.integers(2, 3_000)) * (rng.random() < 0.5), 2)
        b = np.round(rng.exponential(20, size=rng.integers(2, 3_000)), 2)
        result = sequential_means(_summed(a), _summed(b))
        se_sq = a.var(ddof=1) / a.size + b.var(ddof=1) / b.size
        d = b.mean() - a.mean()
        half, p = _gbstats(d, se_sq, a.size + b.size, DEFAULT_TUNING_USERS, 0.05)
        assert result.interval is not None and result.p_value is not None
        assert result.interval.lower == pytest.approx(d - half, rel=1e-9)
        assert result.interval.upper == pytest.approx(d + half, rel=1e-9)
        assert result.p_value == pytest.approx(p, rel=1e-9, abs=1e-300)


def _summed(values: np.ndarray) -> SampleMean:
    return SampleMean(
        values.size, math.fsum(values.tolist()), math.fsum((values * values).tolist())
    )


def test_p_value_is_below_alpha_exactly_when_the_interval_excludes_zero() -> None:
    rng = np.random.default_rng(11)
    alphas = [0.001, 0.01, 0.05, 0.1, 0.2, 0.5, 0.9]
    checked = 0
    for _ in range(500):
        n = int(rng.integers(100, 100_000))
        x_a = int(rng.binomial(n, 0.1))
        x_b = int(rng.binomial(n, 0.1 * rng.uniform(0.8, 1.3)))
        a, b = Proportion(n, x_a), Proportion(n, x_b)
        p = sequential_proportions(a, b).p_value
        assert p is not None
        for alpha in alphas:
            result = sequential_proportions(a, b, alpha)
            interval = result.interval
            assert interval is not None and result.p_value == p  # p does not depend on alpha
            excludes = interval.lower > 0 or interval.upper < 0
            if abs(p - alpha) > 1e-9 * alpha:  # away from the tie that rounding decides
                assert excludes == (p < alpha) == result.significant
                checked += 1
    assert checked > 3_000


def test_p_value_is_the_alpha_at_which_the_interval_touches_zero() -> None:
    a, b = Proportion(20_000, 2_000), Proportion(20_000, 2_230)
    p = sequential_proportions(a, b).p_value
    assert p is not None and 0.0 < p < 0.05
    touching = sequential_proportions(a, b, p).interval
    assert touching is not None
    assert touching.lower == pytest.approx(0.0, abs=1e-12)
    assert sequential_proportions(a, b, p * 1.001).interval.lower > 0  # type: ignore[union-attr]
    assert sequential_proportions(a, b, p * 0.999).interval.lower < 0  # type: ignore[union-attr]


def test_interval_is_wider_at_smaller_alpha() -> None:
    a, b = Proportion(5_000, 500), Proportion(5_000, 540)
    widths = []
    for alpha in (0.5, 0.2, 0.1, 0.05, 0.01, 0.001, 1e-6):
        interval = sequential_proportions(a, b, alpha).interval
        assert interval is not None
        widths.append(interval.upper - interval.lower)
    assert all(w1 < w2 for w1, w2 in itertools.pairwise(widths))


def test_interval_is_wider_than_the_fixed_horizon_one_and_narrows_with_users() -> None:
    previous = math.inf
    for n in (100, 1_000, 10_000, 100_000, 1_000_000, 10**8):
        a, b = Proportion(n, n // 10), Proportion(n, n // 10)
        interval = sequential_proportions(a, b).interval
        assert interval is not None
        half = (interval.upper - interval.lower) / 2
        fixed = stats.norm.isf(0.025) * math.sqrt(2 * 0.09 / n)
        assert half > fixed
        assert half < previous
        previous = half


def test_interval_at_any_alpha_uses_the_mixture_tuned_at_005() -> None:
    reference_library("confseq.boundaries")
    from confseq.boundaries import normal_mixture_bound as confseq_bound

    a, b = Proportion(3_000, 300), Proportion(4_000, 460)
    se = math.sqrt(0.09 / 3_000 + 0.115 * 0.885 / 4_000)
    for alpha in (0.01, 0.1):
        interval = sequential_proportions(a, b, alpha, 7_000).interval
        assert interval is not None
        expected = se * float(confseq_bound(7_000, alpha, 7_000, 0.05, False)) / math.sqrt(7_000)
        assert (interval.upper - interval.lower) / 2 == pytest.approx(expected, rel=1e-9)


def test_undefined_results() -> None:
    ten = Proportion(1_000, 100)
    for a, b in [
        (Proportion(), ten),
        (ten, Proportion()),
        (Proportion(10, 11), ten),
        (Proportion(-1, 0), ten),
    ]:
        assert sequential_proportions(a, b) == SequentialResult(None, None, None)
    for a, b in [
        (Proportion(100, 0), Proportion(100, 0)),
        (Proportion(5, 5), Proportion(9, 9)),
        (Proportion(100, 0), Proportion(100, 100)),
    ]:
        result = sequential_proportions(a, b)
        assert result.absolute_lift is not None
        assert (result.interval, result.p_value, result.significant) == (None, None, False)
    spent = SampleMean(3, 3 * 999, 3 * 999 * 999)
    for a, b in [
        (SampleMean(), spent),
        (SampleMean(1, 5, 25), spent),
        (spent, spent),
        (SampleMean(2, math.nan, 1.0), spent),
    ]:
        result = sequential_means(a, b)
        assert (result.interval, result.p_value) == (None, None)
    for tuning in (0, -10, math.nan, math.inf, 5e-324):
        result = sequential_proportions(ten, Proportion(1_000, 130), tuning_users=tuning)
        assert result.absolute_lift == pytest.approx(0.03)
        assert (result.interval, result.p_value) == (None, None)


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.5, 1.5, math.nan, math.inf])
def test_alpha_outside_zero_one_leaves_the_interval_undefined(alpha: float) -> None:
    result = sequential_proportions(Proportion(1_000, 100), Proportion(1_000, 190), alpha)
    assert result.interval is None
    assert result.p_value is not None and result.p_value < 1e-3  # it does not use alpha
    assert result.significant is False
    means = sequential_means(SampleMean(10, 10, 20), SampleMean(10, 20, 60), alpha)
    assert means.interval is None and means.p_value is not None


def test_one_arm_without_variance_is_enough() -> None:
    result = sequential_proportions(Proportion(500, 0), Proportion(500, 25))
    assert result.interval is not None and result.p_value is not None
    assert result.interval.lower < 0.05 < result.interval.upper


def test_huge_arms() -> None:
    n = 10**15
    result = sequential_proportions(Proportion(n, n // 10), Proportion(n, n // 10 + n // 10_000))
    assert result.interval is not None and result.p_value == 0.0
    assert 0 < result.interval.lower < 1e-4 < result.interval.upper < 1.001e-4
    means = sequential_means(
        SampleMean(10**12, 5 * 10**12, 30 * 10**12), SampleMean(10**12, 5 * 10**12, 30 * 10**12)
    )
    assert means.interval is not None and means.p_value == 1.0
    assert means.interval.lower == -means.interval.upper


def test_proportion_interval_stays_within_minus_one_one() -> None:
    result = sequential_proportions(Proportion(2, 1), Proportion(3, 1), 0.05)
    assert result.interval is not None
    assert (result.interval.lower, result.interval.upper) == (-1.0, 1.0)


def test_result_is_a_frozen_value() -> None:
    result = sequential_proportions(Proportion(100, 10), Proportion(100, 20), 0.1, 2_000)
    assert result.level == pytest.approx(0.9)
    assert (result.alpha, result.tuning_users) == (0.1, 2_000)
    with pytest.raises(FrozenInstanceError):
        result.alpha = 0.2  # type: ignore[misc]
    assert not hasattr(result, "__dict__")


@settings(max_examples=300, deadline=None)
@given(
    st.integers(-5, 10**12),
    st.integers(-5, 10**12),
    st.integers(-5, 10**12),
    st.integers(-5, 10**12),
    st.floats(allow_nan=True),
    st.floats(allow_nan=True),
)
def test_odd_inputs_give_finite_numbers_or_none(
    n_a: int, x_a: int, n_b: int, x_b: int, alpha: float, tuning: float
) -> None:
    for result in (
        sequential_proportions(Proportion(n_a, x_a), Proportion(n_b, x_b), alpha, tuning),
        sequential_means(SampleMean(n_a, x_a, x_b), SampleMean(n_b, x_b, x_a), alpha, tuning),
    ):
        numbers = [result.absolute_lift, result.p_value]
        if result.interval is not None:
            numbers += [result.interval.lower, result.interval.upper]
            assert result.interval.lower <= result.interval.upper
        for number in numbers:
            assert number is None or (isinstance(number, float) and math.isfinite(number))
        if result.p_value is not None:
            assert 0.0 <= result.p_value <= 1.0


def test_importing_does_not_load_slow_modules() -> None:
    code = (
        "import sys; import domain.stats.sequential; "
        "print(sorted(m for m in ('scipy.stats', 'scipy.optimize', 'scipy.integrate') "
        "if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert out.stdout.strip() == "[]"
