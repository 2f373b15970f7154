"""Request bodies are JSON and must say so: any other Content-Type is a 415."""

from __future__ import annotations

import json

import pytest
from litestar.testing import TestClient

from tests.factories import create_experiment, experiment_body


def bodies(client: TestClient) -> dict[str, bytes]:
    """A valid JSON body for each endpoint that takes one (the POSTs; the rest below)."""
    event = {"experiment_id": create_experiment(client, "target")["id"], "user_id": "u", "event_type": "view"}
    return {"/experiments": json.dumps(experiment_body("media")).encode(), "/events": json.dumps(event).encode()}


def test_every_body_route_refuses_a_form_the_same_way(client: TestClient) -> None:
    """One body mechanism for all: a form (what ``curl -d`` sends by default) is a 415 on every
    route that takes a body, and nothing is written."""
    x = create_experiment(client, "target")
    variant = x["variants"][0]["id"]
    routes = [
        ("POST", "/keys", {"name": "k", "scopes": ["read"]}),
        ("POST", "/layers", {"name": "l"}),
        ("POST", "/holdouts", {"name": "h", "percentage": 5}),
        ("PATCH", f"/experiments/{x['id']}", {"name": "renamed"}),
        ("POST", f"/experiments/{x['id']}/assignment/u", {"attributes": {"country": "DE"}}),
        ("PUT", f"/experiments/{x['id']}/assignment/u", {"variant_id": variant}),
    ]
    form = "application/x-www-form-urlencoded"
    for method, path, body in routes:
        response = client.request(method, path, content=json.dumps(body).encode(), headers={"Content-Type": form})
        assert response.status_code == 415, (method, path, response.text)
        assert form in response.json()["detail"]
        # The README's example: key=value pairs, as curl -d sends them.
        response = client.request(method, path, data={"name": "k", "scopes": "admin"})
        assert response.status_code == 415, (method, path, response.text)
    assert client.get("/keys").json()["total"] == 0
    assert client.get("/layers").json()["items"] == [] and client.get("/holdouts").json()["items"] == []
    assert client.get(f"/experiments/{x['id']}").json()["name"] == "target"
    assert client.get(f"/experiments/{x['id']}").json()["overrides"] == []
    assert client.get("/audit").json()["total"] == 1  # the experiment's creation alone


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain; charset=utf-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "application/jsonx",
        "json",
    ],
)
def test_a_json_body_under_another_type_is_a_415_naming_both(client: TestClient, content_type: str) -> None:
    for path, body in bodies(client).items():
        response = client.post(path, content=body, headers={"Content-Type": content_type})
        assert response.status_code == 415, (path, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        detail = response.json()["detail"]
        assert content_type.split(";")[0] in detail and "application/json" in detail, detail
    assert client.get("/experiments").json()["total"] == 1  # nothing written but the target


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON;charset=UTF-8",
        "application/problem+json",
        "application/vnd.example+json; version=2",
        None,  # no Content-Type at all: taken for JSON, as older clients send it
    ],
)
def test_json_types_and_no_type_are_accepted(client: TestClient, content_type: str | None) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    for path, body in bodies(client).items():
        response = client.post(path, content=body, headers=headers)
        assert response.status_code in (201, 202), (path, content_type, response.text)
