"""An experiment as the rows of its tables, and back: the one conversion each way."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from domain.analysis import Analysis
from domain.event import from_micros, to_micros
from domain.experiment import Experiment, Override, Variant
from domain.layers import HoldoutRef, LayerSlot, Slice
from domain.lifecycle import Status
from domain.targeting import parse_audience

RowMap = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ExperimentRows:
    experiment: dict[str, Any]  # its row of ``experiments``
    variants: list[dict[str, Any]]  # of ``variants``, with their positions
    overrides: list[dict[str, Any]]  # of ``experiment_overrides``


def experiment_to_rows(experiment: Experiment) -> ExperimentRows:
    """The rows that store ``experiment``. Its layer's seed and its holdout's seed and share
    are rows of ``layers`` and ``holdouts``, written when those are made: here, their ids."""
    e = experiment
    return ExperimentRows(
        experiment={
            "id": e.id,
            "name": e.name,
            "description": e.description,
            "primary_event_type": e.primary_event_type,
            "created_at": to_micros(e.created_at),
            "status": e.status.value,
            "coverage_basis_points": e.coverage_basis_points,
            "audience": None if e.audience is None else msgspec.json.encode(e.audience.source).decode(),
            "winner_variant_id": e.winner_variant_id,
            "started_at": None if e.started_at is None else to_micros(e.started_at),
            "stopped_at": None if e.stopped_at is None else to_micros(e.stopped_at),
            "version": e.version,
            "layer_id": None if e.layer is None else e.layer.layer_id,
            "slice_start": None if e.layer is None else e.layer.slice.start,
            "slice_end": None if e.layer is None else e.layer.slice.end,
            "holdout_id": None if e.holdout is None else e.holdout.holdout_id,
            # Always written out: a later default must not change how a running test is read.
            "analysis": msgspec.json.encode(e.analysis.document()).decode(),
        },
        variants=[
            {
                "id": v.id,
                "experiment_id": e.id,
                "position": position,
                "name": v.name,
                "traffic_basis_points": v.traffic_basis_points,
                "is_control": v.is_control,
            }
            for position, v in enumerate(e.variants)
        ],
        overrides=[
            {"experiment_id": e.id, "user_id": o.user_id, "variant_id": o.variant_id, "forced_at": to_micros(o.forced_at)}
            for o in e.overrides
        ],
    )


def experiment_from_rows(
    row: RowMap,
    variants: Iterable[RowMap],
    overrides: Iterable[RowMap],
    layer_seeds: Mapping[str, str],
    holdouts: Mapping[str, HoldoutRef],
) -> Experiment:
    """The experiment of ``row`` with its ``variants`` (in their order) and ``overrides``;
    ``layer_seeds`` and ``holdouts`` hold, by id, its layer's seed and its holdout."""
    r = row
    return Experiment(
        id=r["id"],
        name=r["name"],
        description=r["description"],
        primary_event_type=r["primary_event_type"],
        created_at=from_micros(r["created_at"]),
        variants=tuple(
            Variant(v["id"], v["name"], v["traffic_basis_points"], bool(v["is_control"])) for v in variants
        ),
        status=Status(r["status"]),
        coverage_basis_points=r["coverage_basis_points"],
        audience=None if r["audience"] is None else parse_audience(msgspec.json.decode(r["audience"])),
        winner_variant_id=r["winner_variant_id"],
        started_at=None if r["started_at"] is None else from_micros(r["started_at"]),
        stopped_at=None if r["stopped_at"] is None else from_micros(r["stopped_at"]),
        overrides=tuple(Override(o["user_id"], o["variant_id"], from_micros(o["forced_at"])) for o in overrides),
        layer=None if r["layer_id"] is None else LayerSlot(
            r["layer_id"], layer_seeds[r["layer_id"]], Slice(r["slice_start"], r["slice_end"])
        ),
        holdout=None if r["holdout_id"] is None else holdouts[r["holdout_id"]],
        version=r["version"],
        analysis=Analysis() if r["analysis"] is None else Analysis.parse(msgspec.json.decode(r["analysis"])),
    )
