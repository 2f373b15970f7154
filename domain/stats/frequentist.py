"""Frequentist tests of a variant against its baseline, each over two summable statistics.

Every test answers one ``TestResult`` (as gbstats' ``frequentist/tests.py`` does): the lifts,
the test statistic, the two-sided p-value and the interval of the difference at 1 − alpha.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

# scipy.special, not scipy.stats: the same functions (stats' t, norm and chi2 call these), without
# the half second scipy.stats adds to every process start.
from scipy import special

from domain.stats._floats import clip, finite
from domain.stats.values import Proportion, SampleMean

ALPHA = 0.05
"""Significance of every comparison; its intervals are at the level 1 − ALPHA (0.95)."""

IntervalMethod = Literal["newcombe", "welch", "delta", "cuped"]


@dataclass(frozen=True, slots=True)
class Interval:
    lower: float
    upper: float


@dataclass(frozen=True, slots=True)
class TestResult:
    """B against A (a variant against its baseline). Every number is None where the data
    leave it undefined: an empty arm, no variance, a baseline of 0 for the relative lift."""

    __test__ = False  # a result, not a test class for pytest to collect

    absolute_lift: float | None  # B's rate or mean minus A's
    relative_lift: float | None  # absolute_lift over A's
    statistic: float | None  # z or t: positive when B is above A
    degrees_of_freedom: float | None  # of the t distribution; None for a z-test
    p_value: float | None
    interval: Interval | None  # of absolute_lift
    interval_method: IntervalMethod
    alpha: float = ALPHA

    @property
    def level(self) -> float:
        return 1.0 - self.alpha

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < self.alpha


def lifts(a: float | None, b: float | None) -> tuple[float | None, float | None]:
    """(b − a, (b − a) / a): the absolute and the relative lift of B over A."""
    if a is None or b is None:
        return None, None
    absolute = finite(b - a)
    relative = None if absolute is None or a == 0 else finite(absolute / a)
    return absolute, relative


def two_proportion_test(a: Proportion, b: Proportion, alpha: float = ALPHA) -> TestResult:
    """The pooled two-proportion z-test (as statsmodels' ``proportions_ztest``), and Newcombe's
    hybrid score interval of the difference of the rates (``confint_proportions_2indep``)."""
    absolute, relative = lifts(a.rate, b.rate)
    z = _pooled_z(a, b)
    p_value = None if z is None else finite(clip(_two_sided_normal_p(z), 0.0, 1.0))
    interval = _newcombe(a, b, alpha)
    return TestResult(absolute, relative, z, None, p_value, interval, "newcombe", alpha)


def welch_test(a: SampleMean, b: SampleMean, alpha: float = ALPHA) -> TestResult:
    """Welch's unequal-variances t-test and its interval of the difference of the means (as
    scipy's ``ttest_ind(equal_var=False)`` and statsmodels' ``tconfint_diff``)."""
    absolute, relative = lifts(a.mean, b.mean)
    descriptive = TestResult(absolute, relative, None, None, None, None, "welch", alpha)
    var_a, var_b = a.variance, b.variance
    if absolute is None or var_a is None or var_b is None:
        return descriptive
    n_a, n_b = float(a.n), float(b.n)
    vn_a, vn_b = var_a / n_a, var_b / n_b
    se_sq = vn_a + vn_b
    if not se_sq > 0.0 or not math.isfinite(se_sq):
        return descriptive
    se = math.sqrt(se_sq)
    # Normalising by the total before squaring keeps Welch–Satterthwaite free of overflow and
    # underflow for extreme variance scales.
    r_a, r_b = vn_a / se_sq, vn_b / se_sq
    df = finite(1.0 / (r_a * r_a / (n_a - 1) + r_b * r_b / (n_b - 1)))
    t = finite(absolute / se)
    if df is None or t is None:
        return descriptive
    p_value = finite(clip(float(2.0 * special.stdtr(df, -abs(t))), 0.0, 1.0))
    interval = None
    if _valid_alpha(alpha):
        half = finite(float(special.stdtrit(df, 1.0 - alpha / 2.0)) * se)
        if half is not None:
            lower, upper = finite(absolute - half), finite(absolute + half)
            if lower is not None and upper is not None:
                interval = Interval(lower, upper)
    return TestResult(absolute, relative, t, df, p_value, interval, "welch", alpha)


def normal_test(
    absolute: float, relative: float | None, se_sq: float, method: IntervalMethod, alpha: float = ALPHA
) -> TestResult:
    """The z-test of a difference ``absolute`` with variance ``se_sq``, and its normal interval
    absolute ± z_(1 − alpha / 2) · se; only the lifts where the variance is 0 or not finite."""
    descriptive = TestResult(absolute, relative, None, None, None, None, method, alpha)
    if not se_sq > 0.0 or not math.isfinite(se_sq):
        return descriptive
    se = math.sqrt(se_sq)
    z = finite(absolute / se)
    if z is None:
        return descriptive
    p_value = finite(clip(_two_sided_normal_p(z), 0.0, 1.0))
    interval = None
    quantile = _z(alpha)
    if quantile is not None:
        half = finite(quantile * se)
        if half is not None:
            lower, upper = finite(absolute - half), finite(absolute + half)
            if lower is not None and upper is not None:
                interval = Interval(lower, upper)
    return TestResult(absolute, relative, z, None, p_value, interval, method, alpha)


def wilson_interval(p: Proportion, alpha: float = ALPHA) -> Interval | None:
    """Wilson's score interval of the rate (as statsmodels' ``proportion_confint``)."""
    counts, z = p.counts, _z(alpha)
    if counts is None or z is None:
        return None
    return Interval(*_wilson(*counts, z))


def holm_adjust(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm–Bonferroni adjusted p-values, in the order given."""
    # Undefined p-values (None or NaN) are not hypotheses we can test, so they neither receive
    # an adjustment nor inflate the family size m.
    cleaned: list[float | None] = []
    for p in p_values:
        pf = None if p is None else finite(p)
        cleaned.append(None if pf is None else clip(pf, 0.0, 1.0))
    ranked = sorted((p, i) for i, p in enumerate(cleaned) if p is not None)
    m = len(ranked)
    adjusted: list[float | None] = [None] * len(cleaned)
    running_max = 0.0
    for rank, (raw, index) in enumerate(ranked):
        running_max = max(running_max, min(1.0, (m - rank) * raw))
        adjusted[index] = running_max
    return adjusted


def benjamini_hochberg_adjust(p_values: Sequence[float | None]) -> list[float | None]:
    """Benjamini–Hochberg adjusted p-values (the false discovery rate), in the order given, as
    statsmodels' ``multipletests(method="fdr_bh")``; undefined p-values take no part, as in
    ``holm_adjust``."""
    cleaned: list[float | None] = []
    for p in p_values:
        pf = None if p is None else finite(p)
        cleaned.append(None if pf is None else clip(pf, 0.0, 1.0))
    ranked = sorted(((p, i) for i, p in enumerate(cleaned) if p is not None), reverse=True)
    m = len(ranked)
    adjusted: list[float | None] = [None] * len(cleaned)
    running_min = 1.0
    for k, (raw, index) in enumerate(ranked):  # from the largest p-value down
        running_min = min(running_min, raw * (m / (m - k)))  # the factor first: never below raw
        adjusted[index] = running_min
    return adjusted


def _pooled_z(a: Proportion, b: Proportion) -> float | None:
    counts_a, counts_b = a.counts, b.counts
    if counts_a is None or counts_b is None:
        return None
    (x_a, n_a), (x_b, n_b) = counts_a, counts_b
    pooled = (x_a + x_b) / (n_a + n_b)
    variance = pooled * (1.0 - pooled) * (1.0 / n_a + 1.0 / n_b)
    if not variance > 0.0:
        return None
    return finite((x_b / n_b - x_a / n_a) / math.sqrt(variance))


def _two_sided_normal_p(z: float) -> float:
    # erfc keeps full relative precision deep in the tail and avoids a scipy call per test,
    # which matters when this runs in simulation loops.
    return math.erfc(abs(z) / math.sqrt(2.0))


def _valid_alpha(alpha: float) -> bool:
    return finite(alpha) is not None and 0.0 < alpha < 1.0


def _z(alpha: float) -> float | None:
    if not _valid_alpha(alpha):
        return None
    z = finite(float(special.ndtri(1.0 - alpha / 2.0)))
    return z if z is not None and math.isfinite(z * z) else None


def _wilson(x: float, n: float, z: float) -> tuple[float, float]:
    # Same algebraic arrangement as statsmodels, so results agree to the last few ulps; the
    # endpoints at x == 0 and x == n are exact by construction.
    p = x / n
    z2 = z * z
    denom = 1.0 + z2 / n
    center = (p + z2 / (2.0 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denom
    lower = 0.0 if x == 0 else clip(center - half, 0.0, 1.0)
    upper = 1.0 if x == n else clip(center + half, 0.0, 1.0)
    return lower, upper


def _newcombe(a: Proportion, b: Proportion, alpha: float) -> Interval | None:
    counts_a, counts_b, z = a.counts, b.counts, _z(alpha)
    if counts_a is None or counts_b is None or z is None:
        return None
    p_a, p_b = counts_a[0] / counts_a[1], counts_b[0] / counts_b[1]
    low_a, up_a = _wilson(*counts_a, z)
    low_b, up_b = _wilson(*counts_b, z)
    diff = p_b - p_a
    # Clipping only absorbs rounding: mathematically the bounds lie in [-1, 1].
    lower = clip(diff - math.hypot(p_b - low_b, up_a - p_a), -1.0, 1.0)
    upper = clip(diff + math.hypot(up_b - p_b, p_a - low_a), -1.0, 1.0)
    return Interval(lower, upper)
