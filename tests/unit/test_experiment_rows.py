"""The SQL store's one conversion of an experiment to its rows and back, held whole."""

from __future__ import annotations

from adapters.sqlalchemy.experiment_rows import experiment_from_rows, experiment_to_rows
from adapters.sqlalchemy.tables import experiment_overrides, experiments, variants
from domain.experiment import Experiment
from domain.layers import HoldoutRef
from tests.every_field import HOLDOUT, LAYER, an_experiment_with_every_field, differences


def round_trip(experiment: Experiment) -> Experiment:
    rows = experiment_to_rows(experiment)
    # What the layers and holdouts tables hold for the ids the experiment's row names.
    return experiment_from_rows(
        rows.experiment,
        rows.variants,
        rows.overrides,
        {LAYER.id: LAYER.seed},
        {HOLDOUT.id: HoldoutRef(HOLDOUT.id, HOLDOUT.seed, HOLDOUT.basis_points)},
    )


def test_every_field_of_an_experiment_goes_to_its_rows_and_back() -> None:
    experiment = an_experiment_with_every_field()
    back = round_trip(experiment)
    assert differences(back, experiment) == []
    assert back == experiment


def test_an_experiment_with_only_its_defaults_comes_back_as_it_was() -> None:
    full = an_experiment_with_every_field()
    bare = Experiment(full.id, full.name, None, None, full.created_at, full.variants)
    assert differences(round_trip(bare), bare) == []


def test_the_rows_fill_exactly_the_columns_of_their_tables() -> None:
    rows = experiment_to_rows(an_experiment_with_every_field())
    assert set(rows.experiment) == set(experiments.c.keys())
    assert all(set(v) == set(variants.c.keys()) for v in rows.variants)
    assert all(set(o) == set(experiment_overrides.c.keys()) for o in rows.overrides)
