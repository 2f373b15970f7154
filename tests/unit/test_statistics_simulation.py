"""Seeded Monte Carlo checks of the z-test's false-positive rate and Newcombe coverage."""

from __future__ import annotations

import math

import numpy as np
import pytest

from domain.stats import Proportion, two_proportion_test

SIMULATIONS = 20_000


def _three_standard_errors(rate: float, simulations: int) -> float:
    return 3.0 * math.sqrt(rate * (1.0 - rate) / simulations)


def test_a_a_false_positive_rate_is_nominal() -> None:
    rng = np.random.default_rng(20240501)
    users = 1_000
    control = rng.binomial(users, 0.10, size=SIMULATIONS)
    variant = rng.binomial(users, 0.10, size=SIMULATIONS)

    false_positives = 0
    undefined = 0
    for x1, x2 in zip(control.tolist(), variant.tolist()):
        p_value = two_proportion_test(Proportion(users, x1), Proportion(users, x2)).p_value
        if p_value is None:
            undefined += 1
        elif p_value < 0.05:
            false_positives += 1

    assert undefined == 0
    rate = false_positives / SIMULATIONS
    assert abs(rate - 0.05) <= _three_standard_errors(0.05, SIMULATIONS), rate


@pytest.mark.parametrize(
    ("rate_control", "rate_variant", "users"),
    [
        (0.10, 0.11, 2_000),  # a real difference at a typical conversion rate
        (0.002, 0.002, 1_000),  # rare events, no difference: frequent 0/1000 arms
        (0.002, 0.003, 1_000),  # rare events with a difference
    ],
)
def test_newcombe_interval_covers_true_difference(
    rate_control: float, rate_variant: float, users: int
) -> None:
    rng = np.random.default_rng([int(rate_control * 1e4), int(rate_variant * 1e4), users])
    control = rng.binomial(users, rate_control, size=SIMULATIONS)
    variant = rng.binomial(users, rate_variant, size=SIMULATIONS)
    true_difference = rate_variant - rate_control

    # Rare-event draws repeat a lot, so each distinct outcome is evaluated once.
    outcomes, multiplicity = np.unique(
        np.stack([control, variant], axis=1), axis=0, return_counts=True
    )
    covered = 0
    for (x1, x2), times in zip(outcomes.tolist(), multiplicity.tolist()):
        interval = two_proportion_test(Proportion(users, x1), Proportion(users, x2)).interval
        assert interval is not None
        if interval.lower <= true_difference <= interval.upper:
            covered += times

    coverage = covered / SIMULATIONS
    assert coverage >= 0.95 - _three_standard_errors(0.95, SIMULATIONS), coverage
