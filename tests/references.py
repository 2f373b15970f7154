"""Reference formulas the tests check the service against, written here from the papers, apart
from the service's own code."""

from __future__ import annotations

import math

TUNING_ALPHA = 0.05


def mixture_rho(tuning_users: float) -> float:
    """Howard et al. (2021): the normal mixture's rho, tightest at ``tuning_users`` for alpha 0.05."""
    log_inv = math.log(1 / TUNING_ALPHA)
    return tuning_users / (2 * log_inv + math.log(1 + 2 * log_inv))


def sequence_half_width(se: float, users: float, tuning_users: float, alpha: float = 0.05) -> float:
    """The two-sided normal-mixture confidence sequence's half-width for a difference whose
    standard error is ``se``, over ``users`` users of both arms as intrinsic time."""
    rho = mixture_rho(tuning_users)
    bound = math.sqrt((users + rho) * (math.log(1 + users / rho) + 2 * math.log(1 / alpha)))
    return se * bound / math.sqrt(users)


def always_valid_p(difference: float, se: float, users: float, tuning_users: float) -> float:
    """1 / the mixture martingale at the standardised difference, capped at 1."""
    rho = mixture_rho(tuning_users)
    z_sq = (difference / se) ** 2
    return min(1.0, math.sqrt((users + rho) / rho) * math.exp(-z_sq * users / (2 * (users + rho))))
