"""The Bayesian read-out against its published test vectors (docs/stats-vectors/bayesian.json),
seeded Monte-Carlo draws of the posteriors (tests/stats_vectors/gen_bayesian.py): each case one
figure, within 4 of the draws' standard errors of it."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pytest

from domain.stats.bayesian import (
    BayesianResult,
    NormalPrior,
    bayesian_means,
    bayesian_proportions,
)
from domain.stats.values import Proportion, SampleMean
from tests.stats_vectors.vectors import load, mismatches

VECTORS = load("bayesian")["cases"]


@cache
def computed(statistic: str, key: str) -> BayesianResult:
    # One computation per input: the cases of an input differ only in the figure they check.
    i = json.loads(key)
    prior = None if i["prior"] is None else NormalPrior(**i["prior"])
    if statistic == "bayesian_proportions":
        a, b = (Proportion(i[k]["n"], i[k]["x"]) for k in ("control", "variant"))
        return bayesian_proportions(a, b, prior, i["alpha"])
    if statistic == "bayesian_means":
        a, b = (
            SampleMean(i[k]["n"], i[k]["sum"], i[k]["sum_squares"]) for k in ("control", "variant")
        )
        return bayesian_means(a, b, prior, i["alpha"])
    raise AssertionError(f"no statistic {statistic}")


def leaves(expected: Any, actual: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """(path, expected, actual) of every number or None under expected, following the same
    names as attributes of actual."""
    if isinstance(expected, dict):
        out = []
        for name, value in expected.items():
            out += leaves(value, getattr(actual, name, None), f"{path}.{name}")
        return out
    return [(path, expected, actual)]


def case_id(case: dict[str, Any]) -> str:
    figure = leaves(case["expected"], None)[0][0]
    return f"{case['statistic']}:{json.dumps(case['input'], sort_keys=True)[:70]}:{figure}"


def test_every_statistic_has_cases() -> None:
    assert {c["statistic"] for c in VECTORS} == {"bayesian_proportions", "bayesian_means"}


@pytest.mark.parametrize("case", VECTORS, ids=case_id)
def test_the_service_matches_the_reference(case: dict[str, Any]) -> None:
    result = computed(case["statistic"], json.dumps(case["input"], sort_keys=True))
    assert not mismatches(result, case["expected"], case["tolerance"])
