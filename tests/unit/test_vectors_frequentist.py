"""The fixed-horizon statistics against their published test vectors (docs/stats-vectors/),
which statsmodels and scipy computed (tests/stats_vectors/gen_frequentist.py)."""

from __future__ import annotations

from typing import Any

import pytest

from domain.stats import (
    Proportion,
    SampleMean,
    benjamini_hochberg_adjust,
    holm_adjust,
    srm_check,
    two_proportion_test,
    welch_test,
    wilson_interval,
)
from tests.stats_vectors.vectors import case_id, load, mismatches

VECTORS = load("frequentist")["cases"]


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
    if name == "benjamini_hochberg_adjust":
        return {"adjusted": benjamini_hochberg_adjust(i["p_values"])}
    raise AssertionError(f"no statistic {name}")


@pytest.mark.parametrize("case", VECTORS, ids=case_id)
def test_the_service_matches_the_reference(case: dict[str, Any]) -> None:
    assert not mismatches(computed(case), case["expected"], case["tolerance"])
