"""Test vectors of CUPED (a comparison adjusted by a pre-period covariate), from numpy and scipy.

Run from the repository's root: ``python -m tests.stats_vectors.gen_cuped`` (numpy, scipy); writes
docs/stats-vectors/cuped.json. Imports nothing of the service: each case's per-user values are
drawn here (seeded), its input is their sums, and its expected values come from the raw values
by the formulas below (Deng, Xu, Kohavi and Walker 2013), so the replay
(tests/unit/test_vectors_cuped.py) checks the service's arithmetic on the sums against numpy's
moments of the values.

Per user, y the metric and x its pre-period covariate (users without either count, with 0):

* θ = cov(x, y) / var(x) over both arms' users pooled (numpy, ddof = 1);
* Δ = (ȳ_B − ȳ_A) − θ (x̄_B − x̄_A), relative = Δ / ȳ_A;
* var_adj = var(y) + θ² var(x) − 2θ cov(x, y) per arm (ddof = 1), se = sqrt(Σ var_adj / n);
* z = Δ / se, p = 2 · scipy.stats.norm.sf(|z|), interval Δ ± norm.ppf(1 − alpha / 2) · se;
* variance_reduction = 1 − se² / (var(y_A)/n_A + var(y_B)/n_B).

With the read-outs of a team that watches, over the adjusted per-user values
y − θ (x − x̄_pooled), Δ and se as above:

* ``cuped_sequential``: the two-sided normal-mixture confidence sequence (Howard et al. 2021),
  Δ ± se · sqrt((N + ρ) ln((N + ρ) / (ρ α²))) / sqrt(N), N the users of both arms, ρ tuned at
  ``tuning_users`` for alpha 0.05; the always-valid p min(1, sqrt((N + ρ)/ρ) exp(−z² N / (2 (N + ρ))));
* ``cuped_bayesian`` (flat prior): Δ_post ~ Normal(Δ, se²): chance to beat Φ(Δ / se), the
  equal-tailed interval Δ ± norm.ppf(1 − alpha / 2) se, the expected loss if shipped
  E[max(0, −Δ_post)] = se φ(Δ/se) − Δ Φ(−Δ/se) and if kept se φ(Δ/se) + Δ Φ(Δ/se).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from tests.stats_vectors.vectors import write

TOLERANCE = {"rel": 1e-9, "abs": 1e-12}
REFERENCE = "CUPED from the per-user values: numpy var/cov (ddof=1), theta pooled; scipy.stats.norm sf and ppf"


def sums(x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    def number(v: Any) -> Any:
        return int(v) if np.issubdtype(np.asarray(v).dtype, np.integer) else float(v)

    return {
        "n": len(x),
        "y_sum": number(y.sum()),
        "y_sum_sq": number((y * y).sum()),
        "x_sum": number(x.sum()),
        "x_sum_sq": number((x * x).sum()),
        "xy_sum": number((x * y).sum()),
    }


def expected(a: tuple, b: tuple, alpha: float) -> dict[str, Any]:
    (xa, ya), (xb, yb) = ((x.astype(float), y.astype(float)) for x, y in (a, b))
    x, y = np.concatenate([xa, xb]), np.concatenate([ya, yb])
    theta = float(np.cov(x, y, ddof=1)[0, 1] / np.var(x, ddof=1))

    def adjusted(xs: np.ndarray, ys: np.ndarray) -> float:
        c = np.cov(xs, ys, ddof=1)
        return float(c[1, 1] + theta**2 * c[0, 0] - 2 * theta * c[0, 1])

    diff = float((yb.mean() - ya.mean()) - theta * (xb.mean() - xa.mean()))
    se_sq = adjusted(xa, ya) / len(ya) + adjusted(xb, yb) / len(yb)
    se = float(np.sqrt(se_sq))
    plain = float(ya.var(ddof=1) / len(ya) + yb.var(ddof=1) / len(yb))
    z = diff / se
    half = float(stats.norm.ppf(1 - alpha / 2)) * se
    return {
        "test": {
            "absolute_lift": diff,
            "relative_lift": diff / float(ya.mean()),
            "statistic": z,
            "degrees_of_freedom": None,
            "p_value": float(2 * stats.norm.sf(abs(z))),
            "interval": {"lower": diff - half, "upper": diff + half},
        },
        "theta": theta,
        "variance_reduction": 1 - se_sq / plain,
    }


def adjusted_difference(a: tuple, b: tuple) -> tuple[float, float, int]:
    """Δ and se of the per-user values adjusted by θ (pooled), and the users of both arms."""
    (xa, ya), (xb, yb) = ((x.astype(float), y.astype(float)) for x, y in (a, b))
    x, y = np.concatenate([xa, xb]), np.concatenate([ya, yb])
    theta = np.cov(x, y, ddof=1)[0, 1] / np.var(x, ddof=1)
    adj_a, adj_b = ya - theta * (xa - x.mean()), yb - theta * (xb - x.mean())
    se = float(np.sqrt(adj_a.var(ddof=1) / len(adj_a) + adj_b.var(ddof=1) / len(adj_b)))
    return float(adj_b.mean() - adj_a.mean()), se, len(x)


def expected_sequential(a: tuple, b: tuple, alpha: float, tuning_users: float) -> dict[str, Any]:
    diff, se, users = adjusted_difference(a, b)
    log_inv = np.log(1 / 0.05)
    rho = tuning_users / (2 * log_inv + np.log(1 + 2 * log_inv))
    bound = np.sqrt((users + rho) * np.log((users + rho) / (rho * alpha**2)))
    half = float(se * bound / np.sqrt(users))
    z = diff / se
    p = min(1.0, float(np.sqrt((users + rho) / rho) * np.exp(-z * z * users / (2 * (users + rho)))))
    return {"absolute_lift": diff, "interval": {"lower": diff - half, "upper": diff + half}, "p_value": p}


def expected_bayesian(a: tuple, b: tuple, alpha: float) -> dict[str, Any]:
    diff, se, _ = adjusted_difference(a, b)
    k = diff / se
    half = float(stats.norm.ppf(1 - alpha / 2)) * se
    return {
        "chance_to_beat_control": float(stats.norm.cdf(k)),
        "absolute": {"mean": diff, "interval": {"lower": diff - half, "upper": diff + half}},
        "expected_loss_absolute": {
            "shipped": float(se * stats.norm.pdf(k) - diff * stats.norm.cdf(-k)),
            "kept": float(se * stats.norm.pdf(k) + diff * stats.norm.cdf(k)),
        },
    }


def habit(rng: np.random.Generator, n: int, rate: float, lift: float) -> tuple:
    """Purchases per user before and after: a user's own rate, Poisson in both periods."""
    own = rng.gamma(2.0, rate / 2.0, n)
    return rng.poisson(own), rng.poisson(own * (1 + lift))


def revenue(rng: np.random.Generator, n: int, lift: float) -> tuple:
    """Revenue per user (floats, cents rounded), correlated through the user's spend level."""
    level = rng.lognormal(3.0, 1.0, n) * (rng.random(n) < 0.4)
    before = np.round(level * rng.lognormal(0, 0.5, n), 2)
    after = np.round(level * (1 + lift) * rng.lognormal(0, 0.5, n), 2)
    return before, after


def converted(rng: np.random.Generator, n: int, lift: float) -> tuple:
    """Converted (1 or 0) before and after: the same users tend to."""
    keen = rng.random(n) < 0.3
    before = (rng.random(n) < np.where(keen, 0.6, 0.05)).astype(np.int64)
    after = (rng.random(n) < np.where(keen, 0.6 + lift, 0.05 + lift / 3)).astype(np.int64)
    return before, after


def cases() -> list[dict]:
    rng = np.random.default_rng(20261204)
    specs = [
        (habit(rng, 2_000, 1.0, 0.0), habit(rng, 2_000, 1.0, 0.1), 0.05),
        (habit(rng, 500, 0.3, 0.0), habit(rng, 1_500, 0.3, 0.2), 0.1),
        (revenue(rng, 3_000, 0.0), revenue(rng, 3_000, 0.05), 0.05),
        (converted(rng, 4_000, 0.0), converted(rng, 4_000, 0.03), 0.05),
        (converted(rng, 50_000, 0.0), converted(rng, 50_000, 0.01), 0.01),
        ((np.array([0, 1, 3]), np.array([1, 2, 3])), (np.array([2, 0, 1, 1]), np.array([3, 1, 1, 2])), 0.05),
    ]
    tests = [
        {
            "statistic": "cuped_test",
            "input": {"control": sums(*a), "variant": sums(*b), "alpha": alpha},
            "expected": expected(a, b, alpha),
            "tolerance": TOLERANCE,
            "reference": REFERENCE,
        }
        for a, b, alpha in specs
    ]
    sequences = [
        {
            "statistic": "cuped_sequential",
            "input": {"control": sums(*a), "variant": sums(*b), "alpha": alpha, "tuning_users": tuning},
            "expected": expected_sequential(a, b, alpha, tuning),
            "tolerance": TOLERANCE,
            "reference": "the normal-mixture sequence (Howard et al. 2021) over the per-user values adjusted with numpy",
        }
        for (a, b, alpha), tuning in zip(specs[:5], (2_000, 10_000, 10_000, 5_000, 100_000), strict=True)
    ]
    posteriors = [
        {
            "statistic": "cuped_bayesian",
            "input": {"control": sums(*a), "variant": sums(*b), "alpha": alpha},
            "expected": expected_bayesian(a, b, alpha),
            "tolerance": TOLERANCE,
            "reference": "the normal posterior (flat prior) of the per-user values adjusted with numpy; scipy.stats.norm",
        }
        for a, b, alpha in specs[:5]
    ]
    return tests + sequences + posteriors


if __name__ == "__main__":
    write("cuped", cases(), ("numpy", "scipy"))
