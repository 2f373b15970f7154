"""The fixed-horizon statistics against their published test vectors (docs/stats-vectors/),
which statsmodels and scipy computed (tests/stats_vectors/gen_frequentist.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from domain.stats import (
    Proportion,
    SampleMean,
    holm_adjust,
    srm_check,
    two_proportion_test,
    welch_test,
    wilson_interval,
)

VECTORS = json.loads(
    (Path(__file__).resolve().parents[2] / "docs" / "stats-vectors" / "frequentist.json").read_text()
)["cases"]


def close(actual: Any, expected: Any, tolerance: dict[str, float]) -> bool:
    if expected is None or actual is None:
        return actual is expected
    if isinstance(expected, bool):
        return actual is expected
    if isinstance(expected, list):
        return len(actual) == len(expected) and all(close(a, e, tolerance) for a, e in zip(actual, expected))
    if isinstance(expected, dict):
        return all(close(getattr(actual, k, None), v, tolerance) for k, v in expected.items())
    return abs(actual - expected) <= max(tolerance.get("abs", 0.0), tolerance.get("rel", 0.0) * abs(expected))


def computed(case: dict[str, Any]) -> Any:
    i = case["input"]
    name = case["statistic"]
    if name == "two_proportion_test":
        a, b = (Proportion(i[k]["n"], i[k]["x"]) for k in ("control", "variant"))
        return two_proportion_test(a, b, i["alpha"])
    if name == "welch_test":
        a, b = (SampleMean(i[k]["n"], i[k]["sum"], i[k]["sum_squares"]) for k in ("control", "variant"))
        return welch_test(a, b, i["alpha"])
    if name == "wilson_interval":
        return {"interval": wilson_interval(Proportion(i["n"], i["x"]), i["alpha"])}
    if name == "srm_check":
        return srm_check(i["observed"], i["shares"], i["alpha"])
    if name == "holm_adjust":
        return {"adjusted": holm_adjust(i["p_values"])}
    raise AssertionError(f"no statistic {name}")


@pytest.mark.parametrize("case", VECTORS, ids=lambda c: f"{c['statistic']}:{json.dumps(c['input'])[:60]}")
def test_the_service_matches_the_reference(case: dict[str, Any]) -> None:
    result = computed(case)
    for key, expected in case["expected"].items():
        actual = result[key] if isinstance(result, dict) else getattr(result, key)
        assert close(actual, expected, case["tolerance"]), (key, actual, expected)
