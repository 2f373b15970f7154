"""Sufficient statistics as values: what a store sums up, and what the tests take.

Shaped like gbstats' ``ProportionStatistic`` and ``SampleMeanStatistic``: the statistics of
disjoint groups add with ``+`` to the statistics of their union, and the default value is the
zero. What follows from them (rate, mean, variance) is None where the data leave it undefined.
"""

from __future__ import annotations

import numbers
import sys
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

from domain.stats._floats import finite

_EPS = sys.float_info.epsilon


@dataclass(frozen=True, slots=True)
class Proportion:
    """``x`` of ``n`` units have the outcome: users who converted, of the users assigned."""

    n: int = 0
    x: int = 0

    def __add__(self, other: Proportion) -> Proportion:
        if not isinstance(other, Proportion):
            return NotImplemented
        return Proportion(self.n + other.n, self.x + other.x)

    @property
    def counts(self) -> tuple[float, float] | None:
        """(x, n) as floats when they make a proportion: 0 ≤ x ≤ n and n ≥ 1."""
        # Counts come from storage; a pair that is no proportion is undefined, not an error.
        xf, nf = finite(self.x), finite(self.n)
        if xf is None or nf is None or nf < 1 or xf < 0 or xf > nf:
            return None
        return xf, nf

    @property
    def rate(self) -> float | None:
        counts = self.counts
        return None if counts is None else counts[0] / counts[1]

    @property
    def variance(self) -> float | None:
        """Of one unit's outcome (0 or 1): rate × (1 − rate)."""
        rate = self.rate
        return None if rate is None else rate * (1.0 - rate)


@dataclass(frozen=True, slots=True)
class SampleMean:
    """``n`` units and the sum and sum of squares of one value per unit (a user's revenue,
    0 for users without any). Integer sums (cents) keep the variance exact."""

    n: int = 0
    total: float = 0  # an int zero, so that adding it keeps integer sums integers
    total_sq: float = 0

    def __add__(self, other: SampleMean) -> SampleMean:
        if not isinstance(other, SampleMean):
            return NotImplemented
        return SampleMean(
            self.n + other.n, self.total + other.total, self.total_sq + other.total_sq
        )

    @property
    def units(self) -> float | None:
        """n as a float when it counts something: a whole number ≥ 1."""
        nf = finite(self.n)
        return nf if nf is not None and nf >= 1 and nf == int(nf) else None

    @property
    def mean(self) -> float | None:
        nf, total = self.units, finite(self.total)
        return None if nf is None or total is None else finite(total / nf)

    @property
    def variance(self) -> float | None:
        """The sample variance (n − 1 in the denominator); None below two units."""
        nf = self.units
        if nf is None or nf < 2:
            return None
        s, ss = _exact(self.total), _exact(self.total_sq)
        if s is None or ss is None:
            return None
        n = int(nf)
        # sumsq − sum²/n subtracts two nearly equal numbers; in exact rationals it adds no
        # rounding of its own, so only the rounding already in the sums remains.
        deviations = ss - s * s / n
        exact_inputs = all(isinstance(v, numbers.Integral) for v in (self.total, self.total_sq))
        # With float sums, a residual this small relative to sumsq is within the worst-case
        # error of naive summation of n terms: indistinguishable from zero variance (every user
        # spent exactly 9.99).
        if deviations <= 0 or (not exact_inputs and deviations <= Fraction(_EPS) * n * abs(ss)):
            return 0.0
        return finite(deviations / (n - 1))


def _exact(value: object) -> Fraction | None:
    # Integers stay exact; floats are taken at their exact binary value.
    if isinstance(value, numbers.Integral):
        return Fraction(int(value))
    vf = finite(value)
    return None if vf is None else Fraction(vf)


class Mean(Protocol):
    """What the read-outs of a mean per user take: ``n`` users, the mean, the per-user variance
    and the users as a float when they make a sample (``units``). ``SampleMean``, or an arm
    adjusted by CUPED (``cuped.AdjustedMean``)."""

    @property
    def n(self) -> int: ...

    @property
    def mean(self) -> float | None: ...

    @property
    def variance(self) -> float | None: ...

    @property
    def units(self) -> float | None: ...
