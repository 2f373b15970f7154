"""Results over time through the HTTP API, on SQLite and PostgreSQL: every point of the calendar
series and of the series since exposure against a count written here over what the test sent
(late events included), the last point against the results call, and the tests at a point
against statsmodels and scipy."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from litestar.testing import TestClient
from scipy import stats
from statsmodels.stats.proportion import proportions_ztest

from tests.e2e.helpers import assert_problem, assign, event, results
from tests.factories import create_experiment
from tests.fakes import FakeClock

IDS = "series"
DAY = timedelta(days=1)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def scenario(client: TestClient, clock: FakeClock) -> tuple[dict, dict[str, tuple[str, datetime]], list[tuple]]:
    """Users assigned over three days; purchases over four, some sent late (after later ones)."""
    experiment = create_experiment(client, "series", [("control", 50), ("green", 50)], primary="buy")
    rng = random.Random(11)
    assigned: dict[str, tuple[str, datetime]] = {}
    sent: list[tuple[str, str, datetime, float]] = []  # (user, type, at, value)
    late: list[dict] = []
    for day in range(4):
        for i in range(40 if day < 3 else 0):
            user = f"d{day}u{i}"
            answer = assign(client, experiment["id"], user).json()
            assigned[user] = (answer["variant_id"], clock.now())
            clock.advance(minutes=7)
        batch = []
        for user, (_, at) in assigned.items():
            if rng.random() < 0.3:
                when = clock.now() - timedelta(minutes=rng.randrange(60))
                kind = rng.choice(["buy", "buy", "view"])
                value = round(rng.uniform(1, 30), 2)
                batch.append(event(experiment["id"], user, kind, timestamp=iso(when), value=value))
                sent.append((user, kind, when, value))
            if rng.random() < 0.05:  # happened a day and a half ago, arrives now and later
                when = max(at, clock.now() - 1.5 * DAY)
                late.append(event(experiment["id"], user, "buy", timestamp=iso(when), value=3.0))
                sent.append((user, "buy", when, 3.0))
        response = client.post("/events", json={"events": batch})
        assert response.status_code == 202, response.text
        clock.advance(days=1)
    response = client.post("/events", json={"events": late})
    assert response.status_code == 202, response.text
    return experiment, assigned, sent


def raw(assigned, sent, variant_id: str, until: datetime, keep=lambda at: True) -> tuple[int, int, np.ndarray]:
    users = {u: at for u, (v, at) in assigned.items() if v == variant_id and at < until and keep(at)}
    totals = dict.fromkeys(users, 0.0)
    converted = set()
    for user, kind, when, value in sent:
        at = users.get(user)
        if at is not None and kind == "buy" and at <= when < until:
            converted.add(user)
            totals[user] += value
    return len(users), len(converted), np.array(list(totals.values()))


def test_every_point_is_a_count_of_what_was_sent(store_client: TestClient, fake_clock: FakeClock) -> None:
    experiment, assigned, sent = scenario(store_client, fake_clock)
    response = store_client.get(f"/experiments/{experiment['id']}/results/timeseries")
    assert response.status_code == 200, response.text
    assert "NaN" not in response.text and "Infinity" not in response.text
    series = response.json()
    assert (series["period"], series["event_type"]) == ("day", "buy")
    control, green = (v["id"] for v in experiment["variants"])
    days = [datetime.fromisoformat(p["start"]) for p in series["points"]]
    assert days[0] == datetime(2026, 11, 28, tzinfo=UTC) and days[-1].date() == fake_clock.now().date()
    for point, start in zip(series["points"], days, strict=True):
        for arm in point["variants"]:
            users, converters, values = raw(assigned, sent, arm["variant_id"], start + DAY)
            assert (arm["users"], arm["conversions"]) == (users, converters)
            assert math.isclose(arm["value_sum"], values.sum(), abs_tol=1e-9)
        (comparison,) = point["comparisons"]
        n_c, x_c, v_c = raw(assigned, sent, control, start + DAY)
        n_g, x_g, v_g = raw(assigned, sent, green, start + DAY)
        if min(x_c, x_g) > 0 and x_c + x_g < n_c + n_g:
            _, p = proportions_ztest([x_g, x_c], [n_g, n_c])
            assert comparison["p_value"] == pytest.approx(p, rel=1e-9)
            welch = stats.ttest_ind(v_g, v_c, equal_var=False)
            assert comparison["value"]["p_value"] == pytest.approx(welch.pvalue, rel=1e-6)
        assert comparison["sequential"]["confidence_interval"]["level"] == 0.95
    # The last point is the results call's figures, its chance to beat the control the Bayesian read-out's.
    final = results(store_client, experiment["id"], method="bayesian")
    (last,) = series["points"][-1]["comparisons"]
    assert last["chance_to_beat_control"] == pytest.approx(
        final["comparisons"][0]["bayesian"]["chance_to_beat_control"], abs=1e-6
    )
    for arm, variant in zip(series["points"][-1]["variants"], final["variants"], strict=True):
        assert (arm["users"], arm["conversions"]) == (variant["users"], variant["primary_unique_users"])
        assert math.isclose(arm["value_sum"], variant["value_sum"] or 0.0, abs_tol=1e-9)
    # Since exposure: day k over the users exposed at least k days before today.
    today = fake_clock.now().replace(hour=0, minute=0, second=0, microsecond=0)
    for point in series["since_exposure"]:
        k = point["day"]
        for arm in point["variants"]:
            users = converters = 0
            total = 0.0
            for user, (variant_id, at) in assigned.items():
                first_day = at.replace(hour=0, minute=0, second=0, microsecond=0)
                if variant_id != arm["variant_id"] or first_day > today - k * DAY:
                    continue
                users += 1
                mine = [value for u, kind, when, value in sent
                        if u == user and kind == "buy" and at <= when < first_day + (k + 1) * DAY]
                converters += bool(mine)
                total += sum(mine)
            assert (arm["users"], arm["conversions"]) == (users, converters), (k, arm)
            assert math.isclose(arm["value_sum"], total, abs_tol=1e-9)


def same_figures(a: object, b: object) -> bool:
    """Equal, numbers to 1e-9 relative (or 1e-12 absolute) rather than to the last bit."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_figures(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_figures(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float | int) and not isinstance(b, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(b, float) and isinstance(a, int) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def test_by_hour_the_last_point_is_the_days(client: TestClient, fake_clock: FakeClock) -> None:
    experiment, _, _ = scenario(client, fake_clock)
    x = experiment["id"]
    by_day = client.get(f"/experiments/{x}/results/timeseries").json()
    by_hour = client.get(f"/experiments/{x}/results/timeseries", params={"period": "hour"}).json()
    first_assignment = datetime(2026, 11, 28, 12, tzinfo=UTC)  # the fake clock's start
    assert len(by_hour["points"]) == (fake_clock.now() - first_assignment) // timedelta(hours=1) + 1
    assert by_hour["points"][0]["start"] == "2026-11-28T12:00:00Z"
    for hourly, daily in zip(by_hour["points"][-1]["variants"], by_day["points"][-1]["variants"], strict=True):
        assert [hourly[k] for k in ("users", "conversions", "events")] == [daily[k] for k in ("users", "conversions", "events")]
        assert math.isclose(hourly["value_sum"], daily["value_sum"], rel_tol=1e-12)
    # The same figures: the hourly read's days are its hours summed, so sums may differ in the last bits.
    assert same_figures(by_hour["since_exposure"], by_day["since_exposure"])
    views = client.get(f"/experiments/{x}/results/timeseries", params={"event_type": "view"}).json()
    assert views["event_type"] == "view"


def test_bad_requests_are_named(client: TestClient) -> None:
    assert_problem(client.get("/experiments/nope/results/timeseries"), 404)
    experiment = create_experiment(client, "no primary", [("control", 50), ("b", 50)])
    assert_problem(client.get(f"/experiments/{experiment['id']}/results/timeseries"), 422, {"event_type"})
    assert_problem(
        client.get(f"/experiments/{experiment['id']}/results/timeseries", params={"period": "week", "event_type": "x"}),
        422,
        {"period"},
    )
    empty = client.get(f"/experiments/{experiment['id']}/results/timeseries", params={"event_type": "buy"}).json()
    assert empty["points"] == [] and empty["since_exposure"] == []
