"""Seeded Monte Carlo: the confidence sequences keep their promise under peeking.

Every simulated experiment is looked at after each 100 users per arm, 200 looks up to 20,000 per
arm. The sequential p-value may cross 0.05 at ANY look in at most 5% of A/A experiments; the
fixed-horizon test read the same way crosses far more often. The looks are computed with a
vectorised copy of the published formulas (Howard et al. 2021's two-sided normal mixture,
Waudby-Smith et al. 2023's asymptotic sequence), and the service's own functions are called on
a subsample of the experiments to show that they agree with it.
"""

from __future__ import annotations

import math

import numpy as np

from domain.stats import Proportion, SampleMean, two_proportion_test
from domain.stats.sequential import (
    DEFAULT_TUNING_USERS,
    sequential_means,
    sequential_proportions,
)

SIMULATIONS = 2_000
STEP, LOOKS = 100, 200  # users per arm between looks; 20,000 per arm at the last
CHECKED = 60  # experiments whose every look is also computed by the service's functions
ALPHA = 0.05


def _three_standard_errors(rate: float, simulations: int) -> float:
    return 3.0 * math.sqrt(rate * (1.0 - rate) / simulations)


def _rho(tuning: float, alpha_opt: float = 0.05) -> float:
    log_inv = math.log(1.0 / alpha_opt)
    return tuning / (2.0 * log_inv + math.log(1.0 + 2.0 * log_inv))


def _half_width(se_sq: np.ndarray, users: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    rho = _rho(DEFAULT_TUNING_USERS)
    bound = np.sqrt((users + rho) * (np.log(1.0 + users / rho) + 2.0 * math.log(1.0 / alpha)))
    return np.sqrt(users * se_sq) * bound / users


def _p_value(d: np.ndarray, se_sq: np.ndarray, users: np.ndarray) -> np.ndarray:
    rho = _rho(DEFAULT_TUNING_USERS)
    with np.errstate(divide="ignore", invalid="ignore"):
        s_sq = users * d * d / se_sq  # (N d / sigma)², sigma² = N · se²
        log_mixture = 0.5 * np.log(rho / (users + rho)) + s_sq / (2.0 * (users + rho))
        return np.where(se_sq > 0, np.minimum(1.0, np.exp(-log_mixture)), np.nan)


def _users_per_arm() -> np.ndarray:
    return STEP * np.arange(1, LOOKS + 1, dtype=float)


def _proportion_looks(rng: np.random.Generator, rate_a: float, rate_b: float):
    x_a = np.cumsum(rng.binomial(STEP, rate_a, size=(SIMULATIONS, LOOKS)), axis=1)
    x_b = np.cumsum(rng.binomial(STEP, rate_b, size=(SIMULATIONS, LOOKS)), axis=1)
    n = _users_per_arm()
    p_a, p_b = x_a / n, x_b / n
    se_sq = p_a * (1 - p_a) / n + p_b * (1 - p_b) / n
    return x_a, x_b, p_b - p_a, se_sq


def test_a_a_peeking_proportions_keeps_the_error_rate() -> None:
    rng = np.random.default_rng(20240612)
    x_a, x_b, d, se_sq = _proportion_looks(rng, 0.10, 0.10)
    n = _users_per_arm()
    p = _p_value(d, se_sq, 2 * n)

    # The service's function gives the same p-value at every look of a subsample.
    for i in range(CHECKED):
        for k in range(LOOKS):
            result = sequential_proportions(
                Proportion(int(n[k]), int(x_a[i, k])), Proportion(int(n[k]), int(x_b[i, k]))
            )
            assert result.p_value is not None
            assert abs(result.p_value - p[i, k]) <= 1e-9 * max(p[i, k], 1e-300)
            assert result.significant == (p[i, k] < ALPHA)

    sequential_rate = float(np.mean(np.any(p < ALPHA, axis=1)))

    # The fixed-horizon pooled z-test read at every look: the service's own at the last look.
    pooled = (x_a + x_b) / (2 * n)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = d / np.sqrt(pooled * (1 - pooled) * 2 / n)
    fixed_p = np.array(
        [math.erfc(abs(v) / math.sqrt(2)) if math.isfinite(v) else 1.0 for v in z.ravel()]
    ).reshape(z.shape)
    for i in range(CHECKED):
        last = two_proportion_test(
            Proportion(int(n[-1]), int(x_a[i, -1])), Proportion(int(n[-1]), int(x_b[i, -1]))
        )
        assert last.p_value is not None and abs(last.p_value - fixed_p[i, -1]) < 1e-9
    fixed_rate = float(np.mean(np.any(fixed_p < ALPHA, axis=1)))
    fixed_once = float(np.mean(fixed_p[:, -1] < ALPHA))

    print(
        f"A/A proportions, {LOOKS} looks: sequential {sequential_rate:.4f}, "
        f"fixed-horizon peeking {fixed_rate:.4f} (read once: {fixed_once:.4f})"
    )
    assert sequential_rate <= ALPHA + _three_standard_errors(ALPHA, SIMULATIONS), sequential_rate
    assert fixed_rate > 0.15, fixed_rate
    assert abs(fixed_once - ALPHA) <= _three_standard_errors(ALPHA, SIMULATIONS)  # valid once


def test_a_a_peeking_value_per_user_keeps_the_error_rate() -> None:
    rng = np.random.default_rng(20240613)
    n = _users_per_arm()
    arms = []
    for _ in range(2):
        # A value per user: 10% of users buy, for an exponential amount (mean 50); the rest 0.
        buyers = rng.binomial(STEP, 0.10, size=(SIMULATIONS, LOOKS))
        amounts = rng.exponential(50.0, size=int(buyers.sum()))
        ends = np.cumsum(buyers.ravel())  # each look's last buyer, experiments one after another
        totals, squares = (
            np.concatenate([[0.0], np.cumsum(v)])[ends].reshape(SIMULATIONS, LOOKS)
            for v in (amounts, amounts * amounts)
        )
        # Cumulative within each experiment: minus what the experiments before it summed.
        totals -= np.concatenate([[0.0], totals[:-1, -1]])[:, None]
        squares -= np.concatenate([[0.0], squares[:-1, -1]])[:, None]
        arms.append((totals, squares))
    (s_a, ss_a), (s_b, ss_b) = arms
    var_a = (ss_a - s_a * s_a / n) / (n - 1)
    var_b = (ss_b - s_b * s_b / n) / (n - 1)
    d = s_b / n - s_a / n
    se_sq = var_a / n + var_b / n
    p = _p_value(d, se_sq, 2 * n)

    for i in range(CHECKED):
        for k in range(0, LOOKS, 4):
            result = sequential_means(
                SampleMean(int(n[k]), float(s_a[i, k]), float(ss_a[i, k])),
                SampleMean(int(n[k]), float(s_b[i, k]), float(ss_b[i, k])),
            )
            assert result.p_value is not None
            assert abs(result.p_value - p[i, k]) <= 1e-7 * max(p[i, k], 1e-300)

    sequential_rate = float(np.mean(np.any(p < ALPHA, axis=1)))
    # Welch's statistic read at every look (normal quantile: hundreds of users per arm).
    fixed_rate = float(np.mean(np.any(np.abs(d) / np.sqrt(se_sq) > 1.959963984540054, axis=1)))
    print(
        f"A/A value per user, {LOOKS} looks: sequential {sequential_rate:.4f}, "
        f"fixed-horizon peeking {fixed_rate:.4f}"
    )
    assert sequential_rate <= ALPHA + _three_standard_errors(ALPHA, SIMULATIONS), sequential_rate
    assert fixed_rate > 0.15, fixed_rate


def test_sequence_covers_a_real_difference_at_every_look() -> None:
    rng = np.random.default_rng(20240614)
    x_a, x_b, d, se_sq = _proportion_looks(rng, 0.10, 0.11)
    n = _users_per_arm()
    half = _half_width(se_sq, 2 * n)
    truth = 0.11 - 0.10

    for i in range(CHECKED):
        for k in range(0, LOOKS, 4):
            interval = sequential_proportions(
                Proportion(int(n[k]), int(x_a[i, k])), Proportion(int(n[k]), int(x_b[i, k]))
            ).interval
            assert interval is not None
            assert abs(interval.lower - max(-1.0, d[i, k] - half[i, k])) < 1e-12
            assert abs(interval.upper - min(1.0, d[i, k] + half[i, k])) < 1e-12

    covered_always = np.all(np.abs(d - truth) <= half, axis=1)
    coverage = float(np.mean(covered_always))
    # The effect is found: by the last look most experiments exclude 0.
    power = float(np.mean(np.any(_p_value(d, se_sq, 2 * n) < ALPHA, axis=1)))
    print(f"10% vs 11%: covered at all {LOOKS} looks {coverage:.4f}; detected {power:.4f}")
    assert coverage >= 0.95 - _three_standard_errors(0.95, SIMULATIONS), coverage
    assert power > 0.5, power
