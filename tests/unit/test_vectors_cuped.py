"""CUPED, its sequence and its posterior against their published test vectors
(docs/stats-vectors/cuped.json), which numpy and scipy computed from the per-user values
(tests/stats_vectors/gen_cuped.py)."""

from __future__ import annotations

from typing import Any

import pytest

from domain.stats.cuped import CovariateStatistic, cuped_bayesian, cuped_sequential, cuped_test
from tests.stats_vectors.vectors import case_id, load, mismatches

VECTORS = load("cuped")["cases"]
FIELDS = ("n", "y_sum", "y_sum_sq", "x_sum", "x_sum_sq", "xy_sum")


def computed(case: dict[str, Any]) -> Any:
    i = case["input"]
    a, b = (CovariateStatistic(*(i[k][f] for f in FIELDS)) for k in ("control", "variant"))
    if case["statistic"] == "cuped_sequential":
        return cuped_sequential(a, b, i["alpha"], i["tuning_users"])
    if case["statistic"] == "cuped_bayesian":
        return cuped_bayesian(a, b, None, i["alpha"])
    assert case["statistic"] == "cuped_test"
    return cuped_test(a, b, i["alpha"])


@pytest.mark.parametrize("case", VECTORS, ids=case_id)
def test_the_service_matches_the_reference(case: dict[str, Any]) -> None:
    assert not mismatches(computed(case), case["expected"], case["tolerance"])
