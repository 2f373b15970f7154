"""Results read as the experiment or the request asks: sequential, Bayesian, and the fixed-horizon
figures that stay as they were. Each number against an independent computation written here
from the published formulas (Howard et al. 2021; Lindon & Malek 2022) over the users and values
this test sent, never against the service's own functions."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from typing import Any

import numpy as np
import pytest
from litestar.testing import TestClient
from scipy import stats
from statsmodels.stats.multitest import multipletests

from tests.e2e.helpers import assert_problem, assign, event, results
from tests.factories import create_experiment
from tests.references import always_valid_p, sequence_half_width

BASE_FIELDS = (
    "absolute_lift", "relative_lift", "z_score", "p_value", "p_value_adjusted", "significant",
    "confidence_interval",
)
VALUE_BASE_FIELDS = ("absolute_lift", "relative_lift", "t_statistic", "p_value", "significant", "confidence_interval")


def scenario(client: TestClient, analysis: dict[str, Any] | None = None) -> tuple[dict, dict[str, list[float]]]:
    """An experiment of two halves, 400 users; about a quarter buy, the treatment's more and
    for more. Per variant: each user's value total (0 for those who did not buy)."""
    extra = {} if analysis is None else {"analysis": analysis}
    experiment = create_experiment(client, split=[("control", 50), ("treatment", 50)], primary="purchase", **extra)
    rng = random.Random(18)
    values: dict[str, list[float]] = defaultdict(list)
    batch = []
    for i in range(400):
        user = f"u{i}"
        variant = assign(client, experiment["id"], user).json()["variant_name"]
        buys = rng.random() < (0.35 if variant == "treatment" else 0.2)
        amount = round(rng.uniform(5, 50 if variant == "treatment" else 40), 2) if buys else 0.0
        if buys:
            batch.append(event(experiment["id"], user, "purchase", value=amount))
        values[variant].append(amount)
    response = client.post("/events", json={"events": batch})
    assert response.status_code in (200, 201, 202), response.text
    return experiment, values


def test_an_experiment_read_sequentially_by_default(client: TestClient) -> None:
    experiment, values = scenario(client, {"method": "sequential", "sequential_tuning_users": 2_000})
    assert experiment["analysis"] == {
        "method": "sequential", "sequential_tuning_users": 2_000, "prior": None, "correction": "holm", "metrics": [], "cuped": False,
        "dimensions": [],
    }
    body = results(client, experiment["id"])
    assert body["analysis"]["method"] == "sequential"
    comparison = body["comparisons"][0]
    assert "bayesian" not in comparison

    a, b = (np.array(values[v]) for v in ("control", "treatment"))
    users = len(a) + len(b)
    # Conversion: each user's outcome 0/1, unpooled variances.
    ra, rb = np.mean(a > 0), np.mean(b > 0)
    se = math.sqrt(ra * (1 - ra) / len(a) + rb * (1 - rb) / len(b))
    half = sequence_half_width(se, users, 2_000)
    sequential = comparison["sequential"]
    assert sequential["absolute_lift"] == pytest.approx(rb - ra, rel=1e-12)
    assert sequential["confidence_interval"]["level"] == 0.95
    assert sequential["confidence_interval"]["lower"] == pytest.approx(rb - ra - half, rel=1e-9)
    assert sequential["confidence_interval"]["upper"] == pytest.approx(rb - ra + half, rel=1e-9)
    assert sequential["p_value"] == pytest.approx(always_valid_p(rb - ra, se, users, 2_000), rel=1e-9)
    assert sequential["p_value_adjusted"] == pytest.approx(sequential["p_value"], rel=1e-12)  # one comparison
    assert sequential["significant"] is (sequential["p_value"] < 0.05)
    assert sequential["tuning_users"] == 2_000
    # Wider than the fixed-horizon interval: the price of looking at every moment.
    fixed = comparison["confidence_interval"]
    assert sequential["confidence_interval"]["upper"] - sequential["confidence_interval"]["lower"] > fixed["upper"] - fixed["lower"]

    # Value per user: sample variances (n - 1).
    se_v = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    d_v = b.mean() - a.mean()
    value = comparison["value"]["sequential"]
    assert value["absolute_lift"] == pytest.approx(d_v, rel=1e-9)
    assert value["confidence_interval"]["lower"] == pytest.approx(d_v - sequence_half_width(se_v, users, 2_000), rel=1e-9)
    assert value["p_value"] == pytest.approx(always_valid_p(d_v, se_v, users, 2_000), rel=1e-9)
    assert "p_value_adjusted" not in value


def test_a_request_may_read_otherwise_and_the_fixed_figures_stay_as_they_were(client: TestClient) -> None:
    experiment, _ = scenario(client)
    assert experiment["analysis"] == {
        "method": "fixed", "sequential_tuning_users": 10_000, "prior": None, "correction": "holm", "metrics": [], "cuped": False,
        "dimensions": [],
    }
    plain = results(client, experiment["id"])
    assert plain["analysis"]["method"] == "fixed"
    assert "sequential" not in plain["comparisons"][0] and "bayesian" not in plain["comparisons"][0]
    assert "sequential" not in plain["comparisons"][0]["value"]
    for method in ("sequential", "bayesian"):
        other = results(client, experiment["id"], method=method, sequential_tuning_users="5000")
        assert other["analysis"]["method"] == method
        assert method in other["comparisons"][0] and method in other["comparisons"][0]["value"]
        for key in BASE_FIELDS:
            assert other["comparisons"][0][key] == plain["comparisons"][0][key], key
        for key in VALUE_BASE_FIELDS:
            assert other["comparisons"][0]["value"][key] == plain["comparisons"][0]["value"][key], key
        assert other["variants"] == plain["variants"] and other["summary"] == plain["summary"]
    tuned = results(client, experiment["id"], method="sequential", sequential_tuning_users="5000")
    assert tuned["comparisons"][0]["sequential"]["tuning_users"] == 5_000
    # The experiment's own default is untouched by what a request asked.
    assert client.get(f"/experiments/{experiment['id']}").json()["analysis"]["method"] == "fixed"


def test_the_default_analysis_changes_with_the_experiment_and_is_audited(client: TestClient) -> None:
    experiment, _ = scenario(client)
    changed = client.patch(f"/experiments/{experiment['id']}", json={"analysis": {"method": "bayesian", "prior": {"mean": 0, "sd": 0.1}}})
    assert changed.status_code == 200, changed.text
    assert changed.json()["analysis"] == {
        "method": "bayesian", "sequential_tuning_users": 10_000, "prior": {"mean": 0.0, "sd": 0.1}, "correction": "holm", "metrics": [], "cuped": False,
        "dimensions": [],
    }
    body = results(client, experiment["id"])
    assert body["analysis"] == changed.json()["analysis"]
    assert "normal" in body["comparisons"][0]["bayesian"]["prior"]
    trail = client.get("/audit", params={"target_id": experiment["id"]}).json()["items"]
    assert any("analysis" in entry["details"] for entry in trail), trail


@pytest.mark.parametrize(
    ("params", "fields"),
    [
        ({"method": "frequentist"}, {"method"}),
        ({"sequential_tuning_users": "10"}, {"sequential_tuning_users"}),
        ({"prior_mean": "0.1"}, {"prior_sd"}),
        ({"method": "bayesian", "prior_sd": "-1"}, {"prior_sd"}),
        ({"method": "nope", "start_date": "2026-13-01"}, {"method", "start_date"}),
        ({"correction": "bonferroni"}, {"correction"}),
    ],
)
def test_bad_settings_are_named(client: TestClient, params: dict[str, str], fields: set[str]) -> None:
    experiment = create_experiment(client)
    assert_problem(client.get(f"/experiments/{experiment['id']}/results", params=params), 422, fields)


@pytest.mark.parametrize(
    "analysis",
    [{"method": "later"}, {"sequential_tuning_users": 5}, {"prior": {"sd": 0}}, "sequential", {"methods": "fixed"}],
)
def test_a_bad_default_analysis_is_named_and_nothing_is_made(client: TestClient, analysis: Any) -> None:
    before = client.get("/experiments").json()["total"]
    response = client.post("/experiments", json={"name": "bad-analysis", "variants": [
        {"name": "a", "traffic_percentage": 50}, {"name": "b", "traffic_percentage": 50}], "analysis": analysis})
    body = assert_problem(response, 422)
    assert all(e["field"].startswith("analysis") for e in body["errors"]), body
    assert client.get("/experiments").json()["total"] == before


def test_the_sequential_split_check_is_beside_the_chi_square(client: TestClient) -> None:
    experiment, values = scenario(client)
    srm = results(client, experiment["id"])["summary"]["srm"]
    counts = [len(values["control"]), len(values["treatment"])]
    # Lindon & Malek (2022): Dirichlet(k · shares) mixture against the configured multinomial.
    log_bf = stats.dirichlet_multinomial.logpmf(counts, [5_000.0, 5_000.0], sum(counts)) - stats.multinomial.logpmf(
        counts, sum(counts), [0.5, 0.5]
    )
    # Both sides subtract log-gammas in the thousands: equal to about 1e-12 of those, absolutely.
    assert srm["sequential"]["log_bayes_factor"] == pytest.approx(float(log_bf), abs=1e-9)
    assert srm["sequential"]["p_value"] == pytest.approx(min(1.0, math.exp(-log_bf)), rel=1e-9)
    assert srm["sequential"]["mismatch"] is False


def test_benjamini_hochberg_over_the_variants_when_asked(client: TestClient) -> None:
    split = [("control", 25), ("b", 25), ("c", 25), ("d", 25)]
    experiment = create_experiment(client, split=split, primary="buy", analysis={"correction": "bh"})
    rates = {"control": 0.2, "b": 0.3, "c": 0.22, "d": 0.35}
    rng = random.Random(7)
    batch = []
    for i in range(800):
        variant = assign(client, experiment["id"], f"u{i}").json()["variant_name"]
        if rng.random() < rates[variant]:
            batch.append(event(experiment["id"], f"u{i}", "buy"))
    assert client.post("/events", json={"events": batch}).status_code in (200, 201, 202)
    bh = results(client, experiment["id"])
    holm = results(client, experiment["id"], correction="holm")
    raw = [c["p_value"] for c in bh["comparisons"]]
    assert [c["p_value"] for c in holm["comparisons"]] == raw
    want_bh = multipletests(raw, method="fdr_bh")[1]
    want_holm = multipletests(raw, method="holm")[1]
    for got, want in zip(bh["comparisons"], want_bh, strict=True):
        assert got["p_value_adjusted"] == pytest.approx(float(want), rel=1e-12)
    for got, want in zip(holm["comparisons"], want_holm, strict=True):
        assert got["p_value_adjusted"] == pytest.approx(float(want), rel=1e-12)
    assert bh["analysis"]["correction"] == "bh" and holm["analysis"]["correction"] == "holm"
