"""Sample size and power of a comparison of two arms, as statsmodels' ``NormalIndPower``.

The test is the two-sided z-test of two independent samples with a standardised effect size:
Cohen's h = 2 asin √p₂ − 2 asin √p₁ for rates (statsmodels' ``proportion_effectsize``), Cohen's
d = difference / standard deviation for means. With n₁ users in the control arm and ratio × n₁
in the variant arm, the test statistic is normal with mean |effect| × √(n₁ × ratio / (1 + ratio))
and unit variance, so the power counts the rejections in both tails (statsmodels'
``normal_power``):

    power = Φ(s − z) + Φ(−s − z),  s = |effect| × √(n₁ × ratio / (1 + ratio)),  z = Φ⁻¹(1 − α/2)

Every function answers None for inputs that leave the question without an answer (a rate
outside (0, 1), an effect of 0, alpha or power outside (0, 1), a ratio ≤ 0, anything not
finite) rather than raising.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

from scipy import special

from domain.stats._floats import finite
from domain.stats.frequentist import ALPHA

POWER = 0.8
"""The chance to detect an effect of the minimum detectable size: the usual 80%."""

_EPS = sys.float_info.epsilon
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@dataclass(frozen=True, slots=True)
class SampleSize:
    """Users so that the two-sided test at alpha detects the effect with the given power."""

    effect_size: float  # Cohen's h or d, signed: positive when the variant is above the control
    control_exact: float  # the real solution for the control arm: statsmodels' ``nobs1``
    control: int  # control_exact rounded up
    variant: int  # ratio × control_exact rounded up
    total: int  # control + variant


def users_per_arm_proportions(
    baseline_rate: float,
    mde: float,
    *,
    relative: bool = True,
    alpha: float = ALPHA,
    power: float = POWER,
    ratio: float = 1.0,
) -> SampleSize | None:
    """Users to detect a change of the rate from ``baseline_rate`` by ``mde``: to
    baseline × (1 + mde) if ``relative``, else to baseline + mde. Equal to statsmodels'
    ``NormalIndPower().solve_power(effect_size=proportion_effectsize(p2, p1), alpha=alpha,
    power=power, ratio=ratio, alternative="two-sided")`` (Cohen's h). Both rates must lie in
    (0, 1)."""
    return _sample_size(_proportion_effect(baseline_rate, mde, relative), alpha, power, ratio)


def users_per_arm_means(
    mean: float,
    variance: float,
    mde: float,
    *,
    relative: bool = True,
    alpha: float = ALPHA,
    power: float = POWER,
    ratio: float = 1.0,
) -> SampleSize | None:
    """Users to detect a change of a mean by ``mde`` (× ``mean`` if ``relative``), for a
    metric of this per-user ``variance``: statsmodels' ``NormalIndPower().solve_power`` with
    Cohen's d = change / √variance."""
    return _sample_size(_mean_effect(mean, variance, mde, relative), alpha, power, ratio)


def power_proportions(
    baseline_rate: float,
    mde: float,
    users_per_arm: float,
    *,
    relative: bool = True,
    alpha: float = ALPHA,
    ratio: float = 1.0,
) -> float | None:
    """The power with ``users_per_arm`` users in the control arm (and ratio × that in the
    variant arm): statsmodels' ``NormalIndPower().power`` with Cohen's h."""
    return _power(_proportion_effect(baseline_rate, mde, relative), users_per_arm, alpha, ratio)


def power_means(
    mean: float,
    variance: float,
    mde: float,
    users_per_arm: float,
    *,
    relative: bool = True,
    alpha: float = ALPHA,
    ratio: float = 1.0,
) -> float | None:
    """The power with ``users_per_arm`` users in the control arm (and ratio × that in the
    variant arm): statsmodels' ``NormalIndPower().power`` with Cohen's d."""
    return _power(_mean_effect(mean, variance, mde, relative), users_per_arm, alpha, ratio)


def days_left(users_needed_total: float, users_so_far: int, users_per_day: float) -> float | None:
    """Days until ``users_needed_total`` at ``users_per_day``: 0 once reached, None while no
    users arrive (or for counts that are negative or not finite)."""
    needed, so_far, per_day = finite(users_needed_total), finite(users_so_far), finite(users_per_day)
    if needed is None or so_far is None or needed < 0.0 or so_far < 0.0:
        return None
    remaining = needed - so_far
    if remaining <= 0.0:
        return 0.0
    if per_day is None or not per_day > 0.0:
        return None
    return finite(remaining / per_day)


def _proportion_effect(baseline_rate: float, mde: float, relative: bool) -> float | None:
    p1, change = finite(baseline_rate), finite(mde)
    if p1 is None or change is None or not 0.0 < p1 < 1.0 or change == 0.0:
        return None
    p2 = finite(p1 * (1.0 + change) if relative else p1 + change)
    if p2 is None or not 0.0 < p2 < 1.0:
        return None
    # statsmodels' proportion_effectsize(p2, p1): the arcsine transform stabilises the variance.
    return _nonzero(2.0 * math.asin(math.sqrt(p2)) - 2.0 * math.asin(math.sqrt(p1)))


def _mean_effect(mean: float, variance: float, mde: float, relative: bool) -> float | None:
    m, var, change = finite(mean), finite(variance), finite(mde)
    if m is None or var is None or change is None or not var > 0.0:
        return None
    absolute = finite(m * change if relative else change)
    return None if absolute is None else _nonzero(absolute / math.sqrt(var))


def _nonzero(effect: float) -> float | None:
    value = finite(effect)
    return value if value is not None and value != 0.0 else None


def _valid_ratio(ratio: float) -> float | None:
    value = finite(ratio)
    return value if value is not None and value > 0.0 else None


def _critical(alpha: float) -> float | None:
    # z = Φ⁻¹(1 − α/2), taken from the tail (as statsmodels' norm.isf) to keep tiny alphas exact.
    a = finite(alpha)
    if a is None or not 0.0 < a < 1.0:
        return None
    return finite(-float(special.ndtri(a / 2.0)))


def _two_sided_power(s: float, z: float) -> float:
    return float(special.ndtr(s - z)) + float(special.ndtr(-s - z))


def _power(effect: float | None, users_per_arm: float, alpha: float, ratio: float) -> float | None:
    n1, r, z = finite(users_per_arm), _valid_ratio(ratio), _critical(alpha)
    if effect is None or n1 is None or r is None or z is None or not n1 > 0.0:
        return None
    # statsmodels' effective sample size 1 / (1/n₁ + 1/n₂), with n₂ = ratio × n₁.
    effective = finite(1.0 / (1.0 / n1 + 1.0 / (n1 * r)))
    if effective is None:
        return None
    s = abs(effect) * math.sqrt(effective)
    return finite(min(1.0, max(0.0, _two_sided_power(s, z))))


def _sample_size(
    effect: float | None, alpha: float, power: float, ratio: float
) -> SampleSize | None:
    r, z, target = _valid_ratio(ratio), _critical(alpha), finite(power)
    if effect is None or r is None or z is None or target is None or not 0.0 < target < 1.0:
        return None
    if not target > alpha:
        return None  # the test rejects with chance alpha without any users at all
    s = _solve_shift(z, target)
    if s is None:
        return None
    scaled = s / abs(effect)
    exact = finite(scaled * scaled * (1.0 + 1.0 / r))
    if exact is None or not exact > 0.0:
        return None
    variant = finite(r * exact)
    if variant is None:
        return None
    control, variant_users = math.ceil(exact), math.ceil(variant)
    return SampleSize(effect, exact, control, variant_users, control + variant_users)


def _solve_shift(z: float, target: float) -> float | None:
    """The s ≥ 0 with Φ(s − z) + Φ(−s − z) = target (alpha < target < 1).

    The one-tailed solution z + Φ⁻¹(target) overshoots by the small far-tail term, so it
    bounds the root from above and 0 (power alpha) from below; Newton steps on the two-tailed
    power inside that bracket, bisecting when a step leaves it, converge in a few steps."""
    hi = finite(z + float(special.ndtri(target)))
    if hi is None or not hi > 0.0:
        return None
    lo, s = 0.0, hi
    for _ in range(200):
        f = _two_sided_power(s, z) - target
        if f == 0.0:
            return s
        if f > 0.0:
            hi = s
        else:
            lo = s
        slope = _INV_SQRT_2PI * (math.exp(-0.5 * (s - z) ** 2) - math.exp(-0.5 * (s + z) ** 2))
        step = f / slope if slope > 0.0 else math.inf
        following = s - step
        if not lo < following < hi:
            following = 0.5 * (lo + hi)
        if abs(following - s) <= 2.0 * _EPS * following or hi - lo <= 2.0 * _EPS * hi:
            return following
        s = following
    return s
