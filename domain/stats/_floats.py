"""The one gate every number of the statistics passes: plain finite floats, or None."""

from __future__ import annotations

import math
import numbers
from fractions import Fraction


def finite(value: object) -> float | None:
    # numpy scalars become plain floats, and anything non-finite becomes the "undefined" marker
    # None: results go out as JSON, which has no NaN or infinity.
    try:
        result = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    return result if math.isfinite(result) else None


def clip(value: float, low: float, high: float) -> float:
    return min(high, max(low, value))


def exact(value: object) -> int | Fraction | None:
    """A sum taken exactly: integers stay plain ints (exact, and far faster than Fractions in
    the simulations); floats at their exact binary value; None for anything non-finite."""
    if isinstance(value, numbers.Integral):
        return int(value)
    vf = finite(value)
    return None if vf is None else Fraction(vf)


def quotient(numerator: int | Fraction, denominator: int | Fraction) -> float | None:
    """Rounded once: int / int is a correctly rounded float (or an OverflowError past the float
    range), and a Fraction rounds once on its way to a float. None past the range or for 0."""
    try:
        return finite(numerator / denominator)
    except (OverflowError, ZeroDivisionError):
        return None
