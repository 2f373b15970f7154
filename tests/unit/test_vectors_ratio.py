"""The ratio metric's delta-method test against its published test vectors
(docs/stats-vectors/ratio.json), which numpy and scipy computed from the per-user values
(tests/stats_vectors/gen_ratio.py)."""

from __future__ import annotations

from typing import Any

import pytest

from domain.stats import RatioStatistic, ratio_test
from tests.stats_vectors.vectors import case_id, load, mismatches

VECTORS = load("ratio")["cases"]
FIELDS = ("n", "x_sum", "y_sum", "x_sum_sq", "y_sum_sq", "xy_sum")


def computed(case: dict[str, Any]) -> Any:
    i = case["input"]
    name = case["statistic"]
    if name == "ratio_test":
        a, b = (RatioStatistic(*(i[k][f] for f in FIELDS)) for k in ("control", "variant"))
        return ratio_test(a, b, i["alpha"])
    raise AssertionError(f"no statistic {name}")


@pytest.mark.parametrize("case", VECTORS, ids=case_id)
def test_the_service_matches_the_reference(case: dict[str, Any]) -> None:
    assert not mismatches(computed(case), case["expected"], case["tolerance"])
