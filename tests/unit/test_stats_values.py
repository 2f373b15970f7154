"""Proportion and SampleMean: they add like the groups they summarise, and their rate, mean
and variance agree with numpy's over the raw values."""

from __future__ import annotations

import operator
from collections.abc import Iterable
from functools import reduce
from typing import TypeVar

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.stats import Proportion, SampleMean

T = TypeVar("T")

# Integer values (cents) keep every sum exact, so the algebra is checked with ==, not approx.
cents = st.lists(st.integers(-10**9, 10**9), max_size=30)
outcomes = st.lists(st.booleans(), max_size=30)
counts = st.integers(0, 10**6)
proportions = st.builds(lambda n, x: Proportion(n, min(x, n)), counts, counts)
sample_means = st.builds(
    SampleMean, counts, st.integers(-(10**12), 10**12), st.integers(0, 10**18)
)


def mean_of(values: list[int]) -> SampleMean:
    """Straight from the definition: one value per unit."""
    return SampleMean(len(values), sum(values), sum(v * v for v in values))


def proportion_of(units: list[bool]) -> Proportion:
    return Proportion(len(units), sum(units))


def cut(values: list, cuts: list[int]) -> list[list]:
    bounds = sorted({0, len(values), *(c % (len(values) + 1) for c in cuts)})
    return [values[a:b] for a, b in zip(bounds, bounds[1:])]


@given(st.one_of(st.tuples(*[proportions] * 3), st.tuples(*[sample_means] * 3)))
def test_addition_is_associative_and_commutative_with_a_zero(
    triple: tuple[Proportion, Proportion, Proportion] | tuple[SampleMean, SampleMean, SampleMean],
) -> None:
    a, b, c = triple
    zero = type(a)()
    assert (a + b) + c == a + (b + c)
    assert a + b == b + a
    assert a + zero == a == zero + a


def total(statistics: Iterable[T], zero: T) -> T:
    return reduce(operator.add, statistics, zero)


cuts = st.lists(st.integers(0, 30), max_size=5)


@given(cents, cuts)
def test_the_parts_add_up_to_the_whole(values: list[int], at: list[int]) -> None:
    assert total(map(mean_of, cut(values, at)), SampleMean()) == mean_of(values)
    units = [v > 0 for v in values]
    assert total(map(proportion_of, cut(units, at)), Proportion()) == proportion_of(units)


@given(cents, cuts)
def test_summed_parts_have_the_mean_and_variance_of_numpy(values: list[int], at: list[int]) -> None:
    whole = total(map(mean_of, cut(values, at)), SampleMean())
    array = np.array(values, dtype=float)
    if not values:
        assert whole.mean is None and whole.variance is None
        return
    assert whole.mean == pytest.approx(float(np.mean(array)), rel=1e-12, abs=1e-12)
    if len(values) < 2:
        assert whole.variance is None  # n − 1 = 0: no sample variance
    else:
        # Integer sums make the variance exact: numpy's float answer is the approximation.
        reference = float(np.var(array, ddof=1))
        assert whole.variance == pytest.approx(reference, rel=1e-9, abs=1e-6)


@given(outcomes)
def test_rate_and_variance_of_a_proportion_match_numpy(units: list[bool]) -> None:
    p = proportion_of(units)
    if not units:
        assert p.rate is None and p.variance is None
        return
    array = np.array(units, dtype=float)
    assert p.rate == pytest.approx(float(np.mean(array)), rel=1e-12)
    # A Bernoulli variance: over n, as numpy's default ddof=0.
    assert p.variance == pytest.approx(float(np.var(array)), rel=1e-9, abs=1e-15)


@pytest.mark.parametrize(
    "p", [Proportion(0, 0), Proportion(3, 5), Proportion(10, -1), Proportion(-2, 0)]
)
def test_counts_that_are_no_proportion_have_no_rate(p: Proportion) -> None:
    assert p.counts is None and p.rate is None and p.variance is None


@pytest.mark.parametrize(
    "s",
    [
        SampleMean(0, 0.0, 0.0),
        SampleMean(-1, 5.0, 25.0),
        SampleMean(2, float("inf"), 1.0),
        SampleMean(2, float("nan"), 1.0),
    ],
)
def test_no_units_or_non_finite_sums_have_no_mean(s: SampleMean) -> None:
    assert s.mean is None and s.variance is None


def test_float_sums_of_a_constant_value_have_zero_variance_not_rounding_noise() -> None:
    # 9.99 has no exact binary form: sumsq − sum²/n is a tiny residual, not a variance.
    values = [9.99] * 1_000
    assert SampleMean(len(values), sum(values), sum(v * v for v in values)).variance == 0.0


def test_statistics_of_different_kinds_do_not_add() -> None:
    with pytest.raises(TypeError):
        Proportion(1, 1) + SampleMean(1, 1.0, 1.0)  # type: ignore[operator]
