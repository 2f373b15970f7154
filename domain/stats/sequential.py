"""Always-valid inference: confidence sequences of B − A that may be read after every user.

A fixed-horizon test is valid when it is read once, at the planned sample size; read every day
and stopped at the first significant look, its false-positive rate climbs far above alpha. A
confidence sequence holds at every sample size at once: the chance that it EVER excludes the
true difference is at most alpha, however often and whenever it is looked at (asymptotically:
like the z-test, it leans on the central limit theorem, so not for a handful of users).

The construction is the asymptotic confidence sequence of Waudby-Smith, Arnold, Wu, Lindon and
Ramdas (2023), "Time-uniform central limit theory and asymptotic confidence sequences"
(arXiv:2103.06476), as GrowthBook's gbstats applies it to two arms: the two-sided normal-mixture
boundary of Howard, Ramdas, McAuliffe and Sekhon (2021), "Time-uniform, nonparametric,
nonasymptotic confidence sequences" (Annals of Statistics 49(2)), computed exactly as
confseq's ``normal_mixture_bound(..., is_one_sided=False)`` computes it, applied with the
users of both arms as intrinsic time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from domain.stats._floats import finite
from domain.stats.frequentist import ALPHA, Interval, lifts
from domain.stats.ratio import RatioStatistic
from domain.stats.values import Mean, Proportion, SampleMean

TUNING_ALPHA = 0.05
"""The alpha the mixture is tuned at, whatever alpha an interval is then asked at: one mixture
for every alpha makes the p-value and the intervals agree exactly (p < alpha exactly when the
interval at alpha excludes 0). 0.05 is gbstats' default alpha, so at alpha 0.05 the results are
gbstats' (within 1e-9 relative in the tests; gbstats tunes at the alpha asked instead)."""

DEFAULT_TUNING_USERS = 10_000
"""Users across both arms at which the sequence is tuned to be tightest.

Mis-tuning costs little in one direction and much in the other: with 10,000 the half-width is
within 11% of the tightest any tuning could give at every total from 2,000 to 200,000 users
(17% at 1,000,000), while a tuning far above the actual size widens the early looks a lot
(tuned at 50,000, the sequence is 68% wider than it could be at 2,000 users). A typical
experiment of this service, a 10% conversion rate and a 10% relative lift to detect, needs
about 30,000 users for 80% power, and its decisive early looks fall at a few thousand users;
10,000 sits in that range on the log scale the cost is measured in. gbstats' default is 5,000,
tuned for smaller experiments. An experiment may set its own (its expected users)."""


@dataclass(frozen=True, slots=True)
class SequentialResult:
    """B against A, valid at every look. None where the data leave a number undefined: an
    empty arm, a mean of fewer than two users, no variance in either arm."""

    absolute_lift: float | None  # B's rate or mean minus A's
    interval: Interval | None  # of absolute_lift: the confidence sequence at this look
    p_value: float | None  # always valid: the smallest alpha whose sequence excludes 0
    alpha: float = ALPHA
    tuning_users: float = DEFAULT_TUNING_USERS

    @property
    def level(self) -> float:
        return 1.0 - self.alpha

    @property
    def significant(self) -> bool:
        return self.p_value is not None and _valid_alpha(self.alpha) and self.p_value < self.alpha


def mixture_rho(v_opt: float, alpha_opt: float = TUNING_ALPHA) -> float | None:
    """The precision rho of the normal mixture that makes the two-sided boundary tightest at
    intrinsic time ``v_opt`` for ``alpha_opt``: confseq's ``TwoSidedNormalMixture::best_rho``,

        rho = v_opt / (2 ln(1/alpha_opt) + ln(1 + 2 ln(1/alpha_opt)))

    (Howard et al. 2021's approximately optimal rho for the normal mixture; gbstats'
    ``sequential_rho`` is 1 / sqrt(this) with v_opt its tuning parameter, Waudby-Smith et
    al. 2023, eq. 161 of arXiv:2103.06476v7 as gbstats cites it).
    None unless v_opt > 0 and 0 < alpha_opt < 1."""
    v_opt_f = finite(v_opt)
    if v_opt_f is None or not v_opt_f > 0.0 or not _valid_alpha(alpha_opt):
        return None
    log_inv = -math.log(alpha_opt)
    rho = finite(v_opt_f / (2.0 * log_inv + math.log1p(2.0 * log_inv)))
    return rho if rho is not None and rho > 0.0 else None  # a subnormal v_opt underflows to 0


def normal_mixture_bound(
    v: float, alpha: float, v_opt: float, alpha_opt: float | None = None
) -> float | None:
    """The two-sided normal-mixture uniform boundary of Howard et al. (2021): with probability
    at least 1 − alpha, |S_t| < u(V_t) at every t at once, for a sum S_t with variance
    process V_t (sub-Gaussian), where

        u(v) = sqrt((v + rho) · (ln(1 + v / rho) + 2 ln(1/alpha))),   rho = mixture_rho(v_opt,
        alpha_opt),

    the level crossing of the mixture martingale sqrt(rho/(v+rho)) exp(s²/(2(v+rho))) at 1/alpha
    (Ville's inequality). As confseq's ``normal_mixture_bound(v, alpha, v_opt, alpha_opt,
    is_one_sided=False)``; ``alpha_opt`` defaults to ``alpha`` (confseq's own default is 0.05).
    None unless v ≥ 0, 0 < alpha < 1, v_opt > 0 and 0 < alpha_opt < 1."""
    rho = mixture_rho(v_opt, alpha if alpha_opt is None else alpha_opt)
    return None if rho is None else _bound(v, alpha, rho)


def sequential_proportions(
    a: Proportion,
    b: Proportion,
    alpha: float = ALPHA,
    tuning_users: float = DEFAULT_TUNING_USERS,
) -> SequentialResult:
    """The confidence sequence and always-valid p-value of rate_B − rate_A, each user's
    outcome 0 or 1 with variance rate × (1 − rate) in its arm (unpooled, as gbstats'
    ``ProportionStatistic``). See ``_sequence`` for the formulas. The interval is cut to
    [−1, 1], where every difference of two rates lies (gbstats does not cut it): that keeps its
    coverage at every look, and whether it excludes 0."""
    absolute, _ = lifts(a.rate, b.rate)
    counts_a, counts_b = a.counts, b.counts
    if counts_a is None or counts_b is None:
        return SequentialResult(absolute, None, None, alpha, tuning_users)
    return _sequence(
        absolute, a.variance, counts_a[1], b.variance, counts_b[1], alpha, tuning_users, 1.0
    )


def sequential_means(
    a: SampleMean | Mean,
    b: SampleMean | Mean,
    alpha: float = ALPHA,
    tuning_users: float = DEFAULT_TUNING_USERS,
) -> SequentialResult:
    """The confidence sequence and always-valid p-value of mean_B − mean_A (a value per user,
    0 for users without any), each arm's sample variance (n − 1) unpooled, as gbstats'
    ``SampleMeanStatistic``. See ``_sequence`` for the formulas."""
    absolute, _ = lifts(a.mean, b.mean)
    return _sequence(absolute, a.variance, a.units, b.variance, b.units, alpha, tuning_users)


def sequential_ratios(
    a: RatioStatistic,
    b: RatioStatistic,
    alpha: float = ALPHA,
    tuning_users: float = DEFAULT_TUNING_USERS,
) -> SequentialResult:
    """The confidence sequence and always-valid p-value of ratio_B − ratio_A (Σx/Σy per arm),
    each arm's delta-method variance of its ratio taken as s²/n with n its users (``_sequence``),
    as gbstats' ``RatioStatistic`` enters its sequential test."""
    absolute, _ = lifts(a.ratio, b.ratio)
    var_a, var_b, n_a, n_b = a.variance, b.variance, a.units, b.units
    per_user_a = None if var_a is None or n_a is None else var_a * n_a
    per_user_b = None if var_b is None or n_b is None else var_b * n_b
    return _sequence(absolute, per_user_a, n_a, per_user_b, n_b, alpha, tuning_users)


def _sequence(
    d: float | None,
    var_a: float | None,
    n_a: float | None,
    var_b: float | None,
    n_b: float | None,
    alpha: float,
    tuning_users: float,
    limit: float = math.inf,
) -> SequentialResult:
    """With N = n_A + n_B, d = mean_B − mean_A and s_d² = var_A/n_A + var_B/n_B:

    the difference behaves as the mean of N draws of per-user variance sigma² = N · s_d², so
    S_N = N · d / sigma is a standardised sum at intrinsic time N (the asymptotic CS of
    Waudby-Smith et al. 2023 with the normal-mixture boundary: eq. 9 of v7, as gbstats cites it).

    - interval: d ± sigma · u(N) / N = d ± s_d · u(N) / sqrt(N), u = ``normal_mixture_bound``
      with v_opt = tuning_users and rho tuned at TUNING_ALPHA (0.05) whatever ``alpha``;
      at alpha 0.05 this is gbstats' ``sequential_interval_halfwidth(s2=N·s_d², n=N)``, since
      its rho_gb² = 1/rho turns its 2(Nrho_gb²+1) ln(sqrt(Nrho_gb²+1)/alpha)/(Nrho_gb)² into
      u(N)²/N².
    - p_value: 1 / (the mixture martingale at S_N), capped at 1:
      p = min(1, sqrt((N + rho)/rho) · exp(−S_N² / (2 (N + rho)))), S_N² = N d² / s_d²
      (gbstats' 1/e-value, Waudby-Smith et al. eq. 155). It does not depend on ``alpha``, and
      p < alpha exactly when |d| > s_d · u(N) / sqrt(N): when the interval at alpha excludes 0.

    The interval is cut to [−limit, limit] (where the difference is known to lie).
    Undefined (None): a missing arm or variance, both variances 0 (interval and p-value), an
    invalid tuning_users (both), an alpha outside (0, 1) (the interval only)."""
    if d is None or var_a is None or var_b is None or n_a is None or n_b is None:
        return SequentialResult(d, None, None, alpha, tuning_users)
    users = n_a + n_b
    se_sq = var_a / n_a + var_b / n_b
    rho = mixture_rho(tuning_users, TUNING_ALPHA)
    if rho is None or not se_sq > 0.0 or not math.isfinite(se_sq):
        return SequentialResult(d, None, None, alpha, tuning_users)
    se = math.sqrt(se_sq)
    interval = None
    bound = _bound(users, alpha, rho)
    if bound is not None:
        half = finite(se * (bound / math.sqrt(users)))
        if half is not None:
            lower, upper = finite(max(-limit, d - half)), finite(min(limit, d + half))
            if lower is not None and upper is not None:
                interval = Interval(lower, upper)
    # ln p = ½ ln(1 + N/rho) − (d/s_d)² · N / (2 (N + rho)); (d/s_d)² may overflow to inf in a
    # limit case (p then 0), never to NaN, as d is finite and s_d > 0.
    z = d / se
    log_p = 0.5 * math.log1p(users / rho) - 0.5 * (z * z) * (users / (users + rho))
    p_value = finite(1.0 if log_p >= 0.0 else math.exp(log_p))
    return SequentialResult(d, interval, p_value, alpha, tuning_users)


def _bound(v: float, alpha: float, rho: float) -> float | None:
    vf = finite(v)
    if vf is None or not vf >= 0.0 or not _valid_alpha(alpha):
        return None
    # The root of the product, not the product's: v near the float maximum stays finite.
    return finite(math.sqrt(vf + rho) * math.sqrt(math.log1p(vf / rho) - 2.0 * math.log(alpha)))


def _valid_alpha(alpha: float) -> bool:
    alpha_f = finite(alpha)
    return alpha_f is not None and 0.0 < alpha_f < 1.0
