"""Rate limits over HTTP: 429 problems with Retry-After and RateLimit headers, per token and per
route class, off for API_TOKENS unless RATE_LIMIT_API_TOKENS is set."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator

import pytest
from dependency_injector import providers
from litestar.testing import TestClient

from adapters.memory.rate_limiter import MemoryRateLimiter
from domain.rate_limit import Rate
from entrypoints.config.container import create_container
from entrypoints.config.settings import Settings
from entrypoints.http.app import create_app
from tests.e2e.conftest import AUTH, TOKEN
from tests.factories import create_experiment
from tests.fakes import FakeTimer

PROBLEM_JSON = "application/problem+json"
OTHER = {"Authorization": "Bearer other-token"}
RATES = {
    "read": Rate(3, 60, 3),  # a token every 20 s
    "ingestion": Rate(2, 60, 2),
    "assignment": Rate(100, 1, 100),
    "admin": Rate(10, 60, 10),
}
RATE_HEADERS = {"ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "ratelimit-policy"}


@pytest.fixture
def timer() -> FakeTimer:
    return FakeTimer()


def open_client(database_url: str, timer: FakeTimer | None = None, **settings: object) -> TestClient:
    container = create_container(
        Settings(database_url=database_url, api_tokens=(TOKEN, "other-token"), **settings)  # type: ignore[arg-type]
    )
    if timer is not None:
        limiter = MemoryRateLimiter(container.settings().rates(), clock=timer)
        container.rate_limiter.override(providers.Object(limiter))
    return TestClient(create_app(container))


@pytest.fixture
def limited(database_url: str, timer: FakeTimer) -> Iterator[TestClient]:
    with open_client(database_url, timer, rate_limit_api_tokens=True, rate_limits=RATES) as client:
        client.headers.update(AUTH)
        yield client


def test_the_request_past_the_limit_is_a_429_problem_with_the_headers(
    limited: TestClient, timer: FakeTimer
) -> None:
    allowed = [limited.get("/experiments") for _ in range(3)]
    assert [r.status_code for r in allowed] == [200, 200, 200]
    # Allowed responses tell the client where it stands, too (draft-06 fields).
    assert [r.headers["RateLimit-Remaining"] for r in allowed] == ["2", "1", "0"]
    assert allowed[0].headers["RateLimit-Limit"] == "3"
    assert allowed[0].headers["RateLimit-Reset"] == "20"
    assert allowed[0].headers["RateLimit-Policy"] == "3;w=60"
    assert "retry-after" not in allowed[0].headers

    refused = limited.get("/experiments")
    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith(PROBLEM_JSON)
    assert refused.headers["Retry-After"] == "20"
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert refused.headers["RateLimit-Limit"] == "3"
    assert refused.headers["RateLimit-Reset"] == "60"
    body = refused.json()
    assert body["status"] == 429 and body["title"] == "Too Many Requests"
    assert "read" in body["detail"] and "3/min" in body["detail"]
    assert TOKEN not in refused.text

    timer.advance(19.9)
    assert limited.get("/experiments").status_code == 429
    timer.advance(0.1)
    again = limited.get("/experiments")
    assert again.status_code == 200 and again.headers["RateLimit-Remaining"] == "0"


def test_every_read_route_counts_against_the_read_class(limited: TestClient) -> None:
    experiment_id = create_experiment(limited, "limits")["id"]  # admin: not a read
    assert limited.get(f"/experiments/{experiment_id}").status_code == 200
    assert limited.get(f"/experiments/{experiment_id}/results").status_code == 200
    assert limited.get("/experiments").status_code == 200
    assert limited.get(f"/experiments/{experiment_id}").status_code == 429
    # A 404 spends a token too: the request was served.
    assert limited.get("/experiments/nope/results").status_code == 429


def test_route_classes_have_buckets_of_their_own(limited: TestClient) -> None:
    experiment_id = create_experiment(limited, "limits")["id"]
    event = {"experiment_id": experiment_id, "user_id": "u1", "event_type": "buy"}
    assert [limited.post("/events", json=event).status_code for _ in range(3)] == [202, 202, 429]
    assignment = limited.get(f"/experiments/{experiment_id}/assignment/u1")
    assert assignment.status_code == 200
    assert assignment.headers["RateLimit-Limit"] == "100"
    assert assignment.headers["RateLimit-Remaining"] == "99"
    assert limited.get("/experiments").status_code == 200


def test_each_token_has_buckets_of_its_own(limited: TestClient) -> None:
    for _ in range(3):
        limited.get("/experiments")
    assert limited.get("/experiments").status_code == 429
    assert limited.get("/experiments", headers=OTHER).status_code == 200


def test_health_metrics_and_refused_credentials_are_not_counted(limited: TestClient) -> None:
    for _ in range(5):
        assert limited.get("/health").status_code == 200
        assert limited.get("/metrics").status_code == 200
        assert limited.get("/experiments", headers={"Authorization": "Bearer wrong"}).status_code == 401
    response = limited.get("/experiments")
    assert response.headers["RateLimit-Remaining"] == "2"
    assert not RATE_HEADERS & set(limited.get("/health").headers)


def test_a_class_set_off_is_not_limited(database_url: str, timer: FakeTimer) -> None:
    rates = {"ingestion": Rate(1, 60, 1)}  # read: off
    with open_client(database_url, timer, rate_limit_api_tokens=True, rate_limits=rates) as client:
        client.headers.update(AUTH)
        for _ in range(10):
            response = client.get("/experiments")
            assert response.status_code == 200
            assert not RATE_HEADERS & set(response.headers)


def test_api_tokens_are_not_limited_by_default(database_url: str) -> None:
    with open_client(database_url, rate_limits={"read": Rate(1, 60, 1)}) as client:
        client.headers.update(AUTH)
        for _ in range(10):
            response = client.get("/experiments")
            assert response.status_code == 200
            assert not RATE_HEADERS & set(response.headers)


def test_limited_api_tokens_are_counted_by_digest_on_the_configured_limiter(
    database_url: str,
) -> None:
    """The real container's limiter (memory://), not a test double: set from the environment."""
    settings = Settings.from_env(
        {"DATABASE_URL": database_url, "API_TOKENS": TOKEN, "RATE_LIMIT_API_TOKENS": "true",
         "RATE_LIMIT_READ": "2/min"}
    )
    container = create_container(settings)
    with TestClient(create_app(container)) as client:
        client.headers.update(AUTH)
        assert [client.get("/experiments").status_code for _ in range(3)] == [200, 200, 429]
        limiter = container.rate_limiter()
        digest = hashlib.sha256(TOKEN.encode()).hexdigest()
        assert isinstance(limiter, MemoryRateLimiter)
        # The spent bucket is the digest's: a token is never kept as an identity.
        assert not asyncio.run(limiter.take(f"token:{digest}", "read")).allowed


def test_every_api_route_declares_the_scope_it_needs(limited: TestClient) -> None:
    """The scope that picks a route's class is the one a scoped key will be checked against."""
    scopes = {
        (method, route.path): handler.opt.get("scope")
        for route in limited.app.routes
        for handler in getattr(route, "route_handlers", [])
        for method in handler.http_methods
        if method != "OPTIONS"
        and route.path not in ("/health", "/metrics") and not route.path.startswith(("/schema", "/ui"))
    }  # the pages' scopes: docs/api.md's table, held by tests/unit/test_docs_tables.py
    assert scopes == {
        ("POST", "/experiments"): "admin",
        ("GET", "/experiments"): "read",
        ("POST", "/power"): "read",
        ("GET", "/experiments/{experiment_id:str}"): "read",
        ("GET", "/experiments/{experiment_id:str}/results"): "read",
        ("GET", "/experiments/{experiment_id:str}/results/timeseries"): "read",
        ("GET", "/experiments/{experiment_id:str}/results/breakdown"): "read",
        ("GET", "/experiments/{experiment_id:str}/assignment/{user_id:str}"): "assign",
        ("GET", "/definitions"): "assign",
        ("POST", "/exposures"): "assign",
        ("POST", "/events"): "ingest",
        ("POST", "/keys"): "admin",
        ("GET", "/keys"): "admin",
        ("GET", "/keys/{key_id:str}"): "admin",
        ("DELETE", "/keys/{key_id:str}"): "admin",
        ("GET", "/audit"): "admin",
        ("PATCH", "/experiments/{experiment_id:str}"): "admin",
        ("POST", "/experiments/{experiment_id:str}/assignment/{user_id:str}"): "assign",
        ("PUT", "/experiments/{experiment_id:str}/assignment/{user_id:str}"): "admin",
        ("DELETE", "/experiments/{experiment_id:str}/assignment/{user_id:str}"): "admin",
        ("POST", "/layers"): "admin",
        ("GET", "/layers"): "read",
        ("GET", "/layers/{layer_id:str}"): "read",
        ("POST", "/holdouts"): "admin",
        ("GET", "/holdouts"): "read",
        ("GET", "/holdouts/{holdout_id:str}"): "read",
        ("GET", "/holdouts/{holdout_id:str}/results"): "read",
    }


def test_api_keys_are_limited_by_default_each_by_its_own_id(database_url: str, timer: FakeTimer) -> None:
    """Keys are what clients are handed, so their rates hold without RATE_LIMIT_API_TOKENS; two
    keys of one name still have buckets of their own, and the admin token stays unlimited."""
    with open_client(database_url, timer, rate_limits=RATES) as client:
        client.headers.update(AUTH)
        secrets = [
            client.post("/keys", json={"name": "dashboard", "scopes": ["read"]}).json()["key"] for _ in range(2)
        ]
        first = {"Authorization": f"Bearer {secrets[0]}"}
        answers = [client.get("/experiments", headers=first) for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert answers[0].headers["RateLimit-Remaining"] == "2"
        assert answers[3].headers["Retry-After"] == "20"
        assert client.get("/experiments", headers={"Authorization": f"Bearer {secrets[1]}"}).status_code == 200
        assert all(client.get("/experiments").status_code == 200 for _ in range(5))  # API_TOKENS
