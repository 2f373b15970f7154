"""End-to-end tests of API keys, scopes and the audit trail, over HTTP through the real app."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import timedelta

import pytest
from litestar.testing import TestClient

from tests.e2e.conftest import TOKEN
from tests.e2e.helpers import T0, assert_problem, event, iso
from tests.factories import create_experiment, experiment_body
from tests.fakes import FakeClock

SCOPES = ["admin", "assign", "ingest", "read"]


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def new_key(client: TestClient, name: str, scopes: list[str], **extra: object) -> dict:
    response = client.post("/keys", json={"name": name, "scopes": scopes, **extra})
    assert response.status_code == 201, response.text
    return response.json()


# (method, path template, body, the scope the route needs, the status its owner gets)
ROUTES = [
    ("POST", "/experiments", experiment_body("by-key", [("a", 50), ("b", 50)]), "admin", 201),
    ("GET", "/experiments", None, "read", 200),
    ("GET", "/experiments/{eid}", None, "read", 200),
    ("GET", "/experiments/{eid}/results", None, "read", 200),
    ("GET", "/experiments/{eid}/assignment/u-1", None, "assign", 200),
    ("POST", "/events", "event", "ingest", 202),
    ("POST", "/keys", {"name": "k", "scopes": ["read"]}, "admin", 201),
    ("GET", "/keys", None, "admin", 200),
    ("GET", "/keys/{kid}", None, "admin", 200),
    ("DELETE", "/keys/missing", None, "admin", 404),
    ("GET", "/audit", None, "admin", 200),
]


@pytest.mark.parametrize("scope", SCOPES)
def test_each_scope_reaches_its_routes_and_is_403_elsewhere(client: TestClient, scope: str) -> None:
    experiment = create_experiment(client, "scoped", [("a", 50), ("b", 50)])
    key = new_key(client, f"{scope}-key", [scope])
    for method, template, body, needed, status in ROUTES:
        path = template.format(eid=experiment["id"], kid=key["id"])
        payload = event(experiment["id"], "u-1") if body == "event" else body
        if method == "POST" and path == "/experiments":
            payload = experiment_body(f"by-{scope}", [("a", 50), ("b", 50)])
        response = client.request(method, path, json=payload, headers=bearer(key["key"]))
        if scope in (needed, "admin"):
            assert response.status_code == status, (method, path, response.text)
        else:
            problem = assert_problem(response, 403)
            assert repr(needed) in problem["detail"], problem
            assert "WWW-Authenticate" not in response.headers


def test_a_key_of_several_scopes_has_each_of_them(client: TestClient) -> None:
    experiment = create_experiment(client, "multi", [("a", 50), ("b", 50)])
    key = bearer(new_key(client, "app", ["assign", "ingest"])["key"])
    assert client.get(f"/experiments/{experiment['id']}/assignment/u", headers=key).status_code == 200
    assert client.post("/events", json=event(experiment["id"], "u"), headers=key).status_code == 202
    assert_problem(client.get("/experiments", headers=key), 403)


def test_api_tokens_remain_admin(client: TestClient) -> None:
    assert client.get("/audit").status_code == 200
    assert client.post("/keys", json={"name": "k", "scopes": ["admin"]}).status_code == 201


def test_create_answers_201_with_location_and_the_secret_once(client: TestClient, fake_clock: FakeClock) -> None:
    expires = T0 + timedelta(days=30)
    response = client.post("/keys", json={"name": "ci", "scopes": ["read", "assign"], "expires_at": iso(expires)})
    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["Location"] == f"/keys/{body['id']}"
    assert body["key"].startswith("xpk_") and len(body["key"]) == 47
    assert body["name"] == "ci" and body["scopes"] == ["assign", "read"]
    assert body["created_by"] == "API_TOKENS" and body["revoked_at"] is None
    assert body["created_at"] in (iso(T0), T0.isoformat())
    assert body["expires_at"] in (iso(expires), expires.isoformat())
    shown = client.get(f"/keys/{body['id']}").json()
    assert shown == {k: v for k, v in body.items() if k != "key"}


def test_the_secret_never_appears_again_in_answers_or_logs(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key = new_key(client, "quiet", ["read"])
    secret = key["key"]
    digest = hashlib.sha256(secret.encode()).hexdigest()
    seen = [
        client.get("/keys").text,
        client.get(f"/keys/{key['id']}").text,
        client.get("/audit").text,
        client.get("/experiments", headers=bearer(secret)).text,
        client.delete(f"/keys/{key['id']}").text,
        client.get("/experiments", headers=bearer(secret)).text,
        client.get("/schema/openapi.json").text,
    ]
    for text in seen:
        assert secret not in text and digest not in text
    # Every logger at DEBUG, the database driver's too (which logs the digest as a query
    # parameter: no secret, since a 256-bit key cannot be found from its digest).
    assert caplog.text and secret not in caplog.text


def test_missing_unknown_expired_and_revoked_keys_are_401(client: TestClient, fake_clock: FakeClock) -> None:
    expiring = new_key(client, "short", ["read"], expires_at=iso(T0 + timedelta(hours=1)))
    revoked = new_key(client, "gone", ["read"])
    assert client.get("/experiments", headers=bearer(expiring["key"])).status_code == 200
    assert client.get("/experiments", headers=bearer(revoked["key"])).status_code == 200
    assert client.delete(f"/keys/{revoked['id']}").status_code == 200
    fake_clock.advance(hours=1)
    for credential in (expiring["key"], revoked["key"], "xpk_" + "A" * 43, expiring["key"] + "x"):
        response = client.get("/experiments", headers=bearer(credential))
        assert_problem(response, 401)
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert credential not in response.text


def test_revocation_is_immediate_here_and_within_the_ttl_on_another_instance(
    client: TestClient, make_client: Callable[..., TestClient], database_url: str, fake_clock: FakeClock
) -> None:
    other = make_client(database_url, fake_clock)
    key = new_key(client, "shared", ["read"])
    # A key created on one instance works on the other at once: it has never seen it.
    assert other.get("/experiments", headers=bearer(key["key"])).status_code == 200
    assert client.get("/experiments", headers=bearer(key["key"])).status_code == 200  # now cached
    revoked = client.delete(f"/keys/{key['id']}")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert_problem(client.get("/experiments", headers=bearer(key["key"])), 401)
    # The other instance holds the key it resolved for KEY_CACHE_TTL_SECONDS (5), no longer.
    fake_clock.advance(seconds=4.9)
    assert other.get("/experiments", headers=bearer(key["key"])).status_code == 200
    fake_clock.advance(seconds=0.1)
    assert_problem(other.get("/experiments", headers=bearer(key["key"])), 401)


def test_revoking_twice_answers_the_same_record_and_audits_once(client: TestClient, fake_clock: FakeClock) -> None:
    key = new_key(client, "twice", ["read"])
    first = client.delete(f"/keys/{key['id']}")
    fake_clock.advance(minutes=1)
    second = client.delete(f"/keys/{key['id']}")
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert first.json()["revoked_at"] in (iso(T0), T0.isoformat())
    audit = client.get("/audit", params={"action": "key.revoked"}).json()
    assert audit["total"] == 1
    assert_problem(client.delete("/keys/nope"), 404)
    assert_problem(client.get("/keys/nope"), 404)


def test_keys_are_listed_newest_first_with_paging(client: TestClient, fake_clock: FakeClock) -> None:
    for i in range(4):
        new_key(client, f"k{i}", ["read"])
        fake_clock.advance(seconds=1)
    page = client.get("/keys", params={"limit": 2, "offset": 1}).json()
    assert page["total"] == 4
    assert [k["name"] for k in page["items"]] == ["k2", "k1"]
    assert all("key" not in k for k in page["items"])
    assert_problem(client.get("/keys", params={"limit": 0, "offset": -1}), 422, {"limit", "offset"})


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"name": "k", "scopes": ["read"], "expire_at": "2030-01-01T00:00:00Z", "role": 1}, {"expire_at", "role"}),
        ({"name": " ", "scopes": ["write"], "expires_at": "2020-01-01T00:00:00Z", "role": 1}, {"name", "scopes[0]", "expires_at", "role"}),
        ({"name": 1, "scopes": ["read"], "role": 1}, {"name", "role"}),
        ({"name": "", "scopes": ["read", "write"], "expires_at": "2026-11-28T11:00:00Z"}, {"name", "scopes[1]", "expires_at"}),
        ({"name": "x" * 201, "scopes": []}, {"name", "scopes"}),
        ({"name": "k"}, {"scopes"}),
        ({"name": 5, "scopes": ["read"]}, {"name"}),
        ({"name": "k", "scopes": "read"}, {"scopes"}),
        ({"name": "k", "scopes": ["read"], "expires_at": "tomorrow"}, {"expires_at"}),
        ({"name": "k", "scopes": ["read"], "expires_at": "2026-11-28T12:00:00"}, {"expires_at"}),
        ([], {"body"}),
    ],
    ids=["unknown-fields", "unknown-and-broken-rules", "unknown-and-wrong-type", "every-rule", "name-long-no-scopes", "no-scopes", "name-type", "scopes-type",
         "expires-unparsable", "expires-now-without-offset", "not-an-object"],
)
def test_an_invalid_key_is_422_naming_every_field(client: TestClient, body: object, fields: set[str]) -> None:
    assert_problem(client.post("/keys", json=body), 422, fields)
    assert client.get("/keys").json()["total"] == 0
    assert client.get("/audit").json()["total"] == 0


def test_malformed_json_is_400(client: TestClient) -> None:
    assert_problem(client.post("/keys", content=b'{"name": "k", "scopes": [', headers={"Content-Type": "application/json"}), 400)


def test_every_admin_action_is_audited_with_its_actor(client: TestClient, fake_clock: FakeClock) -> None:
    experiment = create_experiment(client, "audited", [("a", 50), ("b", 50)])
    fake_clock.advance(seconds=1)
    admin = new_key(client, "ops-admin", ["admin"])
    fake_clock.advance(seconds=1)
    made = client.post("/keys", json={"name": "app", "scopes": ["assign"]}, headers=bearer(admin["key"])).json()
    fake_clock.advance(seconds=1)
    client.delete(f"/keys/{made['id']}", headers=bearer(admin["key"]))
    fake_clock.advance(seconds=1)
    by_key = client.post(
        "/experiments", json=experiment_body("by-admin-key", [("a", 50), ("b", 50)]), headers=bearer(admin["key"])
    ).json()
    trail = client.get("/audit").json()
    assert trail["total"] == 5
    assert [(e["action"], e["actor"], e["target"]) for e in trail["items"]] == [
        ("experiment.created", "ops-admin", {"type": "experiment", "id": by_key["id"]}),
        ("key.revoked", "ops-admin", {"type": "key", "id": made["id"]}),
        ("key.created", "ops-admin", {"type": "key", "id": made["id"]}),
        ("key.created", "API_TOKENS", {"type": "key", "id": admin["id"]}),
        ("experiment.created", "API_TOKENS", {"type": "experiment", "id": experiment["id"]}),
    ]
    first = trail["items"][-1]
    assert first["at"] in (iso(T0), T0.isoformat())
    assert first["details"]["name"] == "audited"
    assert [v["name"] for v in first["details"]["variants"]] == ["a", "b"]
    assert trail["items"][2]["details"] == {"name": "app", "scopes": ["assign"], "expires_at": None}
    assert made["created_by"] == "ops-admin"
    about = client.get("/audit", params={"target_id": made["id"], "limit": 1}).json()
    assert about["total"] == 2 and about["items"][0]["action"] == "key.revoked"
    assert_problem(client.get("/audit", params={"action": "key.deleted"}), 422, {"action"})


def test_a_failed_action_leaves_no_audit_entry(client: TestClient) -> None:
    create_experiment(client, "once", [("a", 50), ("b", 50)])
    assert client.post("/experiments", json=experiment_body("once", [("a", 50), ("b", 50)])).status_code == 409
    assert client.post("/experiments", json=experiment_body("bad", [("a", 10)])).status_code == 422
    assert client.get("/audit").json()["total"] == 1


def test_openapi_tags_the_new_routes(client: TestClient) -> None:
    paths = client.get("/schema/openapi.json").json()["paths"]
    assert paths["/keys"]["post"]["tags"] == ["keys"]
    assert paths["/keys/{key_id}"]["delete"]["tags"] == ["keys"]
    assert paths["/audit"]["get"]["tags"] == ["audit"]
    assert TOKEN not in str(paths)


def test_options_answers_any_valid_credential_and_refuses_none(client) -> None:  # noqa: ANN001
    """Litestar answers OPTIONS itself, with no scope declared: a valid credential gets the
    allowed methods, a missing one a 401, never a 500."""
    answer = client.options("/experiments")
    assert answer.status_code == 204
    assert answer.headers["allow"] == "GET, OPTIONS, POST"  # every method, not the first one's
    assert client.options("/keys/some-id").headers["allow"] == "DELETE, GET, OPTIONS"
    assert client.options("/experiments", headers={"Authorization": ""}).status_code == 401
