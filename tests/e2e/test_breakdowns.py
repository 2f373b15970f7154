"""Breakdowns through the HTTP API, on SQLite and PostgreSQL: the attributes sent with the
assigning call split the results; every slice's figures against a count written here over what
the test sent (users without the attribute, or assigned before it was named, in "unknown"; the
values past 50 in "other"), the tests against statsmodels, the correction across slices against
statsmodels' multipletests, and the slices adding up to the results call."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import timedelta
from urllib.parse import quote

import pytest
from litestar.testing import TestClient
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportions_ztest

from tests.e2e.helpers import assert_problem, event, expected_variant, iso, results
from tests.factories import create_experiment
from tests.fakes import FakeClock

PLATFORMS = ["ios", "android", "web"]


def assign_with(client: TestClient, experiment_id: str, user: str, attributes: dict) -> str:
    response = client.post(
        f"/experiments/{experiment_id}/assignment/{quote(user, safe='')}", json={"attributes": attributes}
    )
    assert response.status_code == 200, response.text
    return response.json()["variant_id"]


def scenario(client: TestClient, clock: FakeClock) -> tuple[dict, dict, dict]:
    """Users assigned with a platform (or none) and one of 60 cities; 20 assigned before the
    dimensions were named; purchases, some sent late."""
    experiment = create_experiment(client, "sliced", [("control", 50), ("green", 50)], primary="buy")
    x = experiment["id"]
    rng = random.Random(5)
    users: dict[str, tuple[str, dict]] = {}
    for i in range(20):  # before the dimensions: unknown in every breakdown
        users[f"early{i}"] = (assign_with(client, x, f"early{i}", {"platform": "ios"}), {})
    response = client.patch(f"/experiments/{x}", json={"analysis": {"dimensions": ["platform", "city"]}})
    assert response.status_code == 200, response.text
    assert response.json()["analysis"]["dimensions"] == ["platform", "city"]
    for i in range(400):
        attributes: dict = {"city": f"c{i % 60:02d}"}
        if i % 9:
            attributes["platform"] = rng.choice(PLATFORMS)
        if i % 17 == 0:
            attributes["platform"] = None  # null: no value
        users[f"u{i}"] = (assign_with(client, x, f"u{i}", attributes), {k: v for k, v in attributes.items() if v})
    assign_with(client, x, "u1", {"platform": "web", "city": "elsewhere"})  # again: the first values stay
    clock.advance(minutes=5)
    bought: dict[str, float] = defaultdict(float)
    batch = []
    for user in users:
        for _ in range(rng.choice([0, 0, 0, 1, 2])):
            value = round(rng.uniform(1, 50), 2)
            batch.append(event(x, user, "buy", value=value, timestamp=iso(clock.now() - timedelta(minutes=2))))
            bought[user] += value
        if rng.random() < 0.1:  # before the assignment: not counted
            batch.append(event(x, user, "buy", value=1.0, timestamp=iso(clock.now() - timedelta(days=2))))
    response = client.post("/events", json={"events": batch})
    assert response.status_code == 202, response.text
    return experiment, users, bought


def expected(users: dict, bought: dict, dimension: str) -> dict:
    """value (None: unknown) -> variant -> [users, converters, value sum]."""
    out: dict = defaultdict(lambda: defaultdict(lambda: [0, 0, 0.0]))
    for user, (variant, values) in users.items():
        cell = out[values.get(dimension)][variant]
        cell[0] += 1
        if user in bought:
            cell[1] += 1
            cell[2] += bought[user]
    return out


def test_every_slice_is_a_count_of_what_was_sent(store_client: TestClient, fake_clock: FakeClock) -> None:
    experiment, users, bought = scenario(store_client, fake_clock)
    x = experiment["id"]
    control, green = (v["id"] for v in experiment["variants"])
    response = store_client.get(f"/experiments/{x}/results/breakdown", params={"dimension": "platform"})
    assert response.status_code == 200, response.text
    assert "NaN" not in response.text and "Infinity" not in response.text
    body = response.json()
    assert (body["dimension"], body["primary_event_type"], body["correction"]) == ("platform", "buy", "holm")
    want = expected(users, bought, "platform")
    shown = {(s["kind"], s["value"]): s for s in body["slices"]}
    assert set(shown) == {("value", p) for p in PLATFORMS} | {("unknown", None)}
    # The most users first, unknown last.
    known = [s for s in body["slices"] if s["kind"] == "value"]
    assert [s["users"] for s in known] == sorted((s["users"] for s in known), reverse=True)
    assert body["slices"][-1]["kind"] == "unknown"
    p_values = []
    for s in body["slices"]:
        cells = want[s["value"]]
        assert s["users"] == sum(c[0] for c in cells.values())
        for v in s["variants"]:
            n, converted, total = cells[v["variant_id"]]
            assert (v["users"], v["conversions"]) == (n, converted), (s["value"], v)
            assert v["value_sum"] == pytest.approx(total, abs=1e-9)
        (comparison,) = s["comparisons"]
        (n_c, x_c, _), (n_g, x_g, _) = cells[control], cells[green]
        _, p = proportions_ztest([x_g, x_c], [n_g, n_c])
        assert comparison["p_value"] == pytest.approx(p, rel=1e-9)
        assert comparison["p_value_adjusted"] == pytest.approx(p, rel=1e-9)  # one comparison in a slice
        p_values.append(p)
    holm = multipletests(p_values, method="holm")[1]
    for s, adjusted in zip(body["slices"], holm, strict=True):
        assert s["comparisons"][0]["p_value_adjusted_across_slices"] == pytest.approx(adjusted, rel=1e-9)
    # The slices add up to the experiment.
    whole = results(store_client, x)
    for v in whole["variants"]:
        parts = [w for s in body["slices"] for w in s["variants"] if w["variant_id"] == v["variant_id"]]
        assert sum(w["users"] for w in parts) == v["users"]
        assert sum(w["conversions"] for w in parts) == v["primary_unique_users"]
    bh = store_client.get(f"/experiments/{x}/results/breakdown", params={"dimension": "platform", "correction": "bh"})
    assert bh.json()["correction"] == "bh"
    fdr = multipletests(p_values, method="fdr_bh")[1]
    for s, adjusted in zip(bh.json()["slices"], fdr, strict=True):
        assert s["comparisons"][0]["p_value_adjusted_across_slices"] == pytest.approx(adjusted, rel=1e-9)


def test_fifty_values_are_shown_and_the_rest_are_other(client: TestClient, fake_clock: FakeClock) -> None:
    experiment, users, bought = scenario(client, fake_clock)
    body = client.get(f"/experiments/{experiment['id']}/results/breakdown", params={"dimension": "city"}).json()
    kinds = [s["kind"] for s in body["slices"]]
    assert kinds == ["value"] * 50 + ["other", "unknown"]
    want = expected(users, bought, "city")
    by_users = sorted(((sum(c[0] for c in want[v].values()), v) for v in want if v is not None),
                      key=lambda t: (-t[0], t[1]))
    assert [s["value"] for s in body["slices"][:50]] == [v for _, v in by_users[:50]]
    other = body["slices"][50]
    assert other["values"] == 10 and other["value"] is None
    assert other["users"] == sum(n for n, _ in by_users[50:])
    unknown = body["slices"][51]
    assert unknown["users"] == 20  # assigned before the dimension was named
    sequential = client.get(
        f"/experiments/{experiment['id']}/results/breakdown", params={"dimension": "city", "method": "sequential"}
    ).json()
    assert sequential["method"] == "sequential"
    assert all("sequential" in c for s in sequential["slices"] for c in s["comparisons"])


def test_bad_requests_are_named(client: TestClient) -> None:
    experiment = create_experiment(client, "plain", primary="buy")
    x = experiment["id"]
    assert_problem(client.get(f"/experiments/{x}/results/breakdown", params={"dimension": "platform"}), 422, {"dimension"})
    assert_problem(client.get(f"/experiments/{x}/results/breakdown"), 422, {"dimension"})
    assert_problem(
        client.get(f"/experiments/{x}/results/breakdown", params={"dimension": "platform", "method": "magic"}),
        422, {"method"},
    )
    assert_problem(client.get("/experiments/nope/results/breakdown", params={"dimension": "platform"}), 404)
    too_many = {"analysis": {"dimensions": ["a", "b", "c", "d", "e", "f"]}}
    assert_problem(client.patch(f"/experiments/{x}", json=too_many), 422, {"analysis.dimensions"})
    twice = {"analysis": {"dimensions": ["a", "a"]}}
    assert_problem(client.patch(f"/experiments/{x}", json=twice), 422, {"analysis.dimensions[1]"})
    empty = {"analysis": {"dimensions": [""]}}
    assert_problem(client.patch(f"/experiments/{x}", json=empty), 422, {"analysis.dimensions[0]"})
    # Nothing was changed by the refused requests.
    assert client.get(f"/experiments/{x}").json()["analysis"]["dimensions"] == []


def test_reported_exposures_carry_their_dimensions(client: TestClient, fake_clock: FakeClock) -> None:
    experiment = create_experiment(client, "local", [("control", 50), ("green", 50)], primary="buy",
                                   analysis={"dimensions": ["platform"]})
    x = experiment["id"]
    for i in range(30):  # assigned by the service, without attributes: unknown
        assert client.get(f"/experiments/{x}/assignment/local{i}").status_code == 200
    served = [f"local{i}" for i in range(30, 90)]  # assigned by a client's local decision
    body = {"exposures": [
        {"experiment_id": x, "user_id": u, "variant_id": expected_variant(experiment, u)["id"],
         "timestamp": iso(fake_clock.now()), "attributes": {"platform": "tv" if n % 2 else "car"}}
        for n, u in enumerate(served)
    ]}
    response = client.post("/exposures", json=body)
    assert response.status_code == 202, response.text
    sliced = client.get(f"/experiments/{x}/results/breakdown", params={"dimension": "platform"}).json()
    users = {(s["kind"], s["value"]): s["users"] for s in sliced["slices"]}
    assert users == {("value", "car"): 30, ("value", "tv"): 30, ("unknown", None): 30}
