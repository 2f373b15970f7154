"""CUPED: a comparison adjusted by a covariate measured before the experiment could act.

Deng, Xu, Kohavi and Walker (2013), "Improving the sensitivity of online controlled experiments
by utilizing pre-experiment data"; as gbstats' ``RegressionAdjustedStatistic``. Per user, y the
metric after the assignment and x the same metric in the user's pre-period. With θ the slope of
y on x over both arms' users pooled, each arm's adjusted mean ȳ − θ (x̄ − x̄_pooled) has the
variance (var_y + θ² var_x − 2θ cov_xy) / n, smaller than var_y / n by about ρ², while the
difference of two adjusted means estimates the same difference as the plain one (the
assignment is random, so the arms' pre-period means differ only by chance).

Everything comes from summable sums per arm: n, Σy, Σy², Σx, Σx², Σxy. Centred sums are taken
in exact rationals (as ``RatioStatistic`` does): they subtract nearly equal numbers.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from fractions import Fraction

from domain.stats._floats import exact, finite, quotient
from domain.stats.bayesian import BayesianResult, NormalPrior, bayesian_means
from domain.stats.frequentist import ALPHA, TestResult, normal_test
from domain.stats.sequential import DEFAULT_TUNING_USERS, SequentialResult, sequential_means


@dataclass(frozen=True, slots=True)
class CovariateStatistic:
    """One arm: ``n`` users (those without events count, with x = y = 0), the sum and sum of
    squares of their metric y and of their pre-period covariate x, and Σxy."""

    n: int = 0
    y_sum: float = 0  # int zeros: adding them keeps integer sums integers
    y_sum_sq: float = 0
    x_sum: float = 0
    x_sum_sq: float = 0
    xy_sum: float = 0

    def __add__(self, other: CovariateStatistic) -> CovariateStatistic:
        if not isinstance(other, CovariateStatistic):
            return NotImplemented
        return CovariateStatistic(
            self.n + other.n,
            self.y_sum + other.y_sum,
            self.y_sum_sq + other.y_sum_sq,
            self.x_sum + other.x_sum,
            self.x_sum_sq + other.x_sum_sq,
            self.xy_sum + other.xy_sum,
        )


@dataclass(frozen=True, slots=True)
class AdjustedMean:
    """An arm's CUPED-adjusted mean and per-user variance: read as ``SampleMean`` is (``n``,
    ``units``, ``mean``, ``variance``), so the sequential and Bayesian read-outs take it."""

    n: int
    mean: float | None
    variance: float | None
    unadjusted_mean: float | None

    @property
    def units(self) -> float | None:
        nf = finite(self.n)
        return nf if nf is not None and nf >= 1 and nf == int(nf) else None


@dataclass(frozen=True, slots=True)
class CupedResult:
    test: TestResult  # the adjusted comparison; interval_method "cuped"
    theta: float
    variance_reduction: float | None  # 1 − Var(adjusted difference) / Var(unadjusted difference)


@dataclass(frozen=True, slots=True)
class _Moments:
    """n and the centred sums n·Σx² − (Σx)², n·Σxy − ΣxΣy, n·Σy² − (Σy)², exactly."""

    n: int
    x_sum: int | Fraction
    y_sum: int | Fraction
    sxx: int | Fraction
    sxy: int | Fraction
    syy: int | Fraction


def _moments(s: CovariateStatistic) -> _Moments | None:
    if isinstance(s.n, bool) or not isinstance(s.n, numbers.Integral) or s.n < 1:
        return None
    sums = [exact(v) for v in (s.x_sum, s.y_sum, s.x_sum_sq, s.y_sum_sq, s.xy_sum)]
    if any(v is None for v in sums):
        return None
    sx, sy, sxx, syy, sxy = (v for v in sums if v is not None)
    n = int(s.n)
    return _Moments(n, sx, sy, n * sxx - sx * sx, n * sxy - sx * sy, n * syy - sy * sy)


def pooled_theta(a: CovariateStatistic, b: CovariateStatistic) -> float | None:
    """Cov(x, y) / Var(x) over both arms' users together; None below two users, without any
    variance of x (no pre-period data), or for sums no finite figures give."""
    m = _moments(a + b)
    if m is None or m.n < 2 or m.sxx <= 0:
        return None
    return quotient(m.sxy, m.sxx)


Adjusted = tuple[AdjustedMean, AdjustedMean, float]
"""``cuped_adjust``'s answer: both arms adjusted, and θ. The read-outs below take it when the
caller has it already, so that one comparison adjusts its arms once for all of them."""


def cuped_adjust(a: CovariateStatistic, b: CovariateStatistic) -> Adjusted | None:
    """θ and both arms adjusted by it; None when θ is undefined."""
    theta = pooled_theta(a, b)
    pooled = _moments(a + b)
    if theta is None or pooled is None:
        return None
    x_pooled = Fraction(pooled.x_sum) / pooled.n
    t = Fraction(theta)
    arms = []
    for s in (a, b):
        m = _moments(s)
        if m is None:
            return None
        y_mean = Fraction(m.y_sum) / m.n
        mean = quotient(y_mean - t * (Fraction(m.x_sum) / m.n - x_pooled), 1)
        variance = None
        if m.n >= 2:
            # (var_y + θ² var_x − 2θ cov) with the n − 1 moments: the centred sums over n(n − 1).
            centred = m.syy + t * t * m.sxx - 2 * t * m.sxy
            variance = 0.0 if centred <= 0 else quotient(centred, m.n * (m.n - 1))
        arms.append(AdjustedMean(m.n, mean, variance, quotient(y_mean, 1)))
    return arms[0], arms[1], theta


def cuped_test(
    a: CovariateStatistic, b: CovariateStatistic, alpha: float = ALPHA, adjusted: Adjusted | None = None
) -> CupedResult | None:
    """B against A adjusted by CUPED: Δ = (ȳ_B − ȳ_A) − θ (x̄_B − x̄_A), its normal z-test and
    interval Δ ± z_(1 − alpha/2) · se, se² = var_A/n_A + var_B/n_B of the adjusted variances;
    the relative lift Δ / ȳ_A (A's unadjusted mean). None when θ is undefined: the caller shows
    the unadjusted comparison, which is then the same thing."""
    adjusted = cuped_adjust(a, b) if adjusted is None else adjusted
    if adjusted is None:
        return None
    adj_a, adj_b, theta = adjusted
    absolute = None
    if adj_a.mean is not None and adj_b.mean is not None:
        absolute = finite(adj_b.mean - adj_a.mean)
    relative = None
    if absolute is not None and adj_a.unadjusted_mean:
        relative = finite(absolute / adj_a.unadjusted_mean)
    descriptive = CupedResult(
        TestResult(absolute, relative, None, None, None, None, "cuped", alpha), theta, None
    )
    if absolute is None or adj_a.variance is None or adj_b.variance is None:
        return descriptive
    se_sq = adj_a.variance / adj_a.n + adj_b.variance / adj_b.n
    test = normal_test(absolute, relative, se_sq, "cuped", alpha)
    return CupedResult(test, theta, _reduction(a, b, se_sq))


def cuped_sequential(
    a: CovariateStatistic,
    b: CovariateStatistic,
    alpha: float = ALPHA,
    tuning_users: float = DEFAULT_TUNING_USERS,
    adjusted: Adjusted | None = None,
) -> SequentialResult | None:
    """The always-valid read-out of the adjusted difference: the confidence sequence of
    ``sequential_means`` over the two arms adjusted by θ, each arm's per-user variance the
    adjusted one. As with the fixed-horizon test, θ is estimated from the data, so the
    sequence is asymptotic (as gbstats applies CUPED in its sequential test). None when θ is
    undefined: the caller shows the unadjusted sequence, which is then the same thing."""
    adjusted = cuped_adjust(a, b) if adjusted is None else adjusted
    if adjusted is None:
        return None
    adj_a, adj_b, _ = adjusted
    return sequential_means(adj_a, adj_b, alpha, tuning_users)


def cuped_bayesian(
    a: CovariateStatistic,
    b: CovariateStatistic,
    prior: NormalPrior | None = None,
    alpha: float = ALPHA,
    adjusted: Adjusted | None = None,
) -> BayesianResult | None:
    """The Bayesian read-out of the adjusted arms: each arm's adjusted mean ~ Normal(mean,
    adjusted variance / n), the large-sample posterior ``bayesian_means`` takes (as gbstats
    reads its regression-adjusted statistic), for the conversion too. None when θ is
    undefined: the caller shows the unadjusted read-out, which is then the same thing."""
    adjusted = cuped_adjust(a, b) if adjusted is None else adjusted
    if adjusted is None:
        return None
    adj_a, adj_b, _ = adjusted
    return bayesian_means(adj_a, adj_b, prior, alpha)


def _reduction(a: CovariateStatistic, b: CovariateStatistic, adjusted_se_sq: float) -> float | None:
    """1 − the adjusted difference's variance over the unadjusted one's."""
    plain = 0.0
    for s in (a, b):
        m = _moments(s)
        if m is None or m.n < 2:
            return None
        var_y = quotient(m.syy, m.n * (m.n - 1))
        if var_y is None:
            return None
        plain += max(var_y, 0.0) / m.n
    if not plain > 0.0 or not math.isfinite(plain):
        return None
    return finite(1.0 - adjusted_se_sq / plain)
