"""POST /power: users per arm as statsmodels' NormalIndPower answers them, and for a running
experiment the baseline, the split and the days left from its own traffic."""

from __future__ import annotations

import math
from typing import Any

import pytest
from litestar.testing import TestClient
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize

from tests.e2e.helpers import assert_problem, assign, event, results
from tests.factories import create_experiment
from tests.fakes import FakeClock


def solve(effect: float, alpha: float = 0.05, power: float = 0.8, ratio: float = 1.0) -> float:
    return float(NormalIndPower().solve_power(effect_size=effect, alpha=alpha, power=power, ratio=ratio, alternative="two-sided"))


def power(client: TestClient, **body: Any) -> dict:
    response = client.post("/power", json=body)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize(
    ("baseline", "mde", "relative", "alpha", "power_", "ratio"),
    [(0.1, 0.1, True, 0.05, 0.8, 1.0), (0.02, 0.005, False, 0.01, 0.9, 2.0), (0.5, -0.05, True, 0.1, 0.8, 0.5)],
)
def test_conversion_sizes_are_statsmodels(
    client: TestClient, baseline: float, mde: float, relative: bool, alpha: float, power_: float, ratio: float
) -> None:
    body = power(client, mde=mde, baseline_rate=baseline, relative=relative, alpha=alpha, power=power_, ratio=ratio)
    target = baseline * (1 + mde) if relative else baseline + mde
    effect = float(proportion_effectsize(target, baseline))
    exact = solve(effect, alpha, power_, ratio)
    size = body["users_per_arm"]
    assert size["control_exact"] == pytest.approx(exact, rel=1e-6)
    assert size["control"] == math.ceil(exact) and size["variant"] == math.ceil(ratio * exact)
    assert size["total"] == size["control"] + size["variant"]
    assert size["effect_size"] == pytest.approx(effect, rel=1e-9)
    assert body["traffic"] is None and body["ratio"] == ratio


def test_value_sizes_are_statsmodels(client: TestClient) -> None:
    body = power(client, metric="value", mean=2.5, variance=90.0, mde=0.1)
    exact = solve(0.25 / math.sqrt(90.0))
    assert body["users_per_arm"]["control_exact"] == pytest.approx(exact, rel=1e-6)
    assert body["users_per_arm"]["control"] == math.ceil(exact)


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"baseline_rate": 0.1}, {"mde"}),
        ({"mde": 0, "baseline_rate": 0.1}, {"mde"}),
        ({"mde": 0.1}, {"baseline_rate"}),
        ({"mde": 0.1, "baseline_rate": 1.5, "alpha": 0, "power": 1}, {"baseline_rate", "alpha", "power"}),
        ({"mde": 0.1, "baseline_rate": 0.1, "ratio": -1}, {"ratio"}),
        ({"mde": 0.1, "metric": "value", "mean": 1}, {"variance"}),
        ({"mde": 0.1, "metric": "value", "mean": 1, "variance": 0}, {"variance"}),
        ({"mde": 0.1, "metric": "revenue", "baseline_rate": 0.1}, {"metric"}),
        ({"mde": 0.1, "baseline_rate": 0.1, "powr": 0.9}, {"powr"}),
        ({"mde": 2.0, "baseline_rate": 0.6}, {"mde"}),  # 0.6 × 3 is no rate
    ],
)
def test_bad_questions_are_named(client: TestClient, body: dict, fields: set[str]) -> None:
    assert_problem(client.post("/power", json=body), 422, fields)


def test_a_running_experiment_gives_its_baseline_split_and_days_left(client: TestClient, fake_clock: FakeClock) -> None:
    experiment = create_experiment(client, split=[("control", 40), ("b", 30), ("c", 30)], primary="buy")
    batch = []
    for i in range(300):
        variant = assign(client, experiment["id"], f"u{i}").json()["variant_name"]
        if i % (5 if variant == "control" else 4) == 0:
            batch.append(event(experiment["id"], f"u{i}", "buy"))
    assert client.post("/events", json={"events": batch}).status_code in (200, 201, 202)
    fake_clock.advance(days=3)

    body = power(client, experiment_id=experiment["id"], mde=0.2)
    control = next(v for v in results(client, experiment["id"])["variants"] if v["is_control"])
    assert body["baseline_rate"] == control["primary_conversion_rate"]
    ratio = 30 / 40  # the least-served variant against the control
    assert body["ratio"] == pytest.approx(ratio)
    exact = solve(float(proportion_effectsize(control["primary_conversion_rate"] * 1.2, control["primary_conversion_rate"])), ratio=ratio)
    assert body["users_per_arm"]["control_exact"] == pytest.approx(exact, rel=1e-6)
    traffic = body["traffic"]
    assert traffic["users_so_far"] == 300
    assert traffic["days_running"] == pytest.approx(3.0)
    assert traffic["users_per_day"] == pytest.approx(100.0)
    assert traffic["users_needed"] == math.ceil(exact / 0.4)  # the control is 40% of everyone
    assert traffic["days_left"] == pytest.approx((traffic["users_needed"] - 300) / 100.0)

    assert_problem(client.post("/power", json={"experiment_id": experiment["id"], "mde": 0.2, "ratio": 1}), 422, {"ratio"})
    assert_problem(client.post("/power", json={"experiment_id": "nope", "mde": 0.2}), 404)


def test_an_experiment_without_conversions_asks_for_a_baseline(client: TestClient, fake_clock: FakeClock) -> None:
    experiment = create_experiment(client)
    assert_problem(client.post("/power", json={"experiment_id": experiment["id"], "mde": 0.1}), 422, {"baseline_rate"})
    assign(client, experiment["id"], "early-bird")
    fake_clock.advance(minutes=59)
    body = power(client, experiment_id=experiment["id"], mde=0.1, baseline_rate=0.05)
    # Under an hour of traffic is no pace: one user in 59 minutes is not 24 a day.
    assert body["traffic"]["users_so_far"] == 1
    assert body["traffic"]["users_per_day"] is None and body["traffic"]["days_left"] is None
    fake_clock.advance(minutes=1)
    paced = power(client, experiment_id=experiment["id"], mde=0.1, baseline_rate=0.05)["traffic"]
    assert paced["users_per_day"] == pytest.approx(24.0) and paced["days_left"] is not None


def test_power_reads_the_plain_figures_even_while_cuped_is_filled(
    make_client: Any, database_url: str, fake_clock: FakeClock
) -> None:
    """An experiment whose CUPED was just turned on answers results with 503 until the next
    fold; its power question needs only the plain figures, and is answered at once."""
    client = make_client(database_url, fake_clock, fold_interval_seconds=3600)  # no fold comes
    experiment = create_experiment(client, primary="buy")
    for i in range(40):
        assign(client, experiment["id"], f"u{i}")
    events = [event(experiment["id"], f"u{i}", "buy") for i in range(0, 40, 3)]
    assert client.post("/events", json={"events": events}).status_code == 202
    changed = client.patch(f"/experiments/{experiment['id']}", json={"analysis": {"cuped": True}})
    assert changed.status_code == 200, changed.text
    assert_problem(client.get(f"/experiments/{experiment['id']}/results"), 503)
    assert power(client, experiment_id=experiment["id"], mde=0.2)["baseline_rate"] is not None
