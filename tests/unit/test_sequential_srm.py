"""The sequential SRM check against scipy's Dirichlet–multinomial and multinomial, against exact
integer arithmetic, and in seeded simulations of experiments that are looked at all the time."""

from __future__ import annotations

import math
import sys
from decimal import Decimal, localcontext

import numpy as np
import pytest
from scipy import special, stats

from domain.stats.sample_ratio import SRM_ALPHA
from domain.stats.sequential_srm import (
    DEFAULT_CONCENTRATION,
    SequentialSampleRatio,
    sequential_srm_check,
)

EPS = sys.float_info.epsilon


def scipy_log_bf(observed: list[int], shares: list[float], concentration: float) -> float:
    p = np.asarray(shares, dtype=float)
    p = p / p.sum()
    n = int(sum(observed))
    return float(
        stats.dirichlet_multinomial.logpmf(observed, concentration * p, n)
        - stats.multinomial.logpmf(observed, n, p)
    )


def scipy_tolerance(observed: list[int], concentration: float) -> float:
    # scipy subtracts log-gammas of size n log n (gammaln(n + 1), gammaln(n + c)): its own
    # rounding, a few ulps of those, is what separates it from the exact value at large n.
    return 1e-9 + 64 * EPS * float(special.gammaln(sum(observed) + concentration + 1.0))


def plain(*values: object) -> None:
    for value in values:
        assert value is None or (type(value) is float and math.isfinite(value))


CASES = [
    ([5_000, 5_000], [50, 50], DEFAULT_CONCENTRATION),
    ([5_050, 4_950], [50, 50], DEFAULT_CONCENTRATION),
    ([10_000, 10_500], [0.5, 0.5], DEFAULT_CONCENTRATION),
    ([900, 2_100], [30, 70], DEFAULT_CONCENTRATION),
    ([1, 0], [50, 50], DEFAULT_CONCENTRATION),
    ([0, 3], [50, 50], DEFAULT_CONCENTRATION),
    ([3_300, 3_350, 3_350], [1, 1, 1], DEFAULT_CONCENTRATION),
    ([3_000, 3_400, 3_600], [33.3, 33.3, 33.4], DEFAULT_CONCENTRATION),
    ([1_000, 1_020, 980, 1_010, 2_100], [20, 20, 20, 20, 40], DEFAULT_CONCENTRATION),
    ([1_000, 1_200, 980, 1_010, 2_100], [0.2, 0.2, 0.2, 0.2, 0.4], DEFAULT_CONCENTRATION),
    ([52_000, 48_000], [1, 1], DEFAULT_CONCENTRATION),
    ([12, 0, 7], [1e-6, 1, 1], DEFAULT_CONCENTRATION),
    ([1, 2_000_000], [50, 50], DEFAULT_CONCENTRATION),
    ([5_000_000, 5_003_000], [50, 50], DEFAULT_CONCENTRATION),
    ([400_000_000, 400_030_000, 399_990_000], [1, 1, 1], DEFAULT_CONCENTRATION),
    ([5_050, 4_950], [50, 50], 100.0),
    ([5_050, 4_950], [50, 50], 1.0),
    ([5_050, 4_950], [50, 50], 1e7),
    ([80, 20, 0, 0], [1, 1, 1, 1], 0.5),
]


@pytest.mark.parametrize(("observed", "shares", "concentration"), CASES)
def test_log_bayes_factor_is_dirichlet_multinomial_over_multinomial(
    observed: list[int], shares: list[float], concentration: float
) -> None:
    result = sequential_srm_check(observed, shares, alpha=0.01, concentration=concentration)
    ref = scipy_log_bf(observed, shares, concentration)

    assert result.log_bayes_factor == pytest.approx(ref, rel=1e-9, abs=scipy_tolerance(observed, concentration))
    assert result.p_value == pytest.approx(min(1.0, math.exp(-ref)), rel=1e-8, abs=1e-9)
    assert result.mismatch is (min(1.0, math.exp(-ref)) < 0.01)
    plain(result.log_bayes_factor, result.p_value)


def _log_factorial(k: int) -> Decimal:
    # log k! from the exact integer: its top 200 bits, then the power of two, in 60 digits.
    value = math.factorial(k)
    shift = max(0, value.bit_length() - 200)
    return Decimal(value >> shift).ln() + shift * Decimal(2).ln()


@pytest.mark.parametrize(
    ("observed", "shares"),
    [([30_000, 30_600], [1, 1]), ([15_000, 14_500, 31_000], [1, 1, 2]), ([7, 0], [1, 1])],
)
def test_log_bayes_factor_to_twelve_digits_against_exact_integers(
    observed: list[int], shares: list[int]
) -> None:
    # Dyadic shares and integer Dirichlet parameters make the Bayes factor a ratio of
    # factorials times a power of two: Γ(a + x) / Γ(a) = (a + x − 1)! / (a − 1)!.
    c = 10_000
    total_share = sum(shares)
    params = [c * s // total_share for s in shares]
    n = sum(observed)
    with localcontext() as ctx:
        ctx.prec = 60
        exact = sum(
            (_log_factorial(a + x - 1) - _log_factorial(a - 1) for a, x in zip(params, observed)),
            Decimal(0),
        )
        exact -= _log_factorial(c + n - 1) - _log_factorial(c - 1)
        exact -= sum(
            (x * (Decimal(s) / Decimal(total_share)).ln() for x, s in zip(observed, shares)),
            Decimal(0),
        )
    result = sequential_srm_check(observed, shares, concentration=c)
    assert result.log_bayes_factor == pytest.approx(float(exact), rel=1e-12, abs=1e-12)


def test_no_users_yet_is_no_evidence() -> None:
    result = sequential_srm_check([0, 0], [50, 50])
    assert result == SequentialSampleRatio(log_bayes_factor=0.0, p_value=1.0, mismatch=False)
    assert scipy_log_bf([0, 0], [50, 50], DEFAULT_CONCENTRATION) == 0.0


def test_users_in_a_variant_configured_for_nobody_are_a_mismatch() -> None:
    result = sequential_srm_check([5_000, 3, 5_100], [50, 0, 50])
    ref = scipy_log_bf([5_000, 5_100], [50, 50], DEFAULT_CONCENTRATION)
    assert result.log_bayes_factor == pytest.approx(ref, rel=1e-9, abs=1e-9)
    assert result.p_value == 1.0
    assert result.mismatch is True


def test_variants_configured_for_nobody_without_users_are_left_out() -> None:
    result = sequential_srm_check([5_000, 0, 5_100], [50, 0, 50])
    ref = scipy_log_bf([5_000, 5_100], [50, 50], DEFAULT_CONCENTRATION)
    assert result.log_bayes_factor == pytest.approx(ref, rel=1e-9, abs=1e-9)
    assert result.mismatch is False


@pytest.mark.parametrize(
    ("observed", "shares", "mismatch"),
    [
        ([100], [100], False),  # one variant: nothing to compare
        ([100, 5], [100, 0], True),  # one active variant, but users leaked into the other
        ([100, 5], [100, None], True),
        ([100, 5], [100, float("nan")], True),
        ([], [], False),
        ([100, 100], [50, 50, 0], False),  # lengths differ
        ([100, -1], [50, 50], False),
        ([100, 2.5], [50, 50], False),  # not a count of users
        ([100, float("nan")], [50, 50], False),
        ([100, float("inf")], [50, 50], False),
        ([100, None], [50, 50], False),
    ],
)
def test_undefined_inputs(observed: list, shares: list, mismatch: bool) -> None:
    result = sequential_srm_check(observed, shares)
    assert result == SequentialSampleRatio(log_bayes_factor=None, p_value=None, mismatch=mismatch)


@pytest.mark.parametrize("concentration", [0.0, -1.0, float("nan"), float("inf"), None])
def test_a_concentration_that_is_no_prior_is_undefined(concentration: object) -> None:
    result = sequential_srm_check([5_000, 5_500], [50, 50], concentration=concentration)  # type: ignore[arg-type]
    assert result == SequentialSampleRatio(None, None, False)


@pytest.mark.parametrize("alpha", [float("nan"), None, "x"])
def test_an_unusable_alpha_flags_nothing(alpha: object) -> None:
    result = sequential_srm_check([5_000, 9_000], [50, 50], alpha=alpha)  # type: ignore[arg-type]
    assert result.p_value is not None and result.p_value < 1e-100
    assert result.mismatch is False


@pytest.mark.parametrize(
    ("observed", "shares"),
    [
        ([1e300, 1e300], [50, 50]),
        ([1e300, 0], [50, 50]),
        ([10**400, 5], [50, 50]),
        ([5, 7], [1e-320, 1]),
        ([5, 7], [1e300, 1e300]),
        ([5, 7], [1e308, 1e308]),
        ([0, 1_000_000_000], [50, 50]),
    ],
)
def test_absurd_magnitudes_give_plain_floats_or_none(observed: list, shares: list) -> None:
    result = sequential_srm_check(observed, shares)
    plain(result.log_bayes_factor, result.p_value)
    if result.p_value is not None:
        assert 0.0 <= result.p_value <= 1.0


def test_a_gross_break_is_flagged_with_a_p_value_of_plain_zero() -> None:
    result = sequential_srm_check([0, 1_000_000_000], [50, 50])
    assert result.p_value == 0.0 and result.mismatch is True
    assert result.log_bayes_factor == pytest.approx(
        scipy_log_bf([0, 1_000_000_000], [50, 50], DEFAULT_CONCENTRATION), rel=1e-9
    )


def test_the_default_alpha_is_the_services_srm_alpha() -> None:
    # log BF between log(1/0.05) and log(1/0.001): flagged at 0.05, not at the service's alpha.
    observed = [50_000, 51_200]
    ref = scipy_log_bf(observed, [1, 1], DEFAULT_CONCENTRATION)
    assert math.log(20) < ref < math.log(1000)
    assert sequential_srm_check(observed, [1, 1]).mismatch is False
    assert sequential_srm_check(observed, [1, 1], alpha=0.05).mismatch is True
    assert SRM_ALPHA == 0.001


# --- Simulations: a look after every `STEP` users, cumulative counts, many experiments. ---

SIMULATIONS = 2_000
STEP = 100
LOOKS = 1_000  # 100,000 users


def _log_rising(a: float, most: int) -> np.ndarray:
    # log Γ(a + x) − log Γ(a) = Σ_{j<x} log(a + j) for x = 0 … most: a table to index with the
    # counts, the closed form written as products rather than as the service's arrangement.
    return np.concatenate(([0.0], np.cumsum(np.log(a + np.arange(most)))))


def _vector_log_bf(arms: list[np.ndarray], shares: np.ndarray, concentration: float) -> np.ndarray:
    p = shares / shares.sum()
    n = sum(arms)
    most = int(n.max())
    log_bf = -_log_rising(concentration, most)[n]
    for counts, p_i in zip(arms, p):
        log_bf += _log_rising(concentration * p_i, most)[counts] - math.log(p_i) * counts
    return log_bf


def _counts(true: list[float], seed: int, step: int) -> list[np.ndarray]:
    """Cumulative users per arm (experiments × looks), the multinomial increments per look drawn
    as a chain of binomials (faster than rng.multinomial)."""
    rng = np.random.default_rng(seed)
    left = np.full((SIMULATIONS, LOOKS), step)
    rest = 1.0
    arms = []
    for q in true[:-1]:
        draw = rng.binomial(left, min(1.0, q / rest))
        arms.append(draw)
        left = left - draw
        rest -= q
    arms.append(left)
    return [arm.cumsum(axis=1) for arm in arms]


def _simulate(
    true: list[float], configured: list[float], alpha: float, seed: int, step: int = STEP
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Whether each experiment was ever flagged, the users at its first flag (inf when never),
    and the log Bayes factors (experiments × looks)."""
    counts = _counts(true, seed, step)
    log_bf = _vector_log_bf(counts, np.asarray(configured, float), DEFAULT_CONCENTRATION)
    ever, users, first = _first_flags(log_bf, alpha, step)
    _agrees_with_the_service(counts, configured, first, alpha, log_bf)
    return ever, users, log_bf


def _first_flags(
    log_bf: np.ndarray, alpha: float, step: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    flagged = log_bf > -math.log(alpha)
    ever = flagged.any(axis=1)
    first = np.where(ever, flagged.argmax(axis=1), -1)
    return ever, np.where(ever, (first + 1) * step, np.inf), first


def _agrees_with_the_service(
    counts: list[np.ndarray], configured: list[float], first: np.ndarray, alpha: float, log_bf: np.ndarray
) -> None:
    # The service decides as the simulation did, for 200 of the experiments: flagged at the
    # first flag and not at the look before (or never flagged at the last look). Looks within
    # 1e-7 of the threshold are ties, skipped.
    threshold = -math.log(alpha)
    checked = 0
    for i in range(200):
        looks = [(first[i], True), (first[i] - 1, False)] if first[i] >= 0 else [(LOOKS - 1, False)]
        for look, expected in looks:
            if look < 0 or abs(log_bf[i, look] - threshold) < 1e-7:
                continue
            result = sequential_srm_check([int(c[i, look]) for c in counts], configured, alpha)
            assert result.mismatch is expected, (i, look, log_bf[i, look])
            checked += 1
    assert checked >= 150


def _se(p: float) -> float:
    return math.sqrt(p * (1 - p) / SIMULATIONS)


@pytest.mark.parametrize(("configured", "seed"), [([0.5, 0.5], 1), ([0.5, 0.25, 0.25], 2)])
def test_a_correct_split_looked_at_1000_times_is_rarely_ever_flagged(
    configured: list[float], seed: int
) -> None:
    alpha = 0.05
    ever, _, _ = _simulate(configured, configured, alpha, seed)
    rate = float(ever.mean())
    print(f"\ncorrect split {configured}: ever flagged at alpha {alpha}: {rate:.4f}")
    assert rate <= alpha + 3 * _se(alpha)


def test_the_chi_square_looked_at_as_often_cries_wolf() -> None:
    # What the sequential test is for: the same looks at a correct 50/50 split with the
    # fixed-horizon chi-square (critical value chi2(1).isf(0.05)) flag far more than 5%.
    first, second = _counts([0.5, 0.5], seed=1, step=STEP)
    chi_square = (first - second) ** 2 / (first + second)
    ever = float((chi_square > stats.chi2.isf(0.05, 1)).any(axis=1).mean())
    print(f"\nchi-square at every look, correct 50/50 split: ever flagged {ever:.4f}")
    assert ever > 0.3


@pytest.mark.parametrize(
    ("true", "configured", "step", "least_power", "most_median"),
    [
        # 50.5/49.5 needs more than 100,000 users: looks every 400 users up to 400,000.
        ([0.505, 0.495], [0.5, 0.5], 400, 0.95, 120_000),
        ([0.51, 0.49], [0.5, 0.5], STEP, 0.95, 40_000),
        ([0.52, 0.48], [0.5, 0.5], STEP, 0.99, 15_000),
        ([0.34, 0.33, 0.33], [1 / 3, 1 / 3, 1 / 3], STEP, 0.85, 60_000),
        ([0.49, 0.26, 0.25], [0.5, 0.25, 0.25], STEP, 0.90, 60_000),
    ],
)
def test_a_broken_split_is_flagged(
    true: list[float], configured: list[float], step: int, least_power: float, most_median: float
) -> None:
    alpha = 0.05
    ever, users, log_bf = _simulate(true, configured, alpha, seed=5, step=step)
    rate = float(ever.mean())
    median = float(np.median(users))
    strict_ever, strict_users, _ = _first_flags(log_bf, SRM_ALPHA, step)
    print(
        f"\n{true} configured {configured}, by {step * LOOKS:,} users: flagged at alpha "
        f"{alpha}: {rate:.4f}, median users until flagged {median:,.0f}; at alpha {SRM_ALPHA}: "
        f"{strict_ever.mean():.4f}, median {np.median(strict_users):,.0f}"
    )
    assert rate >= least_power
    assert median <= most_median
