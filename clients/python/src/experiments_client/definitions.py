"""What local assignment needs of each experiment: the document ``GET /definitions`` answers.

Every field is what the service itself decides with (docs/api.md, "Local assignment"); shares
are in basis points (1/100 of a percent), so no float rounding can move a bucket boundary.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

Status = Literal["draft", "running", "paused", "stopped", "archived"]
Reason = Literal[
    "assigned", "forced", "winner", "draft", "paused", "archived", "audience", "holdout", "layer", "coverage"
]


class VariantDefinition(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    id: str
    name: str
    traffic_basis_points: int  # 0..10,000; the variants' sum to 10,000, in this order
    is_control: bool


class LayerDefinition(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    id: str
    seed: str
    start: int  # the half-open slice [start, end) of the layer's 10,000 buckets
    end: int


class HoldoutDefinition(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    id: str
    seed: str
    basis_points: int


class OverrideDefinition(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    user_id: str
    variant_id: str


class ExperimentDefinition(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    id: str
    name: str
    status: Status
    variants: tuple[VariantDefinition, ...]
    coverage_basis_points: int = 10_000
    audience: dict[str, Any] | None = None  # the rule as the experiment holds it (docs/experiments-that-live.md)
    layer: LayerDefinition | None = None
    holdout: HoldoutDefinition | None = None
    winner_variant_id: str | None = None
    overrides: tuple[OverrideDefinition, ...] = ()


class Definitions(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    experiments: tuple[ExperimentDefinition, ...] = ()


class Decision(msgspec.Struct, frozen=True):
    """What a user is served, decided in-process: the server's answer but for ``assigned_at``
    (the service stores the exposure's own time when it is reported)."""

    experiment_id: str
    user_id: str
    variant_id: str
    variant_name: str
    in_experiment: bool
    reason: Reason


class Exposure(msgspec.Struct, frozen=True, omit_defaults=True):
    """One item of ``POST /exposures``: a user served by local assignment, reported so that the
    service stores the assignment (reason ``assigned``) or the holdout membership (``holdout``)."""

    experiment_id: str
    user_id: str
    variant_id: str
    timestamp: str  # RFC 3339, UTC: when the user was served
    attributes: dict[str, Any] | None = None  # sent when the experiment has an audience
