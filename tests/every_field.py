"""An experiment with every field set, none to its default: what a conversion of experiments
must carry whole, both ways."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from domain.analysis import Analysis
from domain.experiment import Experiment, Override, Variant
from domain.layers import Holdout, HoldoutRef, Layer, LayerSlot, Slice
from domain.lifecycle import Status
from domain.targeting import parse_audience

T = datetime(2026, 11, 1, 12, 30, 15, 123456, tzinfo=UTC)
LAYER = Layer("every-layer", "every layer", "layer-seed", T)
HOLDOUT = Holdout("every-holdout", "every holdout", "holdout-seed", 250, T)


def an_experiment_with_every_field() -> Experiment:
    """Its layer and holdout are LAYER and HOLDOUT, which a store must hold first."""
    experiment = Experiment(
        id="every-field",
        name="every field",
        description="a description",
        primary_event_type="purchase",
        created_at=T,
        variants=(Variant("ev-a", "a", 2500, False), Variant("ev-b", "b", 7500, True)),
        status=Status.STOPPED,
        coverage_basis_points=4321,
        audience=parse_audience({"all": [{"attribute": "plan", "op": "eq", "value": "pro"},
                                         {"not": {"attribute": "age", "op": "lt", "value": 18}}]}),
        winner_variant_id="ev-b",
        started_at=T.replace(hour=13),
        stopped_at=T.replace(hour=14, microsecond=654321),
        overrides=(Override("qa-1", "ev-a", T.replace(minute=40)), Override("qa-2", "ev-b", T.replace(minute=45))),
        layer=LayerSlot(LAYER.id, LAYER.seed, Slice(1000, 5321)),
        holdout=HoldoutRef(HOLDOUT.id, HOLDOUT.seed, HOLDOUT.basis_points),
        version=7,
        analysis=Analysis.parse({"method": "bayesian", "sequential_tuning_users": 4321, "prior": {"mean": 0.01, "sd": 0.2},
                                 "correction": "bh"}),
    )
    unset = [f.name for f in fields() if getattr(experiment, f.name) in (None, (), f.default)]
    # A field added to Experiment must be set here, so that every conversion's test covers it.
    assert not unset, f"set {unset} in an_experiment_with_every_field"
    return experiment


def fields() -> list[dataclasses.Field]:  # type: ignore[type-arg]
    """The fields a conversion carries: those the constructor takes."""
    return [f for f in dataclasses.fields(Experiment) if f.init]


def differences(got: Experiment, want: Experiment) -> list[str]:
    """The fields in which ``got`` is not ``want``, named."""
    return [f.name for f in fields() if getattr(got, f.name) != getattr(want, f.name)]
