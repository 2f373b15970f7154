"""Events: single and batch, idempotent by event id, all or nothing, their limits and times. End to
end, through the real app in-process (routes, auth, DI container, SQLite migrated by Alembic, a
clock the tests move), against the contract (../shared/API.md)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from litestar.testing import TestClient

from tests.e2e.helpers import T0, assert_problem, assign, event, iso, results, total_events
from tests.factories import create_experiment
from tests.fakes import FakeClock

# ---------------------------------------------------------------------------------------------
# POST /events


def test_single_event_is_accepted(client: TestClient, experiment: dict) -> None:
    assign(client, experiment["id"], "u-1")
    body = event(experiment["id"], "u-1", "purchase", value=19.99, properties={"sku": "A-1"}, event_id="e-1")
    response = client.post("/events", json=body)
    assert response.status_code == 202, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"accepted": 1, "duplicates": 0}
    again = client.post("/events", json=body)
    assert again.json() == {"accepted": 0, "duplicates": 1}
    assert total_events(client, experiment["id"]) == 1


def test_duplicates_within_and_across_batches(client: TestClient, experiment: dict) -> None:
    assign(client, experiment["id"], "u-1")
    eid = experiment["id"]
    first = client.post(
        "/events",
        json={"events": [event(eid, "u-1", event_id=k) for k in ("a", "b", "a", "c", "a")] + [event(eid, "u-1")]},
    )
    assert first.status_code == 202, first.text
    assert first.json() == {"accepted": 4, "duplicates": 2}
    second = client.post("/events", json={"events": [event(eid, "u-1", event_id=k) for k in ("c", "d", "d")]})
    assert second.json() == {"accepted": 1, "duplicates": 2}
    # event_id is unique across the service, not per experiment.
    other = create_experiment(client, "other", [("a", 50), ("b", 50)])
    third = client.post("/events", json={"events": [event(other["id"], "u-1", event_id="a")]})
    assert third.json() == {"accepted": 0, "duplicates": 1}
    assert total_events(client, eid) == 5


BAD_EVENTS: dict[str, tuple[Callable[[str], dict], str]] = {
    "user_id of wrong type": (lambda e: event(e, 5), "user_id"),  # type: ignore[arg-type]
    "event_type of wrong type": (lambda e: event(e, "u-1", 5), "event_type"),  # type: ignore[arg-type]
    "empty event_type": (lambda e: event(e, "u-1", ""), "event_type"),
    "event_type of 101 characters": (lambda e: event(e, "u-1", "t" * 101), "event_type"),
    "unknown experiment": (lambda e: event("no-such-experiment", "u-1"), "experiment_id"),
    "value as a string": (lambda e: event(e, "u-1", value="1.5"), "value"),
    "properties as a list": (lambda e: event(e, "u-1", properties=[1, 2]), "properties"),
    "properties over 64 KiB": (lambda e: event(e, "u-1", properties={"a": "x" * 65_529}), "properties"),
    "missing user_id": (lambda e: {"experiment_id": e, "event_type": "view"}, "user_id"),
    "empty user_id": (lambda e: event(e, ""), "user_id"),
    "user_id of 257 characters": (lambda e: event(e, "u" * 257), "user_id"),
    "unparseable timestamp": (lambda e: event(e, "u-1", timestamp="yesterday"), "timestamp"),
    "empty event_id": (lambda e: event(e, "u-1", event_id=""), "event_id"),
    "event not an object": (lambda e: ["not", "an", "event"], ""),  # type: ignore[return-value]
}


def _good(eid: str, i: int) -> dict:
    return event(eid, "u-1", "purchase", value=1.0, event_id=f"good-{i}")


@pytest.mark.parametrize("make_bad,field_name", list(BAD_EVENTS.values()), ids=list(BAD_EVENTS))
def test_batch_is_all_or_nothing(client: TestClient, experiment: dict, make_bad, field_name: str) -> None:
    eid = experiment["id"]
    assign(client, eid, "u-1")
    batch = [_good(eid, 0), make_bad(eid), _good(eid, 2), make_bad(eid), _good(eid, 4)]
    suffix = f".{field_name}" if field_name else ""
    assert_problem(
        client.post("/events", json={"events": batch}), 422, {f"events[1]{suffix}", f"events[3]{suffix}"}
    )
    assert total_events(client, eid) == 0
    # None of the good events was stored: their event_ids are still free.
    good = [_good(eid, i) for i in (0, 2, 4)]
    assert client.post("/events", json={"events": good}).json() == {"accepted": 3, "duplicates": 0}


def test_batch_names_every_bad_event_by_index(client: TestClient, experiment: dict) -> None:
    eid = experiment["id"]
    assign(client, eid, "u-1")
    batch, want = [], set()
    for make_bad, field_name in BAD_EVENTS.values():
        batch.append(_good(eid, len(batch)))
        want.add(f"events[{len(batch)}].{field_name}".rstrip("."))
        batch.append(make_bad(eid))
    body = assert_problem(client.post("/events", json={"events": batch}), 422, want)
    indexes = [int(e["field"].split("]")[0][len("events[") :]) for e in body["errors"]]
    assert indexes == sorted(indexes)
    assert total_events(client, eid) == 0


@pytest.mark.parametrize(
    "make_bad,field_name",
    [v for k, v in BAD_EVENTS.items() if k not in ("unknown experiment", "event not an object")],
    ids=[k for k in BAD_EVENTS if k not in ("unknown experiment", "event not an object")],
)
def test_single_bad_event_is_422_naming_the_field(client: TestClient, experiment: dict, make_bad, field_name: str) -> None:
    assert_problem(client.post("/events", json=make_bad(experiment["id"])), 422, {field_name})


def test_single_event_of_unknown_experiment_is_404(client: TestClient) -> None:
    assert_problem(client.post("/events", json=event("no-such-experiment", "u-1")), 404)


@pytest.mark.parametrize("count", [0, 10_001])
def test_batch_size_out_of_range_is_422(client: TestClient, experiment: dict, count: int) -> None:
    batch = [event(experiment["id"], "u-1", event_id=f"e{i}") for i in range(count)]
    assert_problem(client.post("/events", json={"events": batch}), 422, {"events"})
    assert total_events(client, experiment["id"]) == 0


def test_batch_of_10000_is_accepted(client: TestClient, experiment: dict) -> None:
    assign(client, experiment["id"], "u-1")
    batch = [event(experiment["id"], "u-1", timestamp=iso(T0)) for _ in range(10_000)]
    assert client.post("/events", json={"events": batch}).json() == {"accepted": 10_000, "duplicates": 0}
    assert total_events(client, experiment["id"]) == 10_000


def test_properties_limit_is_64_kib_serialized(client: TestClient, experiment: dict) -> None:
    # Compact JSON: {"a":"…"} is 8 bytes around the text.
    at_limit = event(experiment["id"], "u-1", properties={"a": "x" * (65_536 - 8)})
    assert client.post("/events", json=at_limit).status_code == 202
    over = event(experiment["id"], "u-1", properties={"a": "x" * (65_536 - 7)})
    assert_problem(client.post("/events", json=over), 422, {"properties"})


def test_event_timestamps_without_offset_are_utc_and_offsets_are_converted(
    client: TestClient, fake_clock: FakeClock
) -> None:
    experiment = create_experiment(client, "tz", [("a", 50), ("b", 50)])
    eid = experiment["id"]
    assign(client, eid, "tz-user")  # assigned_at = 12:00:00Z
    batch = [
        event(eid, "tz-user", "naive", timestamp="2026-11-28T12:00:00"),  # 12:00Z: counted
        event(eid, "tz-user", "plus-two", timestamp="2026-11-28T14:00:00+02:00"),  # 12:00Z: counted
        event(eid, "tz-user", "early", timestamp="2026-11-28T13:00:00+02:00"),  # 11:00Z: before
        event(eid, "tz-user", "early", timestamp="2026-11-28T11:59:59.999999"),  # before
        event(eid, "tz-user", "late", timestamp="2026-11-28T12:30:00-01:00"),  # 13:30Z: counted
    ]
    assert client.post("/events", json={"events": batch}).json() == {"accepted": 5, "duplicates": 0}

    def counts(**params: str) -> dict:
        rows = results(client, eid, **params)["variants"]
        return {k: v for row in rows for k, v in row["event_counts"].items()}

    assert counts() == {"naive": 1, "plus-two": 1, "late": 1}
    noon = {"start_date": "2026-11-28T12:00:00Z", "end_date": "2026-11-28T14:00:00+02:00"}
    assert counts(**noon) == {"naive": 1, "plus-two": 1}
    assert counts(start_date="2026-11-28T12:00:00.000001") == {"late": 1}


def test_event_without_timestamp_is_timed_when_received(client: TestClient, fake_clock: FakeClock) -> None:
    experiment = create_experiment(client, "received", [("a", 50), ("b", 50)])
    eid = experiment["id"]
    client.post("/events", json=event(eid, "u-1", "before"))  # received 12:00, before assignment
    fake_clock.advance(seconds=1)
    assign(client, eid, "u-1")  # 12:00:01
    client.post("/events", json=event(eid, "u-1", "at"))  # received at the assignment's instant
    fake_clock.advance(microseconds=1)
    client.post("/events", json=event(eid, "u-1", "after"))
    rows = results(client, eid)["variants"]
    assert {k: v for row in rows for k, v in row["event_counts"].items()} == {"at": 1, "after": 1}


