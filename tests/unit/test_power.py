"""Sample size and power against statsmodels' NormalIndPower (solve_power and power)."""

from __future__ import annotations

import itertools
import math
import warnings

import pytest
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize

from domain.stats.power import (
    SampleSize,
    days_left,
    power_means,
    power_proportions,
    users_per_arm_means,
    users_per_arm_proportions,
)

REFERENCE = NormalIndPower()


def solve(effect: float, alpha: float, power: float, ratio: float) -> float:
    return float(
        REFERENCE.solve_power(
            effect_size=effect, alpha=alpha, power=power, ratio=ratio, alternative="two-sided"
        )
    )


def reference_power(effect: float, nobs1: float, alpha: float, ratio: float) -> float:
    return float(REFERENCE.power(effect, nobs1, alpha, ratio=ratio, alternative="two-sided"))


def assert_matches(result: SampleSize | None, ref: float, ratio: float) -> None:
    assert result is not None
    assert result.control_exact == pytest.approx(ref, rel=1e-6)
    # The integers are the real solution rounded up, unless statsmodels' root (found to 1e-5
    # users) leaves it undecided which side of a whole number the solution lies.
    if abs(ref - round(ref)) > 1e-4:
        assert result.control == math.ceil(ref)
    if abs(ratio * ref - round(ratio * ref)) > 1e-4:
        assert result.variant == math.ceil(ratio * ref)
    assert result.total == result.control + result.variant
    assert type(result.control) is int and type(result.variant) is int


GRID = list(
    itertools.product(
        [0.001, 0.01, 0.1, 0.5],  # baseline
        [0.01, 0.1, 0.5],  # relative mde
        [0.01, 0.05, 0.1],  # alpha
        [0.8, 0.9],  # power
        [0.5, 1.0, 2.0],  # ratio
    )
)


@pytest.mark.parametrize(("baseline", "mde", "alpha", "power", "ratio"), GRID)
def test_users_per_arm_proportions_is_statsmodels(
    baseline: float, mde: float, alpha: float, power: float, ratio: float
) -> None:
    ref = solve(proportion_effectsize(baseline * (1 + mde), baseline), alpha, power, ratio)
    result = users_per_arm_proportions(baseline, mde, alpha=alpha, power=power, ratio=ratio)
    assert_matches(result, ref, ratio)
    assert result is not None
    assert result.effect_size == pytest.approx(
        float(proportion_effectsize(baseline * (1 + mde), baseline)), rel=1e-12
    )


@pytest.mark.parametrize(
    ("baseline", "mde", "relative"),
    [
        (0.1, -0.05, True),  # a drop
        (0.3, -0.5, True),
        (0.1, 0.01, False),  # an absolute change of one point
        (0.5, -0.02, False),
        (0.02, 0.001, False),
        (0.999, -0.001, False),
        (0.2, 3.0, True),  # to 0.8: few users
    ],
)
def test_users_per_arm_proportions_other_changes(
    baseline: float, mde: float, relative: bool
) -> None:
    target = baseline * (1 + mde) if relative else baseline + mde
    ref = solve(proportion_effectsize(target, baseline), 0.05, 0.8, 1.0)
    assert_matches(users_per_arm_proportions(baseline, mde, relative=relative), ref, 1.0)


MEANS_GRID = list(
    itertools.product(
        [(25.0, 400.0), (1.0, 0.25), (-3.0, 10.0)],  # (mean, variance)
        [0.02, 0.2],  # relative mde
        [0.01, 0.05],  # alpha
        [0.8, 0.9],  # power
        [0.5, 2.0],  # ratio
    )
)


@pytest.mark.parametrize(("moments", "mde", "alpha", "power", "ratio"), MEANS_GRID)
def test_users_per_arm_means_is_statsmodels(
    moments: tuple[float, float], mde: float, alpha: float, power: float, ratio: float
) -> None:
    mean, variance = moments
    ref = solve(mean * mde / math.sqrt(variance), alpha, power, ratio)
    result = users_per_arm_means(mean, variance, mde, alpha=alpha, power=power, ratio=ratio)
    assert_matches(result, ref, ratio)


def test_users_per_arm_means_with_an_absolute_change() -> None:
    ref = solve(0.5 / math.sqrt(12.0), 0.05, 0.8, 1.0)
    assert_matches(users_per_arm_means(40.0, 12.0, 0.5, relative=False), ref, 1.0)
    # The mean does not matter for an absolute change, not even a mean of 0.
    assert_matches(users_per_arm_means(0.0, 12.0, 0.5, relative=False), ref, 1.0)


@pytest.mark.parametrize(
    ("baseline", "mde", "alpha", "power", "ratio"),
    [(0.05, 0.1, 0.05, 0.8, 1.0), (0.001, 0.01, 0.01, 0.9, 0.5), (0.3, 0.5, 0.1, 0.8, 2.0)],
)
def test_the_solution_has_exactly_the_power_and_its_rounding_up_enough(
    baseline: float, mde: float, alpha: float, power: float, ratio: float
) -> None:
    result = users_per_arm_proportions(baseline, mde, alpha=alpha, power=power, ratio=ratio)
    assert result is not None
    h = float(proportion_effectsize(baseline * (1 + mde), baseline))
    # Exact to the last digits, where statsmodels' own root is good to 1e-5 users only.
    assert reference_power(h, result.control_exact, alpha, ratio) == pytest.approx(power, abs=1e-13)
    assert reference_power(h, result.control, alpha, ratio) >= power
    assert reference_power(h, result.control - 1, alpha, ratio) < power


@pytest.mark.parametrize("effect", [3.0, 2.9])
def test_huge_effects_below_statsmodels_bracket_are_still_solved(effect: float) -> None:
    # statsmodels searches nobs1 ≥ 2 and answers nan here; its power function is the reference.
    p1 = 0.01
    p2 = math.sin((effect + 2 * math.asin(math.sqrt(p1))) / 2) ** 2
    result = users_per_arm_proportions(p1, p2 - p1, relative=False)
    assert result is not None and result.control_exact < 2
    assert result.effect_size == pytest.approx(float(proportion_effectsize(p2, p1)), rel=1e-12)
    assert reference_power(result.effect_size, result.control_exact, 0.05, 1.0) == pytest.approx(
        0.8, abs=1e-13
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert math.isnan(solve(result.effect_size, 0.05, 0.8, 1.0))


@pytest.mark.parametrize(
    ("baseline", "mde", "users", "alpha", "ratio", "relative"),
    [
        (0.05, 0.1, 31_234.0, 0.05, 1.0, True),
        (0.05, 0.1, 1_000.0, 0.05, 1.0, True),  # low power: both tails count
        (0.5, -0.02, 12.5, 0.1, 2.0, True),
        (0.001, 0.3, 100_000.0, 0.01, 0.5, True),
        (0.2, 0.05, 1.0, 0.05, 1.0, False),
        (0.2, 0.05, 1e9, 0.05, 1.0, False),  # power 1
    ],
)
def test_power_proportions_is_statsmodels(
    baseline: float, mde: float, users: float, alpha: float, ratio: float, relative: bool
) -> None:
    target = baseline * (1 + mde) if relative else baseline + mde
    ref = reference_power(float(proportion_effectsize(target, baseline)), users, alpha, ratio)
    result = power_proportions(
        baseline, mde, users, relative=relative, alpha=alpha, ratio=ratio
    )
    assert result == pytest.approx(ref, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize(
    ("mean", "variance", "mde", "users", "relative"),
    [(25.0, 400.0, 0.05, 5_000.0, True), (1.0, 2.0, -0.1, 300.0, True), (0.0, 1.0, 0.1, 50.0, False)],
)
def test_power_means_is_statsmodels(
    mean: float, variance: float, mde: float, users: float, relative: bool
) -> None:
    change = mean * mde if relative else mde
    ref = reference_power(change / math.sqrt(variance), users, 0.05, 1.0)
    assert power_means(mean, variance, mde, users, relative=relative) == pytest.approx(
        ref, rel=1e-12
    )


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"baseline_rate": 0.0, "mde": 0.1},
        {"baseline_rate": 1.0, "mde": -0.1},
        {"baseline_rate": -0.2, "mde": 0.1},
        {"baseline_rate": NAN, "mde": 0.1},
        {"baseline_rate": 0.1, "mde": 0.0},
        {"baseline_rate": 0.1, "mde": NAN},
        {"baseline_rate": 0.1, "mde": INF},
        {"baseline_rate": 0.6, "mde": 0.8},  # to 1.08
        {"baseline_rate": 0.5, "mde": 1.0},  # to 1: outside (0, 1)
        {"baseline_rate": 0.1, "mde": -1.0},  # to 0
        {"baseline_rate": 0.1, "mde": -0.2, "relative": False},
        {"baseline_rate": 0.1, "mde": 0.1, "alpha": 0.0},
        {"baseline_rate": 0.1, "mde": 0.1, "alpha": 1.0},
        {"baseline_rate": 0.1, "mde": 0.1, "alpha": NAN},
        {"baseline_rate": 0.1, "mde": 0.1, "power": 0.0},
        {"baseline_rate": 0.1, "mde": 0.1, "power": 1.0},
        {"baseline_rate": 0.1, "mde": 0.1, "power": 0.04},  # below alpha: no users needed
        {"baseline_rate": 0.1, "mde": 0.1, "power": INF},
        {"baseline_rate": 0.1, "mde": 0.1, "ratio": 0.0},
        {"baseline_rate": 0.1, "mde": 0.1, "ratio": -1.0},
        {"baseline_rate": 0.1, "mde": 0.1, "ratio": NAN},
        {"baseline_rate": 0.5, "mde": 1e-17},  # a change that rounds away
        {"baseline_rate": 0.5, "mde": 1e-300, "relative": False},
        {"baseline_rate": None, "mde": 0.1},
        {"baseline_rate": "x", "mde": 0.1},
    ],
)
def test_users_per_arm_proportions_undefined(kwargs: dict) -> None:
    assert users_per_arm_proportions(**kwargs) is None


@pytest.mark.parametrize(
    "args",
    [
        (10.0, 0.0, 0.1),  # no variance
        (10.0, -1.0, 0.1),
        (10.0, NAN, 0.1),
        (10.0, INF, 0.1),
        (0.0, 4.0, 0.1),  # a relative change of a mean of 0 is no change
        (10.0, 4.0, 0.0),
        (NAN, 4.0, 0.1),
        (1e300, 1e-300, 1e300),  # an effect size that overflows
        (1.0, 1e300, 1e-200),  # an effect that underflows to 0
        (1.0, 1.0, 1e-170),  # so small an effect that no count of users is finite
    ],
)
def test_users_per_arm_means_undefined(args: tuple[float, float, float]) -> None:
    assert users_per_arm_means(*args) is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"users_per_arm": 0.0},
        {"users_per_arm": -5.0},
        {"users_per_arm": NAN},
        {"users_per_arm": INF},
        {"users_per_arm": 100.0, "alpha": 0.0},
        {"users_per_arm": 100.0, "alpha": 1.5},
        {"users_per_arm": 100.0, "ratio": 0.0},
        {"users_per_arm": 100.0, "mde": 0.0},
        {"users_per_arm": 100.0, "baseline_rate": 1.0},
    ],
)
def test_power_proportions_undefined(kwargs: dict) -> None:
    arguments = {"baseline_rate": 0.1, "mde": 0.1} | kwargs
    assert power_proportions(**arguments) is None


def test_power_means_undefined() -> None:
    assert power_means(1.0, 0.0, 0.1, 100.0) is None
    assert power_means(1.0, 1.0, 0.1, 0.0) is None
    assert power_means(0.0, 1.0, 0.1, 100.0) is None


@pytest.mark.parametrize(
    ("needed", "so_far", "per_day", "expected"),
    [
        (10_000.0, 4_000, 1_000.0, 6.0),
        (10_000.5, 0, 2_000.0, 5.00025),
        (10_000.0, 10_000, 1_000.0, 0.0),
        (10_000.0, 12_000, 1_000.0, 0.0),  # past it
        (10_000.0, 12_000, 0.0, 0.0),  # past it, even with no traffic now
        (10_000.0, 4_000, 0.0, None),  # no traffic: never
        (10_000.0, 4_000, -3.0, None),
        (10_000.0, 4_000, NAN, None),
        (NAN, 4_000, 100.0, None),
        (INF, 4_000, 100.0, None),
        (10_000.0, -1, 100.0, None),
        (-1.0, 0, 100.0, None),
        (1e308, 0, 1e-308, None),  # overflows
        (None, 0, 100.0, None),
    ],
)
def test_days_left(needed: float, so_far: int, per_day: float, expected: float | None) -> None:
    result = days_left(needed, so_far, per_day)
    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected, rel=1e-15)
        assert type(result) is float
