"""GET /metrics: Prometheus text, counters that move with the requests, labels without user ids."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from litestar.testing import TestClient

from entrypoints.config.container import create_container
from entrypoints.config.settings import Settings
from entrypoints.http.app import create_app
from tests.e2e.conftest import AUTH, TOKEN
from tests.e2e.helpers import assign, event, requests, scrape, value
from tests.factories import create_experiment

ASSIGNMENT_ROUTE = "/experiments/{experiment_id}/assignment/{user_id}"
EXPERIMENT_ROUTE = "/experiments/{experiment_id}"

def test_metrics_names_and_counters_move_with_requests(client: TestClient) -> None:
    text, before = scrape(client)
    for name in (
        "experiments_http_requests_total",
        "experiments_http_request_duration_seconds",
        "experiments_assignments_served_total",
        "experiments_events_total",
        "experiments_cache_requests_total",
        "experiments_store_unavailable_total",
        "experiments_cache_breaker_open",
        "experiments_folder_lag_seconds",
        "experiments_folder_pending_events",
    ):
        assert name in text, name

    experiment = create_experiment(client, "metrics", [("a", 50), ("b", 50)])
    eid = experiment["id"]
    secret_user = "user-4f9c2a-secret"
    assert assign(client, eid, secret_user).status_code == 200  # new
    assert assign(client, eid, secret_user).status_code == 200  # from the cache
    assert assign(client, "no-such-experiment", secret_user).status_code == 404
    assert client.get("/experiments/no-such-experiment").status_code == 404
    batch = {"events": [event(eid, secret_user, event_id="e1"), event(eid, secret_user, event_id="e2")]}
    assert client.post("/events", json=batch).status_code == 202
    assert client.post("/events", json=batch).status_code == 202  # both duplicates
    bad = {"events": [event(eid, secret_user), event(eid, "", event_id="e3"), event("nope", "u")]}
    assert client.post("/events", json=bad).status_code == 422
    unknown = {"events": [event("nope", "u", event_id="e4"), event(eid, "u", event_id="e5")]}
    assert client.post("/events", json=unknown).status_code == 422

    text, after = scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("experiments_assignments_served_total", source="new") == 1
    assert moved("experiments_assignments_served_total", source="cache_hit") == 1
    assert moved("experiments_cache_requests_total", kind="assignment", result="hit") == 1
    # The unknown experiment is a 404 before any assignment is read: one miss, the new user's.
    assert moved("experiments_cache_requests_total", kind="assignment", result="miss") == 1
    assert moved("experiments_events_total", outcome="accepted") == 2
    assert moved("experiments_events_total", outcome="duplicate") == 2
    assert moved("experiments_events_total", outcome="rejected") == 5
    assert requests(after, ASSIGNMENT_ROUTE, 200) - requests(before, ASSIGNMENT_ROUTE, 200) == 2
    assert requests(after, ASSIGNMENT_ROUTE, 404) - requests(before, ASSIGNMENT_ROUTE, 404) == 1
    assert requests(after, EXPERIMENT_ROUTE, 404) - requests(before, EXPERIMENT_ROUTE, 404) == 1
    assert requests(after, "/events", 422, "POST") - requests(before, "/events", 422, "POST") == 2
    assert requests(after, "/experiments", 201, "POST") - requests(before, "/experiments", 201, "POST") == 1
    histogram = "experiments_http_request_duration_seconds_count"
    labels = {"method": "GET", "route": ASSIGNMENT_ROUTE, "status": "200"}
    assert value(after, histogram, **labels) - value(before, histogram, **labels) == 2
    # Route templates only: no raw path, no user id, no experiment id in any label.
    for name, labels in after:
        for label in dict(labels).values():
            assert secret_user not in label and eid not in label and "no-such" not in label, (name, label)
    assert value(after, "experiments_folder_pending_events") >= 0
    assert value(after, "experiments_folder_lag_seconds") >= 0


def test_an_unknown_path_is_counted_as_unmatched(client: TestClient) -> None:
    _, before = scrape(client)
    assert client.get("/no/such/path/u-123").status_code == 404
    _, after = scrape(client)
    assert requests(after, "<unmatched>", 404) - requests(before, "<unmatched>", 404) == 1
    assert not any("u-123" in v for _, labels in after for _, v in labels)


def test_metrics_need_the_token_by_default(client: TestClient) -> None:
    assert client.get("/metrics", headers={"Authorization": ""}).status_code == 401
    assert client.get("/metrics").status_code == 200


@pytest.mark.parametrize("required", [True, False])
def test_metrics_token_setting(
    make_client: Callable[..., TestClient], database_url: str, required: bool
) -> None:
    settings = Settings.from_env(
        {
            "DATABASE_URL": database_url,
            "API_TOKENS": TOKEN,
            "METRICS_TOKEN_REQUIRED": "true" if required else "false",
        }
    )
    with TestClient(create_app(create_container(settings))) as open_client:
        anonymous = open_client.get("/metrics")
        assert anonymous.status_code == (401 if required else 200)
        assert open_client.get("/metrics", headers=AUTH).status_code == 200
        # The other routes keep their token either way.
        assert open_client.get("/experiments").status_code == 401


def test_metrics_token_setting_is_validated() -> None:
    from entrypoints.config.settings import ConfigurationError

    assert Settings.from_env({}).metrics_token_required is True
    with pytest.raises(ConfigurationError):
        Settings.from_env({"METRICS_TOKEN_REQUIRED": "maybe"})
