"""The sequential statistics against their published test vectors (docs/stats-vectors/), which
confseq computed (tests/stats_vectors/gen_sequential.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from domain.stats import Proportion, SampleMean
from domain.stats.sequential import normal_mixture_bound, sequential_means, sequential_proportions

VECTORS = json.loads(
    (Path(__file__).resolve().parents[2] / "docs" / "stats-vectors" / "sequential.json").read_text()
)["cases"]


def close(actual: Any, expected: Any, tolerance: dict[str, float]) -> bool:
    if expected is None or actual is None:
        return actual is expected
    if isinstance(expected, dict):
        return all(close(getattr(actual, k, None), v, tolerance) for k, v in expected.items())
    return abs(actual - expected) <= max(
        tolerance.get("abs", 0.0), tolerance.get("rel", 0.0) * abs(expected)
    )


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


@pytest.mark.parametrize(
    "case", VECTORS, ids=lambda c: f"{c['statistic']}:{json.dumps(c['input'])[:60]}"
)
def test_the_service_matches_the_reference(case: dict[str, Any]) -> None:
    result = computed(case)
    for key, expected in case["expected"].items():
        actual = result[key] if isinstance(result, dict) else getattr(result, key)
        assert close(actual, expected, case["tolerance"]), (key, actual, expected)
