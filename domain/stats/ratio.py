"""Ratio metrics (clicks per session, revenue per order) by the delta method.

A ratio metric divides two totals of the same users: Σx / Σy, x and y a user's numerator and
denominator. Users are the independent units, not the sessions or orders, so the variance of the
ratio comes from the per-user sums by the delta method (as gbstats' ``RatioStatistic``), and the
comparison of two arms is a z-test on the difference of their ratios.
"""

from __future__ import annotations

import numbers
import sys
from dataclasses import dataclass
from fractions import Fraction

from domain.stats._floats import exact, finite, quotient
from domain.stats.frequentist import ALPHA, TestResult, lifts, normal_test

_EPS = sys.float_info.epsilon


@dataclass(frozen=True, slots=True)
class RatioStatistic:
    """``n`` users (including those without events: x = y = 0) and the sums, sums of squares
    and sum of products of their numerator totals x and denominator totals y. Integer sums keep
    the variance exact."""

    n: int = 0
    x_sum: float = 0  # int zeros, so that adding them keeps integer sums integers
    y_sum: float = 0
    x_sum_sq: float = 0
    y_sum_sq: float = 0
    xy_sum: float = 0

    def __add__(self, other: RatioStatistic) -> RatioStatistic:
        if not isinstance(other, RatioStatistic):
            return NotImplemented
        return RatioStatistic(
            self.n + other.n,
            self.x_sum + other.x_sum,
            self.y_sum + other.y_sum,
            self.x_sum_sq + other.x_sum_sq,
            self.y_sum_sq + other.y_sum_sq,
            self.xy_sum + other.xy_sum,
        )

    @property
    def units(self) -> float | None:
        """n as a float when it counts something: a whole number ≥ 1."""
        nf = finite(self.n)
        return nf if nf is not None and nf >= 1 and nf == int(nf) else None

    @property
    def ratio(self) -> float | None:
        """Σx / Σy; None for no users or Σy = 0."""
        if self.units is None:
            return None
        sx, sy = exact(self.x_sum), exact(self.y_sum)
        if sx is None or sy is None or sy == 0:
            return None
        return quotient(sx, sy)  # rounded once, from the exact quotient

    @property
    def variance(self) -> float | None:
        """The delta-method variance of the ratio Σx / Σy = mean_x / mean_y:

        (var_x / mean_y² − 2 mean_x cov_xy / mean_y³ + mean_x² var_y / mean_y⁴) / n,

        with the sample variances and covariance (n − 1). None below two users or for Σy = 0."""
        nf = self.units
        if nf is None or nf < 2:
            return None
        raw = (self.x_sum, self.y_sum, self.x_sum_sq, self.y_sum_sq, self.xy_sum)
        sums = [exact(v) for v in raw]
        if any(s is None for s in sums):
            return None
        sx, sy, sxx, syy, sxy = (s for s in sums if s is not None)
        if sy == 0:
            return None
        n = int(nf)
        # n times the centred sums (n Σx² − (Σx)², ...), exactly, as SampleMean's: they subtract
        # nearly equal numbers, and in exact rationals they add no rounding of their own. Then
        # Var = (A Σy² − 2 B Σx Σy + C Σx²) / ((n − 1) Σy⁴), the formula above with the means
        # written as sums; its numerator is n Σy² Σ(x − R y)² (R = Σx / Σy): never below 0.
        a = n * sxx - sx * sx
        b = n * sxy - sx * sy
        c = n * syy - sy * sy
        numerator = a * sy * sy - 2 * b * sx * sy + c * sx * sx
        if numerator <= 0:  # float sums' rounding (or sums no users could have): clamped
            return 0.0
        # With float sums, a residual this small relative to the terms it cancels is within the
        # worst-case error of summing n terms: no variance (every user's x is 0.1 × their y).
        if not all(isinstance(v, numbers.Integral) for v in raw):
            fx, fy, fxx, fyy, fxy = (Fraction(s) for s in (sx, sy, sxx, syy, sxy))
            scale = n * (abs(fxx) * fy * fy + 2 * abs(fxy * fx * fy) + abs(fyy) * fx * fx)
            if numerator <= Fraction(_EPS) * n * scale:
                return 0.0
        return quotient(numerator, (n - 1) * sy**4)


def ratio_test(a: RatioStatistic, b: RatioStatistic, alpha: float = ALPHA) -> TestResult:
    """B's ratio against A's: the z-test of the difference with the delta-method variances, and
    its normal interval, difference ± z_(1 − alpha / 2) · sqrt(var_A + var_B)."""
    absolute, relative = lifts(a.ratio, b.ratio)
    descriptive = TestResult(absolute, relative, None, None, None, None, "delta", alpha)
    var_a, var_b = a.variance, b.variance
    if absolute is None or var_a is None or var_b is None:
        return descriptive
    return normal_test(absolute, relative, var_a + var_b, "delta", alpha)
