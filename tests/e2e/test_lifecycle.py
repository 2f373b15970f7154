"""Experiments that live, over HTTP: the lifecycle and what each state serves, editing, ramping
coverage without reshuffling, audiences, and QA overrides (docs/api.md)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from litestar.testing import TestClient
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

from tests.e2e.helpers import assert_problem, event, parse_ts, results
from tests.factories import create_experiment, experiment_body, variants
from tests.fakes import FakeClock


def create(client: TestClient, name: str = "live", **extra) -> dict:  # noqa: ANN003
    return create_experiment(client, name, [("control", 50), ("green", 50)], primary="buy", **extra)


def assign(client: TestClient, x: str, user: str, attributes: dict | None = None) -> dict:
    if attributes is None:
        response = client.get(f"/experiments/{x}/assignment/{user}")
    else:
        response = client.post(f"/experiments/{x}/assignment/{user}", json={"attributes": attributes})
    assert response.status_code == 200, response.text
    return response.json()


def change(client: TestClient, x: str, **fields) -> dict:  # noqa: ANN003
    response = client.patch(f"/experiments/{x}", json=fields)
    assert response.status_code == 200, response.text
    return response.json()


def users_in_results(client: TestClient, x: str) -> int:
    return sum(v["users"] for v in results(client, x)["variants"])


def test_created_without_a_status_it_runs_for_everyone_as_before(client: TestClient) -> None:
    experiment = create(client)
    assert experiment["status"] == "running"
    assert experiment["coverage"] == 100
    assert experiment["started_at"] == experiment["created_at"]
    assert experiment["stopped_at"] is None and experiment["overrides"] == [] and experiment["audience"] is None
    answer = assign(client, experiment["id"], "u-1")
    assert answer["in_experiment"] is True and answer["reason"] == "assigned" and answer["assigned_at"]


def test_a_draft_serves_the_control_and_stores_nothing_until_it_starts(client: TestClient, fake_clock: FakeClock) -> None:
    experiment = create(client, status="draft")
    x = experiment["id"]
    assert experiment["started_at"] is None
    control = experiment["variants"][0]
    for i in range(20):
        answer = assign(client, x, f"u-{i}")
        assert (answer["variant_id"], answer["in_experiment"], answer["reason"], answer["assigned_at"]) == (
            control["id"], False, "draft", None)
    assert users_in_results(client, x) == 0
    fake_clock.advance(hours=1)
    started = change(client, x, status="running")
    assert parse_ts(started["started_at"]) == fake_clock.now()
    assert assign(client, x, "u-1")["in_experiment"] is True
    assert users_in_results(client, x) == 1


def test_paused_serves_the_control_to_everyone_and_resuming_restores_assignments(client: TestClient) -> None:
    experiment = create(client)
    x = experiment["id"]
    before = {f"u-{i}": assign(client, x, f"u-{i}") for i in range(40)}
    change(client, x, status="paused")
    for user in before:
        answer = assign(client, x, user)
        assert (answer["variant_name"], answer["reason"], answer["in_experiment"]) == ("control", "paused", False)
    assert assign(client, x, "newcomer")["reason"] == "paused"
    change(client, x, status="running")
    for user, answer in before.items():
        assert assign(client, x, user) == answer
    assert users_in_results(client, x) == 40  # the newcomer was never stored


def test_stopped_serves_the_winner_and_results_keep_the_running_window(client: TestClient, fake_clock: FakeClock) -> None:
    experiment = create(client)
    x = experiment["id"]
    green = experiment["variants"][1]
    for i in range(10):
        assign(client, x, f"u-{i}")
    assert client.post("/events", json=event(x, "u-1", "buy")).status_code == 202
    fake_clock.advance(hours=1)
    stopped = change(client, x, status="stopped", winner_variant_id=green["id"])
    assert stopped["winner_variant_id"] == green["id"]
    assert parse_ts(stopped["stopped_at"]) == fake_clock.now()
    for user in ("u-1", "u-2", "stranger"):
        answer = assign(client, x, user)
        assert (answer["variant_id"], answer["reason"], answer["in_experiment"]) == (green["id"], "winner", False)
    # An event after the stop is outside the running window the results default to.
    later = (fake_clock.now() + timedelta(minutes=5)).isoformat()
    assert client.post("/events", json=event(x, "u-2", "buy", timestamp=later)).status_code == 202
    answer = results(client, x)
    assert sum(v["users"] for v in answer["variants"]) == 10
    assert answer["summary"]["total_events"] == 1
    assert parse_ts(answer["filters"]["end_date"]) == fake_clock.now()
    archived = change(client, x, status="archived")
    assert archived["status"] == "archived" and assign(client, x, "u-1")["reason"] == "archived"


def test_illegal_moves_are_409_naming_the_current_state(client: TestClient) -> None:
    x = create(client, status="draft")["id"]
    problem = assert_problem(client.patch(f"/experiments/{x}", json={"status": "paused"}), 409)
    assert "is draft" in problem["detail"] and "paused" in problem["detail"]
    change(client, x, status="running")
    change(client, x, status="running")  # no move: a retried request is harmless
    change(client, x, status="stopped")
    change(client, x, status="archived")
    problem = assert_problem(client.patch(f"/experiments/{x}", json={"status": "running"}), 409)
    assert "is archived" in problem["detail"]
    assert_problem(client.patch(f"/experiments/{x}", json={"status": "finished"}), 422, {"status"})


def test_editing_fields_and_what_cannot_change_while_running(client: TestClient) -> None:
    experiment = create(client)
    x = experiment["id"]
    changed = change(client, x, name="renamed", description=None, primary_event_type="signup")
    assert (changed["name"], changed["description"], changed["primary_event_type"]) == ("renamed", None, "signup")
    assert client.get(f"/experiments/{x}").json()["name"] == "renamed"
    assert_problem(client.patch(f"/experiments/{x}", json={"nmae": "x"}), 422, {"nmae"})
    assert_problem(client.patch(f"/experiments/{x}", json={"coverage": 101, "description": 5}), 422, {"description"})
    assert_problem(client.patch(f"/experiments/{x}", json={"coverage": 101, "primary_event_type": ""}), 422,
                   {"coverage", "primary_event_type"})
    assert_problem(client.patch(f"/experiments/{x}", json={"name": ""}), 422, {"name"})
    split = variants([("control", 20), ("green", 80)])
    problem = assert_problem(client.patch(f"/experiments/{x}", json={"variants": split}), 409)
    assert "would move users" in problem["detail"]
    same = variants([("control", 50), ("green", 50)])
    assert client.patch(f"/experiments/{x}", json={"variants": same}).status_code == 200
    assert_problem(client.patch(f"/experiments/{x}", json={"winner_variant_id": experiment["variants"][0]["id"]}), 409)
    assert_problem(client.patch("/experiments/nope", json={"name": "x"}), 404)
    other = create(client, "other")
    assert_problem(client.patch(f"/experiments/{other['id']}", json={"name": "renamed"}), 409)


def test_a_draft_split_can_change(client: TestClient) -> None:
    x = create(client, status="draft")["id"]
    split = [{"name": "a", "traffic_percentage": 10}, {"name": "b", "traffic_percentage": 90, "is_control": True}]
    changed = change(client, x, variants=split)
    assert [(v["name"], v["traffic_percentage"], v["is_control"]) for v in changed["variants"]] == [
        ("a", 10, False), ("b", 90, True)]


def test_ramping_coverage_admits_more_users_and_moves_no_one(client: TestClient) -> None:
    experiment = create(client, coverage=10)
    x = experiment["id"]
    users = [f"u-{i}" for i in range(1000)]
    first = {u: assign(client, x, u) for u in users}
    admitted = {u for u, a in first.items() if a["in_experiment"]}
    assert 60 <= len(admitted) <= 140  # ~10% of 1,000 (binomial, beyond 4 sigma)
    assert all(first[u]["reason"] == "coverage" and first[u]["variant_name"] == "control"
               for u in users if u not in admitted)
    assert users_in_results(client, x) == len(admitted)
    problem = assert_problem(client.patch(f"/experiments/{x}", json={"coverage": 5}), 409)
    assert "can only grow" in problem["detail"]
    change(client, x, coverage=50)
    second = {u: assign(client, x, u) for u in users}
    for u in admitted:
        assert second[u] == first[u]  # the same variant, the same assigned_at
    newly = {u for u, a in second.items() if a["in_experiment"]} - admitted
    assert 350 <= len(newly) <= 450
    change(client, x, coverage=100)
    assert all(assign(client, x, u)["in_experiment"] for u in users)


def test_audiences_keep_an_experiment_to_the_users_who_match(client: TestClient) -> None:
    rule = {"all": [{"attribute": "country", "op": "in", "value": ["DE", "AT"]},
                    {"attribute": "app_version", "op": "version_gte", "value": "2.0.0"}]}
    experiment = create(client, audience=rule)
    assert experiment["audience"] == rule
    x = experiment["id"]
    assert assign(client, x, "u-1", {"country": "DE", "app_version": "2.1.0"})["in_experiment"] is True
    out = assign(client, x, "u-2", {"country": "FR", "app_version": "2.1.0"})
    assert (out["in_experiment"], out["reason"], out["assigned_at"]) == (False, "audience", None)
    assert assign(client, x, "u-3")["reason"] == "audience"  # GET: no attributes
    # Once assigned, a user keeps the variant whatever they send later.
    assert assign(client, x, "u-1", {"country": "FR"})["in_experiment"] is True
    assert users_in_results(client, x) == 1
    bad = experiment_body("bad", [("a", 50), ("b", 50)], audience={"attribute": "age", "op": "gt", "value": "18"})
    assert_problem(client.post("/experiments", json=bad), 422, {"audience.value"})
    assert_problem(client.post(f"/experiments/{x}/assignment/u", json={"attributes": {"a": [1]}}), 422)
    assert_problem(client.patch(f"/experiments/{x}", json={"audience": None}), 409)


def test_qa_overrides_force_a_variant_and_never_count(client: TestClient) -> None:
    experiment = create(client, status="draft")
    x = experiment["id"]
    green = experiment["variants"][1]
    response = client.put(f"/experiments/{x}/assignment/qa-device", json={"variant_id": green["id"]})
    assert response.status_code == 200, response.text
    forced = response.json()
    assert (forced["variant_id"], forced["reason"], forced["in_experiment"]) == (green["id"], "forced", True)
    assert assign(client, x, "qa-device") == forced  # in draft too: QA before launch
    assert client.get(f"/experiments/{x}").json()["overrides"][0]["user_id"] == "qa-device"
    change(client, x, status="running")
    assert client.post("/events", json=event(x, "qa-device", "buy")).status_code == 202
    assert users_in_results(client, x) == 0
    assert_problem(client.put(f"/experiments/{x}/assignment/qa-device", json={"variant_id": "nope"}), 422, {"variant_id"})
    assert client.delete(f"/experiments/{x}/assignment/qa-device").status_code == 204
    assert assign(client, x, "qa-device")["reason"] == "assigned"
    assert client.delete(f"/experiments/{x}/assignment/qa-device").status_code == 204  # idempotent


def test_experiments_of_a_layer_never_share_a_user(client: TestClient) -> None:
    response = client.post("/layers", json={"name": "checkout page"})
    assert response.status_code == 201, response.text
    layer = response.json()
    assert response.headers["location"] == f"/layers/{layer['id']}" and layer["free_percentage"] == 100
    first = create(client, "first", layer={"id": layer["id"], "percentage": 30})
    second = create(client, "second", layer={"id": layer["id"], "percentage": 70})
    assert (first["layer"]["start"], first["layer"]["end"], second["layer"]["start"], second["layer"]["end"]) == (
        0, 3000, 3000, 10000)
    assert_problem(client.post("/experiments", json=experiment_body(
        "third", [("a", 50), ("b", 50)], layer={"id": layer["id"], "percentage": 1})), 422, {"layer.percentage"})
    assert_problem(client.post("/experiments", json=experiment_body(
        "fourth", [("a", 50), ("b", 50)], layer={"id": "nope", "percentage": 1})), 422, {"layer.id"})
    inside = {name: set() for name in ("first", "second")}
    for i in range(600):
        for experiment in (first, second):
            if assign(client, experiment["id"], f"u-{i}")["in_experiment"]:
                inside[experiment["name"]].add(f"u-{i}")
    assert not inside["first"] & inside["second"]
    assert len(inside["first"]) + len(inside["second"]) == 600  # the layer is full: everyone is in one
    assert 120 <= len(inside["first"]) <= 240  # ~30%
    # Archiving frees the slice for a new experiment.
    change(client, first["id"], status="stopped")
    change(client, first["id"], status="archived")
    third = create(client, "third", layer={"id": layer["id"], "percentage": 30})
    assert (third["layer"]["start"], third["layer"]["end"]) == (0, 3000)
    view = client.get(f"/layers/{layer['id']}").json()
    assert [e["experiment_id"] for e in view["experiments"]] == [third["id"], second["id"]]
    assert_problem(client.post("/layers", json={"name": "checkout page"}), 409)
    assert_problem(client.get("/layers/nope"), 404)


def test_a_holdout_keeps_its_share_out_and_compares_it_with_everyone_exposed(client: TestClient) -> None:
    response = client.post("/holdouts", json={"name": "global", "percentage": 10})
    assert response.status_code == 201, response.text
    holdout = response.json()
    assert_problem(client.post("/holdouts", json={"name": "big", "percentage": 60}), 422, {"percentage"})
    opted = create(client, "opted", holdout_id=holdout["id"])
    other = create(client, "not-opted")
    held = set()
    for i in range(500):
        answer = assign(client, opted["id"], f"u-{i}")
        if answer["reason"] == "holdout":
            held.add(f"u-{i}")
            assert not answer["in_experiment"] and answer["assigned_at"] is None
        assert assign(client, other["id"], f"u-{i}")["in_experiment"] is True  # only opted-in ones hold out
    assert 25 <= len(held) <= 80  # ~10% of 500
    buyers = [u for i, u in enumerate(sorted(held)) if i % 2 == 0] + [f"u-{i}" for i in range(500) if i % 5 == 0 and f"u-{i}" not in held]
    events = [event(opted["id"], u, "buy") for u in buyers]
    assert client.post("/events", json={"events": events}).status_code == 202
    answer = client.get(f"/holdouts/{holdout['id']}/results", params={"event_type": "buy"}).json()
    exposed_buyers = sum(1 for u in buyers if u not in held)
    assert answer["held_out"] == {"users": len(held), "converted": (len(held) + 1) // 2,
                                  "conversion_rate": ((len(held) + 1) // 2) / len(held)}
    assert answer["exposed"]["users"] == 500 - len(held) and answer["exposed"]["converted"] == exposed_buyers
    # The statistics against statsmodels: a pooled two-proportion z-test and Newcombe's interval
    # for the exposed rate minus the held-out rate.
    held_n, held_x = answer["held_out"]["users"], answer["held_out"]["converted"]
    exp_n, exp_x = answer["exposed"]["users"], answer["exposed"]["converted"]
    z, p = proportions_ztest([exp_x, held_x], [exp_n, held_n])
    lower, upper = confint_proportions_2indep(exp_x, exp_n, held_x, held_n, method="newcomb", compare="diff")
    assert answer["z_score"] == pytest.approx(z, rel=1e-9) and answer["p_value"] == pytest.approx(p, rel=1e-9)
    interval = answer["confidence_interval"]
    assert (interval["lower"], interval["upper"]) == (pytest.approx(lower, rel=1e-9), pytest.approx(upper, rel=1e-9))
    assert answer["absolute_lift"] == pytest.approx(exp_x / exp_n - held_x / held_n, rel=1e-12)
    assert answer["relative_lift"] == pytest.approx((exp_x / exp_n) / (held_x / held_n) - 1, rel=1e-9)
    assert_problem(client.get(f"/holdouts/{holdout['id']}/results"), 422, {"event_type"})


def test_every_change_is_in_the_audit_trail_with_who_and_what_from_what(client: TestClient) -> None:
    x = create(client)["id"]
    secret = client.post("/keys", json={"name": "release-bot", "scopes": ["admin"]}).json()["key"]
    bot = {"Authorization": f"Bearer {secret}"}
    assert client.patch(f"/experiments/{x}", json={"coverage": 100, "status": "paused"}, headers=bot).status_code == 200
    variant = client.get(f"/experiments/{x}").json()["variants"][1]["id"]
    assert client.put(f"/experiments/{x}/assignment/qa", json={"variant_id": variant}, headers=bot).status_code == 200
    entries = client.get("/audit", params={"target_id": x}).json()["items"]
    assert [(e["action"], e["actor"]) for e in entries] == [
        ("experiment.changed", "release-bot"),
        ("experiment.changed", "release-bot"),
        ("experiment.created", "API_TOKENS"),
    ]
    assert entries[1]["details"] == {"status": {"from": "running", "to": "paused"}}  # coverage did not change
    assert entries[0]["details"] == {"override": {"user_id": "qa", "from": None, "to": variant}}
    assert entries[2]["details"]["status"] == "running" and entries[0]["at"] >= entries[1]["at"]


def test_a_stopped_experiments_winner_is_final(client: TestClient, fake_clock: FakeClock) -> None:
    experiment = create(client, "final")
    x, control, green = experiment["id"], experiment["variants"][0], experiment["variants"][1]
    stopped = change(client, x, status="stopped", winner_variant_id=green["id"])
    fake_clock.advance(hours=1)
    problem = assert_problem(client.patch(f"/experiments/{x}", json={"winner_variant_id": control["id"]}), 409)
    assert "final" in problem["detail"]
    again = client.get(f"/experiments/{x}").json()
    assert (again["winner_variant_id"], again["stopped_at"]) == (green["id"], stopped["stopped_at"])
    assert assign(client, x, "u-1")["variant_id"] == green["id"]
    # Sending the same winner again changes nothing and is no conflict.
    assert change(client, x, winner_variant_id=green["id"])["winner_variant_id"] == green["id"]
    changes = [e for e in client.get("/audit", params={"target_id": x}).json()["items"] if e["action"] == "experiment.changed"]
    assert len(changes) == 1


def test_holdout_results_name_a_missing_or_empty_event_type(client: TestClient) -> None:
    holdout = client.post("/holdouts", json={"name": "h", "percentage": 5}).json()
    path = f"/holdouts/{holdout['id']}/results"
    for params in ({}, {"event_type": ""}):
        problem = assert_problem(client.get(path, params=params), 422, {"event_type"})
        assert problem["errors"][0]["message"] == "is required"
    assert_problem(client.get(path, params={"event_type": "bu\x00y"}), 422, {"event_type"})
    assert_problem(client.get("/holdouts/nope/results", params={"event_type": "buy"}), 404)


def test_a_bad_attribute_is_named_by_its_key(client: TestClient) -> None:
    x = create(client, "attrs")["id"]
    path = f"/experiments/{x}/assignment/u-1"
    body = {"attributes": {"country": "DE", "plan": {"tier": 1}, "tags": ["a"], "bio": "x" * 1001}}
    problem = assert_problem(client.post(path, json=body), 422, {"attributes.plan", "attributes.tags", "attributes.bio"})
    assert all("attributes[" not in e["field"] for e in problem["errors"])
    problem = assert_problem(client.post(path, json={"attributes": {"": 1, "ok": True}}), 422, {"attributes"})
    assert "''" in problem["errors"][0]["message"]
    assert_problem(client.post(path, json={"attributes": {"a": [1]}, "colour": 1}), 422, {"colour", "attributes.a"})
    assert client.post(path, json={"attributes": {"country": "DE", "age": 34, "beta": None}}).status_code == 200
