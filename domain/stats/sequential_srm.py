"""Sequential sample-ratio mismatch: a check that stays valid however often it is looked at.

The fixed-horizon check (``sample_ratio.srm_check``) is valid for one look at a sample size set in
advance; a dashboard that re-runs it on every refresh flags correct splits far more often than
its alpha. This is the Dirichlet–multinomial test of Lindon & Malek (2022), "Anytime-Valid
Inference For Multinomial Count Data" (NeurIPS 2022, arXiv:2011.03567), the sequential SRM test
of Optimizely's ``ssrm`` package.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import special

from domain.stats._floats import finite
from domain.stats.sample_ratio import SRM_ALPHA, configured_split

DEFAULT_CONCENTRATION = 10_000.0
"""Of the Dirichlet mixture: the prior puts Dirichlet(10,000 × shares) on the true split, so
a variant's true share has a prior standard deviation of sqrt(share × (1 − share) / 10,001):
0.5 percentage points for a 50/50 split, i.e. the mixture is centred on imbalances of about 1%
of a variant's share (50.5/49.5). It is the default of Optimizely's ``ssrm``, and in simulation
(50/50 configured, a look after every 1,000 users, alpha 0.001) the best of concentrations
100 … 100,000 at a 50.5/49.5 split: flagged after a median 156,000 users, against 163,000 for
3,000, 169,000 for 30,000 and 189,000 for 100; the price is speed on gross breaks (52/48: a
median 16,000 users, against 11,000 for 1,000)."""


@dataclass(frozen=True, slots=True)
class SequentialSampleRatio:
    log_bayes_factor: float | None  # of a mismatch, over the variants configured to receive users
    p_value: float | None  # anytime-valid: min(1, 1 / Bayes factor)
    mismatch: bool  # p_value < alpha, or users in a variant configured to receive nobody


def sequential_srm_check(
    observed: Sequence[int],
    expected_shares: Sequence[float],
    alpha: float = SRM_ALPHA,
    concentration: float = DEFAULT_CONCENTRATION,
) -> SequentialSampleRatio:
    """The Bayes factor of a mismatch on the users per variant so far, and its p-value.

    Against the multinomial with the configured shares ``p``, the alternative is the mixture of
    multinomials over Dirichlet(concentration × p): the Dirichlet–multinomial. On counts ``x``
    (n users; ``a = concentration × p``, ``c = concentration``) the Bayes factor is, in closed
    form (Lindon & Malek 2022, section 3; the multinomial coefficients cancel)::

        BF = Γ(c) / Γ(c + n) · Π Γ(a_i + x_i) / Γ(a_i) / Π p_i ** x_i

    Because both likelihoods depend on the order of arrival only through the counts, this is
    the same number as the product of the one-user-at-a-time Bayes factors: under a correct
    split it is a nonnegative martingale with mean 1, and by Ville's inequality the chance that
    it EVER reaches 1 / alpha, over an unlimited number of looks, is at most alpha. So
    ``p_value = min(1, 1 / BF)`` is anytime-valid and ``mismatch = p_value < alpha`` may be
    checked after every user, every refresh, with no record of earlier looks and no limit on
    their number. (The running minimum over earlier looks, as in ``ssrm``, is the same test
    made sticky; without the history a flag can clear again as the counts move back, but the
    chance of it ever being raised under a correct split stays at most alpha.)

    As ``srm_check``: users in a variant configured to receive nobody are a mismatch in any case;
    fewer than two variants with a positive share, or counts that are not whole numbers ≥ 0,
    leave the test undefined. With no users yet the Bayes factor is 1 (no evidence: p = 1).
    """
    split = configured_split(observed, expected_shares, whole=True)
    if split is None:
        return SequentialSampleRatio(log_bayes_factor=None, p_value=None, mismatch=False)
    active, leaked = split
    if len(active) < 2:
        return SequentialSampleRatio(log_bayes_factor=None, p_value=None, mismatch=leaked)
    log_bf = _log_bayes_factor(active, concentration)
    p_value = None
    if log_bf is not None:
        p_value = 1.0 if log_bf <= 0.0 else finite(math.exp(-log_bf))
    alpha_f = finite(alpha)
    significant = p_value is not None and alpha_f is not None and p_value < alpha_f
    return SequentialSampleRatio(
        log_bayes_factor=log_bf, p_value=p_value, mismatch=significant or leaked
    )


_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def _log_bayes_factor(active: list[tuple[float, float]], concentration: float) -> float | None:
    # log BF written out in log-gammas subtracts numbers of size n log n to leave one of size 1
    # (10 million users: 1.5e8 − 1.5e8, losing eight digits). With Stirling's split
    # log Γ(z) = (z − ½) log z − z + ½ log 2π + δ(z) the large parts cancel exactly on paper,
    # leaving, with posterior means q_i = (a_i + x_i) / (c + n) and u_i = q_i / p_i = 1 + r_i,
    #   log BF = (c + n) Σ p_i (u_i log u_i − r_i) − ½ Σ log u_i − (k − 1)/2 · log(1 + n/c)
    #            + Σ [δ(a_i + x_i) − δ(a_i)] − [δ(c + n) − δ(c)]
    # (Σ p_i r_i = 0 dropped the linear term), where every term is computed to full precision.
    conc = finite(concentration)
    if conc is None or not conc > 0.0:
        return None
    try:
        share_sum = math.fsum(s for _, s in active)
        n = math.fsum(c for c, _ in active)
        if not math.isfinite(share_sum) or not math.isfinite(n):
            return None
        if n == 0.0:
            return 0.0
        big = conc + n
        kl_terms, log_u_terms, delta_terms = [], [], [_delta(conc), -_delta(big)]
        for x, s in active:
            p = s / share_sum
            a = conc * p
            if not (p > 0.0 and a > 0.0):
                return None
            scale = big * p
            r = (x - n * p) / scale
            u = (a + x) / scale
            log_u = math.log1p(r) if abs(r) < 0.5 else math.log(u)
            kl_terms.append(p * (u * log_u - r))
            log_u_terms.append(log_u)
            delta_terms += [_delta(a + x), -_delta(a)]
        value = (
            big * math.fsum(kl_terms)
            - 0.5 * math.fsum(log_u_terms)
            - 0.5 * (len(active) - 1) * math.log1p(n / conc)
            + math.fsum(delta_terms)
        )
        return finite(value)
    except (OverflowError, ZeroDivisionError, ValueError):
        return None


def _delta(z: float) -> float:
    # Stirling's error δ(z) = log Γ(z) − (z − ½) log z + z − ½ log 2π. Its asymptotic series
    # has converged to double precision from z = 15 (the next term is below 3e-16 there).
    if z < 15.0:
        return float(special.gammaln(z)) - (z - 0.5) * math.log(z) + z - _HALF_LOG_2PI
    zz = 1.0 / (z * z)
    return (
        1.0 / 12.0
        - zz * (1.0 / 360.0 - zz * (1.0 / 1260.0 - zz * (1.0 / 1680.0 - zz / 1188.0)))
    ) / z
