"""Test vectors of the sequential SRM check and of sample size and power, from scipy and
statsmodels alone.

Run from the repository's root: ``python -m tests.stats_vectors.gen_srm_power`` (numpy, scipy,
statsmodels); writes docs/stats-vectors/srm_power.json. Imports nothing of the service: the expected values
are the references' own, so the replay (tests/unit/test_vectors_srm_power.py) checks the
service against them, never against itself.

- sequential_srm: log Bayes factor = scipy.stats.dirichlet_multinomial.logpmf(x, c · p, n) −
  scipy.stats.multinomial.logpmf(x, n, p) (Lindon & Malek 2022), p-value min(1, 1/BF).
- users_per_arm_*: statsmodels NormalIndPower().solve_power(..., alternative="two-sided"), with
  proportion_effectsize(p2, p1) (Cohen's h) or change / sqrt(variance) (Cohen's d).
- power_*: statsmodels NormalIndPower().power.
"""

from __future__ import annotations

import math
import sys
import warnings

import numpy as np
from scipy import optimize, special, stats
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize

from tests.stats_vectors.vectors import write

EPS = sys.float_info.epsilon
CONCENTRATION = 10_000.0
SRM_ALPHA = 0.001
POWER = NormalIndPower()
SAMPLE_SIZE_FIELDS = ("effect_size", "control_exact", "control", "variant", "total")


# --- sequential_srm ---------------------------------------------------------------------------


def _srm_case(
    observed: list, shares: list, alpha: float = SRM_ALPHA, concentration: float = CONCENTRATION
) -> dict:
    active = [(c, s) for c, s in zip(observed, shares) if s is not None and s > 0]
    leaked = any((s is None or s <= 0) and c > 0 for c, s in zip(observed, shares))
    x = [c for c, _ in active]
    p = np.array([s for _, s in active], dtype=float)
    p = p / p.sum()
    n = int(sum(x))
    log_bf = float(
        stats.dirichlet_multinomial.logpmf(x, concentration * p, n)
        - stats.multinomial.logpmf(x, n, p)
    )
    p_value = min(1.0, math.exp(-log_bf))
    # scipy subtracts log-gammas of size n log n (gammaln(n + 1), gammaln(n + c)): a few ulps of
    # those is its own rounding, far above 1e-9 from some millions of users on.
    tolerance = 1e-9 + 64 * EPS * float(special.gammaln(n + concentration + 1.0))
    return {
        "statistic": "sequential_srm",
        "input": {"observed": observed, "shares": shares, "alpha": alpha,
                  "concentration": concentration},
        "expected": {"log_bayes_factor": log_bf, "p_value": p_value,
                     "mismatch": bool(p_value < alpha) or leaked},
        "tolerance": {"abs": tolerance},
        "reference": "scipy.stats.dirichlet_multinomial.logpmf(x, c*p, n) - "
                     "scipy.stats.multinomial.logpmf(x, n, p); p = min(1, exp(-log BF))"
                     + ("; users in a variant with share 0: mismatch" if leaked else ""),
    }


def _srm_undefined(
    observed: list, shares: list, mismatch: bool, why: str, concentration: float = CONCENTRATION
) -> dict:
    return {
        "statistic": "sequential_srm",
        "input": {"observed": observed, "shares": shares, "alpha": SRM_ALPHA,
                  "concentration": concentration},
        "expected": {"log_bayes_factor": None, "p_value": None, "mismatch": mismatch},
        "tolerance": {"abs": 0.0},
        "reference": f"undefined by definition: {why}",
    }


def srm_cases() -> list[dict]:
    cases = [
        _srm_case([5_000, 5_000], [50, 50]),
        _srm_case([5_050, 4_950], [50, 50]),
        _srm_case([10_000, 10_500], [0.5, 0.5]),
        _srm_case([900, 2_100], [30, 70]),
        _srm_case([50_000, 51_200], [1, 1], alpha=0.05),  # flagged at 0.05 …
        _srm_case([50_000, 51_200], [1, 1]),  # … not at 0.001
        _srm_case([52_000, 48_000], [1, 1]),
        _srm_case([3_300, 3_350, 3_350], [1, 1, 1]),
        _srm_case([3_000, 3_400, 3_600], [33.3, 33.3, 33.4]),
        _srm_case([1_000, 1_020, 980, 1_010, 2_100], [20, 20, 20, 20, 40]),
        _srm_case([1_000, 1_200, 980, 1_010, 2_100], [0.2, 0.2, 0.2, 0.2, 0.4]),
        _srm_case([0, 0], [50, 50]),  # no users yet: BF 1
        _srm_case([1, 0], [50, 50]),  # one user
        _srm_case([0, 3], [50, 50]),
        _srm_case([0, 100], [50, 50]),  # an empty arm
        _srm_case([0, 1_000_000_000], [50, 50]),  # everyone in one arm: p underflows to 0
        _srm_case([1, 2_000_000], [50, 50]),
        _srm_case([5_000_000, 5_003_000], [50, 50]),  # ten million users
        _srm_case([400_000_000, 400_030_000, 399_990_000], [1, 1, 1]),  # 1.2 billion
        _srm_case([12, 0, 7], [1e-6, 1, 1]),  # a share of almost nothing
        _srm_case([5_050, 4_950], [50, 50], concentration=100.0),
        _srm_case([5_050, 4_950], [50, 50], concentration=1.0),
        _srm_case([5_050, 4_950], [50, 50], concentration=1e7),
        _srm_case([80, 20, 0, 0], [1, 1, 1, 1], alpha=0.01, concentration=0.5),
        _srm_case([5_000, 0, 5_100], [50, 0, 50]),  # share 0 and no users: left out
        _srm_case([5_000, 3, 5_100], [50, 0, 50]),  # users where the share is 0: mismatch
        _srm_case([5_000, 3, 5_100], [50, None, 50]),
    ]
    cases += [
        _srm_undefined([100], [100], False, "one variant"),
        _srm_undefined([100, 5], [100, 0], True, "one active variant; users in a share of 0"),
        _srm_undefined([], [], False, "no variants"),
        _srm_undefined([100, 100], [50, 50, 0], False, "lengths differ"),
        _srm_undefined([100, -1], [50, 50], False, "a negative count"),
        _srm_undefined([100, 2.5], [50, 50], False, "not a count of users"),
        _srm_undefined([100, None], [50, 50], False, "a missing count"),
        _srm_undefined([5_000, 5_500], [50, 50], False, "concentration 0: no prior", 0.0),
        _srm_undefined([5_000, 5_500], [50, 50], False, "a negative concentration", -1.0),
    ]
    return cases


# --- sample size and power --------------------------------------------------------------------


def _solve(effect: float, alpha: float, power: float, ratio: float) -> tuple[float, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = float(POWER.solve_power(effect_size=effect, alpha=alpha, power=power,
                                        ratio=ratio, alternative="two-sided"))
    reference = "statsmodels NormalIndPower().solve_power(alternative='two-sided')"
    if math.isnan(value):
        # solve_power searches nobs1 >= 2 only; below that, the root of statsmodels' own power
        # function, found to the last digits by scipy's brentq.
        value = optimize.brentq(
            lambda n: POWER.power(effect, n, alpha, ratio=ratio) - power, 1e-6, 2.0,
            xtol=1e-15, rtol=4 * EPS,
        )
        reference = "root of statsmodels NormalIndPower().power by scipy.optimize.brentq"
    return value, reference


def _sample_size(effect: float, alpha: float, power: float, ratio: float) -> tuple[dict, str]:
    exact, reference = _solve(effect, alpha, power, ratio)
    # statsmodels finds the root to 1e-5 users: keep to cases where rounding up is unambiguous.
    for value in (exact, ratio * exact):
        assert abs(value - round(value)) > 1e-4, (effect, alpha, power, ratio, exact)
    control, variant = math.ceil(exact), math.ceil(ratio * exact)
    expected = {"effect_size": float(effect), "control_exact": exact, "control": control,
                "variant": variant, "total": control + variant}
    return expected, reference


def proportion_cases() -> list[dict]:
    grid = [
        # (baseline, mde, relative, alpha, power, ratio)
        (0.05, 0.1, True, 0.05, 0.8, 1.0),
        (0.1, 0.05, True, 0.05, 0.8, 1.0),
        (0.5, 0.01, True, 0.05, 0.8, 1.0),
        (0.01, 0.2, True, 0.01, 0.9, 1.0),
        (0.3, 0.1, True, 0.1, 0.9, 0.5),
        (0.02, 0.1, True, 0.05, 0.8, 2.0),
        (0.1, -0.05, True, 0.05, 0.8, 1.0),  # a drop
        (0.1, 0.01, False, 0.05, 0.8, 1.0),  # one point, absolute
        (0.5, -0.02, False, 0.05, 0.9, 1.0),
        (0.999, -0.001, False, 0.05, 0.8, 1.0),  # near all converted
        (0.001, 0.01, True, 0.05, 0.8, 1.0),  # huge n: 1.6e8 per arm
        (0.2, 3.0, True, 0.05, 0.8, 1.0),  # tiny n: to 0.8
        (0.01, 0.98, False, 0.05, 0.8, 1.0),  # below statsmodels' search (n < 2)
    ]
    cases = []
    for baseline, mde, relative, alpha, power, ratio in grid:
        target = baseline * (1 + mde) if relative else baseline + mde
        expected, reference = _sample_size(
            float(proportion_effectsize(target, baseline)), alpha, power, ratio
        )
        cases.append({
            "statistic": "users_per_arm_proportions",
            "input": {"baseline_rate": baseline, "mde": mde, "relative": relative,
                      "alpha": alpha, "power": power, "ratio": ratio},
            "expected": expected,
            "tolerance": {"rel": 1e-6},
            "reference": f"{reference}; effect_size = proportion_effectsize(p2, p1)",
        })
    undefined = [
        (0.0, 0.1, True, 0.05, 0.8, 1.0, "baseline rate 0"),
        (1.0, -0.1, True, 0.05, 0.8, 1.0, "baseline rate 1"),
        (0.1, 0.0, True, 0.05, 0.8, 1.0, "no change"),
        (0.5, 1.0, True, 0.05, 0.8, 1.0, "a target rate of 1"),
        (0.6, 0.8, True, 0.05, 0.8, 1.0, "a target rate above 1"),
        (0.1, -0.2, False, 0.05, 0.8, 1.0, "a target rate below 0"),
        (0.1, 0.1, True, 0.0, 0.8, 1.0, "alpha 0"),
        (0.1, 0.1, True, 0.05, 1.0, 1.0, "power 1"),
        (0.1, 0.1, True, 0.05, 0.04, 1.0, "power below alpha: reached with no users"),
        (0.1, 0.1, True, 0.05, 0.8, 0.0, "ratio 0"),
    ]
    for baseline, mde, relative, alpha, power, ratio, why in undefined:
        cases.append({
            "statistic": "users_per_arm_proportions",
            "input": {"baseline_rate": baseline, "mde": mde, "relative": relative,
                      "alpha": alpha, "power": power, "ratio": ratio},
            "expected": dict.fromkeys(SAMPLE_SIZE_FIELDS),
            "tolerance": {"rel": 0.0},
            "reference": f"undefined by definition: {why}",
        })
    return cases


def mean_cases() -> list[dict]:
    grid = [
        # (mean, variance, mde, relative, alpha, power, ratio)
        (25.0, 400.0, 0.05, True, 0.05, 0.8, 1.0),
        (25.0, 400.0, 0.02, True, 0.01, 0.9, 2.0),
        (1.0, 0.25, 0.2, True, 0.1, 0.8, 0.5),
        (-3.0, 10.0, 0.1, True, 0.05, 0.8, 1.0),  # a negative mean
        (40.0, 12.0, 0.5, False, 0.05, 0.8, 1.0),
        (0.0, 12.0, 0.5, False, 0.05, 0.8, 1.0),  # absolute change of a mean of 0
        (100.0, 1e6, 0.001, True, 0.05, 0.8, 1.0),  # huge n
        (10.0, 1.0, 0.5, True, 0.05, 0.8, 1.0),  # tiny n
    ]
    cases = []
    for mean, variance, mde, relative, alpha, power, ratio in grid:
        change = mean * mde if relative else mde
        expected, reference = _sample_size(change / math.sqrt(variance), alpha, power, ratio)
        cases.append({
            "statistic": "users_per_arm_means",
            "input": {"mean": mean, "variance": variance, "mde": mde, "relative": relative,
                      "alpha": alpha, "power": power, "ratio": ratio},
            "expected": expected,
            "tolerance": {"rel": 1e-6},
            "reference": f"{reference}; effect_size = change / sqrt(variance)",
        })
    undefined = [
        (10.0, 0.0, 0.1, True, "no variance"),
        (10.0, -1.0, 0.1, True, "a negative variance"),
        (0.0, 4.0, 0.1, True, "a relative change of a mean of 0"),
        (10.0, 4.0, 0.0, True, "no change"),
    ]
    for mean, variance, mde, relative, why in undefined:
        cases.append({
            "statistic": "users_per_arm_means",
            "input": {"mean": mean, "variance": variance, "mde": mde, "relative": relative,
                      "alpha": 0.05, "power": 0.8, "ratio": 1.0},
            "expected": dict.fromkeys(SAMPLE_SIZE_FIELDS),
            "tolerance": {"rel": 0.0},
            "reference": f"undefined by definition: {why}",
        })
    return cases


def power_cases() -> list[dict]:
    cases = []
    for baseline, mde, relative, users, alpha, ratio in [
        (0.05, 0.1, True, 31_234.0, 0.05, 1.0),
        (0.05, 0.1, True, 1_000.0, 0.05, 1.0),  # low power: both tails count
        (0.5, -0.02, True, 12.5, 0.1, 2.0),
        (0.001, 0.3, True, 100_000.0, 0.01, 0.5),
        (0.2, 0.05, False, 1e9, 0.05, 1.0),  # power 1
    ]:
        target = baseline * (1 + mde) if relative else baseline + mde
        effect = float(proportion_effectsize(target, baseline))
        cases.append({
            "statistic": "power_proportions",
            "input": {"baseline_rate": baseline, "mde": mde, "relative": relative,
                      "users_per_arm": users, "alpha": alpha, "ratio": ratio},
            "expected": {"power": float(POWER.power(effect, users, alpha, ratio=ratio))},
            "tolerance": {"rel": 1e-12, "abs": 1e-15},
            "reference": "statsmodels NormalIndPower().power(proportion_effectsize(p2, p1), ...)",
        })
    for mean, variance, mde, relative, users in [
        (25.0, 400.0, 0.05, True, 5_000.0), (1.0, 2.0, -0.1, True, 300.0),
        (0.0, 1.0, 0.1, False, 50.0),
    ]:
        change = mean * mde if relative else mde
        effect = change / math.sqrt(variance)
        cases.append({
            "statistic": "power_means",
            "input": {"mean": mean, "variance": variance, "mde": mde, "relative": relative,
                      "users_per_arm": users, "alpha": 0.05, "ratio": 1.0},
            "expected": {"power": float(POWER.power(effect, users, 0.05, ratio=1.0))},
            "tolerance": {"rel": 1e-12, "abs": 1e-15},
            "reference": "statsmodels NormalIndPower().power(change / sqrt(variance), ...)",
        })
    cases.append({
        "statistic": "power_proportions",
        "input": {"baseline_rate": 0.1, "mde": 0.1, "relative": True, "users_per_arm": 0.0,
                  "alpha": 0.05, "ratio": 1.0},
        "expected": {"power": None},
        "tolerance": {"rel": 0.0},
        "reference": "undefined by definition: no users",
    })
    return cases


def main() -> None:
    write('srm_power', srm_cases() + proportion_cases() + mean_cases() + power_cases(), ('numpy', 'scipy', 'statsmodels'))


if __name__ == "__main__":
    main()
