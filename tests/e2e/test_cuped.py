"""CUPED through the HTTP API, on SQLite and PostgreSQL: the comparisons adjusted by each user's
pre-period (the same event type in the 14 days before the assignment), against CUPED computed
here with numpy and scipy from the per-user values this test sent, never with the service's
functions."""

from __future__ import annotations

import random
import time
from datetime import datetime, timedelta

import numpy as np
import pytest
from litestar.testing import TestClient
from scipy import stats

from tests.e2e.helpers import assert_problem, event, expected_variant, results
from tests.factories import create_experiment
from tests.references import always_valid_p, sequence_half_width

IDS = "cuped"  # the ids the store_client fixture makes (tests/e2e/conftest.py)
USERS = 600


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def scenario(
    client: TestClient, *, with_history: bool, cuped: bool = True
) -> tuple[dict, dict[str, dict[str, np.ndarray]]]:
    """Users who bought before they were assigned tend to buy after (a habit shared by both
    periods); the treatment adds a little. Per arm and measure, one entry per user: x the
    pre-period, y after the assignment; events older than the pre-period, events of other types
    and events of a user never assigned must not count."""
    experiment = create_experiment(client, split=[("control", 50), ("treatment", 50)], primary="purchase",
                                   analysis={"cuped": cuped})
    started = datetime.fromisoformat(experiment["started_at"])
    rng = random.Random(20261204)
    rows: dict[str, dict[str, list[float]]] = {}
    batch, exposures = [], []
    for i in range(USERS):
        user = f"u{i}"
        variant = expected_variant(experiment, user)
        exposures.append({"experiment_id": experiment["id"], "user_id": user, "variant_id": variant["id"],
                          "timestamp": experiment["started_at"]})
        habit = rng.random()
        lift = 0.15 if variant["name"] != "control" else 0.0
        pre = [round(rng.uniform(5, 50), 2) for _ in range(int(habit * 4 * rng.random()))] if with_history else []
        post = [round(rng.uniform(5, 50), 2) for _ in range(int((habit + lift) * 4 * rng.random()))]
        for amount in pre:  # within the 14 days before the assignment
            when = started - timedelta(days=rng.uniform(0.001, 13.9))
            batch.append(event(experiment["id"], user, "purchase", value=amount, timestamp=iso(when)))
        if with_history and rng.random() < 0.3:  # before the pre-period, and another type: ignored
            batch.append(event(experiment["id"], user, "purchase", value=99.0, timestamp=iso(started - timedelta(days=20))))
            batch.append(event(experiment["id"], user, "view", value=7.0, timestamp=iso(started - timedelta(days=2))))
        for amount in post:
            when = started + timedelta(hours=rng.uniform(0, 48))
            batch.append(event(experiment["id"], user, "purchase", value=amount, timestamp=iso(when)))
        arm = rows.setdefault(variant["name"], {"x_value": [], "y_value": [], "x_bought": [], "y_bought": []})
        arm["x_value"].append(sum(pre))
        arm["y_value"].append(sum(post))
        arm["x_bought"].append(float(bool(pre)))
        arm["y_bought"].append(float(bool(post)))
    batch.append(event(experiment["id"], "stranger", "purchase", value=5.0, timestamp=iso(started - timedelta(days=1))))
    # Half the events before the assignments (kept by user until they come), half after.
    half = len(batch) // 2
    for chunk in (batch[:half],):
        assert client.post("/events", json={"events": chunk}).status_code == 202
    stored = client.post("/exposures", json={"exposures": exposures})
    assert stored.status_code == 202, stored.text
    for start in range(half, len(batch), 1000):
        assert client.post("/events", json={"events": batch[start:start + 1000]}).status_code == 202
    arrays = {v: {k: np.asarray(x, dtype=float) for k, x in arm.items()} for v, arm in rows.items()}
    return experiment, arrays


def cuped(a: dict[str, np.ndarray], b: dict[str, np.ndarray], measure: str) -> dict[str, float]:
    """CUPED (Deng et al. 2013) written out: theta from the two arms pooled, each arm's adjusted
    variance, and the normal test of the adjusted difference."""
    xa, ya, xb, yb = a[f"x_{measure}"], a[f"y_{measure}"], b[f"x_{measure}"], b[f"y_{measure}"]
    x, y = np.concatenate([xa, xb]), np.concatenate([ya, yb])
    theta = np.cov(x, y, ddof=1)[0, 1] / np.var(x, ddof=1)

    def adjusted_var(xs: np.ndarray, ys: np.ndarray) -> float:
        c = np.cov(xs, ys, ddof=1)
        return c[1, 1] + theta**2 * c[0, 0] - 2 * theta * c[0, 1]

    diff = (yb.mean() - ya.mean()) - theta * (xb.mean() - xa.mean())
    se = np.sqrt(adjusted_var(xa, ya) / len(ya) + adjusted_var(xb, yb) / len(yb))
    plain = ya.var(ddof=1) / len(ya) + yb.var(ddof=1) / len(yb)
    z = diff / se
    half = stats.norm.ppf(0.975) * se
    return {"theta": theta, "diff": diff, "relative": diff / ya.mean(), "z": z, "p": 2 * stats.norm.sf(abs(z)),
            "ci": (diff - half, diff + half), "reduction": 1 - se**2 / plain}


def adjusted_difference(arrays: dict[str, dict[str, np.ndarray]], measure: str) -> tuple[float, float]:
    """The difference of the per-user values adjusted by θ (pooled), y − θ (x − x̄), and its
    standard error from each arm's variance of them (ddof 1): what the read-outs of the
    adjusted arms start from."""
    a, b = arrays["control"], arrays["treatment"]
    x = np.concatenate([a[f"x_{measure}"], b[f"x_{measure}"]])
    y = np.concatenate([a[f"y_{measure}"], b[f"y_{measure}"]])
    theta = np.cov(x, y, ddof=1)[0, 1] / np.var(x, ddof=1)
    adj = {arm: arrays[arm][f"y_{measure}"] - theta * (arrays[arm][f"x_{measure}"] - x.mean())
           for arm in ("control", "treatment")}
    se = np.sqrt(sum(np.var(v, ddof=1) / len(v) for v in adj.values()))
    return float(adj["treatment"].mean() - adj["control"].mean()), float(se)


def check_against_the_reference(comparison: dict, plain: dict, arrays: dict[str, dict[str, np.ndarray]]) -> None:
    # The base figures stay as they are; the adjusted ones come beside them.
    assert {k: v for k, v in comparison.items() if k not in ("cuped", "value")} == {
        k: v for k, v in plain.items() if k != "value"}
    for measure, got in (("bought", comparison["cuped"]), ("value", comparison["value"]["cuped"])):
        want = cuped(arrays["control"], arrays["treatment"], measure)
        assert got["theta"] == pytest.approx(want["theta"], rel=1e-9)
        assert got["absolute_lift"] == pytest.approx(want["diff"], rel=1e-9, abs=1e-12)
        assert got["relative_lift"] == pytest.approx(want["relative"], rel=1e-9)
        assert got["statistic"] == pytest.approx(want["z"], rel=1e-9)
        assert got["p_value"] == pytest.approx(want["p"], rel=1e-7, abs=1e-14)
        interval = got["confidence_interval"]
        assert interval["method"] == "cuped"
        assert (interval["lower"], interval["upper"]) == pytest.approx(want["ci"], rel=1e-9)
        assert got["variance_reduction"] == pytest.approx(want["reduction"], rel=1e-9)
        assert got["variance_reduction"] > 0.05  # the habit carries over: the interval narrows
    assert comparison["cuped"]["p_value_adjusted"] == pytest.approx(comparison["cuped"]["p_value"])  # one comparison


def test_the_adjusted_comparisons_equal_cuped_written_out(store_client: TestClient) -> None:
    experiment, arrays = scenario(store_client, with_history=True)
    assert experiment["analysis"]["cuped"] is True
    plain = results(store_client, experiment["id"], cuped="false")
    assert plain["analysis"]["cuped"] is False and "cuped" not in plain["comparisons"][0]
    body = results(store_client, experiment["id"])  # the experiment's default
    assert body["analysis"]["cuped"] is True
    (comparison,) = body["comparisons"]
    check_against_the_reference(comparison, plain["comparisons"][0], arrays)
    again = results(store_client, experiment["id"], cuped="true")["comparisons"][0]["cuped"]
    # PostgreSQL may add a float sum's terms in another order from one read to the next.
    assert again["p_value"] == pytest.approx(comparison["cuped"]["p_value"], rel=1e-12)


def test_turned_on_later_it_is_filled_from_the_events_already_stored(store_client: TestClient) -> None:
    """Asked of an experiment that does not keep pre-periods: a 422 naming ``cuped``. Turned
    on, a read answers 503 with Retry-After until the folder's next fold has filled them from
    the events already stored; then the figures are those of one that kept them all along."""
    experiment, arrays = scenario(store_client, with_history=True, cuped=False)
    refused = store_client.get(f"/experiments/{experiment['id']}/results", params={"cuped": "true"})
    assert_problem(refused, 422, {"cuped"})
    changed = store_client.patch(f"/experiments/{experiment['id']}", json={"analysis": {"cuped": True}})
    assert changed.status_code == 200, changed.text
    plain = results(store_client, experiment["id"], cuped="false")
    deadline = time.monotonic() + 30
    while True:
        answer = store_client.get(f"/experiments/{experiment['id']}/results")
        if answer.status_code == 200:
            break
        assert_problem(answer, 503)
        assert answer.headers["retry-after"] == "1"
        assert time.monotonic() < deadline, "the next fold never filled the pre-periods"
        time.sleep(0.05)
    (comparison,) = answer.json()["comparisons"]
    check_against_the_reference(comparison, plain["comparisons"][0], arrays)


def test_with_the_sequential_read_out_the_adjusted_sequence_is_the_reference_one(store_client: TestClient) -> None:
    """method=sequential: beside each adjusted test, the normal-mixture confidence sequence of
    the adjusted difference (tests/references.py, from the papers) over the per-user values
    adjusted here with numpy; the plain sequences stay as they are, and the adjusted one is
    narrower. The conversion's adjusted sequence carries Holm's p (one comparison: itself)."""
    experiment, arrays = scenario(store_client, with_history=True)
    tuning = 2_000
    body = results(store_client, experiment["id"], method="sequential", sequential_tuning_users=str(tuning))
    plain = results(store_client, experiment["id"], method="sequential", sequential_tuning_users=str(tuning),
                    cuped="false")
    (comparison,) = body["comparisons"]
    assert comparison["sequential"] == plain["comparisons"][0]["sequential"]
    users = sum(len(arm["y_value"]) for arm in arrays.values())
    for measure, got, unadjusted in (
        ("bought", comparison["cuped"]["sequential"], comparison["sequential"]),
        ("value", comparison["value"]["cuped"]["sequential"], comparison["value"]["sequential"]),
    ):
        diff, se = adjusted_difference(arrays, measure)
        half = sequence_half_width(se, users, tuning)
        assert got["absolute_lift"] == pytest.approx(diff, rel=1e-9, abs=1e-12)
        interval = got["confidence_interval"]
        assert (interval["lower"], interval["upper"]) == pytest.approx((diff - half, diff + half), rel=1e-9)
        assert got["p_value"] == pytest.approx(always_valid_p(diff, se, users, tuning), rel=1e-7)
        assert got["tuning_users"] == tuning
        plain_interval = unadjusted["confidence_interval"]
        assert interval["upper"] - interval["lower"] < plain_interval["upper"] - plain_interval["lower"]
    assert comparison["cuped"]["sequential"]["p_value_adjusted"] == pytest.approx(
        comparison["cuped"]["sequential"]["p_value"])
    fixed = results(store_client, experiment["id"])["comparisons"][0]
    assert "sequential" not in fixed["cuped"] and "sequential" not in fixed["value"]["cuped"]


def test_with_the_bayesian_read_out_the_adjusted_posterior_is_the_reference_one(store_client: TestClient) -> None:
    """method=bayesian: beside each adjusted test, the normal posterior of the adjusted arms
    (flat prior): chance to beat the control Φ(Δ / se) and the credible interval Δ ± z se, from
    the per-user values adjusted here with numpy."""
    experiment, arrays = scenario(store_client, with_history=True)
    (comparison,) = results(store_client, experiment["id"], method="bayesian")["comparisons"]
    for measure, got in (("bought", comparison["cuped"]["bayesian"]), ("value", comparison["value"]["cuped"]["bayesian"])):
        diff, se = adjusted_difference(arrays, measure)
        assert got["chance_to_beat_control"] == pytest.approx(stats.norm.cdf(diff / se), rel=1e-7)
        interval = got["absolute_lift"]["credible_interval"]
        half = stats.norm.ppf(0.975) * se
        assert (interval["lower"], interval["upper"]) == pytest.approx((diff - half, diff + half), rel=1e-9)
    assert "bayesian" in comparison  # the unadjusted read-out stays beside it


def test_without_pre_period_data_the_adjusted_figures_are_the_unadjusted_ones(store_client: TestClient) -> None:
    experiment, _ = scenario(store_client, with_history=False)
    (comparison,) = results(store_client, experiment["id"], cuped="true")["comparisons"]
    for got, plain in ((comparison["cuped"], comparison), (comparison["value"]["cuped"], comparison["value"])):
        assert got["theta"] is None and got["variance_reduction"] is None
        assert got["absolute_lift"] == plain["absolute_lift"] and got["p_value"] == plain["p_value"]
        assert got["confidence_interval"] == plain["confidence_interval"]
    sequential = results(store_client, experiment["id"], cuped="true", method="sequential")["comparisons"][0]
    assert sequential["cuped"]["sequential"] == sequential["sequential"]
    assert sequential["value"]["cuped"]["sequential"] == sequential["value"]["sequential"]
    bayesian = results(store_client, experiment["id"], cuped="true", method="bayesian")["comparisons"][0]
    assert bayesian["cuped"]["bayesian"] == bayesian["bayesian"]
    assert bayesian["value"]["cuped"]["bayesian"] == bayesian["value"]["bayesian"]


def test_a_bad_cuped_setting_is_named(store_client: TestClient) -> None:
    experiment = create_experiment(store_client, primary="purchase", analysis={"cuped": True})
    answer = store_client.get(f"/experiments/{experiment['id']}/results", params={"cuped": "maybe"})
    assert answer.status_code in (400, 422) and "cuped" in answer.text
    bad = store_client.patch(f"/experiments/{experiment['id']}", json={"analysis": {"cuped": "yes"}})
    assert_problem(bad, 422, {"analysis.cuped"})
