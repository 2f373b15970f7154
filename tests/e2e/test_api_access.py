"""Health, the bearer token on every route, and the OpenAPI document. End to end, through the real
app in-process (routes, auth, DI container, SQLite migrated by Alembic, a clock the tests move),
against the contract (../shared/API.md)."""

from __future__ import annotations

import pytest
from litestar.testing import TestClient

from tests.e2e.conftest import TOKEN
from tests.e2e.helpers import assert_problem, event
from tests.factories import experiment_body

# ---------------------------------------------------------------------------------------------
# health, auth, OpenAPI


def test_health_is_open_and_ok(client: TestClient) -> None:
    for credential in (None, "Bearer wrong", "Basic eDp5"):
        request = client.build_request("GET", "/health")
        del request.headers["Authorization"]
        if credential is not None:
            request.headers["Authorization"] = credential
        response = client.send(request)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/json")
        assert response.json() == {"status": "ok"}


ENDPOINTS = [
    ("POST", "/experiments", experiment_body("x", [("a", 50), ("b", 50)])),
    ("POST", "/experiments", {"not": "even valid"}),
    ("GET", "/experiments", None),
    ("GET", "/experiments/some-id", None),
    ("GET", "/experiments/some-id/assignment/u-1", None),
    ("POST", "/events", event("some-id", "u-1")),
    ("POST", "/events", {"events": []}),
    ("GET", "/experiments/some-id/results", None),
    ("POST", "/keys", {"name": "k", "scopes": ["read"]}),
    ("GET", "/keys", None),
    ("GET", "/keys/some-id", None),
    ("DELETE", "/keys/some-id", None),
    ("GET", "/audit", None),
]
BAD_CREDENTIALS = {
    "missing": None,
    "wrong token": "Bearer not-the-token",
    "token with a suffix": f"Bearer {TOKEN}x",
    "empty bearer": "Bearer ",
    "basic scheme": "Basic dGVzdC10b2tlbjo=",
    "token scheme with the valid token": f"Token {TOKEN}",
    "bare valid token": TOKEN,
}


@pytest.mark.parametrize("method,path,body", ENDPOINTS, ids=[f"{m} {p}" for m, p, _ in ENDPOINTS])
def test_every_endpoint_but_health_needs_a_valid_bearer_token(
    client: TestClient, method: str, path: str, body: dict | None
) -> None:
    for case, credential in BAD_CREDENTIALS.items():
        request = client.build_request(method, path, json=body)
        del request.headers["Authorization"]
        if credential is not None:
            request.headers["Authorization"] = credential
        response = client.send(request)
        assert response.status_code == 401, (case, response.text)
        assert_problem(response, 401)
        assert response.headers["WWW-Authenticate"] == "Bearer", case
        assert TOKEN not in response.text
    # The valid token passes the guard (whatever the handler then says).
    assert client.request(method, path, json=body).status_code != 401


def test_openapi_document_is_served_with_the_paths(client: TestClient) -> None:
    response = client.get("/schema/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    for path in (
        "/health",
        "/experiments",
        "/experiments/{experiment_id}",
        "/experiments/{experiment_id}/assignment/{user_id}",
        "/experiments/{experiment_id}/results",
        "/events",
    ):
        assert path in document["paths"], sorted(document["paths"])


