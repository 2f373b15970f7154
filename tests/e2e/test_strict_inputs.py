"""Typos and impossible times are refused, not silently taken: unknown fields of an experiment
body, and events stamped further ahead than the allowed clock skew, are 422s naming the field."""

from __future__ import annotations

from datetime import timedelta

from litestar.testing import TestClient

from tests.e2e.helpers import assert_problem, event, total_events
from tests.factories import create_experiment, experiment_body
from tests.fakes import FakeClock


def test_a_mistyped_experiment_field_is_422_naming_every_unknown_field(client: TestClient) -> None:
    body = experiment_body("typo", [("control", 50), ("green", 50)])
    body["variants"][1]["is_contorl"] = True
    body["colour"] = "green"
    response = client.post("/experiments", json=body)
    problem = assert_problem(response, 422, {"colour", "variants[1].is_contorl"})
    assert all(e["message"] == "is not a known field" for e in problem["errors"])
    assert client.get("/experiments").json()["total"] == 0  # nothing was created


def test_unknown_fields_are_named_with_the_wrong_types(client: TestClient) -> None:
    body = experiment_body("typo", [("control", "50"), ("green", 50)], primaryEventType="buy")
    assert_problem(client.post("/experiments", json=body), 422, {"primaryEventType", "variants[0].traffic_percentage"})


def test_events_keep_ignoring_unknown_fields(client: TestClient) -> None:
    experiment = create_experiment(client, "extra", [("a", 50), ("b", 50)])
    response = client.post("/events", json=event(experiment["id"], "u-1", client_version="1.2.3", ip="x"))
    assert response.status_code == 202, response.text


def iso(moment) -> str:
    return moment.isoformat()


def test_an_event_up_to_the_skew_ahead_is_kept_and_one_beyond_is_422(
    client: TestClient, fake_clock: FakeClock
) -> None:
    experiment = create_experiment(client, "skew", [("a", 50), ("b", 50)])
    x = experiment["id"]
    edge = fake_clock.now() + timedelta(days=7)
    kept = client.post("/events", json=event(x, "u-1", timestamp=iso(edge)))
    assert kept.status_code == 202, kept.text
    beyond = client.post("/events", json=event(x, "u-1", timestamp=iso(edge + timedelta(microseconds=1))))
    problem = assert_problem(beyond, 422, {"timestamp"})
    assert "7 days in the future" in problem["errors"][0]["message"]
    in_2099 = client.post(
        "/events",
        json={"events": [event(x, "u-2"), event(x, "u-3", timestamp="2099-01-01T00:00:00Z"), event(x, "u-4", timestamp="2099-06-01T00:00:00")]},
    )
    assert_problem(in_2099, 422, {"events[1].timestamp", "events[2].timestamp"})
    assert total_events(client, x) == 0  # the batch stored nothing (u-1 is not assigned either way)


def test_a_batch_with_other_faults_names_the_future_timestamps_too(client: TestClient) -> None:
    experiment = create_experiment(client, "skew-mixed", [("a", 50), ("b", 50)])
    x = experiment["id"]
    body = {
        "events": [
            event(x, "u-1", timestamp="2099-01-01T00:00:00Z"),
            event(x, ""),  # an empty user id
            event("no-such-experiment", "u-2"),
            event(x, "u-3", timestamp="9999-12-31T23:59:59-14:00"),  # out of range: named once
        ]
    }
    assert_problem(
        client.post("/events", json=body),
        422,
        {"events[0].timestamp", "events[1].user_id", "events[2].experiment_id", "events[3].timestamp"},
    )


def test_the_skew_is_configurable(make_client, database_url: str, fake_clock: FakeClock) -> None:
    client = make_client(database_url, fake_clock, event_clock_skew_seconds=3600)
    x = create_experiment(client, "skew-hour", [("a", 50), ("b", 50)])["id"]
    later = fake_clock.now() + timedelta(hours=1, seconds=1)
    problem = assert_problem(client.post("/events", json=event(x, "u", timestamp=iso(later))), 422, {"timestamp"})
    assert "1 hour in the future" in problem["detail"]
