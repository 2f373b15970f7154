"""Local assignment over HTTP: the definitions a client assigns from (with their ETag), and the
exposures it reports, judged again by the service and stored as its own assignments would be."""

from __future__ import annotations

from datetime import timedelta

from litestar.testing import TestClient

from domain.assignment import serve
from domain.eligibility import Reason
from domain.experiment import Experiment, Override, Variant
from domain.layers import HoldoutRef, LayerSlot, Slice
from domain.lifecycle import Status
from domain.targeting import parse_audience
from tests.e2e.helpers import T0, assert_problem, assign, event, iso, parse_ts, results
from tests.factories import create_experiment
from tests.fakes import FakeClock


def exposure(experiment: dict, user: str, variant_id: str | None = None, at: object = None, **extra: object) -> dict:
    """An exposure of ``user`` to the variant the documented decision gives (or ``variant_id``)."""
    return {
        "experiment_id": experiment["id"], "user_id": user,
        "variant_id": variant_id or decided(experiment, user)[0], "timestamp": iso(at or T0), **extra,
    }


def decided(experiment: dict, user: str, attributes: dict | None = None) -> tuple[str, str]:
    """(variant id, reason) decided from the experiment's definition alone: so the definitions
    carry everything the service decides with."""
    variant, reason = serve(experiment_of(DEFINITIONS[experiment["id"]]), user, attributes or {})
    return variant.id, reason.value


DEFINITIONS: dict[str, dict] = {}


def definitions(client: TestClient) -> None:
    """Read the definitions, as a client would, into DEFINITIONS."""
    response = client.get("/definitions")
    assert response.status_code == 200, response.text
    DEFINITIONS.update({d["id"]: d for d in response.json()["experiments"]})


def experiment_of(d: dict) -> Experiment:
    """The service's experiment rebuilt from nothing but its definition."""
    return Experiment(
        d["id"], d["name"], None, None, T0,
        tuple(Variant(v["id"], v["name"], v["traffic_basis_points"], v["is_control"]) for v in d["variants"]),
        status=Status(d["status"]),
        coverage_basis_points=d["coverage_basis_points"],
        audience=None if d["audience"] is None else parse_audience(d["audience"]),
        winner_variant_id=d["winner_variant_id"],
        overrides=tuple(Override(o["user_id"], o["variant_id"], T0) for o in d["overrides"]),
        layer=None if d["layer"] is None else LayerSlot(
            d["layer"]["id"], d["layer"]["seed"], Slice(d["layer"]["start"], d["layer"]["end"])),
        holdout=None if d["holdout"] is None else HoldoutRef(
            d["holdout"]["id"], d["holdout"]["seed"], d["holdout"]["basis_points"]),
    )


def report(client: TestClient, *items: dict) -> dict:
    response = client.post("/exposures", json={"exposures": list(items)})
    assert response.status_code == 202, response.text
    return response.json()


def test_definitions_carry_what_deciding_needs_with_an_etag(client: TestClient) -> None:
    layer = client.post("/layers", json={"name": "page"}).json()
    holdout = client.post("/holdouts", json={"name": "global", "percentage": 5}).json()
    first = create_experiment(client, "first", [("a", 30), ("b", 70)], coverage=40,
                              audience={"attribute": "country", "op": "eq", "value": "DE"},
                              layer={"id": layer["id"], "percentage": 25}, holdout_id=holdout["id"])
    second = create_experiment(client, "second", status="draft")
    client.put(f"/experiments/{second['id']}/assignment/qa-1", json={"variant_id": second["variants"][1]["id"]})

    response = client.get("/definitions")
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
    tag = response.headers["etag"]
    shown = response.json()["experiments"]
    assert [d["id"] for d in shown] == [first["id"], second["id"]]  # oldest first
    assert shown[0] == {
        "id": first["id"], "name": "first", "status": "running",
        "variants": [{"id": v["id"], "name": v["name"], "traffic_basis_points": bp, "is_control": v["is_control"]}
                     for v, bp in zip(first["variants"], (3000, 7000), strict=True)],
        "coverage_basis_points": 4000,
        "audience": {"attribute": "country", "op": "eq", "value": "DE"},
        "layer": {"id": layer["id"], "seed": layer["seed"], "start": 0, "end": 2500},
        "holdout": {"id": holdout["id"], "seed": holdout["seed"], "basis_points": 500},
        "winner_variant_id": None, "overrides": [],
    }
    assert shown[1]["status"] == "draft"
    assert shown[1]["overrides"] == [{"user_id": "qa-1", "variant_id": second["variants"][1]["id"]}]

    unchanged = client.get("/definitions", headers={"If-None-Match": tag})
    assert unchanged.status_code == 304 and unchanged.content == b"" and unchanged.headers["etag"] == tag
    assert client.get("/definitions", headers={"If-None-Match": f'"other", W/{tag}'}).status_code == 304
    assert client.get("/definitions", headers={"If-None-Match": '"other"'}).status_code == 200

    client.patch(f"/experiments/{first['id']}", json={"coverage": 50})
    changed = client.get("/definitions", headers={"If-None-Match": tag})
    assert changed.status_code == 200 and changed.headers["etag"] != tag
    assert changed.json()["experiments"][0]["coverage_basis_points"] == 5000


def test_definitions_need_the_assign_scope(client: TestClient) -> None:
    reader = client.post("/keys", json={"name": "r", "scopes": ["read"]}).json()["key"]
    assigner = client.post("/keys", json={"name": "a", "scopes": ["assign"]}).json()["key"]
    assert_problem(client.get("/definitions", headers={"Authorization": f"Bearer {reader}"}), 403)
    assert client.get("/definitions", headers={"Authorization": f"Bearer {assigner}"}).status_code == 200
    assert_problem(client.get("/definitions", headers={"Authorization": "Bearer nope"}), 401)


def test_reported_exposures_are_stored_as_assignments_from_their_own_moment(
    client: TestClient, fake_clock: FakeClock
) -> None:
    x = create_experiment(client, "exposed", [("control", 50), ("green", 50)], primary="buy")
    definitions(client)
    served_at = T0 + timedelta(minutes=5)
    fake_clock.advance(minutes=10)
    users = [f"u-{i}" for i in range(40)]
    outcome = report(client, *(exposure(x, u, at=served_at) for u in users))
    assert outcome == {"accepted": 40, "assigned": 40, "already_assigned": 0, "held_out": 0}
    for u in users[:5]:
        answer = assign(client, x["id"], u).json()
        assert answer["variant_id"] == decided(x, u)[0] and answer["reason"] == "assigned"
        assert parse_ts(answer["assigned_at"]) == served_at
    # Events count from the exposure's moment on, as for users the service assigned itself.
    sent = client.post("/events", json={"events": [
        event(x["id"], "u-0", "buy", timestamp=iso(served_at - timedelta(minutes=1))),
        event(x["id"], "u-1", "buy", timestamp=iso(served_at + timedelta(minutes=1))),
    ]})
    assert sent.status_code == 202
    shown = results(client, x["id"])
    assert sum(v["users"] for v in shown["variants"]) == 40
    assert sum(v["primary_unique_users"] for v in shown["variants"]) == 1

    # Reported again, later: the first assignment stays.
    again = report(client, *(exposure(x, u, at=T0 + timedelta(minutes=9)) for u in users[:3]), exposure(x, "new"))
    assert again == {"accepted": 4, "assigned": 1, "already_assigned": 3, "held_out": 0}
    assert parse_ts(assign(client, x["id"], "u-0").json()["assigned_at"]) == served_at


def test_an_exposure_the_service_would_not_have_decided_alike_stores_nothing(
    client: TestClient, fake_clock: FakeClock
) -> None:
    x = create_experiment(client, "judged", [("control", 50), ("green", 50)], coverage=50)
    paused = create_experiment(client, "paused", status="draft")
    definitions(client)
    users = [f"u-{i}" for i in range(60)]
    inside = [u for u in users if decided(x, u)[1] == "assigned"]
    outside = [u for u in users if decided(x, u)[1] == "coverage"]
    assert inside and outside
    wrong = next(v["id"] for v in x["variants"] if v["id"] != decided(x, inside[1])[0])
    batch = [
        exposure(x, inside[0]),
        exposure(x, inside[1], variant_id=wrong),
        exposure(x, outside[0], variant_id=x["variants"][0]["id"]),
        exposure(paused, "p-1", variant_id=paused["variants"][0]["id"]),
        {**exposure(x, inside[2]), "experiment_id": "nope"},
        exposure(x, inside[3], at=T0 + timedelta(days=8)),
        exposure(x, "\x00"),
    ]
    body = assert_problem(client.post("/exposures", json={"exposures": batch}), 422, {
        "exposures[1].variant_id", "exposures[2].user_id", "exposures[3].user_id", "exposures[4].experiment_id",
        "exposures[5].timestamp", "exposures[6].user_id",
    })
    messages = {e["field"]: e["message"] for e in body["errors"]}
    assert "coverage" in messages["exposures[2].user_id"] and "draft" in messages["exposures[3].user_id"]
    assert assign(client, x["id"], inside[0]).json()["assigned_at"] == iso(fake_clock.now())  # not stored before
    assert sum(v["users"] for v in results(client, x["id"])["variants"]) == 1


def test_exposures_are_bounded_and_strict(client: TestClient) -> None:
    x = create_experiment(client, "strict")
    definitions(client)
    assert_problem(client.post("/exposures", json={"exposures": []}), 422)
    assert_problem(client.post("/exposures", json={"exposures": [exposure(x, "u")] * 10_001}), 422)
    assert_problem(client.post("/exposures", json={"exposures": [{**exposure(x, "u"), "colour": 1}]}), 422)
    assert_problem(client.post("/exposures", json={"exposures": [{"experiment_id": x["id"]}]}), 422)
    assert_problem(client.post("/exposures", content=b"{", headers={"content-type": "application/json"}), 400)
    bad_attributes = [exposure(x, "a"), exposure(x, "b", attributes={"plan": "pro", "tags": ["x"], "k" * 101: 1})]
    body = assert_problem(client.post("/exposures", json={"exposures": bad_attributes}), 422,
                          {"exposures[1].attributes.tags", "exposures[1].attributes"})
    assert any("k" * 100 in e["message"] for e in body["errors"])
    beyond_years = [{**exposure(x, "u"), "timestamp": "0001-01-01T00:30:00+01:00"},
                    {**exposure(x, "u"), "timestamp": "9999-12-31T23:30:00-01:00"}]
    assert_problem(client.post("/exposures", json={"exposures": beyond_years}), 422,
                   {"exposures[0].timestamp", "exposures[1].timestamp"})
    without_offset = {**exposure(x, "u"), "timestamp": "2026-11-28T12:00:00"}
    assert report(client, without_offset)["assigned"] == 1


def test_a_forced_user_and_an_audience_are_judged_as_the_service_judges_them(client: TestClient) -> None:
    x = create_experiment(client, "aimed", audience={"attribute": "plan", "op": "eq", "value": "pro"})
    client.put(f"/experiments/{x['id']}/assignment/qa", json={"variant_id": x["variants"][1]["id"]})
    definitions(client)
    pro = {"plan": "pro"}
    assert_problem(client.post("/exposures", json={"exposures": [exposure(x, "qa", x["variants"][1]["id"])]}),
                   422, {"exposures[0].user_id"})
    assert_problem(client.post("/exposures", json={"exposures": [exposure(x, "u-1", decided(x, "u-1", pro)[0])]}),
                   422, {"exposures[0].user_id"})  # no attributes: the audience leaves the user out
    assert report(client, exposure(x, "u-1", decided(x, "u-1", pro)[0], attributes=pro))["assigned"] == 1


def test_a_user_a_holdout_keeps_out_is_recorded_for_its_results(client: TestClient) -> None:
    holdout = client.post("/holdouts", json={"name": "global", "percentage": 50}).json()
    x = create_experiment(client, "held", holdout_id=holdout["id"], primary="buy")
    definitions(client)
    users = [f"u-{i}" for i in range(30)]
    held = [u for u in users if decided(x, u)[1] == Reason.HOLDOUT.value]
    exposed = [u for u in users if decided(x, u)[1] == Reason.ASSIGNED.value]
    outcome = report(client, *(exposure(x, u) for u in users))
    assert outcome == {"accepted": 30, "assigned": len(exposed), "already_assigned": 0, "held_out": len(held)}
    shown = client.get(f"/holdouts/{holdout['id']}/results", params={"event_type": "buy"}).json()
    assert (shown["held_out"]["users"], shown["exposed"]["users"]) == (len(held), len(exposed))
