"""Capping outliers: a metric's per-user figures limited from above, at a fixed value or at a
percentile of the figures themselves (docs/statistics.md, Capping outliers).

One user with a thousand purchases (a bot, a reseller, a test account) can move a mean per user
more than every other user together, and widen its interval until no test decides. Capping
(winsorizing from above, as GrowthBook's and Eppo's) replaces each user's figure ``m`` by
``min(m, c)``: the mean and the variance then come from the capped figures.

- ``value``: ``c`` is the given value.
- ``percentile``: ``c`` is the nearest-rank percentile ``p`` of the figures of the users with at
  least one counted event of the metric's type, pooled over every variant (so that every
  variant is capped at the same ``c``): the smallest figure with at least a share ``p`` of the
  figures at or below it, the ``⌈p·N⌉``-th smallest of N (numpy's ``inverted_cdf``). Users
  without an event have no figure (0) and do not take part.

A percentile needs every figure, so a capped metric's results read the per-user totals of its
event type (one row per such user), where an uncapped one reads a few totals per variant.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from typing import Any

from domain.errors import FieldError
from domain.stats import SampleMean


class CapKind(StrEnum):
    VALUE = "value"
    PERCENTILE = "percentile"


@dataclass(frozen=True, slots=True)
class Cap:
    kind: CapKind
    at: float  # the value, or the percentile as a share: 0.99

    def document(self) -> dict[str, float]:
        return {self.kind.value: self.at}

    def threshold(self, figures: Sequence[float]) -> float | None:
        """``c``: the value, or the percentile of ``figures`` (None for none)."""
        if self.kind is CapKind.VALUE:
            return self.at
        if not figures:
            return None
        # ⌈p·N⌉ in exact arithmetic: p·N in floats can land just above a whole number.
        rank = max(1, math.ceil(Fraction(self.at) * len(figures)))
        return sorted(figures)[rank - 1]


def capped_mean(users: int, figures: Iterable[float], at: float | None) -> SampleMean:
    """The mean per user of ``users`` users, of whom those with events have ``figures`` (the
    others count 0), each figure capped at ``at`` (None: not capped)."""
    total: float = 0
    total_sq: float = 0
    for m in figures:
        c = m if at is None or m <= at else at
        total += c
        total_sq += c * c
    return SampleMean(users, total, total_sq)


def parse_cap(value: Any, where: str, errors: list[FieldError]) -> Cap | None:
    """``{"value": 500}`` or ``{"percentile": 0.99}``; each fault named in ``errors``."""
    if value is None:
        return None
    expected = 'must be {"value": a number above 0} or {"percentile": a share between 0 and 1, as 0.99}'
    if not isinstance(value, dict) or len(value) != 1:
        errors.append(FieldError(where, expected))
        return None
    (key, at), = value.items()
    try:
        kind = CapKind(key)
    except ValueError:
        errors.append(FieldError(f"{where}.{key}", f"is not a kind of cap: {expected}"))
        return None
    if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at):
        errors.append(FieldError(f"{where}.{key}", "must be a finite number"))
        return None
    if kind is CapKind.VALUE and not at > 0:
        errors.append(FieldError(f"{where}.{key}", "must be above 0"))
        return None
    if kind is CapKind.PERCENTILE and not 0 < at < 1:
        errors.append(FieldError(f"{where}.{key}", "must be a share between 0 and 1 (0.99: the 99th percentile)"))
        return None
    return Cap(kind, float(at))
