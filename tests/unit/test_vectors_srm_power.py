"""The sequential SRM check and the sample-size and power functions against their published test
vectors (docs/stats-vectors/srm_power.json), which scipy and statsmodels computed
(tests/stats_vectors/gen_srm_power.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from domain.stats.power import (
    power_means,
    power_proportions,
    users_per_arm_means,
    users_per_arm_proportions,
)
from domain.stats.sequential_srm import sequential_srm_check

DOCUMENT = json.loads(
    (Path(__file__).resolve().parents[2] / "docs" / "stats-vectors" / "srm_power.json").read_text()
)
VECTORS = DOCUMENT["cases"]


def close(actual: Any, expected: Any, tolerance: dict[str, float]) -> bool:
    if expected is None or actual is None:
        return actual is expected
    if isinstance(expected, bool) or isinstance(actual, bool):
        return actual is expected
    if isinstance(expected, int):
        return type(actual) is int and actual == expected  # whole users: exactly
    limit = max(tolerance.get("abs", 0.0), tolerance.get("rel", 0.0) * abs(expected))
    return type(actual) is float and abs(actual - expected) <= limit


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


def test_the_vectors_are_the_generators() -> None:
    assert DOCUMENT["area"] == "srm_power"
    assert DOCUMENT["generated_by"] == "tests/stats_vectors/gen_srm_power.py"
    names = {case["statistic"] for case in VECTORS}
    assert {"sequential_srm", "users_per_arm_proportions", "users_per_arm_means"} <= names


@pytest.mark.parametrize(
    "case", VECTORS, ids=lambda c: f"{c['statistic']}:{json.dumps(c['input'])[:60]}"
)
def test_the_service_matches_the_reference(case: dict[str, Any]) -> None:
    result = computed(case)
    for key, expected in case["expected"].items():
        if isinstance(result, dict):
            actual = result[key]
        else:
            actual = None if result is None else getattr(result, key)
        assert close(actual, expected, case["tolerance"]), (key, actual, expected)
