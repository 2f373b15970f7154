"""Test vectors of the sequential (always-valid) statistics, from confseq and numpy alone.

Run from the repository's root: ``python -m tests.stats_vectors.gen_sequential`` (numpy, scipy,
confseq 0.0.11); writes docs/stats-vectors/sequential.json. Imports nothing of the service. The boundaries are
confseq's own ``normal_mixture_bound(..., is_one_sided=False)``; the intervals are re-derived here
from that boundary, and the p-values from confseq's ``normal_log_mixture`` (the log of the
mixture martingale, so p = min(1, 1/martingale)); both are cross-checked against gbstats'
formulas (Waudby-Smith et al. 2023, eqs. 9, 155, 161 of arXiv:2103.06476v7 as gbstats cites them)
before they are written. The replay is tests/unit/test_vectors_sequential.py.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from confseq.boundaries import normal_log_mixture, normal_mixture_bound

from tests.stats_vectors.vectors import finite_or_none, write

REL = {"rel": 1e-9, "abs": 1e-12}
TUNING_ALPHA = 0.05  # the alpha the mixture is tuned at, whatever alpha the interval is asked at
DEFAULT_TUNING = 10_000


def _bound(v: float, alpha: float, v_opt: float, alpha_opt: float) -> float:
    return float(normal_mixture_bound(v, alpha, v_opt, alpha_opt, False))


def _gbstats(d: float, se_sq: float, n: float, tuning: float, alpha: float) -> tuple[float, float]:
    # gbstats' sequential_rho, sequential_interval_halfwidth and sequential_p_value, written out
    # from their published formulas, with rho tuned at TUNING_ALPHA.
    log_a0 = math.log(TUNING_ALPHA)
    rho = math.sqrt((-2 * log_a0 + math.log(-2 * log_a0 + 1)) / tuning)
    s2 = se_sq * n
    n_rho_sq_p1 = n * rho**2 + 1
    half = math.sqrt(s2) * math.sqrt(
        2 * n_rho_sq_p1 * math.log(math.sqrt(n_rho_sq_p1) / alpha) / (n * rho) ** 2
    )
    t_sq = d**2 * n / se_sq
    log_evalue = rho**2 * t_sq / (2 * n_rho_sq_p1) - 0.5 * math.log(n_rho_sq_p1)
    p = 1.0 if log_evalue <= 0 else min(math.exp(-log_evalue), 1.0)
    return half, p


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= max(1e-12, 1e-9 * abs(b))


def _sequence(
    d: float, var_a: float, n_a: float, var_b: float, n_b: float, alpha: float, tuning: float
) -> dict:
    """The asymptotic CS of d with unit-variance intrinsic time N = n_a + n_b."""
    n = n_a + n_b
    se_sq = var_a / n_a + var_b / n_b
    sigma = math.sqrt(n * se_sq)
    s = n * abs(d) / sigma
    log_mg = float(normal_log_mixture(s, n, tuning, TUNING_ALPHA, False))
    p = min(1.0, math.exp(-log_mg))
    interval = None
    if 0 < alpha < 1:
        half = sigma * _bound(n, alpha, tuning, TUNING_ALPHA) / n
        interval = {"lower": d - half, "upper": d + half}
        gb_half, gb_p = _gbstats(d, se_sq, n, tuning, alpha)
        assert _close(half, gb_half), (half, gb_half)
        assert _close(p, gb_p) or (p < 1e-300 and gb_p < 1e-300), (p, gb_p)
        # p < alpha exactly when the interval excludes 0 (one rho for every alpha).
        assert (p < alpha) == (abs(d) > half) or abs(abs(d) - half) < 1e-12 * half
    return {"absolute_lift": d, "interval": interval, "p_value": finite_or_none(p)}


def bound_cases() -> list[dict]:
    cases = []
    grid = [
        (1.0, 0.05, 1.0),
        (100.0, 0.05, 10_000.0),
        (10_000.0, 0.05, 10_000.0),
        (1e6, 0.05, 10_000.0),
        (5_000.0, 0.01, 5_000.0),
        (200.0, 0.1, 1e5),
        (1e9, 0.001, 1e4),
        (1e12, 0.2, 1e6),
        (0.5, 0.5, 3.0),
        (0.0, 0.05, 100.0),
        (3e4, 1e-6, 2e4),
        (7.0, 0.9, 1e-2),
        (1e15, 0.05, 1e9),
        (40_000.0, 0.05, 5_000.0),
    ]
    for v, alpha, v_opt in grid:
        cases.append(
            {
                "statistic": "normal_mixture_bound",
                "input": {"v": v, "alpha": alpha, "v_opt": v_opt},
                "expected": {"bound": _bound(v, alpha, v_opt, alpha)},
                "tolerance": {"rel": 1e-9},
                "reference": "confseq.boundaries.normal_mixture_bound(v, alpha, v_opt, "
                "alpha_opt=alpha, is_one_sided=False)",
            }
        )
    for v, alpha, v_opt, alpha_opt in [
        (10_000.0, 0.01, 10_000.0, 0.05),
        (500.0, 0.2, 1e4, 0.05),
        (1e7, 0.05, 1e3, 0.001),
    ]:
        cases.append(
            {
                "statistic": "normal_mixture_bound",
                "input": {"v": v, "alpha": alpha, "v_opt": v_opt, "alpha_opt": alpha_opt},
                "expected": {"bound": _bound(v, alpha, v_opt, alpha_opt)},
                "tolerance": {"rel": 1e-9},
                "reference": "confseq.boundaries.normal_mixture_bound(v, alpha, v_opt, alpha_opt, "
                "is_one_sided=False)",
            }
        )
    for v, alpha, v_opt in [
        (-1.0, 0.05, 100.0),
        (100.0, 0.0, 100.0),
        (100.0, 1.0, 100.0),
        (100.0, 0.05, 0.0),
        (100.0, 1.5, 100.0),
        (100.0, 0.05, -5.0),
    ]:
        cases.append(
            {
                "statistic": "normal_mixture_bound",
                "input": {"v": v, "alpha": alpha, "v_opt": v_opt},
                "expected": {"bound": None},
                "tolerance": {"rel": 1e-9},
                "reference": "undefined: v < 0, alpha outside (0, 1) or v_opt <= 0",
            }
        )
    return cases


def proportion_cases() -> list[dict]:
    defined = [
        # (n_a, x_a), (n_b, x_b), alpha, tuning users
        ((1_000, 100), (1_000, 130), 0.05, DEFAULT_TUNING),
        ((10_000, 1_000), (10_000, 1_100), 0.05, DEFAULT_TUNING),
        ((20_000, 2_000), (20_000, 2_200), 0.05, DEFAULT_TUNING),
        ((20_000, 2_000), (20_000, 2_200), 0.01, DEFAULT_TUNING),
        ((20_000, 2_000), (20_000, 2_200), 0.2, DEFAULT_TUNING),
        ((5_000, 500), (5_000, 560), 0.05, 5_000),
        ((5_000, 500), (5_000, 560), 0.05, 100),
        ((5_000, 500), (5_000, 560), 0.05, 1_000_000),
        ((50, 0), (50, 3), 0.05, DEFAULT_TUNING),  # no conversions in the control
        ((500, 500), (500, 480), 0.05, DEFAULT_TUNING),  # all converted in the control
        ((120, 90), (80, 80), 0.05, DEFAULT_TUNING),
        ((100, 10), (100, 10), 0.05, DEFAULT_TUNING),  # no difference: p = 1
        ((2, 1), (1, 0), 0.05, DEFAULT_TUNING),  # tiny arms
        ((7, 1), (9, 2), 0.1, DEFAULT_TUNING),
        ((1_000_000_000, 31_000_000), (1_000_000_000, 31_100_000), 0.05, DEFAULT_TUNING),
        ((1_000_000, 31_000), (1_000_000, 31_400), 0.05, DEFAULT_TUNING),
        ((10_000, 100), (10_000, 5_000), 0.05, DEFAULT_TUNING),  # overwhelming: p underflows
        ((20_000, 1), (20_000, 9), 0.05, DEFAULT_TUNING),  # rare events
        ((3_000, 330), (7_000, 700), 0.001, 50_000),
    ]
    cases = []
    for (n_a, x_a), (n_b, x_b), alpha, tuning in defined:
        p_a, p_b = x_a / n_a, x_b / n_b
        expected = _sequence(p_b - p_a, p_a * (1 - p_a), n_a, p_b * (1 - p_b), n_b, alpha, tuning)
        if expected["interval"] is not None:  # a difference of two rates lies in [-1, 1]
            interval = expected["interval"]
            interval["lower"], interval["upper"] = (
                max(-1.0, interval["lower"]),
                min(1.0, interval["upper"]),
            )
        cases.append(
            _proportion_case(
                n_a,
                x_a,
                n_b,
                x_b,
                alpha,
                tuning,
                expected,
                "interval: d ± sqrt(N·s_d²)·confseq normal_mixture_bound(N, "
                "alpha, tuning, 0.05, two-sided)/N; p: min(1, exp(-confseq "
                "normal_log_mixture(N|d|/sigma, N, tuning, 0.05, two-sided))); "
                "interval cut to [-1, 1]",
            )
        )
    # The interval alone is undefined for an alpha outside (0, 1); the p-value does not use it.
    for alpha in (0.0, 1.0, 1.5):
        expected = _sequence(0.03, 0.09, 1_000, 0.13 * 0.87, 1_000, alpha, DEFAULT_TUNING)
        cases.append(
            _proportion_case(
                1_000,
                100,
                1_000,
                130,
                alpha,
                DEFAULT_TUNING,
                expected,
                "interval undefined for alpha outside (0, 1); p-value as above",
            )
        )
    undefined = [
        ((100, 0), (100, 0), None),  # no variance in either arm
        ((10, 10), (10, 10), None),
        ((100, 0), (100, 100), None),  # 0% against 100%: still no variance
        ((1, 0), (1, 1), None),
        ((0, 0), (100, 5), "empty"),
        ((100, 5), (0, 0), "empty"),
        ((100, 120), (100, 5), "empty"),  # x > n is no proportion
    ]
    for (n_a, x_a), (n_b, x_b), kind in undefined:
        lift = None if kind == "empty" else x_b / n_b - x_a / n_a
        expected = {"absolute_lift": lift, "interval": None, "p_value": None}
        cases.append(
            _proportion_case(
                n_a,
                x_a,
                n_b,
                x_b,
                0.05,
                DEFAULT_TUNING,
                expected,
                "undefined: an arm without a proportion or no variance",
            )
        )
    for tuning in (0, -100):
        expected = {"absolute_lift": 0.03, "interval": None, "p_value": None}
        cases.append(
            _proportion_case(
                1_000,
                100,
                1_000,
                130,
                0.05,
                tuning,
                expected,
                "undefined: tuning users must be positive",
            )
        )
    return cases


def _proportion_case(n_a, x_a, n_b, x_b, alpha, tuning, expected, reference) -> dict:
    return {
        "statistic": "sequential_proportions",
        "input": {
            "control": {"n": n_a, "x": x_a},
            "variant": {"n": n_b, "x": x_b},
            "alpha": alpha,
            "tuning_users": tuning,
        },
        "expected": expected,
        "tolerance": REL,
        "reference": reference,
    }


def _exact_variance(n: int, total: int, total_sq: int) -> float:
    return float((Fraction(total_sq) - Fraction(total) ** 2 / n) / (n - 1))


def mean_cases() -> list[dict]:
    rng = np.random.default_rng(20240611)
    cases = []

    def cents(n: int, conversion: float, mean_cents: float) -> np.ndarray:
        converted = rng.random(n) < conversion
        return np.where(converted, np.ceil(rng.exponential(mean_cents, n)), 0).astype(np.int64)

    drawn = [
        (cents(1_000, 0.1, 5_000), cents(1_000, 0.1, 5_500), 0.05, DEFAULT_TUNING),
        (cents(20_000, 0.1, 5_000), cents(20_000, 0.11, 5_000), 0.05, DEFAULT_TUNING),
        (cents(20_000, 0.1, 5_000), cents(20_000, 0.11, 5_000), 0.01, 5_000),
        (cents(3_000, 0.5, 1_000), cents(6_000, 0.5, 1_000), 0.1, 100_000),
        (cents(200, 1.0, 2_000), cents(250, 1.0, 2_600), 0.05, DEFAULT_TUNING),
        (np.zeros(500, dtype=np.int64), cents(500, 0.05, 3_000), 0.05, DEFAULT_TUNING),
        (cents(2, 1.0, 100), cents(2, 1.0, 100), 0.05, DEFAULT_TUNING),
    ]
    for values_a, values_b, alpha, tuning in drawn:
        # From the users' values themselves: numpy's mean and var(ddof=1).
        arms = []
        for values in (values_a, values_b):
            arms.append(
                (
                    len(values),
                    int(values.sum()),
                    int((values * values).sum()),
                    float(values.mean()),
                    float(values.var(ddof=1)),
                )
            )
        (n_a, s_a, ss_a, m_a, v_a), (n_b, s_b, ss_b, m_b, v_b) = arms
        expected = _sequence(m_b - m_a, v_a, n_a, v_b, n_b, alpha, tuning)
        cases.append(
            _mean_case(
                (n_a, s_a, ss_a),
                (n_b, s_b, ss_b),
                alpha,
                tuning,
                expected,
                "numpy mean/var(ddof=1) of seeded values; interval and p from "
                "confseq normal_mixture_bound / normal_log_mixture as for "
                "proportions",
            )
        )
    summed = [
        # Huge arms given by their sums alone (exact integer cents).
        (
            (100_000_000, 250_000_000_000, 3_125_000_000_000_000),
            (100_000_000, 251_000_000_000, 3_140_000_000_000_000),
            0.05,
            DEFAULT_TUNING,
        ),
        ((5, 50, 700), (4, 60, 1_000), 0.05, DEFAULT_TUNING),
    ]
    for arm_a, arm_b, alpha, tuning in summed:
        v_a, v_b = _exact_variance(*arm_a), _exact_variance(*arm_b)
        d = arm_b[1] / arm_b[0] - arm_a[1] / arm_a[0]
        expected = _sequence(d, v_a, arm_a[0], v_b, arm_b[0], alpha, tuning)
        cases.append(
            _mean_case(
                arm_a,
                arm_b,
                alpha,
                tuning,
                expected,
                "exact rational variance of the sums; interval and p from "
                "confseq as for proportions",
            )
        )
    undefined = [
        ((1, 500, 250_000), (100, 1_000, 100_000)),  # one user: no sample variance
        ((0, 0, 0), (100, 1_000, 100_000)),  # empty arm
        ((100, 99_900, 99_800_100), (100, 99_900, 99_800_100)),  # everyone spent 9.99
    ]
    for arm_a, arm_b in undefined:
        lift = None if not (arm_a[0] and arm_b[0]) else arm_b[1] / arm_b[0] - arm_a[1] / arm_a[0]
        expected = {"absolute_lift": lift, "interval": None, "p_value": None}
        cases.append(
            _mean_case(
                arm_a,
                arm_b,
                0.05,
                DEFAULT_TUNING,
                expected,
                "undefined: fewer than two users, or no variance in either arm",
            )
        )
    return cases


def _mean_case(arm_a, arm_b, alpha, tuning, expected, reference) -> dict:
    def arm(n, total, total_sq):
        return {"n": n, "sum": total, "sum_squares": total_sq}

    return {
        "statistic": "sequential_means",
        "input": {
            "control": arm(*arm_a),
            "variant": arm(*arm_b),
            "alpha": alpha,
            "tuning_users": tuning,
        },
        "expected": expected,
        "tolerance": REL,
        "reference": reference,
    }


def main() -> None:
    write('sequential', bound_cases() + proportion_cases() + mean_cases(), ('confseq', 'numpy', 'scipy'))


if __name__ == "__main__":
    main()
