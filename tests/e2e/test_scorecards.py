"""Scorecards through the HTTP API, on SQLite and PostgreSQL: every metric an experiment declares,
for every variant, each figure against an independent computation written here over the users
and events this test sent (statsmodels, scipy, numpy), never against the service's functions."""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

import numpy as np
import pytest
from litestar.testing import TestClient
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

from tests.e2e.helpers import assert_problem, assign, event, expected_variant, results
from tests.factories import create_experiment

IDS = "score"  # the ids the store_client fixture makes (tests/e2e/conftest.py)
METRICS = [
    {"name": "buyers", "kind": "conversion", "event_type": "purchase", "role": "primary"},
    {"name": "revenue", "kind": "value", "event_type": "purchase"},
    {"name": "page views", "kind": "count", "event_type": "view"},
    {"name": "order value", "kind": "ratio", "event_type": "purchase", "numerator": "value",
     "denominator_event_type": "purchase"},
    {"name": "views per visit", "kind": "ratio", "event_type": "view", "denominator_event_type": "visit"},
    {"name": "errors", "kind": "count", "event_type": "error", "role": "guardrail", "direction": "decrease",
     "tolerance": 0.05},
]


def scenario(client: TestClient, analysis: dict[str, Any]) -> tuple[dict, dict[str, dict[str, np.ndarray]]]:
    """Three arms of 300 users: each user's purchases (count and value), views, visits and
    errors; the treatments buy more, view more and fail more. Per variant and measure, one
    entry per user (0 for none)."""
    experiment = create_experiment(
        client, split=[("control", 34), ("more", 33), ("most", 33)], primary="purchase", analysis=analysis
    )
    rng = random.Random(20261204)
    per_user: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    batch = []
    exposures = []
    for i in range(900):
        user = f"u{i}"
        decided = expected_variant(experiment, user)  # the documented hash, computed here
        exposures.append({"experiment_id": experiment["id"], "user_id": user, "variant_id": decided["id"],
                          "timestamp": experiment["started_at"]})
        variant = decided["name"]
        boost = {"control": 0.0, "more": 0.1, "most": 0.2}[variant]
        purchases = [round(rng.uniform(5, 60), 2) for _ in range(rng.choice([0, 0, 0, 1, 1, 2]) + (rng.random() < boost))]
        visits = 1 + rng.randrange(3)
        views = sum(rng.randrange(4 + int(10 * boost)) for _ in range(visits))
        errors = int(rng.random() < 0.1 + boost)
        for amount in purchases:
            batch.append(event(experiment["id"], user, "purchase", value=amount))
        batch.extend(event(experiment["id"], user, "view") for _ in range(views))
        batch.extend(event(experiment["id"], user, "visit") for _ in range(visits))
        batch.extend(event(experiment["id"], user, "error") for _ in range(errors))
        row = per_user[variant]
        row["bought"].append(float(bool(purchases)))
        row["revenue"].append(sum(purchases))
        row["orders"].append(len(purchases))
        row["views"].append(views)
        row["visits"].append(visits)
        row["errors"].append(errors)
    stored = client.post("/exposures", json={"exposures": exposures})  # one request, not 900
    assert stored.status_code == 202, stored.text
    assert assign(client, experiment["id"], "u0").json()["variant_id"] == exposures[0]["variant_id"]
    for start in range(0, len(batch), 1000):
        response = client.post("/events", json={"events": batch[start:start + 1000]})
        assert response.status_code in (200, 201, 202), response.text
    arrays = {v: {k: np.asarray(x, dtype=float) for k, x in row.items()} for v, row in per_user.items()}
    return experiment, arrays


def delta_ratio(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """The ratio of sums and the delta-method variance of it, from per-user values."""
    n = len(x)
    mx, my = x.mean(), y.mean()
    cov = np.cov(x, y, ddof=1)
    return x.sum() / y.sum(), (cov[0, 0] / my**2 - 2 * mx * cov[0, 1] / my**3 + mx**2 * cov[1, 1] / my**4) / n


def reference(arrays: dict[str, dict[str, np.ndarray]], metric: dict, variant: str) -> dict[str, Any]:
    """The comparison of ``variant`` against the control on ``metric``, from the raw values."""
    a, b = arrays["control"], arrays[variant]
    kind = metric["kind"]
    if kind == "conversion":
        xa, xb, na, nb = a["bought"].sum(), b["bought"].sum(), len(a["bought"]), len(b["bought"])
        z, p = proportions_ztest([xb, xa], [nb, na])
        low, high = confint_proportions_2indep(xb, nb, xa, na, method="newcomb")
        return {"estimates": (xa / na, xb / nb), "diff": xb / nb - xa / na, "stat": z, "p": p, "ci": (low, high)}
    if kind in ("value", "count"):
        key = {"revenue": "revenue", "page views": "views", "errors": "errors"}[metric["name"]]
        t = stats.ttest_ind(b[key], a[key], equal_var=False)
        ci = t.confidence_interval(0.95)
        return {"estimates": (a[key].mean(), b[key].mean()), "diff": b[key].mean() - a[key].mean(),
                "stat": t.statistic, "p": t.pvalue, "ci": (ci.low, ci.high)}
    num, den = ("revenue", "orders") if metric["name"] == "order value" else ("views", "visits")
    (ra, va), (rb, vb) = delta_ratio(a[num], a[den]), delta_ratio(b[num], b[den])
    se = np.sqrt(va + vb)
    z = (rb - ra) / se
    half = stats.norm.ppf(0.975) * se
    return {"estimates": (ra, rb), "diff": rb - ra, "stat": z, "p": 2 * stats.norm.sf(abs(z)),
            "ci": (rb - ra - half, rb - ra + half)}


def test_every_metric_for_every_variant_equals_the_reference(store_client: TestClient) -> None:
    experiment, arrays = scenario(store_client, {"metrics": METRICS, "correction": "bh"})
    assert [m["name"] for m in experiment["analysis"]["metrics"]] == [m["name"] for m in METRICS]
    body = results(store_client, experiment["id"])
    card = body["scorecard"]
    assert (card["method"], card["correction"], card["alpha"]) == ("fixed", "bh", 0.05)
    names = {v["id"]: v["name"] for v in experiment["variants"]}
    family: list[tuple[str, str]] = []
    raw_p: list[float] = []
    for metric, got in zip(METRICS, card["metrics"], strict=True):
        assert got["metric"]["name"] == metric["name"]
        values = {names[v["variant_id"]]: v for v in got["variants"]}
        for comparison in got["comparisons"]:
            variant = names[comparison["variant_id"]]
            want = reference(arrays, metric, variant)
            assert values["control"]["estimate"] == pytest.approx(want["estimates"][0], rel=1e-9)
            assert values[variant]["estimate"] == pytest.approx(want["estimates"][1], rel=1e-9)
            assert comparison["absolute_lift"] == pytest.approx(want["diff"], rel=1e-9, abs=1e-12)
            assert comparison["statistic"] == pytest.approx(want["stat"], rel=1e-7)
            assert comparison["p_value"] == pytest.approx(want["p"], rel=1e-7, abs=1e-14)
            interval = comparison["confidence_interval"]
            assert (interval["lower"], interval["upper"]) == pytest.approx(want["ci"], rel=1e-7)
            if metric.get("role") == "guardrail":
                assert comparison["p_value_adjusted"] is None  # kept out of the family
            else:
                family.append((metric["name"], variant))
                raw_p.append(want["p"])
    # Benjamini-Hochberg over the primary and secondary metrics × the two treatments.
    adjusted = dict(zip(family, multipletests(raw_p, method="fdr_bh")[1], strict=True))
    for metric, got in zip(METRICS, card["metrics"], strict=True):
        for comparison in got["comparisons"]:
            key = (metric["name"], names[comparison["variant_id"]])
            if key in adjusted:
                assert comparison["p_value_adjusted"] == pytest.approx(adjusted[key], rel=1e-7, abs=1e-14)
    assert {names[d["variant_id"]] for d in card["decisions"]} == {"more", "most"}


def expected_guard(low: float, high: float, tolerated: float) -> str:
    """A guardrail where lower is better, harm beyond ``tolerated`` (absolute)."""
    if low > tolerated:
        return "breached"
    return "ok" if high < tolerated else "at_risk"


@pytest.mark.parametrize(("tolerance", "verdicts"), [
    (0.05, {"more": "roll_back", "most": "roll_back"}),  # both fail more than 5% more often
    (10.0, {"more": "keep_running", "most": "ship"}),  # a guardrail that tolerates 1,000% more
])
def test_guardrails_and_decisions_follow_the_documented_rule(
    store_client: TestClient, tolerance: float, verdicts: dict[str, str]
) -> None:
    metrics = [*METRICS[:-1], {**METRICS[-1], "tolerance": tolerance}]
    experiment, arrays = scenario(store_client, {"metrics": metrics})
    card = results(store_client, experiment["id"])["scorecard"]
    names = {v["id"]: v["name"] for v in experiment["variants"]}
    assert {names[d["variant_id"]]: d["decision"] for d in card["decisions"]} == verdicts
    errors = next(m for m in card["metrics"] if m["metric"]["name"] == "errors")
    assert errors["metric"]["tolerance"] == tolerance
    guards = {}
    for comparison in errors["comparisons"]:
        variant = names[comparison["variant_id"]]
        want = reference(arrays, {"kind": "count", "name": "errors"}, variant)
        tolerated = tolerance * arrays["control"]["errors"].mean()
        guards[variant] = expected_guard(*want["ci"], tolerated)
        assert comparison["guardrail"] == guards[variant]
    buyers = next(m for m in card["metrics"] if m["metric"]["name"] == "buyers")
    for decision in card["decisions"]:
        variant = names[decision["variant_id"]]
        primary = next(c for c in buyers["comparisons"] if c["variant_id"] == decision["variant_id"])
        if guards[variant] == "breached":
            want = "roll_back"
        elif primary["p_value_adjusted"] < 0.05:
            want = "ship" if primary["absolute_lift"] > 0 else "roll_back"
        else:
            want = "keep_running"
        assert decision["decision"] == want, decision
        assert decision["reasons"] and all(isinstance(r, str) and r for r in decision["reasons"])


def test_sequential_and_bayesian_scorecards_read_their_own_figures(store_client: TestClient) -> None:
    experiment, _ = scenario(store_client, {"metrics": METRICS, "method": "sequential"})
    card = results(store_client, experiment["id"])["scorecard"]
    assert (card["method"], card["correction"]) == ("sequential", "holm")
    for metric in card["metrics"]:
        for comparison in metric["comparisons"]:
            seq = comparison["sequential"]
            low, high = seq["confidence_interval"]["lower"], seq["confidence_interval"]["upper"]
            fixed = comparison["confidence_interval"]
            # A confidence sequence is wider than the fixed-horizon interval at the same look.
            assert low < fixed["lower"] and high > fixed["upper"]
            if metric["metric"]["role"] != "guardrail":
                assert seq["p_value_adjusted"] >= seq["p_value"]
    bayes = results(store_client, experiment["id"], method="bayesian")["scorecard"]
    assert (bayes["method"], bayes["correction"]) == ("bayesian", None)
    for metric in bayes["metrics"]:
        for comparison in metric["comparisons"]:
            chance = comparison["bayesian"]["chance_to_beat_control"]
            assert 0 <= chance <= 1
            # Large samples: the posterior's chance to beat is the one-sided z of the fixed test.
            assert chance == pytest.approx(stats.norm.cdf(comparison["statistic"]), abs=0.02)


def test_without_metrics_results_carry_no_scorecard(store_client: TestClient) -> None:
    experiment = create_experiment(store_client, split=[("a", 50), ("b", 50)], primary="purchase")
    assert experiment["analysis"]["metrics"] == []
    assert "scorecard" not in results(store_client, experiment["id"])


def test_metrics_can_be_declared_later_and_the_scorecard_follows(store_client: TestClient) -> None:
    experiment, _ = scenario(store_client, {})
    changed = store_client.patch(f"/experiments/{experiment['id']}", json={"analysis": {"metrics": METRICS[:2]}})
    assert changed.status_code == 200, changed.text
    card = results(store_client, experiment["id"])["scorecard"]
    assert [m["metric"]["name"] for m in card["metrics"]] == ["buyers", "revenue"]


@pytest.mark.parametrize(
    ("metrics", "field"),
    [
        ("buyers", "analysis.metrics"),
        ([{"name": "a", "kind": "conversion", "event_type": "x"}], "analysis.metrics"),  # no primary
        ([METRICS[0], {**METRICS[0], "name": "b"}], "analysis.metrics"),  # two primaries
        ([METRICS[0], {**METRICS[1], "name": "buyers"}], "analysis.metrics[1].name"),
        ([{**METRICS[0], "kind": "median"}], "analysis.metrics[0].kind"),
        ([{**METRICS[0], "event_type": ""}], "analysis.metrics[0].event_type"),
        ([{**METRICS[0], "event_type": "a\u0000b"}], "analysis.metrics[0].event_type"),
        ([{**METRICS[0], "tolerance": 0.1}], "analysis.metrics[0].tolerance"),
        ([METRICS[0], {**METRICS[5], "tolerance": -1}], "analysis.metrics[1].tolerance"),
        ([METRICS[0], {**METRICS[5], "tolerance": True}], "analysis.metrics[1].tolerance"),
        ([METRICS[0], {**METRICS[4], "denominator_event_type": None}], "analysis.metrics[1].denominator_event_type"),
        ([{**METRICS[0], "numerator": "value"}], "analysis.metrics[0].numerator"),
        ([{**METRICS[0], "colour": "red"}], "analysis.metrics[0].colour"),
        ([METRICS[0]] * 21, "analysis.metrics"),
    ],
)
def test_bad_metrics_are_named_and_nothing_is_stored(store_client: TestClient, metrics: Any, field: str) -> None:
    response = store_client.post("/experiments", json={
        "name": "bad metrics", "variants": [{"name": "a", "traffic_percentage": 50, "is_control": True},
                                            {"name": "b", "traffic_percentage": 50}],
        "analysis": {"metrics": metrics},
    })
    assert_problem(response, 422, {field})
    assert store_client.get("/experiments").json()["total"] == 0


CAPPED = [
    {"name": "buyers", "kind": "conversion", "event_type": "purchase", "role": "primary"},
    {"name": "revenue", "kind": "value", "event_type": "purchase", "cap": {"percentile": 0.9}},
    {"name": "page views", "kind": "count", "event_type": "view", "cap": {"value": 5}},
    {"name": "revenue, uncapped", "kind": "value", "event_type": "purchase"},
]


def test_capped_metrics_equal_numpy_over_the_capped_figures(store_client: TestClient) -> None:
    """The percentile over the figures of users with an event, all arms pooled (numpy's
    nearest rank, ``inverted_cdf``), each user's figure capped at it; a fixed cap as given; the
    same figures over a date range that holds every event; an uncapped metric as before."""
    experiment, arrays = scenario(store_client, {"metrics": CAPPED})
    assert experiment["analysis"]["metrics"][1]["cap"] == {"percentile": 0.9}
    assert experiment["analysis"]["metrics"][0]["cap"] is None
    names = {v["id"]: v["name"] for v in experiment["variants"]}
    pooled = np.concatenate([row["revenue"][row["orders"] > 0] for row in arrays.values()])
    revenue_cap = float(np.percentile(pooled, 90, method="inverted_cdf"))
    capped = {
        "revenue": (revenue_cap, {v: np.minimum(row["revenue"], revenue_cap) for v, row in arrays.items()}),
        "page views": (5.0, {v: np.minimum(row["views"], 5) for v, row in arrays.items()}),
        "revenue, uncapped": (None, {v: row["revenue"] for v, row in arrays.items()}),
    }
    since = experiment["started_at"][:10]
    for body in (results(store_client, experiment["id"]), results(store_client, experiment["id"], start=since)):
        cards = {c["metric"]["name"]: c for c in body["scorecard"]["metrics"]}
        for name, (at, figures) in capped.items():
            card = cards[name]
            if at is None:
                assert "capped_at" not in card
            else:
                assert card["capped_at"] == pytest.approx(at, rel=1e-12)
            values = {names[v["variant_id"]]: v for v in card["variants"]}
            for variant, row in figures.items():
                assert values[variant]["estimate"] == pytest.approx(row.mean(), rel=1e-9)
            for comparison in card["comparisons"]:
                a, b = figures["control"], figures[names[comparison["variant_id"]]]
                t = stats.ttest_ind(b, a, equal_var=False)
                ci = t.confidence_interval(0.95)
                assert comparison["statistic"] == pytest.approx(t.statistic, rel=1e-7)
                assert comparison["p_value"] == pytest.approx(t.pvalue, rel=1e-7, abs=1e-14)
                interval = comparison["confidence_interval"]
                assert (interval["lower"], interval["upper"]) == pytest.approx((ci.low, ci.high), rel=1e-7)
    # The cap lowers the revenue's spread: its interval is narrower than the uncapped one's.
    width = {
        name: card["comparisons"][0]["confidence_interval"]["upper"] - card["comparisons"][0]["confidence_interval"]["lower"]
        for name, card in cards.items() if name.startswith("revenue")
    }
    assert width["revenue"] < width["revenue, uncapped"]


@pytest.mark.parametrize(("metric", "field"), [
    ({"name": "r", "kind": "ratio", "event_type": "a", "denominator_event_type": "b", "cap": {"value": 3}},
     "analysis.metrics[1].cap"),
    ({"name": "c", "kind": "conversion", "event_type": "a", "cap": {"percentile": 0.5}}, "analysis.metrics[1].cap"),
    ({"name": "v", "kind": "value", "event_type": "a", "cap": {"percentile": 1.5}}, "analysis.metrics[1].cap.percentile"),
])
def test_a_cap_where_it_cannot_apply_is_named(store_client: TestClient, metric: dict, field: str) -> None:
    body = {"metrics": [METRICS[0], metric]}
    created = store_client.post("/experiments", json={
        "name": "capless", "variants": [{"name": "a", "traffic_percentage": 50}, {"name": "b", "traffic_percentage": 50}],
        "analysis": body,
    })
    assert_problem(created, 422, {field})
