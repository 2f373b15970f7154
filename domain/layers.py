"""Layers (namespaces): experiments of one layer own disjoint slices of its buckets, so that no
user is in two of them. A user's layer bucket hashes the layer's own seed (domain/eligibility.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from domain.errors import FieldError, ValidationFailed
from domain.hashing import BUCKETS

MAX_LAYER_NAME_LENGTH = 200


@dataclass(frozen=True, slots=True)
class Slice:
    """A half-open range [start, end) of a layer's 10,000 buckets that one experiment owns."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end <= BUCKETS:
            raise ValueError(f"a slice lies within 0..{BUCKETS}: got [{self.start}, {self.end})")

    @property
    def size(self) -> int:
        return self.end - self.start

    def holds(self, layer_bucket_: int) -> bool:
        return self.start <= layer_bucket_ < self.end

    def overlaps(self, other: Slice) -> bool:
        return self.start < other.end and other.start < self.end


def largest_free(taken: list[Slice]) -> int:
    """The size of the largest free range of buckets among ``taken``: what one new slice can get."""
    edges = [0] + [x for s in sorted(taken, key=lambda s: s.start) for x in (s.start, s.end)] + [BUCKETS]
    return max(edges[i + 1] - edges[i] for i in range(0, len(edges), 2))


def free_slice(taken: list[Slice], size: int) -> Slice | None:
    """The lowest free range of ``size`` buckets among ``taken`` (first fit), or None. New
    experiments take free buckets only, so no user of a running experiment is ever moved."""
    start = 0
    for used in sorted(taken, key=lambda s: s.start):
        if used.start - start >= size:
            break
        start = max(start, used.end)
    return Slice(start, start + size) if BUCKETS - start >= size else None


@dataclass(frozen=True, slots=True)
class Layer:
    id: str
    name: str
    seed: str  # random, independent of every experiment's id: the layer's own hash
    created_at: datetime

    @classmethod
    def create(cls, name: str, new_id, seed: str, created_at: datetime) -> Layer:  # noqa: ANN001
        if not name.strip() or len(name) > MAX_LAYER_NAME_LENGTH or "\x00" in name:
            raise ValidationFailed([FieldError("name", f"must be 1 to {MAX_LAYER_NAME_LENGTH} characters, not blank")])
        return cls(new_id(), name, seed, created_at)


@dataclass(frozen=True, slots=True)
class LayerSlot:
    """Where an experiment sits in its layer: the layer, its seed, and the slice it owns."""

    layer_id: str
    seed: str
    slice: Slice


@dataclass(frozen=True, slots=True)
class Holdout:
    """A fixed share of all users kept out of every experiment that opts in; their outcomes
    against the exposed users' tell what the experiments did together."""

    id: str
    name: str
    seed: str
    basis_points: int
    created_at: datetime

    @classmethod
    def create(cls, name: str, percentage: float, new_id, seed: str, created_at: datetime) -> Holdout:  # noqa: ANN001
        errors = []
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_LAYER_NAME_LENGTH or "\x00" in name:
            errors.append(FieldError("name", f"must be 1 to {MAX_LAYER_NAME_LENGTH} characters, not blank"))
        scaled = Decimal(repr(float(percentage))) * 100 if math.isfinite(percentage) else None
        if scaled is None or scaled != scaled.to_integral_value() or not 1 <= scaled <= BUCKETS // 2:
            errors.append(FieldError("percentage", "must be from 0.01 to 50, in 0.01% steps"))
        if errors:
            raise ValidationFailed(errors)
        return cls(new_id(), name, seed, int(scaled), created_at)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class HoldoutRef:
    """What an experiment that opts into a holdout needs to know of it to decide."""

    holdout_id: str
    seed: str
    basis_points: int


class SliceTaken(Exception):
    """The slice overlaps one taken meanwhile (a racing creation); the caller picks again."""


class LayerFull(ValidationFailed):
    def __init__(self, free: int, wanted: int) -> None:
        super().__init__([FieldError("layer.percentage", f"the layer has {free / 100:g}% free in one piece, "
                                                          f"not {wanted / 100:g}%")])
