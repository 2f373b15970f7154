"""Test vectors of the ratio metric (Σx / Σy per arm) by the delta method, from numpy and scipy.

Run from the repository's root: ``python -m tests.stats_vectors.gen_ratio`` (numpy, scipy); writes
docs/stats-vectors/ratio.json. Imports nothing of the service: each case's per-user values are
drawn here (seeded), its input is their sums, and its expected values come from the raw values
by the formulas below, so the replay (tests/unit/test_vectors_ratio.py) checks the service's
arithmetic on the sums against numpy's moments of the values.

Per arm, x and y a user's numerator and denominator (users without events count, with 0 and 0):

* ratio R = Σx / Σy;
* Var(R) = (var_x / m_y² − 2 m_x cov_xy / m_y³ + m_x² var_y / m_y⁴) / n, the delta method, with
  m the means and numpy's var and cov at ddof = 1;

and B against A: absolute = R_B − R_A, relative = absolute / R_A, z = absolute / sqrt(Var_A +
Var_B), p = 2 · scipy.stats.norm.sf(|z|), interval absolute ± norm.ppf(1 − alpha / 2) · se.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats

from tests.stats_vectors.vectors import write

TOLERANCE = {"rel": 1e-9, "abs": 1e-12}
REFERENCE = (
    "delta method from the per-user values: numpy var/cov (ddof=1); scipy.stats.norm sf and ppf"
)


def sums(x: np.ndarray, y: np.ndarray) -> dict[str, int]:
    """The input of one arm; integer values, so the sums are exact."""
    return {
        "n": len(x),
        "x_sum": int(x.sum()),
        "y_sum": int(y.sum()),
        "x_sum_sq": int((x * x).sum()),
        "y_sum_sq": int((y * y).sum()),
        "xy_sum": int((x * y).sum()),
    }


def ratio_and_variance(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    xf, yf = x.astype(float), y.astype(float)
    n, m_x, m_y = len(x), xf.mean(), yf.mean()
    var_x, var_y = np.var(xf, ddof=1), np.var(yf, ddof=1)
    cov_xy = np.cov(xf, yf, ddof=1)[0, 1]
    variance = (var_x / m_y**2 - 2 * m_x * cov_xy / m_y**3 + m_x**2 * var_y / m_y**4) / n
    return int(x.sum()) / int(y.sum()), float(variance)


def expected(a: tuple, b: tuple, alpha: float) -> dict[str, Any]:
    ratio_a, var_a = ratio_and_variance(*a)
    ratio_b, var_b = ratio_and_variance(*b)
    diff = ratio_b - ratio_a
    se = math.sqrt(var_a + var_b)
    z = diff / se
    half = float(stats.norm.ppf(1 - alpha / 2)) * se
    return {
        "absolute_lift": diff,
        "relative_lift": diff / ratio_a,
        "statistic": z,
        "degrees_of_freedom": None,
        "p_value": float(2 * stats.norm.sf(abs(z))),
        "interval": {"lower": diff - half, "upper": diff + half},
    }


def case(a: tuple, b: tuple, alpha: float, want: dict[str, Any], reference: str) -> dict:
    return {
        "statistic": "ratio_test",
        "input": {"control": sums(*a), "variant": sums(*b), "alpha": alpha},
        "expected": want,
        "tolerance": TOLERANCE,
        "reference": reference,
    }


def lifts_only(absolute: float | None, relative: float | None) -> dict[str, Any]:
    return {
        "absolute_lift": absolute,
        "relative_lift": relative,
        "statistic": None,
        "degrees_of_freedom": None,
        "p_value": None,
        "interval": None,
    }


def clicks_per_session(rng: np.random.Generator, n: int, sessions: float, ctr: float) -> tuple:
    """(clicks, sessions) per user: Poisson sessions (some users have none), each clicked with
    probability ctr."""
    y = rng.poisson(sessions, n)
    return rng.binomial(y, ctr), y


def cents_per_order(rng: np.random.Generator, n: int, orders: float, basket: float) -> tuple:
    """(revenue in cents, orders) per user; 3% of the users' revenue is a refund (negative)."""
    y = rng.poisson(orders, n)
    per_order = rng.lognormal(math.log(basket), 0.8, n)
    sign = np.where(rng.random(n) < 0.03, -1, 1)
    return np.round(y * per_order * 100).astype(np.int64) * sign, y


def cases() -> list[dict]:
    rng = np.random.default_rng(20260314)
    specs = [
        # (control, variant, alpha)
        (
            clicks_per_session(rng, 1_000, 1.5, 0.30),
            clicks_per_session(rng, 1_000, 1.5, 0.34),
            0.05,
        ),
        (clicks_per_session(rng, 800, 0.4, 0.2), clicks_per_session(rng, 3_000, 0.4, 0.22), 0.1),
        (cents_per_order(rng, 5_000, 0.8, 40.0), cents_per_order(rng, 5_000, 0.8, 42.0), 0.05),
        (
            clicks_per_session(rng, 200_000, 2.0, 0.1),
            clicks_per_session(rng, 200_000, 2.0, 0.098),
            0.01,
        ),
        (
            (np.array([1, 0, 4]), np.array([2, 0, 5])),
            (np.array([2, 3, 0]), np.array([2, 4, 1])),
            0.05,
        ),
    ]
    out = [case(a, b, alpha, expected(a, b, alpha), REFERENCE) for a, b, alpha in specs]

    # Every user's x is k times their y: no variance, so only the lifts are defined.
    y_a, y_b = rng.poisson(2.0, 300), rng.poisson(2.0, 200)
    a, b = (2 * y_a, y_a), (3 * y_b, y_b)
    reference = "exact ratios 2 and 3; no variance (x = k y for every user): the rest undefined"
    out.append(case(a, b, 0.05, lifts_only(3.0 - 2.0, (3.0 - 2.0) / 2.0), reference))

    some = clicks_per_session(rng, 100, 1.0, 0.3)
    no_events = (np.zeros(50, dtype=np.int64), np.zeros(50, dtype=np.int64))
    reference = "undefined by definition: the control's Σy = 0"
    out.append(case(no_events, some, 0.05, lifts_only(None, None), reference))
    empty = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    reference = "undefined by definition: no users in the variant"
    out.append(case(some, empty, 0.05, lifts_only(None, None), reference))

    one = (np.array([3]), np.array([2]))
    diff = ratio_and_variance(*some)[0] - 1.5
    reference = "one user in the control (ratio 1.5): no variance, only the lifts defined"
    out.append(case(one, some, 0.05, lifts_only(diff, diff / 1.5), reference))
    return out


def main() -> None:
    write("ratio", cases(), ("numpy", "scipy"))


if __name__ == "__main__":
    main()
