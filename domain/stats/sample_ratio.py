"""Sample-ratio mismatch: are the users split across variants as the experiment says?"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import special

from domain.stats._floats import clip, finite

SRM_ALPHA = 0.001
"""Strict on purpose: a mismatch says the assignment is broken, so it must rarely cry wolf."""


@dataclass(frozen=True, slots=True)
class SampleRatio:
    chi_square: float | None  # Pearson's, over the variants configured to receive users
    p_value: float | None
    mismatch: bool  # p_value < alpha, or users in a variant configured to receive nobody


def srm_check(
    observed: Sequence[int], expected_shares: Sequence[float], alpha: float = SRM_ALPHA
) -> SampleRatio:
    """Pearson's chi-square goodness of fit of users per variant to the configured shares."""
    split = configured_split(observed, expected_shares)
    if split is None:
        return SampleRatio(chi_square=None, p_value=None, mismatch=False)
    active, leaked = split
    if len(active) < 2:
        return SampleRatio(chi_square=None, p_value=None, mismatch=leaked)
    chi_square = _pearson_chi_square(active)  # type: ignore[arg-type]
    p_value = None
    if chi_square is not None:
        p_value = finite(clip(float(special.chdtrc(len(active) - 1, chi_square)), 0.0, 1.0))
    alpha_f = finite(alpha)
    significant = p_value is not None and alpha_f is not None and p_value < alpha_f
    return SampleRatio(chi_square=chi_square, p_value=p_value, mismatch=significant or leaked)


def configured_split(
    observed: Sequence[float], expected_shares: Sequence[float], *, whole: bool = False
) -> tuple[list[tuple[float, float]], bool] | None:
    """What every check of the split starts from: (count, share) of each variant configured to
    receive users, and whether any user landed in a variant configured to receive nobody (an
    assignment bug, whatever a test says of the others). None when the counts are no counts:
    a length that is not the shares', a count missing or below 0, or (``whole``) not whole."""
    if len(observed) != len(expected_shares):
        return None
    counts = [finite(o) for o in observed]
    shares = [finite(s) for s in expected_shares]
    if any(c is None or c < 0 or (whole and c != math.floor(c)) for c in counts):
        return None
    leaked = any((s is None or s <= 0) and c > 0 for c, s in zip(counts, shares))  # type: ignore[operator]
    active = [(c, s) for c, s in zip(counts, shares) if s is not None and s > 0]
    return active, leaked  # type: ignore[return-value]


def _pearson_chi_square(active: list[tuple[float, float]]) -> float | None:
    # Absurd magnitudes (overflowing sums, shares that underflow the expected count to zero)
    # make the statistic undefined rather than an exception.
    try:
        total = math.fsum(c for c, _ in active)
        share_sum = math.fsum(s for _, s in active)
        if not total > 0:
            return None
        expected = [total * (s / share_sum) for _, s in active]
        if not all(e > 0 and math.isfinite(e) for e in expected):
            return None
        return finite(math.fsum((c - e) ** 2 / e for (c, _), e in zip(active, expected)))
    except (OverflowError, ZeroDivisionError, ValueError):
        return None
