"""EventTracker and ExposureReporter through a Client against the fake service: events and
exposures arrive in batches, bad ones are rejected by index and the rest stored, and an
event keeps its id however many times its batch is sent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from experiments_client import (
    Client,
    EventTracker,
    Experiment,
    Exposure,
    ExposureDropped,
    ExposureReporter,
    LocalAssigner,
)
from fake_service import NOW, TOKEN, FakeService, answer, lose_answer, refuse

URL = "http://experiments.test"
WAIT = 10.0
TWO_VARIANTS = [
    {"name": "control", "traffic_percentage": 50, "is_control": True},
    {"name": "green", "traffic_percentage": 50},
]


@pytest.fixture
def client(service: FakeService) -> Iterator[Client]:
    with Client(URL, TOKEN, transport=service.transport(), sleep=lambda _: None) as c:
        yield c


@pytest.fixture
def experiment(client: Client) -> Experiment:
    return client.create_experiment(name="checkout", variants=TWO_VARIANTS)


def event_batches(service: FakeService) -> list[list[dict[str, Any]]]:
    return [json.loads(r.content)["events"] for r in service.sent("POST", "/events")]


def test_tracked_events_arrive_in_batches(
    client: Client, service: FakeService, experiment: Experiment
) -> None:
    with EventTracker(client, max_batch=2, max_age_seconds=3600) as tracker:
        assert tracker.track(experiment.id, "u-1", "buy", value=19.99, properties={"sku": "A-1"})
        assert tracker.track(
            experiment.id,
            "u-2",
            "view",
            event_id="mine",
            timestamp=datetime(2026, 11, 28, 15, 3, tzinfo=timezone(timedelta(hours=1))),
        )
        assert tracker.track(experiment.id, "u-3", "view", timestamp="2026-11-28T14:00:00Z")
        assert tracker.flush(WAIT)
        assert tracker.stats.sent == 3
    first, second = event_batches(service)
    assert len(first) == 2 and len(second) == 1
    one, two, three = first + second
    assert (
        one["value"] == 19.99
        and one["properties"] == {"sku": "A-1"}
        and len(str(one["event_id"])) == 32
    )
    assert datetime.fromisoformat(str(one["timestamp"])).tzinfo is not None
    assert str(one["timestamp"]).endswith("Z")
    assert two == {
        "experiment_id": experiment.id,
        "user_id": "u-2",
        "event_type": "view",
        "timestamp": "2026-11-28T14:03:00.000000Z",
        "event_id": "mine",
    }
    assert three["timestamp"] == "2026-11-28T14:00:00Z" and "value" not in three
    assert len(service.events) == 3


def test_events_the_service_refuses_are_rejected_and_the_rest_stored(
    client: Client, service: FakeService, experiment: Experiment
) -> None:
    dropped: list[tuple[list[dict[str, Any]], str]] = []
    tracker = EventTracker(
        client,
        max_batch=10,
        max_age_seconds=3600,
        on_drop=lambda items, reason: dropped.append((items, reason)),
    )
    for i in range(10):
        user = "" if i in (3, 7) else f"u-{i}"
        tracker.track(experiment.id, user, "buy", event_id=f"e{i}")
    assert tracker.close(WAIT)
    first, second = event_batches(service)
    assert len(first) == 10 and [e["event_id"] for e in second] == [
        f"e{i}" for i in range(10) if i not in (3, 7)
    ]
    assert sorted(service.events) == sorted(e["event_id"] for e in second)
    assert [(items[0]["event_id"], reason) for items, reason in dropped] == [
        ("e3", "rejected: user_id: is missing"),
        ("e7", "rejected: user_id: is missing"),
    ]
    stats = tracker.stats
    assert (stats.sent, stats.rejected, stats.failed) == (8, 2, 0)


def test_a_generated_event_id_is_the_same_when_the_client_retries(
    client: Client, service: FakeService, experiment: Experiment
) -> None:
    with EventTracker(client, max_batch=3, max_age_seconds=3600) as tracker:
        service.fail_next(lose_answer(httpx.ReadTimeout))  # stored, but the answer is lost
        for i in range(3):
            tracker.track(experiment.id, f"u-{i}", "buy")
        assert tracker.flush(WAIT)
    first, second = event_batches(service)
    assert [e["event_id"] for e in first] == [e["event_id"] for e in second]
    assert len(service.events) == 3  # the second sending was all duplicates


def test_a_generated_event_id_is_the_same_when_the_tracker_retries_later(
    service: FakeService, experiment: Experiment
) -> None:
    with (
        Client(URL, TOKEN, transport=service.transport(), max_retries=0) as client,
        EventTracker(
            client, max_batch=2, max_age_seconds=3600, retry_base_seconds=0.001
        ) as tracker,
    ):
        service.fail_next(answer(503), refuse(httpx.ConnectError))  # the client gives up at once
        tracker.track(experiment.id, "u-1", "buy")
        tracker.track(experiment.id, "u-2", "buy")
        assert tracker.flush(WAIT)
        assert len(service.requests) == 4  # create, 503, refused, stored
        ids = [[e["event_id"] for e in batch] for batch in event_batches(service)]
        assert ids[0] == ids[1] == ids[2] and len(set(ids[0])) == 2
        assert sorted(service.events) == sorted(ids[0])


def test_a_batch_that_keeps_failing_is_reported_failed(
    service: FakeService, experiment: Experiment
) -> None:
    dropped: list[str] = []
    with Client(
        URL, TOKEN, transport=service.transport(), max_retries=1, sleep=lambda _: None
    ) as client:
        tracker = EventTracker(
            client,
            max_batch=1,
            max_age_seconds=3600,
            max_attempts=2,
            retry_base_seconds=0.001,
            on_drop=lambda items, reason: dropped.append(reason),
        )
        service.fail_next(*[answer(503)] * 4)  # two sends, each of two requests
        tracker.track(experiment.id, "u-1", "buy")
        assert not tracker.flush(WAIT)
        assert tracker.close(WAIT)
    assert tracker.stats.failed == 1 and len(dropped) == 1 and dropped[0].startswith("failed: 503")
    assert service.events == {}


def test_exposures_are_reported_and_a_bad_one_rejected(
    client: Client, service: FakeService, experiment: Experiment
) -> None:
    green = experiment.variants[1].id
    dropped: list[tuple[list[Exposure], str]] = []
    with ExposureReporter(
        client,
        max_batch=4,
        max_age_seconds=3600,
        on_drop=lambda items, reason: dropped.append((items, reason)),
    ) as reporter:
        for i in range(4):
            reporter.report(Exposure(experiment.id, f"u-{i}", "nope" if i == 2 else green, NOW))
        assert reporter.flush(WAIT)
    first, second = (json.loads(r.content)["exposures"] for r in service.sent("POST", "/exposures"))
    assert [x["user_id"] for x in first] == ["u-0", "u-1", "u-2", "u-3"]
    assert [x["user_id"] for x in second] == ["u-0", "u-1", "u-3"]
    assert [x["user_id"] for x in service.exposures] == ["u-0", "u-1", "u-3"]
    assert [(items[0].user_id, reason) for items, reason in dropped] == [
        ("u-2", "rejected: variant_id: the service would serve this user another variant")
    ]


def test_a_batch_larger_than_the_service_takes_is_refused(client: Client) -> None:
    with pytest.raises(ValueError, match="10,000"):
        EventTracker(client, max_batch=10_001)


def test_a_dropped_exposure_raises_so_the_assigner_reports_it_again(client: Client) -> None:
    reporter = ExposureReporter(client)
    reporter.close(WAIT)
    with pytest.raises(ExposureDropped):
        reporter.report(Exposure("e", "u", "v", NOW))
    assert reporter.stats.dropped_closed == 1


def test_a_local_assigner_reports_through_the_reporter(
    client: Client, service: FakeService, experiment: Experiment
) -> None:
    with (
        ExposureReporter(client, max_age_seconds=3600) as reporter,
        LocalAssigner(fetch=client.definitions, report=reporter.report) as assigner,
    ):
        decisions = [assigner.assign(experiment.id, f"user-{i}") for i in range(20)]
        assert reporter.flush(WAIT)
    assert {d.reason for d in decisions} == {"assigned"}
    stored = {x["user_id"]: x["variant_id"] for x in service.exposures}
    assert stored == {d.user_id: d.variant_id for d in decisions}
    assert service.sent("GET", "/definitions")


async def test_tracking_from_async_code_never_awaits(
    client: Client, service: FakeService, experiment: Experiment
) -> None:
    tracker = EventTracker(client, max_age_seconds=3600)
    assert all(tracker.track(experiment.id, f"u-{i}", "buy") for i in range(100))
    assert tracker.close(WAIT)
    assert len(service.events) == 100 and tracker.stats.sent == 100


def test_timestamps_default_to_now_in_utc(
    client: Client, service: FakeService, experiment: Experiment
) -> None:
    before = datetime.now(UTC)
    with EventTracker(client) as tracker:
        tracker.track(experiment.id, "u", "buy")
    [[event]] = event_batches(service)
    assert before <= datetime.fromisoformat(str(event["timestamp"])) <= datetime.now(UTC)
