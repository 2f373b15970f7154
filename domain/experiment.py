"""Experiments, their variants, and the deterministic bucketing of users onto the traffic split."""

from __future__ import annotations

import hashlib
import math
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from domain.errors import FieldError, ValidationFailed

BUCKETS = 10_000
"""Buckets of the split: one bucket is 0.01% of traffic, the finest share a variant may get."""

MIN_VARIANTS, MAX_VARIANTS = 2, 20
MAX_NAME_LENGTH = 200
MAX_DESCRIPTION_LENGTH = 10_000
MAX_EVENT_TYPE_LENGTH = 100


def bucket(text: str) -> int:
    """0..9999: SHA-256 of ``text`` (UTF-8), first 8 bytes as a big-endian unsigned integer,
    modulo 10,000.

    SHA-256 is in every language's standard library, so any client can reproduce an assignment;
    the modulo bias of 2**64 onto 10,000 buckets is below 1e-15.
    """
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") % BUCKETS


def bucket_of(experiment_id: str, user_id: str) -> int:
    """The user's bucket of the variant split: ``bucket("{experiment_id}:{user_id}")``."""
    return bucket(f"{experiment_id}:{user_id}")


def percentage_to_basis_points(value: float) -> int | None:
    """Exact basis points of a percentage with at most two decimals, else None.

    The shortest repr of the float is what the client wrote (``33.33``), so Decimal(repr)
    tells its decimals without the binary rounding noise of ``value * 100``.
    """
    if not math.isfinite(value):
        return None
    scaled = Decimal(repr(float(value))) * 100
    if scaled != scaled.to_integral_value():
        return None
    return int(scaled)


@dataclass(frozen=True, slots=True)
class Variant:
    id: str
    name: str
    traffic_basis_points: int
    is_control: bool

    @property
    def traffic_percentage(self) -> float:
        return self.traffic_basis_points / 100


@dataclass(frozen=True, slots=True)
class VariantDraft:
    """A variant as a client asks for it, before validation gives it an id."""

    name: str
    traffic_percentage: float
    is_control: bool | None = None


@dataclass(frozen=True)
class Experiment:
    id: str
    name: str
    description: str | None
    primary_event_type: str | None
    created_at: datetime
    variants: tuple[Variant, ...]
    # Upper bucket bound (exclusive) of each variant, in order; a 0% variant has an empty range.
    _bucket_ends: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ends, total = [], 0
        for variant in self.variants:
            total += variant.traffic_basis_points
            ends.append(total)
        object.__setattr__(self, "_bucket_ends", tuple(ends))

    @classmethod
    def create(
        cls,
        *,
        name: str,
        description: str | None,
        primary_event_type: str | None,
        variants: Sequence[VariantDraft],
        new_id: Callable[[], str],
        created_at: datetime,
    ) -> Experiment:
        """Validate a client's request as a whole (every broken rule is reported) and build it."""
        errors: list[FieldError] = []
        for field_name, text in (
            ("name", name), ("description", description), ("primary_event_type", primary_event_type)
        ):
            if text and "\x00" in text:  # no database stores it in text alike
                errors.append(FieldError(field_name, "must not contain the NUL character"))
        if not name.strip():
            errors.append(FieldError("name", "must not be blank"))
        elif len(name) > MAX_NAME_LENGTH:
            errors.append(FieldError("name", f"must be at most {MAX_NAME_LENGTH} characters"))
        if description is not None and len(description) > MAX_DESCRIPTION_LENGTH:
            errors.append(
                FieldError("description", f"must be at most {MAX_DESCRIPTION_LENGTH} characters")
            )
        if primary_event_type is not None and not 1 <= len(primary_event_type) <= MAX_EVENT_TYPE_LENGTH:
            errors.append(
                FieldError("primary_event_type", f"must be 1 to {MAX_EVENT_TYPE_LENGTH} characters")
            )
        errors.extend(_split_errors(variants))
        if errors:
            raise ValidationFailed(errors)

        explicit_control = next((i for i, v in enumerate(variants) if v.is_control), None)
        control_index = 0 if explicit_control is None else explicit_control
        experiment_id = new_id()
        return cls(
            id=experiment_id,
            name=name,
            description=description,
            primary_event_type=primary_event_type,
            created_at=created_at,
            variants=tuple(
                Variant(
                    id=new_id(),
                    name=draft.name,
                    traffic_basis_points=percentage_to_basis_points(draft.traffic_percentage) or 0,
                    is_control=i == control_index,
                )
                for i, draft in enumerate(variants)
            ),
        )

    @property
    def control(self) -> Variant:
        return next(v for v in self.variants if v.is_control)

    def variant(self, variant_id: str) -> Variant | None:
        return next((v for v in self.variants if v.id == variant_id), None)

    def variant_for_bucket(self, bucket: int) -> Variant:
        """The variant whose range of buckets holds this bucket (ranges follow the variants' order)."""
        return self.variants[bisect_right(self._bucket_ends, bucket)]

    def variant_for_user(self, user_id: str) -> Variant:
        return self.variant_for_bucket(bucket_of(self.id, user_id))


def _split_errors(variants: Sequence[VariantDraft]) -> list[FieldError]:
    errors: list[FieldError] = []
    if not MIN_VARIANTS <= len(variants) <= MAX_VARIANTS:
        errors.append(
            FieldError("variants", f"must have {MIN_VARIANTS} to {MAX_VARIANTS} variants, got {len(variants)}")
        )
    seen: set[str] = set()
    total = 0
    split_known = True
    for i, draft in enumerate(variants):
        where = f"variants[{i}]"
        if not draft.name.strip():
            errors.append(FieldError(f"{where}.name", "must not be blank"))
        elif "\x00" in draft.name:
            errors.append(FieldError(f"{where}.name", "must not contain the NUL character"))
        elif len(draft.name) > MAX_NAME_LENGTH:
            errors.append(FieldError(f"{where}.name", f"must be at most {MAX_NAME_LENGTH} characters"))
        elif draft.name in seen:
            errors.append(FieldError(f"{where}.name", f"duplicate variant name {draft.name!r}"))
        seen.add(draft.name)
        pct = draft.traffic_percentage
        basis_points = percentage_to_basis_points(pct)
        if not math.isfinite(pct) or not 0 <= pct <= 100:
            errors.append(FieldError(f"{where}.traffic_percentage", "must be a number from 0 to 100"))
            split_known = False
        elif basis_points is None:
            errors.append(FieldError(f"{where}.traffic_percentage", "must have at most two decimals"))
            split_known = False
        else:
            total += basis_points
    if split_known and variants and total != BUCKETS:
        errors.append(
            FieldError("variants", f"traffic percentages must sum to exactly 100, got {total / 100:g}")
        )
    controls = [i for i, v in enumerate(variants) if v.is_control]
    if len(controls) > 1:
        errors.append(
            FieldError(f"variants[{controls[1]}].is_control", "at most one variant may be the control")
        )
    return errors
