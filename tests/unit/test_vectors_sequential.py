"""The sequential statistics against their published test vectors (docs/stats-vectors/), which
confseq computed (tests/stats_vectors/gen_sequential.py)."""

from __future__ import annotations

from typing import Any

import pytest

from domain.stats import Proportion, SampleMean
from domain.stats.sequential import normal_mixture_bound, sequential_means, sequential_proportions
from tests.stats_vectors.vectors import case_id, load, mismatches

VECTORS = load("sequential")["cases"]


def computed(case: dict[str, Any]) -> Any:
    i = case["input"]
    name = case["statistic"]
    if name == "normal_mixture_bound":
        return {"bound": normal_mixture_bound(i["v"], i["alpha"], i["v_opt"], i.get("alpha_opt"))}
    if name == "sequential_proportions":
        a, b = (Proportion(i[k]["n"], i[k]["x"]) for k in ("control", "variant"))
        return sequential_proportions(a, b, i["alpha"], i["tuning_users"])
    if name == "sequential_means":
        a, b = (
            SampleMean(i[k]["n"], i[k]["sum"], i[k]["sum_squares"]) for k in ("control", "variant")
        )
        return sequential_means(a, b, i["alpha"], i["tuning_users"])
    raise AssertionError(f"no statistic {name}")


def test_every_statistic_has_cases() -> None:
    names = {case["statistic"] for case in VECTORS}
    assert names == {"normal_mixture_bound", "sequential_proportions", "sequential_means"}
    assert len(VECTORS) >= 40


@pytest.mark.parametrize("case", VECTORS, ids=case_id)
def test_the_service_matches_the_reference(case: dict[str, Any]) -> None:
    assert not mismatches(computed(case), case["expected"], case["tolerance"])
