"""The one gate every number of the statistics passes: plain finite floats, or None."""

from __future__ import annotations

import math


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
