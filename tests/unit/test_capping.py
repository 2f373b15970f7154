"""Capping per-user figures (domain/capping.py) against numpy: the nearest-rank percentile is
numpy's ``inverted_cdf``, and a capped mean and variance are those of ``np.minimum``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.capping import Cap, CapKind, capped_mean, parse_cap
from domain.errors import FieldError

figures = st.lists(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False), min_size=1, max_size=200
)
shares = st.floats(min_value=0.001, max_value=0.999)


@settings(max_examples=300)
@given(figures, shares)
def test_a_percentile_cap_is_the_nearest_rank_percentile(values: list[float], p: float) -> None:
    got = Cap(CapKind.PERCENTILE, p).threshold(values)
    assert got == np.percentile(np.asarray(values), 100 * p, method="inverted_cdf")


def test_the_percentile_counts_ranks_exactly() -> None:
    # 0.99 × 100 is 98.99999999999999 or 99.00000000000001 depending on the order of the
    # float products; the rank is 99 either way.
    values = [float(i) for i in range(1, 101)]
    assert Cap(CapKind.PERCENTILE, 0.99).threshold(values) == 99.0
    assert Cap(CapKind.PERCENTILE, 0.5).threshold([3.0, 1.0, 2.0, 4.0]) == 2.0
    assert Cap(CapKind.PERCENTILE, 0.001).threshold([7.0]) == 7.0
    assert Cap(CapKind.PERCENTILE, 0.9).threshold([]) is None
    assert Cap(CapKind.VALUE, 500.0).threshold([]) == 500.0


@settings(max_examples=200)
@given(figures, st.integers(min_value=0, max_value=50), st.floats(min_value=-10.0, max_value=1e5))
def test_a_capped_mean_is_the_mean_of_the_capped_figures(values: list[float], without: int, at: float) -> None:
    """Users without an event count as 0, and stay 0 whatever the cap."""
    every = np.concatenate([np.minimum(np.asarray(values), at), np.zeros(without)])
    got = capped_mean(len(values) + without, values, at)
    assert got.mean == pytest.approx(every.mean(), rel=1e-9, abs=1e-6)
    if len(every) > 1:
        assert got.variance == pytest.approx(every.var(ddof=1), rel=1e-6, abs=1e-6)


def test_no_cap_leaves_the_figures_as_they_are() -> None:
    assert capped_mean(4, [1, 2, 30], None).total == 33
    assert capped_mean(4, [1, 2, 30], 2.0).total == 5.0


@pytest.mark.parametrize(
    ("value", "field", "words"),
    [
        ({"value": 0}, "cap.value", "above 0"),
        ({"value": -3.5}, "cap.value", "above 0"),
        ({"value": True}, "cap.value", "finite number"),
        ({"value": "10"}, "cap.value", "finite number"),
        ({"percentile": 1}, "cap.percentile", "between 0 and 1"),
        ({"percentile": 0}, "cap.percentile", "between 0 and 1"),
        ({"percentile": 99}, "cap.percentile", "between 0 and 1"),
        ({"max": 3}, "cap.max", "not a kind of cap"),
        ({"value": 1, "percentile": 0.9}, "cap", "exactly"),
        ([0.99], "cap", "must be"),
        ({}, "cap", "must be"),
    ],
)
def test_bad_caps_are_named(value: object, field: str, words: str) -> None:
    errors: list[FieldError] = []
    assert parse_cap(value, "cap", errors) is None
    assert [e.field for e in errors] == [field]
    assert words in errors[0].message or words == "exactly"


def test_good_caps() -> None:
    errors: list[FieldError] = []
    assert parse_cap({"value": 500}, "cap", errors) == Cap(CapKind.VALUE, 500.0)
    assert parse_cap({"percentile": 0.99}, "cap", errors) == Cap(CapKind.PERCENTILE, 0.99)
    assert parse_cap(None, "cap", errors) is None
    assert errors == []
    assert Cap(CapKind.PERCENTILE, 0.99).document() == {"percentile": 0.99}
