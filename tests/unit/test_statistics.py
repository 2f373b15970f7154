"""Golden tests of the tests in domain.stats against statsmodels/scipy reference implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    proportions_ztest,
)
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from domain.stats import (
    ALPHA,
    Interval,
    Proportion,
    SampleMean,
    SampleRatio,
    TestResult,
    benjamini_hochberg_adjust,
    holm_adjust,
    srm_check,
    two_proportion_test,
    welch_test,
    wilson_interval,
)


def approx(value: float) -> object:
    return pytest.approx(value, rel=1e-9, abs=1e-12)


def assert_plain_finite(*values: object) -> None:
    for value in values:
        assert type(value) is float, f"{value!r} is {type(value)}"
        assert math.isfinite(value)


def z_test(x1: int, n1: int, x2: int, n2: int) -> TestResult:
    """Control (x1 of n1) against variant (x2 of n2), in the argument order of the references."""
    return two_proportion_test(Proportion(n1, x1), Proportion(n2, x2))


# (x1, n1, x2, n2): arm 1 = control, arm 2 = variant.
PROPORTION_VECTORS = [
    (2, 10_000, 5, 10_000),  # rare events
    (5, 10_000, 2, 10_000),
    (1, 100, 950, 100_000),  # unequal arms
    (12, 100, 9_800, 100_000),
    (100_000, 1_000_000, 101_000, 1_000_000),  # large arms
    (31_337, 1_000_000, 31_000, 1_000_000),
    (0, 500, 7, 500),  # rate 0 in one arm
    (3, 400, 0, 300),
    (500, 500, 480, 500),  # rate 1 in one arm
    (90, 120, 80, 80),
    (0, 50, 50, 50),  # both extremes
    (100, 1_000, 100, 1_000),  # identical rates
    (1, 1, 0, 1),
]


def test_results_are_at_the_95_percent_level() -> None:
    # The level is answered as 0.95 over HTTP: 1 − ALPHA must be that float exactly.
    assert ALPHA == 0.05
    assert z_test(1, 10, 2, 10).level == 0.95
    assert welch_test(SampleMean(), SampleMean()).level == 0.95


@pytest.mark.parametrize(("x1", "n1", "x2", "n2"), PROPORTION_VECTORS)
def test_two_proportion_z_test_matches_statsmodels(
    x1: int, n1: int, x2: int, n2: int
) -> None:
    result = z_test(x1, n1, x2, n2)
    z_ref, p_ref = proportions_ztest([x2, x1], [n2, n1])

    assert result.statistic == approx(float(z_ref))
    assert result.p_value == approx(float(p_ref))
    assert_plain_finite(result.statistic, result.p_value)
    assert result.degrees_of_freedom is None
    assert result.significant is (float(p_ref) < 0.05)
    # Positive z means the variant converts better than control.
    difference = x2 / n2 - x1 / n1
    assert difference == 0 or math.copysign(1, result.statistic) == math.copysign(1, difference)
    assert result.absolute_lift == approx(difference)
    assert result.relative_lift == (None if x1 == 0 else approx(difference / (x1 / n1)))


@pytest.mark.parametrize(
    ("x", "n"),
    [
        (0, 10),
        (10, 10),
        (2, 10_000),
        (5, 10_000),
        (1, 100),
        (950, 100_000),
        (314_159, 1_000_000),
        (1, 1),
        (0, 1),
        (7, 13),
    ],
)
def test_wilson_interval_matches_statsmodels(x: int, n: int) -> None:
    result = wilson_interval(Proportion(n, x))
    low_ref, upp_ref = proportion_confint(x, n, alpha=0.05, method="wilson")

    assert result is not None
    assert result.lower == approx(low_ref)
    assert result.upper == approx(upp_ref)
    assert_plain_finite(result.lower, result.upper)
    assert 0.0 <= result.lower <= x / n <= result.upper <= 1.0


def test_wilson_interval_custom_level_matches_statsmodels() -> None:
    result = wilson_interval(Proportion(250, 37), alpha=0.01)
    low_ref, upp_ref = proportion_confint(37, 250, alpha=0.01, method="wilson")
    assert result is not None
    assert (result.lower, result.upper) == (approx(low_ref), approx(upp_ref))


@pytest.mark.parametrize(
    ("x1", "n1", "x2", "n2"), PROPORTION_VECTORS + [(0, 100, 0, 100), (100, 100, 100, 100)]
)
def test_newcombe_interval_matches_statsmodels(x1: int, n1: int, x2: int, n2: int) -> None:
    result = z_test(x1, n1, x2, n2).interval
    low_ref, upp_ref = confint_proportions_2indep(x2, n2, x1, n1, method="newcomb", compare="diff")

    assert result is not None
    assert result.lower == approx(float(low_ref))
    assert result.upper == approx(float(upp_ref))
    assert_plain_finite(result.lower, result.upper)
    assert -1.0 <= result.lower <= x2 / n2 - x1 / n1 <= result.upper <= 1.0


@pytest.mark.parametrize(
    ("observed", "shares"),
    [
        ([5_000, 5_000], [50, 50]),
        ([5_050, 4_950], [50, 50]),
        ([10_000, 10_500], [0.5, 0.5]),
        ([900, 2_100], [30, 70]),
        ([3_300, 3_350, 3_350], [1, 1, 1]),
        ([3_000, 3_400, 3_600], [33.3, 33.3, 33.4]),
        ([1_000, 1_020, 980, 1_010, 2_100], [20, 20, 20, 20, 40]),
        ([1_000, 1_200, 980, 1_010, 2_100], [0.2, 0.2, 0.2, 0.2, 0.4]),
        ([1, 2_000_000], [50, 50]),
    ],
)
def test_srm_check_matches_scipy_chisquare(observed: list[int], shares: list[float]) -> None:
    result = srm_check(observed, shares)
    total = sum(observed)
    f_exp = [total * s / sum(shares) for s in shares]
    ref = stats.chisquare(observed, f_exp)

    assert result.chi_square == approx(float(ref.statistic))
    assert result.p_value == approx(float(ref.pvalue))
    assert_plain_finite(result.chi_square, result.p_value)
    assert result.mismatch is (float(ref.pvalue) < 0.001)


def test_srm_check_ignores_zero_share_variants_without_users() -> None:
    result = srm_check([5_000, 0, 5_100], [50, 0, 50])
    ref = stats.chisquare([5_000, 5_100], [5_050, 5_050])
    assert result.chi_square == approx(float(ref.statistic))
    assert result.p_value == approx(float(ref.pvalue))
    assert result.mismatch is False


def test_srm_check_respects_alpha() -> None:
    observed, shares = [5_000, 5_200], [50, 50]
    p = float(stats.chisquare(observed).pvalue)
    assert 0.001 < p < 0.05
    assert srm_check(observed, shares).mismatch is False
    assert srm_check(observed, shares, alpha=0.05).mismatch is True


@pytest.mark.parametrize(
    "p_values",
    [
        [0.03],
        [0.01, 0.04],
        [0.04, 0.01],
        [0.01, 0.02, 0.03],
        [0.02, 0.02, 0.5],  # tie
        [0.001, 0.01, 0.01, 0.2, 0.9],  # tie among five
        [0.5, 0.4, 0.3, 0.2, 0.1],
        [0.9, 0.95, 1.0],  # saturates at 1
        [0.0, 1e-12, 0.3],
    ],
)
def test_holm_adjust_matches_statsmodels(p_values: list[float]) -> None:
    result = holm_adjust(p_values)
    ref = multipletests(p_values, method="holm")[1]
    assert result == [approx(float(r)) for r in ref]
    assert_plain_finite(*result)


@pytest.mark.parametrize(
    "p_values",
    [
        [None],
        [0.01, None],
        [None, 0.04, 0.01],
        [0.02, None, 0.02, 0.5, None],
        [0.001, 0.01, None, 0.01, 0.2, 0.9],
    ],
)
def test_holm_adjust_skips_none_entries(p_values: list[float | None]) -> None:
    result = holm_adjust(p_values)
    defined = [p for p in p_values if p is not None]
    ref = iter(multipletests(defined, method="holm")[1] if defined else [])

    assert len(result) == len(p_values)
    for raw, adjusted in zip(p_values, result):
        if raw is None:
            assert adjusted is None
        else:
            assert adjusted == approx(float(next(ref)))


def test_holm_adjust_empty() -> None:
    assert holm_adjust([]) == []


@given(st.lists(st.one_of(st.none(), st.floats(0.0, 1.0)), max_size=12))
def test_benjamini_hochberg_matches_statsmodels_and_skips_none(p_values: list[float | None]) -> None:
    result = benjamini_hochberg_adjust(p_values)
    defined = [p for p in p_values if p is not None]
    ref = iter(multipletests(defined, method="fdr_bh")[1] if defined else [])
    assert len(result) == len(p_values)
    for raw, adjusted in zip(p_values, result):
        if raw is None:
            assert adjusted is None
        else:
            assert adjusted == pytest.approx(float(next(ref)), rel=1e-12)
            assert raw <= adjusted <= 1.0  # never below its own p-value


def _revenue(rng: np.random.Generator, n: int, conversion: float, mean_order: float) -> np.ndarray:
    # Most users spend nothing; buyers spend a log-normally distributed amount.
    buys = rng.random(n) < conversion
    amounts = rng.lognormal(mean=math.log(mean_order), sigma=1.0, size=n)
    return np.round(np.where(buys, amounts, 0.0), 2)


def _sufficient(values: np.ndarray) -> SampleMean:
    return SampleMean(len(values), float(np.sum(values)), float(np.sum(values * values)))


WELCH_CASES = [
    # (seed, n_control, n_variant, conversion_control, conversion_variant,
    #  mean_order_control, mean_order_variant)
    (1, 2, 2, 1.0, 1.0, 20.0, 25.0),
    (2, 50, 60, 0.3, 0.35, 20.0, 22.0),
    (3, 1_000, 1_000, 0.05, 0.06, 40.0, 40.0),
    (4, 100, 100_000, 0.1, 0.1, 30.0, 33.0),  # unequal arms
    (5, 100_000, 100, 0.02, 0.5, 30.0, 10.0),
    (6, 1_000_000, 1_000_000, 0.03, 0.031, 50.0, 50.0),  # large arms
    (7, 10_000, 10_000, 0.001, 0.002, 100.0, 100.0),  # rare buyers
    (8, 5_000, 5_000, 1.0, 1.0, 1_000.0, 1_000.5),  # no zeros, large mean
]


@pytest.mark.parametrize("case", WELCH_CASES)
def test_welch_t_test_matches_scipy_and_statsmodels(case: tuple) -> None:
    seed, n_a, n_b, conv_a, conv_b, order_a, order_b = case
    rng = np.random.default_rng(seed)
    control = _revenue(rng, n_a, conv_a, order_a)
    variant = _revenue(rng, n_b, conv_b, order_b)

    result = welch_test(_sufficient(control), _sufficient(variant))

    # scipy reports mean(a) - mean(b); the module reports variant - control.
    ref = stats.ttest_ind(control, variant, equal_var=False)
    compare = CompareMeans(DescrStatsW(variant), DescrStatsW(control))
    low_ref, upp_ref = compare.tconfint_diff(alpha=0.05, usevar="unequal")
    _, _, df_ref = compare.ttest_ind(usevar="unequal")
    lift_ref = float(np.mean(variant) - np.mean(control))

    assert result.statistic == approx(-float(ref.statistic))
    assert result.p_value == approx(float(ref.pvalue))
    assert result.significant is (float(ref.pvalue) < 0.05)
    assert result.degrees_of_freedom == approx(float(df_ref))
    assert result.absolute_lift == approx(lift_ref)
    assert result.relative_lift == approx(lift_ref / float(np.mean(control)))
    assert result.interval is not None
    assert result.interval.lower == approx(float(low_ref))
    assert result.interval.upper == approx(float(upp_ref))
    assert_plain_finite(
        result.statistic,
        result.p_value,
        result.degrees_of_freedom,
        result.absolute_lift,
        result.relative_lift,
        result.interval.lower,
        result.interval.upper,
    )


def test_welch_t_test_custom_level_matches_statsmodels() -> None:
    rng = np.random.default_rng(11)
    control = _revenue(rng, 3_000, 0.1, 20.0)
    variant = _revenue(rng, 2_500, 0.12, 20.0)
    result = welch_test(_sufficient(control), _sufficient(variant), alpha=0.1)
    low_ref, upp_ref = CompareMeans(DescrStatsW(variant), DescrStatsW(control)).tconfint_diff(
        alpha=0.1, usevar="unequal"
    )
    assert result.interval is not None
    assert result.interval.lower == approx(float(low_ref))
    assert result.interval.upper == approx(float(upp_ref))


def test_welch_t_test_one_constant_arm_is_defined() -> None:
    rng = np.random.default_rng(12)
    control = np.zeros(500)
    variant = _revenue(rng, 500, 0.1, 20.0)
    result = welch_test(_sufficient(control), _sufficient(variant))
    ref = stats.ttest_ind(control, variant, equal_var=False)
    assert result.statistic == approx(-float(ref.statistic))
    assert result.p_value == approx(float(ref.pvalue))
    assert result.relative_lift is None  # control mean is zero
    assert result.absolute_lift == approx(float(np.mean(variant)))


def test_welch_t_test_integer_sufficient_statistics_are_exact() -> None:
    control = np.array([0, 0, 0, 1999, 0, 4999, 0, 0], dtype=np.int64)
    variant = np.array([0, 999, 0, 0, 2999, 0, 0, 12999, 0], dtype=np.int64)
    result = welch_test(
        SampleMean(len(control), int(control.sum()), int((control * control).sum())),
        SampleMean(len(variant), int(variant.sum()), int((variant * variant).sum())),
    )
    ref = stats.ttest_ind(control.astype(float), variant.astype(float), equal_var=False)
    assert result.statistic == approx(-float(ref.statistic))
    assert result.p_value == approx(float(ref.pvalue))


# --- Degenerate inputs: undefined values are None, never NaN, never an exception.

UNDEFINED_WELCH = TestResult(None, None, None, None, None, None, "welch")


@pytest.mark.parametrize(
    ("x1", "n1", "x2", "n2"),
    [
        (0, 0, 0, 0),
        (0, 0, 5, 100),
        (5, 100, 0, 0),
        (0, 100, 0, 200),  # both rates 0
        (100, 100, 200, 200),  # both rates 1
        (1, 1, 1, 1),
        (5, 3, 1, 10),  # more successes than trials
        (-1, 10, 1, 10),
    ],
)
def test_two_proportion_z_test_degenerate_is_none(x1: int, n1: int, x2: int, n2: int) -> None:
    result = z_test(x1, n1, x2, n2)
    assert (result.statistic, result.p_value, result.significant) == (None, None, False)


@pytest.mark.parametrize(("x", "n"), [(0, 0), (3, 0), (5, 3), (-1, 5)])
def test_wilson_interval_degenerate_is_none(x: int, n: int) -> None:
    assert wilson_interval(Proportion(n, x)) is None


@pytest.mark.parametrize(("x1", "n1", "x2", "n2"), [(0, 0, 0, 0), (0, 0, 1, 10), (1, 10, 0, 0)])
def test_newcombe_interval_degenerate_is_none(x1: int, n1: int, x2: int, n2: int) -> None:
    assert z_test(x1, n1, x2, n2).interval is None


def test_newcombe_interval_defined_for_both_rates_zero_and_one() -> None:
    zeros = z_test(0, 100, 0, 100).interval
    ones = z_test(100, 100, 100, 100).interval
    assert zeros is not None and zeros.lower < 0.0 < zeros.upper
    assert ones is not None and ones.lower < 0.0 < ones.upper


def test_holm_adjust_treats_nan_as_undefined() -> None:
    assert holm_adjust([float("nan"), 0.01, None]) == [None, approx(0.01), None]


def test_srm_check_without_users() -> None:
    assert srm_check([0, 0], [50, 50]) == SampleRatio(chi_square=None, p_value=None, mismatch=False)
    assert srm_check([], []) == SampleRatio(chi_square=None, p_value=None, mismatch=False)


def test_srm_check_single_active_variant_is_undefined() -> None:
    assert srm_check([1_000, 0], [100, 0]) == SampleRatio(None, None, mismatch=False)


def test_srm_check_users_in_zero_share_variant_is_mismatch() -> None:
    result = srm_check([5_000, 5_000, 3], [50, 50, 0])
    assert result.mismatch is True
    assert result.chi_square == approx(0.0)
    assert result.p_value == approx(1.0)

    only_leak = srm_check([1_000, 7], [100, 0])
    assert only_leak == SampleRatio(chi_square=None, p_value=None, mismatch=True)


def test_srm_check_length_mismatch_is_undefined() -> None:
    assert srm_check([10, 10], [50, 25, 25]) == SampleRatio(None, None, mismatch=False)


@pytest.mark.parametrize(
    "args",
    [
        (0, 0.0, 0.0, 0, 0.0, 0.0),
        (0, 0.0, 0.0, 10, 5.0, 5.0),
        (10, 5.0, 5.0, 0, 0.0, 0.0),
    ],
)
def test_welch_t_test_empty_arm_is_all_none(args: tuple) -> None:
    assert welch_test(SampleMean(*args[:3]), SampleMean(*args[3:])) == UNDEFINED_WELCH


def test_welch_t_test_single_user_per_arm() -> None:
    result = welch_test(SampleMean(1, 10.0, 100.0), SampleMean(1, 15.0, 225.0))
    assert result == TestResult(
        absolute_lift=5.0,
        relative_lift=0.5,
        statistic=None,
        degrees_of_freedom=None,
        p_value=None,
        interval=None,
        interval_method="welch",
    )


@pytest.mark.parametrize("value", [0.0, 9.99, 0.1, 1234.567])
def test_welch_t_test_zero_variance_both_arms(value: float) -> None:
    control = np.full(1_000, value)
    variant = np.full(3_000, value)
    result = welch_test(_sufficient(control), _sufficient(variant))
    assert result.statistic is None
    assert result.degrees_of_freedom is None
    assert result.p_value is None
    assert result.interval is None
    assert result.absolute_lift == approx(0.0)
    assert result.relative_lift == (None if value == 0.0 else approx(0.0))


def test_welch_t_test_non_finite_inputs_are_none() -> None:
    result = welch_test(SampleMean(10, float("nan"), 1.0), SampleMean(10, 1.0, 1.0))
    assert result == UNDEFINED_WELCH
    result = welch_test(SampleMean(10, 1.0, float("inf")), SampleMean(10, 2.0, 1.0))
    assert result.absolute_lift == approx(0.1)
    assert result.statistic is None and result.p_value is None


# --- Properties.

@st.composite
def counts(draw: st.DrawFn, max_n: int = 1_000_000) -> tuple[int, int]:
    n = draw(st.integers(min_value=1, max_value=max_n))
    x = draw(st.integers(min_value=0, max_value=n))
    return x, n


@settings(max_examples=300, deadline=None, database=None)
@given(counts(), counts())
def test_newcombe_brackets_point_difference(arm1: tuple[int, int], arm2: tuple[int, int]) -> None:
    (x1, n1), (x2, n2) = arm1, arm2
    result = z_test(x1, n1, x2, n2).interval
    d = x2 / n2 - x1 / n1
    assert isinstance(result, Interval)
    assert -1.0 <= result.lower <= d <= result.upper <= 1.0


@settings(max_examples=300, deadline=None, database=None)
@given(counts(), counts())
def test_z_test_p_value_is_a_probability(arm1: tuple[int, int], arm2: tuple[int, int]) -> None:
    result = z_test(*arm1, *arm2)
    if result.p_value is None:
        assert result.statistic is None
        pooled = (arm1[0] + arm2[0]) / (arm1[1] + arm2[1])
        assert pooled in (0.0, 1.0)
    else:
        assert 0.0 <= result.p_value <= 1.0
        assert_plain_finite(result.statistic, result.p_value)


p_value_lists = st.lists(
    st.one_of(st.none(), st.floats(min_value=0.0, max_value=1.0, allow_nan=False)), max_size=12
)


@settings(max_examples=300, deadline=None, database=None)
@given(p_value_lists)
def test_holm_is_conservative_and_monotone(p_values: list[float | None]) -> None:
    adjusted = holm_adjust(p_values)
    assert len(adjusted) == len(p_values)
    pairs = [(raw, adj) for raw, adj in zip(p_values, adjusted) if raw is not None]
    assert all(adj is not None and raw <= adj <= 1.0 for raw, adj in pairs)
    for raw_i, adj_i in pairs:
        for raw_j, adj_j in pairs:
            if raw_i <= raw_j:
                assert adj_i <= adj_j
    assert all(adj is None for raw, adj in zip(p_values, adjusted) if raw is None)
