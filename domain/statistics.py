"""Pure statistics for A/B-test results: z/Welch tests, intervals, Holm and SRM checks."""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from scipy import stats

Z_95: float = float(stats.norm.ppf(0.975))

_EPS = sys.float_info.epsilon


@dataclass(frozen=True, slots=True)
class ZTest:
    z_score: float | None
    p_value: float | None


@dataclass(frozen=True, slots=True)
class Interval:
    lower: float
    upper: float


@dataclass(frozen=True, slots=True)
class WelchTest:
    absolute_lift: float | None
    relative_lift: float | None
    t_statistic: float | None
    degrees_of_freedom: float | None
    p_value: float | None
    interval: Interval | None


@dataclass(frozen=True, slots=True)
class SrmCheck:
    chi_square: float | None
    p_value: float | None
    mismatch: bool


def _finite(value: object) -> float | None:
    # Single exit point for every float we hand out: numpy scalars become plain
    # floats, and anything non-finite becomes the "undefined" marker None.
    try:
        result = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    return result if math.isfinite(result) else None


def _count_pair(x: object, n: object) -> tuple[float, float] | None:
    # Callers pass counts from storage; anything that is not a usable
    # (successes, trials) pair is treated as undefined rather than an error.
    xf, nf = _finite(x), _finite(n)
    if xf is None or nf is None or nf < 1 or xf < 0 or xf > nf:
        return None
    return xf, nf


def _clip(value: float, low: float, high: float) -> float:
    return min(high, max(low, value))


def _two_sided_normal_p(z: float) -> float:
    # erfc keeps full relative precision deep in the tail and avoids a scipy
    # call per experiment, which matters when this runs in simulation loops.
    return math.erfc(abs(z) / math.sqrt(2.0))


def two_proportion_z_test(x1: int, n1: int, x2: int, n2: int) -> ZTest:
    undefined = ZTest(z_score=None, p_value=None)
    arm1, arm2 = _count_pair(x1, n1), _count_pair(x2, n2)
    if arm1 is None or arm2 is None:
        return undefined
    (xf1, nf1), (xf2, nf2) = arm1, arm2
    pooled = (xf1 + xf2) / (nf1 + nf2)
    variance = pooled * (1.0 - pooled) * (1.0 / nf1 + 1.0 / nf2)
    if not variance > 0.0:
        return undefined
    z = _finite((xf2 / nf2 - xf1 / nf1) / math.sqrt(variance))
    if z is None:
        return undefined
    return ZTest(z_score=z, p_value=_finite(_clip(_two_sided_normal_p(z), 0.0, 1.0)))


def _wilson(xf: float, nf: float, z: float) -> tuple[float, float]:
    # Same algebraic arrangement as statsmodels so results agree to the last
    # few ulps; the endpoints at x == 0 and x == n are exact by construction.
    p = xf / nf
    z2 = z * z
    denom = 1.0 + z2 / nf
    center = (p + z2 / (2.0 * nf)) / denom
    half = z * math.sqrt(p * (1.0 - p) / nf + z2 / (4.0 * nf * nf)) / denom
    lower = 0.0 if xf == 0 else _clip(center - half, 0.0, 1.0)
    upper = 1.0 if xf == nf else _clip(center + half, 0.0, 1.0)
    return lower, upper


def _valid_z(z: object) -> float | None:
    zf = _finite(z)
    return zf if zf is not None and zf >= 0.0 and math.isfinite(zf * zf) else None


def wilson_interval(x: int, n: int, z: float = Z_95) -> Interval | None:
    arm, zf = _count_pair(x, n), _valid_z(z)
    if arm is None or zf is None:
        return None
    lower, upper = _wilson(*arm, zf)
    return Interval(lower=lower, upper=upper)


def newcombe_interval(x1: int, n1: int, x2: int, n2: int, z: float = Z_95) -> Interval | None:
    arm1, arm2, zf = _count_pair(x1, n1), _count_pair(x2, n2), _valid_z(z)
    if arm1 is None or arm2 is None or zf is None:
        return None
    p1 = arm1[0] / arm1[1]
    p2 = arm2[0] / arm2[1]
    l1, u1 = _wilson(*arm1, zf)
    l2, u2 = _wilson(*arm2, zf)
    diff = p2 - p1
    # Clipping only absorbs rounding: mathematically the bounds lie in [-1, 1].
    lower = _clip(diff - math.hypot(p2 - l2, u1 - p1), -1.0, 1.0)
    upper = _clip(diff + math.hypot(u2 - p2, p1 - l1), -1.0, 1.0)
    return Interval(lower=lower, upper=upper)


def holm_adjust(p_values: Sequence[float | None]) -> list[float | None]:
    # Undefined p-values (None or NaN) are not hypotheses we can test, so they
    # neither receive an adjustment nor inflate the family size m.
    cleaned: list[float | None] = []
    for p in p_values:
        pf = None if p is None else _finite(p)
        cleaned.append(None if pf is None else _clip(pf, 0.0, 1.0))
    ranked = sorted((p, i) for i, p in enumerate(cleaned) if p is not None)
    m = len(ranked)
    adjusted: list[float | None] = [None] * len(cleaned)
    running_max = 0.0
    for rank, (raw, index) in enumerate(ranked):
        running_max = max(running_max, min(1.0, (m - rank) * raw))
        adjusted[index] = running_max
    return adjusted


def _pearson_chi_square(active: list[tuple[float, float]]) -> float | None:
    # Absurd magnitudes (overflowing sums, shares that underflow the expected
    # count to zero) make the statistic undefined rather than an exception.
    try:
        total = math.fsum(c for c, _ in active)
        share_sum = math.fsum(s for _, s in active)
        if not total > 0:
            return None
        expected = [total * (s / share_sum) for _, s in active]
        if not all(e > 0 and math.isfinite(e) for e in expected):
            return None
        return _finite(math.fsum((c - e) ** 2 / e for (c, _), e in zip(active, expected)))
    except (OverflowError, ZeroDivisionError, ValueError):
        return None


def srm_check(
    observed: Sequence[int], expected_shares: Sequence[float], alpha: float = 0.001
) -> SrmCheck:
    if len(observed) != len(expected_shares):
        return SrmCheck(chi_square=None, p_value=None, mismatch=False)
    counts = [_finite(o) for o in observed]
    shares = [_finite(s) for s in expected_shares]
    if any(c is None or c < 0 for c in counts):
        return SrmCheck(chi_square=None, p_value=None, mismatch=False)
    # Users landing in a variant configured to receive nobody is an assignment
    # bug regardless of what the chi-square says about the other variants.
    leaked = any(
        (s is None or s <= 0) and c > 0  # type: ignore[operator]
        for c, s in zip(counts, shares)
    )
    active = [(c, s) for c, s in zip(counts, shares) if s is not None and s > 0]
    if len(active) < 2:
        return SrmCheck(chi_square=None, p_value=None, mismatch=leaked)
    chi_square = _pearson_chi_square(active)
    p_value = None
    if chi_square is not None:
        p_value = _finite(_clip(float(stats.chi2.sf(chi_square, len(active) - 1)), 0.0, 1.0))
    alpha_f = _finite(alpha)
    significant = p_value is not None and alpha_f is not None and p_value < alpha_f
    return SrmCheck(chi_square=chi_square, p_value=p_value, mismatch=significant or leaked)


def _exact(value: object) -> Fraction | None:
    # Integers (e.g. cents, event counts) stay exact; floats are taken at their
    # exact binary value. Either way the subsequent arithmetic adds no error.
    if isinstance(value, numbers.Integral):
        return Fraction(int(value))
    vf = _finite(value)
    return None if vf is None else Fraction(vf)


def _sample_variance(n: float, total: object, total_sq: object) -> float | None:
    # sumsq - sum^2/n subtracts two nearly equal numbers; doing it in exact
    # rationals adds no rounding of its own, so only the rounding already in the
    # caller's sums remains, and integer sums (e.g. cents) give exact variances.
    s, ss = _exact(total), _exact(total_sq)
    if s is None or ss is None:
        return None
    deviations = ss - s * s / Fraction(int(n))
    inputs_exact = isinstance(total, numbers.Integral) and isinstance(total_sq, numbers.Integral)
    # With float sums, a residual this small relative to sumsq is within the
    # worst-case error of naive summation of n terms: it is indistinguishable
    # from zero variance (e.g. every user spent exactly 9.99).
    if deviations <= 0 or (not inputs_exact and deviations <= Fraction(_EPS) * int(n) * abs(ss)):
        return 0.0
    return _finite(deviations / (int(n) - 1))


def welch_t_test(
    n1: int,
    sum1: float,
    sumsq1: float,
    n2: int,
    sum2: float,
    sumsq2: float,
    z_level: float = 0.95,
) -> WelchTest:
    undefined = WelchTest(None, None, None, None, None, None)
    nf1, nf2 = _finite(n1), _finite(n2)
    s1, s2 = _finite(sum1), _finite(sum2)
    if nf1 is None or nf2 is None or s1 is None or s2 is None:
        return undefined
    if nf1 <= 0 or nf2 <= 0 or nf1 != int(nf1) or nf2 != int(nf2):
        return undefined
    mean1, mean2 = s1 / nf1, s2 / nf2
    absolute_lift = _finite(mean2 - mean1)
    relative_lift = None
    if absolute_lift is not None and mean1 != 0:
        relative_lift = _finite(absolute_lift / mean1)
    descriptive = WelchTest(absolute_lift, relative_lift, None, None, None, None)
    if absolute_lift is None or nf1 < 2 or nf2 < 2:
        return descriptive

    var1 = _sample_variance(nf1, sum1, sumsq1)
    var2 = _sample_variance(nf2, sum2, sumsq2)
    if var1 is None or var2 is None:
        return descriptive
    vn1, vn2 = var1 / nf1, var2 / nf2
    se_sq = vn1 + vn2
    if not se_sq > 0.0 or not math.isfinite(se_sq):
        return descriptive
    se = math.sqrt(se_sq)
    # Normalising by the total before squaring keeps Welch–Satterthwaite free
    # of overflow/underflow for extreme variance scales.
    r1, r2 = vn1 / se_sq, vn2 / se_sq
    df = _finite(1.0 / (r1 * r1 / (nf1 - 1) + r2 * r2 / (nf2 - 1)))
    t_stat = _finite(absolute_lift / se)
    if df is None or t_stat is None:
        return descriptive
    p_value = _finite(_clip(float(2.0 * stats.t.sf(abs(t_stat), df)), 0.0, 1.0))

    interval = None
    level = _finite(z_level)
    if level is not None and 0.0 < level < 1.0:
        half = _finite(float(stats.t.ppf((1.0 + level) / 2.0, df)) * se)
        if half is not None:
            lower, upper = _finite(absolute_lift - half), _finite(absolute_lift + half)
            if lower is not None and upper is not None:
                interval = Interval(lower=lower, upper=upper)
    return WelchTest(
        absolute_lift=absolute_lift,
        relative_lift=relative_lift,
        t_statistic=t_stat,
        degrees_of_freedom=df,
        p_value=p_value,
        interval=interval,
    )
