"""The sequential SRM check and the sample-size and power functions against their published test
vectors (docs/stats-vectors/srm_power.json), which scipy and statsmodels computed
(tests/stats_vectors/gen_srm_power.py)."""

from __future__ import annotations

from typing import Any

import pytest

from domain.stats.power import (
    power_means,
    power_proportions,
    users_per_arm_means,
    users_per_arm_proportions,
)
from domain.stats.sequential_srm import sequential_srm_check
from tests.stats_vectors.vectors import case_id, load, mismatches

VECTORS = load("srm_power")["cases"]


def computed(case: dict[str, Any]) -> Any:
    i = dict(case["input"])
    name = case["statistic"]
    if name == "sequential_srm":
        return sequential_srm_check(i["observed"], i["shares"], i["alpha"], i["concentration"])
    if name == "users_per_arm_proportions":
        return users_per_arm_proportions(i.pop("baseline_rate"), i.pop("mde"), **i)
    if name == "users_per_arm_means":
        return users_per_arm_means(i.pop("mean"), i.pop("variance"), i.pop("mde"), **i)
    if name == "power_proportions":
        args = (i.pop("baseline_rate"), i.pop("mde"), i.pop("users_per_arm"))
        return {"power": power_proportions(*args, **i)}
    if name == "power_means":
        args = (i.pop("mean"), i.pop("variance"), i.pop("mde"), i.pop("users_per_arm"))
        return {"power": power_means(*args, **i)}
    raise AssertionError(f"no statistic {name}")


def test_every_statistic_has_cases() -> None:
    names = {case["statistic"] for case in VECTORS}
    assert {"sequential_srm", "users_per_arm_proportions", "users_per_arm_means"} <= names


@pytest.mark.parametrize("case", VECTORS, ids=case_id)
def test_the_service_matches_the_reference(case: dict[str, Any]) -> None:
    assert not mismatches(computed(case), case["expected"], case["tolerance"])
