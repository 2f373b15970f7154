"""Test vectors of the fixed-horizon statistics, from statsmodels and scipy alone.

Run from the repository's root: ``python -m tests.stats_vectors.gen_frequentist`` (numpy, scipy,
statsmodels); writes docs/stats-vectors/frequentist.json. Imports nothing of the service: the expected values
are the references' own, so the replay (tests/unit/test_vectors_frequentist.py) checks the
service against them, never against itself.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    proportions_ztest,
)

from tests.stats_vectors.vectors import finite_or_none, write

REL = {"rel": 1e-9, "abs": 1e-12}


def two_proportion_cases() -> list[dict]:
    arms = [
        ((1_000, 100), (1_000, 130)),
        ((10_000, 1_000), (10_000, 1_100)),
        ((50, 0), (50, 3)),
        ((500, 500), (500, 480)),
        ((120, 90), (80, 80)),
        ((1_000_000, 31_000), (1_000_000, 31_400)),
        ((7, 1), (9, 2)),
        ((100, 10), (100, 10)),
        ((20_000, 1), (20_000, 9)),
    ]
    cases = []
    for (n_a, x_a), (n_b, x_b) in arms:
        z, p = proportions_ztest([x_b, x_a], [n_b, n_a])
        low, up = confint_proportions_2indep(x_b, n_b, x_a, n_a, method="newcomb", compare="diff")
        diff = x_b / n_b - x_a / n_a
        cases.append({
            "statistic": "two_proportion_test",
            "input": {"control": {"n": n_a, "x": x_a}, "variant": {"n": n_b, "x": x_b}, "alpha": 0.05},
            "expected": {
                "absolute_lift": diff,
                "relative_lift": None if x_a == 0 else diff / (x_a / n_a),
                "statistic": finite_or_none(z), "p_value": finite_or_none(p),
                "interval": {"lower": float(low), "upper": float(up)},
            },
            "tolerance": REL,
            "reference": "statsmodels proportions_ztest (pooled z); confint_proportions_2indep(method='newcomb')",
        })
    for (n_a, x_a), (n_b, x_b) in [((0, 0), (100, 5)), ((100, 0), (100, 0)), ((10, 10), (10, 10))]:
        # Undefined: an empty arm has no rate; with no variance at all there is no z.
        interval = None
        if n_a and n_b:
            low, up = confint_proportions_2indep(x_b, n_b, x_a, n_a, method="newcomb", compare="diff")
            interval = {"lower": float(low), "upper": float(up)}
        cases.append({
            "statistic": "two_proportion_test",
            "input": {"control": {"n": n_a, "x": x_a}, "variant": {"n": n_b, "x": x_b}, "alpha": 0.05},
            "expected": {
                "absolute_lift": None if not (n_a and n_b) else x_b / n_b - x_a / n_a,
                "relative_lift": None if not (n_a and n_b and x_a) else (x_b / n_b - x_a / n_a) / (x_a / n_a),
                "statistic": None, "p_value": None, "interval": interval,
            },
            "tolerance": REL,
            "reference": "undefined by definition; interval from statsmodels where both arms have users",
        })
    return cases


def wilson_cases() -> list[dict]:
    cases = []
    for x, n, alpha in [(0, 10, 0.05), (10, 10, 0.05), (2, 10_000, 0.05), (314_159, 1_000_000, 0.05),
                        (37, 250, 0.01), (1, 1, 0.05), (7, 13, 0.1)]:
        low, up = proportion_confint(x, n, alpha=alpha, method="wilson")
        cases.append({
            "statistic": "wilson_interval",
            "input": {"n": n, "x": x, "alpha": alpha},
            "expected": {"interval": {"lower": float(low), "upper": float(up)}},
            "tolerance": REL,
            "reference": "statsmodels proportion_confint(method='wilson')",
        })
    return cases


def welch_cases() -> list[dict]:
    cases = []
    rng = np.random.default_rng(20261204)
    for n_a, n_b, conv_a, conv_b, order in [(50, 60, 0.3, 0.35, 20.0), (1_000, 1_000, 0.05, 0.06, 40.0),
                                            (100, 100_000, 0.1, 0.1, 30.0), (10_000, 10_000, 0.5, 0.52, 10.0)]:
        arms = []
        for n, conv in ((n_a, conv_a), (n_b, conv_b)):
            values = np.where(rng.random(n) < conv, np.round(rng.lognormal(math.log(order), 1.0, n), 2), 0.0)
            # Integer cents: the sums are exact, so the reference and the service see the same data.
            cents = np.round(values * 100).astype(np.int64)
            arms.append(cents)
        a, b = arms
        t = stats.ttest_ind(b, a, equal_var=False)
        va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
        df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
        half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
        diff = b.mean() - a.mean()
        cases.append({
            "statistic": "welch_test",
            "input": {
                "control": {"n": len(a), "sum": int(a.sum()), "sum_squares": int((a * a).sum())},
                "variant": {"n": len(b), "sum": int(b.sum()), "sum_squares": int((b * b).sum())},
                "alpha": 0.05,
            },
            "expected": {
                "absolute_lift": float(diff), "relative_lift": float(diff / a.mean()),
                "statistic": float(t.statistic), "p_value": float(t.pvalue), "degrees_of_freedom": float(df),
                "interval": {"lower": float(diff - half), "upper": float(diff + half)},
            },
            "tolerance": {"rel": 1e-8, "abs": 1e-10},
            "reference": "scipy.stats.ttest_ind(equal_var=False) on the per-user values; interval with scipy's t",
        })
    return cases


def srm_cases() -> list[dict]:
    cases = []
    for observed, shares in [([5_000, 5_000], [50, 50]), ([5_050, 4_950], [50, 50]), ([900, 2_100], [30, 70]),
                             ([3_000, 3_400, 3_600], [33.33, 33.33, 33.34]), ([10_000, 10_500], [50, 50]),
                             ([1_000, 1_020, 980, 1_010, 2_100], [20, 20, 20, 20, 40])]:
        total = sum(observed)
        expected = [total * s / sum(shares) for s in shares]
        ref = stats.chisquare(observed, expected)
        cases.append({
            "statistic": "srm_check",
            "input": {"observed": observed, "shares": shares, "alpha": 0.001},
            "expected": {"chi_square": float(ref.statistic), "p_value": float(ref.pvalue),
                         "mismatch": bool(ref.pvalue < 0.001)},
            "tolerance": REL,
            "reference": "scipy.stats.chisquare",
        })
    return cases


def adjustment_cases() -> list[dict]:
    cases = []
    for statistic, method, p_value_sets in [
        ("holm_adjust", "holm", [[0.01, 0.04, 0.03], [0.5], [0.001, 0.2, 0.2, 0.049, 0.9], [0.04, 0.04]]),
        ("benjamini_hochberg_adjust", "fdr_bh",
         [[0.01, 0.04, 0.03], [0.5], [0.001, 0.2, 0.2, 0.049, 0.9], [0.04, 0.04], [0.9, 0.01, 0.02, 0.5]]),
    ]:
        for ps in p_value_sets:
            cases.append({
                "statistic": statistic,
                "input": {"p_values": ps},
                "expected": {"adjusted": [float(p) for p in multipletests(ps, method=method)[1]]},
                "tolerance": REL,
                "reference": f"statsmodels multipletests(method='{method}')",
            })
    return cases


def main() -> None:
    write('frequentist', two_proportion_cases() + wilson_cases() + welch_cases() + srm_cases() + adjustment_cases(), ('numpy', 'scipy', 'statsmodels'))


if __name__ == "__main__":
    main()
