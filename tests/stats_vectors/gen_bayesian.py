"""Test vectors of the Bayesian read-out, from seeded Monte-Carlo draws with numpy.

Run from the repository's root: ``python -m tests.stats_vectors.gen_bayesian`` (numpy, scipy);
writes docs/stats-vectors/bayesian.json. Imports nothing of the service: every expected value is a
mean (or quantile) of 10⁷ draws of the posteriors the service integrates exactly, and its
tolerance is 4 of the draws' standard errors (or a floor of 10⁻¹² for exact values), so the
replay (tests/unit/test_vectors_bayesian.py) checks the service against the draws.

Posteriors, as the service defines them:

* proportions, flat prior: p ~ Beta(1 + x, 1 + n − x) per arm, independent;
* means, flat prior: μ ~ Normal(mean, variance / n) per arm (variance with n − 1);
* with a prior N(m, s²) on the relative effect θ: θ's posterior ∝ prior × the normal likelihood
  of the observed lift (m_B − m_A) / m_A with variance v_B / (n_B m_A²) + v_A m_B² / (n_A m_A⁴),
  drawn here by importance sampling (prior draws weighted by the likelihood), and the absolute
  effect θ·m_A.

Figures: chance_to_beat_control = P(B > A); expected_loss_absolute shipped = E[max(0, A − B)],
kept = E[max(0, B − A)]; expected_loss_relative the same of R = B / A − 1; absolute and relative
posterior means and equal-tailed intervals at 1 − alpha. Each case holds one figure, with that
figure's own tolerance. Quantile errors: sqrt(p(1 − p) / N) / f(q), the density f from the
draws' quantile spacing (Siddiqui's estimator, 2δ / (Q(p + δ) − Q(p − δ)), δ = 0.005).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tests.references import relative_loss_if_kept
from tests.stats_vectors.vectors import write

DRAWS = 10_000_000
CHUNK = 1_000_000
SIGMAS = 4.0
FLOOR = 1e-12
DELTA = 0.005


# --- Monte-Carlo summaries ---------------------------------------------------------------------


def mean_and_error(values: np.ndarray, weights: np.ndarray | None = None) -> tuple[float, float]:
    if weights is None:
        return float(values.mean()), float(values.std()) / math.sqrt(values.size)
    total = weights.sum()
    mean = float((weights * values).sum() / total)
    return mean, float(np.sqrt((weights**2 * (values - mean) ** 2).sum()) / total)


def quantile_and_error(
    values: np.ndarray, p: float, weights: np.ndarray | None = None
) -> tuple[float, float]:
    ps = [p - DELTA, p, p + DELTA]
    if weights is None:
        low, mid, high = np.quantile(values, ps)
        size = values.size
    else:
        order = np.argsort(values)
        cumulative = np.cumsum(weights[order])
        cumulative /= cumulative[-1]
        low, mid, high = values[order][np.searchsorted(cumulative, ps)]
        size = weights.sum() ** 2 / (weights**2).sum()  # the effective sample size
    return float(mid), math.sqrt(p * (1 - p) / size) * float(high - low) / (2 * DELTA)


def figures(
    a: np.ndarray | None,
    b: np.ndarray | None,
    alpha: float,
    relative: bool,
    relative_mean: bool,
    absolute_draws: np.ndarray | None = None,
    relative_draws: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> dict[str, tuple[float, float] | None]:
    """Every figure's (estimate, standard error) from draws of A and B (or of the absolute
    and relative effects, weighted); None where the figure is undefined."""
    d = b - a if absolute_draws is None else absolute_draws
    r = None
    if relative:
        r = b / a - 1.0 if relative_draws is None else relative_draws
    out: dict[str, tuple[float, float] | None] = {
        "chance_to_beat_control": mean_and_error((d > 0).astype(float), weights),
        "expected_loss_absolute.shipped": mean_and_error(np.maximum(0.0, -d), weights),
        "expected_loss_absolute.kept": mean_and_error(np.maximum(0.0, d), weights),
        "absolute.mean": mean_and_error(d, weights),
        "absolute.interval.lower": quantile_and_error(d, alpha / 2, weights),
        "absolute.interval.upper": quantile_and_error(d, 1 - alpha / 2, weights),
        "expected_loss_relative.shipped": None,
        "expected_loss_relative.kept": None,
        "relative.mean": None,
        "relative.interval.lower": None,
        "relative.interval.upper": None,
    }
    if r is not None:
        out["expected_loss_relative.shipped"] = mean_and_error(np.maximum(0.0, -r), weights)
        out["relative.interval.lower"] = quantile_and_error(r, alpha / 2, weights)
        out["relative.interval.upper"] = quantile_and_error(r, 1 - alpha / 2, weights)
        if relative_mean:
            out["expected_loss_relative.kept"] = mean_and_error(np.maximum(0.0, r), weights)
            out["relative.mean"] = mean_and_error(r, weights)
    return out


def draw(sampler: Any, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([sampler(rng, CHUNK) for _ in range(DRAWS // CHUNK)])


def nested(path: str, value: float | None) -> dict[str, Any]:
    head, _, rest = path.partition(".")
    return {head: nested(rest, value) if rest else value}


def cases_of(
    statistic: str,
    case_input: dict[str, Any],
    values: dict[str, tuple[float, float] | None],
    reference: str,
    exact: dict[str, tuple[float | None, float, str]] | None = None,
) -> list[dict[str, Any]]:
    """One case per figure: the Monte-Carlo (estimate, error) with 4 standard errors (None:
    undefined), or an ``exact`` (value, tolerance, reference) instead."""
    out = []
    for path in PATHS:
        if exact is not None and path in exact:
            expected, tolerance, ref = exact[path]
        elif values.get(path) is None:
            expected, tolerance, ref = None, 0.0, "undefined by definition"
        else:
            expected, error = values[path]  # type: ignore[misc]
            tolerance, ref = max(SIGMAS * error, FLOOR), reference
        out.append(
            {
                "statistic": statistic,
                "input": case_input,
                "expected": nested(path, expected),
                "tolerance": {"abs": tolerance},
                "reference": ref,
            }
        )
    return out


PATHS = [
    "chance_to_beat_control",
    "expected_loss_absolute.shipped",
    "expected_loss_absolute.kept",
    "absolute.mean",
    "absolute.interval.lower",
    "absolute.interval.upper",
    "expected_loss_relative.shipped",
    "expected_loss_relative.kept",
    "relative.mean",
    "relative.interval.lower",
    "relative.interval.upper",
]
UNDEFINED = "undefined by definition"


# --- proportions -------------------------------------------------------------------------------

PROPORTIONS = [
    # (control (n, x), variant (n, x), alpha)
    ((20, 3), (20, 5), 0.05),
    ((1_000, 100), (1_000, 130), 0.05),
    ((10_000, 1_000), (10_000, 1_100), 0.05),
    ((500, 40), (500, 55), 0.1),
    ((100_000, 3), (100_000, 9), 0.05),
    ((10_000_000, 1_000_000), (10_000_000, 1_001_000), 0.05),
    ((100_000_000, 10_000_000), (100_000_000, 10_003_000), 0.05),
    ((20, 3), (10_000_000, 1_000_000), 0.05),
    ((20, 0), (1_000_000, 5), 0.05),
    ((100, 0), (100, 0), 0.05),
    ((10, 10), (10, 10), 0.05),
    ((1, 0), (1, 1), 0.05),
]


def proportion_input(arm_a: tuple[int, int], arm_b: tuple[int, int], alpha: float, prior: Any):
    return {
        "control": {"n": arm_a[0], "x": arm_a[1]},
        "variant": {"n": arm_b[0], "x": arm_b[1]},
        "prior": prior,
        "alpha": alpha,
    }


def proportion_cases() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for seed, ((n_a, x_a), (n_b, x_b), alpha) in enumerate(PROPORTIONS):
        a = draw(lambda rng, k, n=n_a, x=x_a: rng.beta(1 + x, 1 + n - x, k), 2 * seed + 1)
        b = draw(lambda rng, k, n=n_b, x=x_b: rng.beta(1 + x, 1 + n - x, k), 2 * seed + 2)
        # E[R] needs E[1 / p_A], finite for 1 + x_A > 1; the draws' error needs E[1 / p_A²],
        # finite for 1 + x_A > 2.
        values = figures(a, b, alpha, relative=True, relative_mean=x_a >= 2)
        exact = {}
        if x_a == 0:  # E[1 / p_A] = ∞ for Beta(1, β)
            exact = {p: (None, 0.0, UNDEFINED) for p in PATHS if p.endswith(("kept", "mean"))}
            exact = {p: v for p, v in exact.items() if "relative" in p}
        reference = (
            f"numpy Monte-Carlo: {DRAWS:.0e} draws of Beta(1 + x, 1 + n - x) per arm "
            f"(default_rng seeds {2 * seed + 1}, {2 * seed + 2}); tolerance 4 standard errors"
        )
        case_input = proportion_input((n_a, x_a), (n_b, x_b), alpha, None)
        out += cases_of("bayesian_proportions", case_input, values, reference, exact or None)
    out += one_conversion_case()
    for arm_a, arm_b in [((0, 0), (100, 5)), ((10, 11), (10, 3))]:
        case_input = proportion_input(arm_a, arm_b, 0.05, None)
        out += cases_of("bayesian_proportions", case_input, {}, "")
    return out


def one_conversion_case() -> list[dict[str, Any]]:
    # x_A = 1: E[1 / p_A] is finite but E[1 / p_A²] is not, so the draws leave the relative
    # mean and loss if kept without an error: these two come from quadrature instead.
    (n_a, x_a), (n_b, x_b), alpha = (1_000, 1), (1_000, 0), 0.05
    alpha_a, beta_a, alpha_b, beta_b = 1 + x_a, 1 + n_a - x_a, 1 + x_b, 1 + n_b - x_b
    a = draw(lambda rng, k: rng.beta(alpha_a, beta_a, k), 101)
    b = draw(lambda rng, k: rng.beta(alpha_b, beta_b, k), 102)
    values = figures(a, b, alpha, relative=True, relative_mean=False)
    c = (alpha_a + beta_a - 1) / (alpha_a - 1)
    kept = relative_loss_if_kept(alpha_a, beta_a, alpha_b, beta_b)
    exact = {
        "expected_loss_relative.kept": (
            kept,
            1e-9,
            (
                "scipy.integrate.quad over B's posterior of s·c·I_s(a - 1, b) - I_s(a, b), "
                "c = (a + b - 1) / (a - 1), the control Beta(a, b)"
            ),
        ),
        "relative.mean": (
            alpha_b / (alpha_b + beta_b) * c - 1.0,
            1e-12,
            "closed form E[p_B] E[1 / p_A] - 1 = mu_B (a + b - 1) / (a - 1) - 1",
        ),
    }
    reference = (
        f"numpy Monte-Carlo: {DRAWS:.0e} draws of Beta(1 + x, 1 + n - x) per arm "
        "(default_rng seeds 101, 102); tolerance 4 standard errors"
    )
    case_input = proportion_input((n_a, x_a), (n_b, x_b), alpha, None)
    return cases_of("bayesian_proportions", case_input, values, reference, exact)


# --- means -------------------------------------------------------------------------------------

MEANS = [
    # (control (n, sum, sum of squares), variant (...), alpha): integer cents
    ((5_000, 10_000_000, 60_000_000_000), (5_000, 10_750_000, 66_000_000_000), 0.05),
    ((30, 27_000, 30_000_000), (30, 33_000, 40_000_000), 0.05),
    (
        (1_000_000, 1_500_000_000, 9_000_000_000_000),
        (1_000_000, 1_503_000_000, 9_020_000_000_000),
        0.05,
    ),
    ((1_000, -3_000, 25_000), (1_000, -3_300, 28_000), 0.05),
    ((2_000, 4_000_000, 20_000_000_000), (100_000, 205_000_000, 1_000_000_000_000), 0.1),
    ((100, 100, 496), (100, 200, 796), 0.05),
]


def means_input(arm_a: tuple, arm_b: tuple, alpha: float, prior: Any) -> dict[str, Any]:
    return {
        "control": {"n": arm_a[0], "sum": arm_a[1], "sum_squares": arm_a[2]},
        "variant": {"n": arm_b[0], "sum": arm_b[1], "sum_squares": arm_b[2]},
        "prior": prior,
        "alpha": alpha,
    }


def posterior(arm: tuple[int, int, int]) -> tuple[float, float, float]:
    """(mean, variance of one unit, sd of the mean) in exact integer arithmetic first."""
    n, total, total_sq = arm
    variance = (total_sq - total * total / n) / (n - 1)
    return total / n, variance, math.sqrt(variance / n)


def means_cases() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for seed, (arm_a, arm_b, alpha) in enumerate(MEANS, start=200):
        mean_a, _, sd_a = posterior(arm_a)
        mean_b, _, sd_b = posterior(arm_b)
        a = draw(lambda rng, k, m=mean_a, s=sd_a: rng.normal(m, s, k), 2 * seed + 1)
        b = draw(lambda rng, k, m=mean_b, s=sd_b: rng.normal(m, s, k), 2 * seed + 2)
        # The relative figures need the control's posterior at least 6 sds clear of 0.
        relative = abs(mean_a) >= 6 * sd_a
        values = figures(a, b, alpha, relative=relative, relative_mean=relative)
        reference = (
            f"numpy Monte-Carlo: {DRAWS:.0e} draws of Normal(mean, variance / n) per arm "
            f"(default_rng seeds {2 * seed + 1}, {2 * seed + 2}); tolerance 4 standard errors"
        )
        out += cases_of("bayesian_means", means_input(arm_a, arm_b, alpha, None), values, reference)
    # No variance at all: the posteriors are points; only the differences are defined.
    arm_a, arm_b = (50, 50 * 999, 50 * 999**2), (40, 40 * 1049, 40 * 1049**2)
    points = {
        "absolute.mean": (1049.0 - 999.0, 1e-9, "exact: a point posterior"),
        "relative.mean": (1049 / 999 - 1, 1e-12, "exact: a point posterior"),
    }
    out += cases_of("bayesian_means", means_input(arm_a, arm_b, 0.05, None), {}, "", points)
    # One user: no variance of the mean at all; everything undefined.
    case_input = means_input((1, 5, 25), (100, 500, 9_000), 0.05, None)
    out += cases_of("bayesian_means", case_input, {}, "")
    return out


# --- the normal prior on the relative effect ---------------------------------------------------


def prior_cases() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    specs = [
        ("bayesian_proportions", (4_000, 400), (4_000, 460), {"mean": 0.02, "sd": 0.05}),
        ("bayesian_proportions", (20_000, 1_000), (20_000, 1_010), {"mean": 0.0, "sd": 0.01}),
        (
            "bayesian_means",
            (3_000, 300_000, 45_000_000),
            (3_000, 318_000, 50_000_000),
            {"mean": 0.0, "sd": 0.1},
        ),
    ]
    for seed, (statistic, arm_a, arm_b, prior) in enumerate(specs, start=400):
        if statistic == "bayesian_proportions":
            (n_a, x_a), (n_b, x_b) = arm_a, arm_b
            mean_a, mean_b = x_a / n_a, x_b / n_b
            var_a, var_b = mean_a * (1 - mean_a), mean_b * (1 - mean_b)
            case_input = proportion_input(arm_a, arm_b, 0.05, prior)
        else:
            n_a, n_b = arm_a[0], arm_b[0]
            mean_a, var_a, _ = posterior(arm_a)
            mean_b, var_b, _ = posterior(arm_b)
            case_input = means_input(arm_a, arm_b, 0.05, prior)
        lift = (mean_b - mean_a) / mean_a
        data_var = var_b / (n_b * mean_a**2) + var_a * mean_b**2 / (n_a * mean_a**4)
        theta = draw(lambda rng, k, p=prior: rng.normal(p["mean"], p["sd"], k), seed)
        weights = np.exp(-0.5 * (lift - theta) ** 2 / data_var)
        values = figures(
            None,
            None,
            0.05,
            relative=True,
            relative_mean=True,
            absolute_draws=theta * mean_a,
            relative_draws=theta,
            weights=weights,
        )
        reference = (
            f"numpy importance sampling: {DRAWS:.0e} draws of the prior (default_rng seed "
            f"{seed}) weighted by the normal likelihood of the observed lift (delta-method "
            "variance); tolerance 4 standard errors (weighted)"
        )
        out += cases_of(statistic, case_input, values, reference)
    return out


def main() -> None:
    write('bayesian', proportion_cases() + means_cases() + prior_cases(), ('numpy', 'scipy'))


if __name__ == "__main__":
    main()
