"""The synchronous client against the fake service: every endpoint's method, path and body,
the errors each status becomes, and the retries (with a sleep that records instead of
waiting, and a fixed jitter, so that nothing here waits)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import httpx
import msgspec
import pytest
from experiments_client import (
    ApiError,
    Client,
    Conflict,
    Exposure,
    NotFound,
    RateLimited,
    ServiceUnavailable,
    TransportError,
    Unauthorized,
    ValidationError,
    _http,
)
from experiments_client.models import Experiment
from fake_service import TOKEN, FakeService, answer, lose_answer, refuse, segments

URL = "http://experiments.test"
TWO_VARIANTS = [
    {"name": "control", "traffic_percentage": 50, "is_control": True},
    {"name": "green", "traffic_percentage": 50},
]
AWKWARD_USER_IDS = [
    "what?x=1&y=2",
    "with space",
    "ünïcødé 用户",
    "100%",
    "#top",
    "..",
    "+plus",
]


@pytest.fixture
def client(service: FakeService, delays: list[float]) -> Iterator[Client]:
    with Client(
        URL, TOKEN, transport=service.transport(), sleep=delays.append, jitter=lambda: 0.5
    ) as c:
        yield c


def body_of(request: httpx.Request) -> Any:
    return json.loads(request.content)


def create(client: Client, name: str = "checkout") -> Experiment:
    return client.create_experiment(name=name, variants=TWO_VARIANTS, primary_event_type="buy")


# ------------------------------------------------------------------------------ endpoints


def test_health_needs_no_token_and_a_503_is_an_answer(
    service: FakeService, delays: list[float]
) -> None:
    with Client(URL, None, transport=service.transport(), sleep=delays.append) as anonymous:
        assert anonymous.health().status == "ok"
        service.health = "unavailable"
        assert anonymous.health().status == "unavailable"
    assert "Authorization" not in service.requests[0].headers
    assert len(service.requests) == 2 and delays == []  # the 503 of /health is not retried


def test_experiments_are_created_listed_read_and_changed(
    client: Client, service: FakeService
) -> None:
    created = client.create_experiment(
        {"name": "checkout", "variants": TWO_VARIANTS},
        description="a test",
        primary_event_type="buy",
    )
    request = service.requests[-1]
    assert (request.method, request.url.path) == ("POST", "/experiments")
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert body_of(request) == {
        "name": "checkout",
        "variants": TWO_VARIANTS,
        "description": "a test",
        "primary_event_type": "buy",
    }
    assert created.name == "checkout" and created.status == "running" and created.coverage == 100.0
    assert [v.name for v in created.variants] == ["control", "green"] and created.variants[
        0
    ].is_control
    assert created.created_at == datetime(2026, 11, 28, 14, tzinfo=UTC)
    assert created.analysis is not None and created.analysis.method == "fixed"

    assert client.get_experiment(created.id) == created
    assert service.requests[-1].url.path == f"/experiments/{created.id}"

    stopped = client.update_experiment(created.id, status="stopped", description=None)
    request = service.requests[-1]
    assert (request.method, body_of(request)) == (
        "PATCH",
        {"status": "stopped", "description": None},
    )
    assert stopped.status == "stopped" and stopped.description is None

    page = client.list_experiments(limit=5, offset=0)
    assert page.total == 1 and page.items[0].id == created.id
    assert dict(service.requests[-1].url.params) == {"limit": "5", "offset": "0"}


def test_iter_experiments_reads_every_page(client: Client, service: FakeService) -> None:
    ids = [create(client, f"e{i}").id for i in range(7)]
    service.requests.clear()
    found = [e.id for e in client.iter_experiments(page_size=3)]
    assert found == ids[::-1]  # newest first
    assert [r.url.params["offset"] for r in service.requests] == ["0", "3", "6"]


def test_assign_is_a_get_without_attributes_and_a_post_with_them(
    client: Client, service: FakeService
) -> None:
    experiment = create(client)
    plain = client.assign(experiment.id, "u-1")
    assert service.requests[-1].method == "GET" and not service.requests[-1].content
    judged = client.assign(experiment.id, "u-2", {"country": "DE", "age": 34})
    request = service.requests[-1]
    assert request.method == "POST" and body_of(request) == {
        "attributes": {"country": "DE", "age": 34}
    }
    assert request.url.path == f"/experiments/{experiment.id}/assignment/u-2"
    assert plain.reason == "assigned" and plain.in_experiment and plain.assigned_at is not None
    assert judged.user_id == "u-2" and judged.variant_id in {v.id for v in experiment.variants}


@pytest.mark.parametrize("user_id", ["a/b", "../up"])
def test_a_user_id_with_a_slash_is_refused_before_it_is_sent(
    client: Client, service: FakeService, user_id: str
) -> None:
    """The service's path would split at it, percent-encoded or not: a clear error here,
    not a 404 there."""
    experiment = create(client)
    sent = len(service.requests)
    with pytest.raises(ValueError, match="LocalAssigner"):
        client.assign(experiment.id, user_id)
    with pytest.raises(ValueError, match="LocalAssigner"):
        client.force_assignment(experiment.id, user_id, experiment.variants[1].id)
    assert len(service.requests) == sent


@pytest.mark.parametrize("user_id", AWKWARD_USER_IDS)
def test_user_ids_reach_the_service_as_one_path_segment(
    client: Client, service: FakeService, user_id: str
) -> None:
    experiment = create(client)
    assignment = client.assign(experiment.id, user_id)
    request = service.requests[-1]
    assert segments(request) == ["experiments", experiment.id, "assignment", user_id]
    assert not request.url.query  # a "?" in the id made no query
    assert assignment.user_id == user_id
    client.force_assignment(experiment.id, user_id, experiment.variants[1].id)
    assert segments(service.requests[-1])[-1] == user_id


def test_qa_overrides_are_put_and_deleted(client: Client, service: FakeService) -> None:
    experiment = create(client)
    green = experiment.variants[1]
    forced = client.force_assignment(experiment.id, "qa-1", green.id)
    request = service.requests[-1]
    assert (request.method, body_of(request)) == ("PUT", {"variant_id": green.id})
    assert (
        forced.reason == "forced" and forced.variant_id == green.id and forced.assigned_at is None
    )
    assert client.get_experiment(experiment.id).overrides[0].user_id == "qa-1"

    client.remove_override(experiment.id, "qa-1")
    assert service.requests[-1].method == "DELETE"
    assert client.get_experiment(experiment.id).overrides == []


def test_track_sends_one_event_or_a_batch_each_with_an_event_id(
    client: Client, service: FakeService
) -> None:
    experiment = create(client)
    one = client.track(
        {"experiment_id": experiment.id, "user_id": "u-1", "event_type": "buy", "value": 9.5}
    )
    single = body_of(service.requests[-1])
    assert "events" not in single and len(single["event_id"]) == 32 and single["value"] == 9.5
    assert (one.accepted, one.duplicates) == (1, 0)

    events: list[dict[str, Any]] = [
        {"experiment_id": experiment.id, "user_id": "u-2", "event_type": "buy", "event_id": "mine"},
        {
            "experiment_id": experiment.id,
            "user_id": "u-3",
            "event_type": "view",
            "timestamp": datetime(2026, 11, 28, 14, 3, tzinfo=UTC),
        },
    ]
    batch = client.track(events)
    sent = body_of(service.requests[-1])["events"]
    assert sent[0]["event_id"] == "mine" and len(sent[1]["event_id"]) == 32
    assert sent[1]["timestamp"] == "2026-11-28T14:03:00Z"
    assert "event_id" not in events[1]  # the caller's event is left as it was
    assert (batch.accepted, batch.duplicates) == (2, 0)
    assert client.track(events[:1]).duplicates == 1


def test_a_422_is_a_validation_error_naming_each_field(client: Client) -> None:
    experiment = create(client)
    with pytest.raises(ValidationError) as caught:
        client.track(
            [
                {"experiment_id": experiment.id, "user_id": "u-1", "event_type": "buy"},
                {"experiment_id": experiment.id, "user_id": "", "event_type": "buy"},
                {"experiment_id": "nope", "user_id": "u-3", "event_type": ""},
            ]
        )
    error = caught.value
    assert error.status == 422 and error.title == "Unprocessable Entity"
    assert [(e.field, e.message) for e in error.errors] == [
        ("events[1].user_id", "is missing"),
        ("events[2].event_type", "is missing"),
        ("events[2].experiment_id", "experiment does not exist"),
    ]
    assert error.by_index("events") == {
        1: "user_id: is missing",
        2: "event_type: is missing; experiment_id: experiment does not exist",
    }
    lines = str(error).splitlines()
    assert lines[0].startswith("422 Unprocessable Entity: events[1].user_id: is missing")
    assert lines[1:] == [
        "  events[1].user_id: is missing",
        "  events[2].event_type: is missing",
        "  events[2].experiment_id: experiment does not exist",
    ]
    assert json.loads(error.body)["status"] == 422


def test_a_422_about_the_whole_batch_blames_no_item(client: Client) -> None:
    with pytest.raises(ValidationError) as caught:
        client.track([])
    assert caught.value.errors[0].field == "events" and caught.value.by_index("events") == {}


def test_unknown_ids_are_not_found(client: Client) -> None:
    for read in (client.get_experiment, client.get_key, client.get_layer, client.get_holdout):
        with pytest.raises(NotFound) as caught:
            read("missing/id")
        assert caught.value.status == 404 and "missing/id" in caught.value.detail
    with pytest.raises(NotFound):
        client.track({"experiment_id": "missing", "user_id": "u", "event_type": "buy"})


def test_a_duplicate_name_is_a_conflict(client: Client, delays: list[float]) -> None:
    create(client)
    with pytest.raises(Conflict, match="409 Conflict: an experiment named 'checkout' exists"):
        create(client)
    assert delays == []


def test_a_wrong_token_is_unauthorized_and_never_shown(service: FakeService) -> None:
    secret = "wrong-but-secret-token"
    with (
        Client(URL, secret, transport=service.transport()) as client,
        pytest.raises(Unauthorized) as caught,
    ):
        client.list_experiments()
    assert caught.value.status == 401
    for text in (str(caught.value), repr(caught.value), repr(client)):
        assert secret not in text


def test_an_answer_that_is_not_problem_json_still_becomes_an_api_error(
    client: Client, service: FakeService
) -> None:
    service.fail_next(answer(502, body=b"<html>bad gateway</html>"))
    with pytest.raises(ApiError) as caught:
        client.list_experiments()
    assert type(caught.value) is ApiError and caught.value.status == 502
    assert caught.value.title == "Bad Gateway" and caught.value.detail == "<html>bad gateway</html>"


def test_definitions_carry_an_etag_and_a_304_says_they_are_current(
    client: Client, service: FakeService
) -> None:
    experiment = create(client)
    definitions, etag = client.definitions()
    assert definitions is not None and etag is not None
    assert [d.id for d in definitions.experiments] == [experiment.id]
    assert definitions.experiments[0].variants[0].traffic_basis_points == 5000
    assert "If-None-Match" not in service.requests[-1].headers

    assert client.definitions(etag) == (None, etag)
    assert service.requests[-1].headers["If-None-Match"] == etag

    client.update_experiment(experiment.id, status="paused")
    changed, new_etag = client.definitions(etag)
    assert changed is not None and changed.experiments[0].status == "paused" and new_etag != etag


def test_exposures_are_reported_and_a_bad_one_is_named(
    client: Client, service: FakeService
) -> None:
    experiment = create(client)
    green = experiment.variants[1].id
    exposures = [Exposure(experiment.id, f"u-{i}", green, "2026-11-28T14:00:05Z") for i in range(3)]
    outcome = client.record_exposures(exposures)
    assert body_of(service.requests[-1]) == {
        "exposures": [
            {
                "experiment_id": experiment.id,
                "user_id": f"u-{i}",
                "variant_id": green,
                "timestamp": "2026-11-28T14:00:05Z",
            }
            for i in range(3)
        ]
    }
    assert (outcome.accepted, outcome.assigned, outcome.already_assigned, outcome.held_out) == (
        3,
        3,
        0,
        0,
    )

    bad = Exposure(experiment.id, "u-9", "no-such-variant", "2026-11-28T14:00:05Z", {"plan": "pro"})
    with pytest.raises(ValidationError) as caught:
        client.record_exposures([exposures[0], bad])
    assert caught.value.by_index("exposures") == {
        1: "variant_id: the service would serve this user another variant"
    }


def test_results_send_the_query_and_read_every_block(client: Client, service: FakeService) -> None:
    experiment = create(client)
    results = client.results(
        experiment.id,
        start_date=date(2026, 11, 1),
        end_date=datetime(2026, 11, 30, 12, tzinfo=UTC),
        event_type="buy",
        method="bayesian",
        prior_mean=0.0,
        prior_sd=0.1,
        correction="bh",
        sequential_tuning_users=5000,
    )
    request = service.requests[-1]
    assert request.url.path == f"/experiments/{experiment.id}/results"
    assert dict(request.url.params) == {
        "start_date": "2026-11-01",
        "end_date": "2026-11-30T12:00:00+00:00",
        "event_type": "buy",
        "method": "bayesian",
        "prior_mean": "0.0",
        "prior_sd": "0.1",
        "correction": "bh",
        "sequential_tuning_users": "5000",
    }
    assert results.experiment.id == experiment.id and results.summary.total_users == 200
    assert (
        results.summary.srm.sequential is not None and results.summary.srm.sequential.p_value == 1.0
    )
    assert results.filters.end_date == datetime(2026, 11, 30, 12, tzinfo=UTC)
    [comparison] = results.comparisons
    assert comparison.bayesian is not None and comparison.bayesian.chance_to_beat_control == 0.8
    assert comparison.value is not None and comparison.value.bayesian is not None
    assert comparison.sequential is None and comparison.confidence_interval.method == "newcombe"
    assert results.analysis is not None and results.analysis.method == "bayesian"

    sequential = client.results(experiment.id, method="sequential")
    assert dict(service.requests[-1].url.params) == {"method": "sequential"}
    assert sequential.comparisons[0].sequential is not None
    assert sequential.comparisons[0].sequential.confidence_interval.method is None


def test_power_posts_its_question(client: Client, service: FakeService) -> None:
    answer_ = client.power({"mde": 0.05}, baseline_rate=0.1)
    assert (service.requests[-1].method, body_of(service.requests[-1])) == (
        "POST",
        {"mde": 0.05, "baseline_rate": 0.1},
    )
    assert answer_.users_per_arm.total == 115512 and answer_.traffic is None


def test_keys_are_created_listed_read_and_revoked(client: Client, service: FakeService) -> None:
    key = client.create_key(
        "checkout-web", ["assign", "read"], expires_at=datetime(2027, 6, 1, tzinfo=UTC)
    )
    assert body_of(service.requests[-1]) == {
        "name": "checkout-web",
        "scopes": ["assign", "read"],
        "expires_at": "2027-06-01T00:00:00Z",
    }
    assert key.key is not None and key.key.startswith("xpk_") and key.scopes == ["assign", "read"]
    assert key.key not in repr(key)  # a logged key leaks no secret
    assert msgspec.to_builtins(key)["key"] == key.key

    others = [client.create_key(f"k{i}", ["read"]).id for i in range(4)]
    assert [k.id for k in client.iter_keys(page_size=2)] == [*others[::-1], key.id]
    assert client.list_keys(limit=1).total == 5
    assert client.get_key(key.id).key is None

    revoked = client.revoke_key(key.id)
    assert service.requests[-1].method == "DELETE" and revoked.revoked_at is not None
    assert client.revoke_key(key.id).revoked_at == revoked.revoked_at


def test_audit_filters_by_action_and_target(client: Client, service: FakeService) -> None:
    experiment = create(client)
    key = client.create_key("k", ["read"])
    page = client.audit(action="key.created", target_id=key.id, limit=10)
    assert dict(service.requests[-1].url.params) == {
        "limit": "10",
        "offset": "0",
        "action": "key.created",
        "target_id": key.id,
    }
    assert [e.target.id for e in page.items] == [key.id] and page.items[0].actor == "API_TOKENS"
    assert [e.action for e in client.audit().items] == ["key.created", "experiment.created"]
    assert client.audit(target_id=experiment.id).total == 1


def test_layers_and_holdouts(client: Client, service: FakeService) -> None:
    layer = client.create_layer("checkout page")
    assert (service.requests[-1].method, body_of(service.requests[-1])) == (
        "POST",
        {"name": "checkout page"},
    )
    assert client.list_layers() == [layer] and client.get_layer(layer.id) == layer
    assert layer.free_percentage == 100.0 and layer.experiments == []

    holdout = client.create_holdout("global", 5)
    assert body_of(service.requests[-1]) == {"name": "global", "percentage": 5}
    assert client.list_holdouts() == [holdout] and client.get_holdout(holdout.id) == holdout
    results = client.holdout_results(holdout.id, "buy")
    assert service.requests[-1].url.params["event_type"] == "buy"
    assert results.holdout == holdout and results.exposed.conversion_rate == 0.2


# ------------------------------------------------------------------------------ retries


def test_a_503_is_retried_after_its_retry_after(
    client: Client, service: FakeService, delays: list[float]
) -> None:
    experiment = create(client)
    service.fail_next(answer(503, retry_after="1"), answer(503, retry_after="2"))
    assert client.results(experiment.id).experiment.id == experiment.id
    assert (
        delays == [1.0, 2.0]
        and len(service.sent("GET", f"/experiments/{experiment.id}/results")) == 3
    )


def test_a_429_is_retried_after_its_retry_after_capped(
    client: Client, service: FakeService, delays: list[float]
) -> None:
    service.fail_next(answer(429, retry_after="3"), answer(429, retry_after="86400"))
    assert client.list_experiments().total == 0
    assert delays == [3.0, 30.0]


def test_without_retry_after_the_backoff_doubles(
    client: Client, service: FakeService, delays: list[float]
) -> None:
    service.fail_next(answer(503), answer(503), answer(503))
    client.list_experiments()
    assert delays == [0.05, 0.1, 0.2]  # jitter 0.5 of 0.1, 0.2, 0.4


def test_a_connect_error_is_retried_even_when_creating(
    client: Client, service: FakeService, delays: list[float]
) -> None:
    service.fail_next(refuse(httpx.ConnectError), refuse(httpx.ConnectTimeout))
    create(client)
    assert len(service.experiments) == 1 and len(service.sent("POST", "/experiments")) == 3
    assert delays == [0.05, 0.1]


def test_creating_is_not_retried_after_a_read_timeout(
    client: Client, service: FakeService, delays: list[float]
) -> None:
    service.fail_next(lose_answer(httpx.ReadTimeout))
    with pytest.raises(TransportError) as caught:
        create(client)
    assert (
        isinstance(caught.value.cause, httpx.ReadTimeout)
        and caught.value.__cause__ is caught.value.cause
    )
    assert str(caught.value).startswith("POST /experiments: ReadTimeout:")
    assert len(service.sent("POST", "/experiments")) == 1 and delays == []
    assert len(service.experiments) == 1  # it took effect; a retry would have been a 409


def test_a_lost_answer_to_an_event_batch_is_retried_with_the_same_ids(
    client: Client, service: FakeService
) -> None:
    experiment = create(client)
    service.fail_next(lose_answer(httpx.ReadError))
    outcome = client.track(
        [
            {"experiment_id": experiment.id, "user_id": f"u{i}", "event_type": "buy"}
            for i in range(3)
        ]
    )
    first, second = (body_of(r)["events"] for r in service.sent("POST", "/events"))
    assert [e["event_id"] for e in first] == [e["event_id"] for e in second]
    assert (outcome.accepted, outcome.duplicates) == (0, 3) and len(service.events) == 3


def test_reads_are_retried_after_a_read_timeout(client: Client, service: FakeService) -> None:
    service.fail_next(lose_answer(httpx.ReadTimeout), refuse(httpx.RemoteProtocolError))
    assert client.list_experiments().total == 0 and len(service.requests) == 3


def test_the_retry_budget_ends_in_the_last_error(
    client: Client, service: FakeService, delays: list[float]
) -> None:
    service.fail_next(*[answer(503, retry_after="1")] * 4)
    with pytest.raises(ServiceUnavailable) as caught:
        client.list_experiments()
    assert caught.value.retry_after == 1.0 and len(service.requests) == 4 and delays == [1.0] * 3

    service.fail_next(*[refuse(httpx.ConnectError)] * 4, answer(200))
    with pytest.raises(TransportError) as lost:
        client.list_experiments()
    assert isinstance(lost.value.cause, httpx.ConnectError) and len(service.faults) == 1

    service.faults.clear()
    service.fail_next(answer(429), answer(429), answer(503), answer(429))
    with pytest.raises(RateLimited):
        client.list_experiments()


def never(seconds: float) -> None:
    raise AssertionError(f"slept {seconds} s: nothing was to be retried")


def test_max_retries_zero_sends_once(service: FakeService) -> None:
    with Client(
        URL, TOKEN, transport=service.transport(), max_retries=0, sleep=never
    ) as client:
        service.fail_next(answer(503))
        with pytest.raises(ServiceUnavailable):
            client.list_experiments()
    assert len(service.requests) == 1


def test_a_call_gives_up_at_its_deadline() -> None:
    now = [0.0]
    policy = _http.RetryPolicy(
        max_retries=10, deadline_seconds=10.0, random=lambda: 0.999, clock=lambda: now[0]
    )
    attempts = policy.attempts(_http.list_experiments(100, 0))
    assert attempts.timeout(30.0) == 10.0
    busy = ServiceUnavailable(503, "Service Unavailable", retry_after=4)
    for _ in range(2):
        now[0] += attempts.retry_in(busy)  # 4 s each, up to 8 s
    assert attempts.timeout(30.0) == pytest.approx(2.0)
    with pytest.raises(ServiceUnavailable):
        attempts.retry_in(busy)  # a third wait would end past the deadline


def test_the_backoff_is_capped() -> None:
    policy = _http.RetryPolicy(random=lambda: 0.999)
    assert [round(policy.backoff(n), 3) for n in (0, 1, 5, 6, 20)] == [
        0.1,
        0.2,
        3.197,
        4.995,
        4.995,
    ]
