"""What the tests check the service against: reference formulas written here from the papers,
apart from the service's own code, and the reference libraries installed beside it."""

from __future__ import annotations

import importlib
import math
import os
from typing import Any

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


def relative_loss_if_kept(alpha_a: float, beta_a: float, alpha_b: float, beta_b: float) -> float:
    """E[max(0, p_B / p_A − 1)] for p_A ~ Beta(alpha_a, beta_a), p_B ~ Beta(alpha_b, beta_b), by
    scipy's adaptive quadrature over B's posterior: ∫ f_B(s) (s·E[1/p_A; p_A < s] − P(p_A < s))
    ds, where E[1/p_A; p_A < s] = c·I_s(alpha_a − 1, beta_a), c = (alpha_a + beta_a − 1) /
    (alpha_a − 1). Where draws cannot check it: with one conversion in the control (alpha_a = 2),
    E[1 / p_A] is finite but E[1 / p_A²] is not."""
    from scipy import integrate, stats

    c = (alpha_a + beta_a - 1) / (alpha_a - 1)
    value, _ = integrate.quad(
        lambda s: (
            stats.beta.pdf(s, alpha_b, beta_b)
            * (s * c * stats.beta.cdf(s, alpha_a - 1, beta_a) - stats.beta.cdf(s, alpha_a, beta_a))
        ),
        0,
        1,
        points=[0.001, 0.01],
        epsabs=1e-14,
        limit=400,
    )
    return value


def reference_library(module: str) -> Any:
    """A reference library a test checks the service against (confseq), imported; skipped where
    it is not installed, except in CI, which installs it (.ci/run), where its absence fails."""
    import pytest  # here: the vector generators import this module where pytest is not installed

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        message = f"{module} is not installed (.ci/run says how): {exc}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
