"""End-to-end tests of the HTTP contract (../shared/API.md), through the real app in-process:
routes, auth, DI container, SQLite store migrated by Alembic, with a clock the tests move.

Every number of a results response is checked against an independent computation written here
from the contract's words (and scipy / statsmodels for the statistics), never against the
service's own code.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep

from tests.e2e.conftest import TOKEN
from tests.factories import create_experiment, create_experiment_async, experiment_body
from tests.fakes import FakeClock, SequentialIds

PROBLEM_JSON = "application/problem+json"
T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)  # FakeClock's start


# ---------------------------------------------------------------------------------------------
# helpers


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_ts(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert moment.utcoffset() == timedelta(0), f"{text!r} is not UTC"
    return moment


def assert_problem(response: httpx.Response, status: int, fields: set[str] | None = None) -> dict:
    """An RFC 9457 problem document with ``status``; ``fields``: exactly the fields in `errors`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON), response.headers
    body = response.json()
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    if fields is not None:
        assert isinstance(body.get("errors"), list), body
        for error in body["errors"]:
            assert isinstance(error["message"], str) and error["message"], error
        assert {e["field"] for e in body["errors"]} == fields, body["errors"]
    return body


def documented_bucket(experiment_id: str, user_id: str) -> int:
    """API.md / README: SHA-256 of "experiment_id:user_id", first 8 bytes big-endian, mod 10,000."""
    digest = hashlib.sha256(f"{experiment_id}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000


def expected_variant(experiment: dict, user_id: str) -> dict:
    """The variant whose range [cum_prev, cum) of basis points, in variant order, holds the
    bucket of the documented hash (computed here, not by the service's own function)."""
    bucket = documented_bucket(experiment["id"], user_id)
    cumulative = 0
    for variant in experiment["variants"]:
        cumulative += round(variant["traffic_percentage"] * 100)
        if bucket < cumulative:
            return variant
    raise AssertionError(f"bucket {bucket} beyond the split of {experiment['variants']}")


def assign(client: TestClient, experiment_id: str, user_id: str) -> httpx.Response:
    return client.get(f"/experiments/{experiment_id}/assignment/{quote(user_id, safe='')}")


def event(experiment_id: str, user_id: str, event_type: str = "view", **extra: Any) -> dict:
    return {"experiment_id": experiment_id, "user_id": user_id, "event_type": event_type, **extra}


def results(client: TestClient, experiment_id: str, **params: str) -> dict:
    response = client.get(f"/experiments/{experiment_id}/results", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert "NaN" not in response.text and "Infinity" not in response.text
    return response.json()


def total_events(client: TestClient, experiment_id: str) -> int:
    return results(client, experiment_id)["summary"]["total_events"]


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


# ---------------------------------------------------------------------------------------------
# POST /experiments


def test_create_experiment_returns_201_location_and_the_experiment(client: TestClient) -> None:
    body = {
        "name": "checkout-button-color",
        "description": "which color sells",
        "primary_event_type": "purchase",
        "variants": [
            {"name": "green", "traffic_percentage": 33.33},
            {"name": "control", "traffic_percentage": 33.33, "is_control": True},
            {"name": "blue", "traffic_percentage": 33.34, "is_control": False},
        ],
    }
    response = client.post("/experiments", json=body)
    assert response.status_code == 201, response.text
    assert response.headers["content-type"].startswith("application/json")
    created = response.json()
    assert response.headers["Location"] == f"/experiments/{created['id']}"
    assert isinstance(created["id"], str) and created["id"]
    assert created["name"] == "checkout-button-color"
    assert created["description"] == "which color sells"
    assert created["primary_event_type"] == "purchase"
    assert parse_ts(created["created_at"]) == T0
    assert [v["name"] for v in created["variants"]] == ["green", "control", "blue"]
    assert [v["is_control"] for v in created["variants"]] == [False, True, False]
    assert [v["traffic_percentage"] for v in created["variants"]] == [33.33, 33.33, 33.34]
    for variant in created["variants"]:
        assert isinstance(variant["traffic_percentage"], float)
        assert isinstance(variant["id"], str) and variant["id"]
    assert len({v["id"] for v in created["variants"]} | {created["id"]}) == 4
    # Whole numbers are still floats on the wire.
    plain = client.post("/experiments", json=experiment_body("plain", [("a", 50), ("b", 50)]))
    assert '"traffic_percentage":50.0' in plain.text.replace(" ", "")
    # The Location resolves to the same experiment.
    fetched = client.get(response.headers["Location"])
    assert fetched.status_code == 200
    assert fetched.json() == created


@pytest.mark.parametrize("flags", [(None, None), (False, False), (None, False)])
def test_first_variant_is_the_control_when_none_is_marked(
    client: TestClient, flags: tuple[bool | None, bool | None]
) -> None:
    variants = [{"name": "a", "traffic_percentage": 10}, {"name": "b", "traffic_percentage": 90}]
    for variant, flag in zip(variants, flags, strict=True):
        if flag is not None:
            variant["is_control"] = flag
    response = client.post("/experiments", json={"name": "no-control", "variants": variants})
    assert response.status_code == 201, response.text
    assert [v["is_control"] for v in response.json()["variants"]] == [True, False]
    assert response.json()["description"] is None
    assert response.json()["primary_event_type"] is None


def test_boundaries_that_are_valid(client: TestClient) -> None:
    split = [(f"v{i}", 5) for i in range(20)]
    assert client.post("/experiments", json=experiment_body("twenty", split)).status_code == 201
    assert client.post("/experiments", json=experiment_body("n" * 200, [("a", 0), ("b", 100)])).status_code == 201
    assert client.post("/experiments", json=experiment_body("cents", [("a", 0.01), ("b", 99.99)])).status_code == 201


def test_duplicate_name_is_409(client: TestClient) -> None:
    create_experiment(client, "taken", [("a", 50), ("b", 50)])
    response = client.post("/experiments", json=experiment_body("taken", [("x", 20), ("y", 80)]))
    assert_problem(response, 409)
    assert client.get("/experiments").json()["total"] == 1


def _v(name: str, pct: Any, **extra: Any) -> dict:
    return {"name": name, "traffic_percentage": pct, **extra}


INVALID_EXPERIMENTS: dict[str, tuple[dict, set[str]]] = {
    "sum below 100": ({"name": "e", "variants": [_v("a", 50), _v("b", 40)]}, {"variants"}),
    "sum above 100": ({"name": "e", "variants": [_v("a", 50), _v("b", 50.01)]}, {"variants"}),
    "three decimals": (
        {"name": "e", "variants": [_v("a", 33.333), _v("b", 66.667)]},
        {"variants[0].traffic_percentage", "variants[1].traffic_percentage"},
    ),
    "negative": (
        {"name": "e", "variants": [_v("a", -10), _v("b", 110)]},
        {"variants[0].traffic_percentage", "variants[1].traffic_percentage"},
    ),
    "above 100": (
        {"name": "e", "variants": [_v("a", 100.5), _v("b", 0)]},
        {"variants[0].traffic_percentage"},
    ),
    "one variant": ({"name": "e", "variants": [_v("a", 100)]}, {"variants"}),
    "no variants": ({"name": "e", "variants": []}, {"variants"}),
    "21 variants": (
        {"name": "e", "variants": [_v(f"v{i}", 5) for i in range(20)] + [_v("v20", 0)]},
        {"variants"},
    ),
    "duplicate variant names": (
        {"name": "e", "variants": [_v("a", 50), _v("a", 50)]},
        {"variants[1].name"},
    ),
    "two controls": (
        {"name": "e", "variants": [_v("a", 50, is_control=True), _v("b", 50, is_control=True)]},
        {"variants[1].is_control"},
    ),
    "empty name": ({"name": "", "variants": [_v("a", 50), _v("b", 50)]}, {"name"}),
    "blank name": ({"name": "   ", "variants": [_v("a", 50), _v("b", 50)]}, {"name"}),
    "name of 201 characters": (
        {"name": "n" * 201, "variants": [_v("a", 50), _v("b", 50)]},
        {"name"},
    ),
    "empty variant name": (
        {"name": "e", "variants": [_v("a", 50), _v("", 50)]},
        {"variants[1].name"},
    ),
    "string percentage": (
        {"name": "e", "variants": [_v("a", 50), _v("b", "50")]},
        {"variants[1].traffic_percentage"},
    ),
    "boolean percentage": (
        {"name": "e", "variants": [_v("a", True), _v("b", 50)]},
        {"variants[0].traffic_percentage"},
    ),
    "null percentage": (
        {"name": "e", "variants": [_v("a", 50), _v("b", None)]},
        {"variants[1].traffic_percentage"},
    ),
    "name of wrong type": ({"name": 7, "variants": [_v("a", 50), _v("b", 50)]}, {"name"}),
    "variants not a list": ({"name": "e", "variants": {"a": 50}}, {"variants"}),
    "missing name": ({"variants": [_v("a", 50), _v("b", 50)]}, {"name"}),
    "missing variants": ({"name": "e"}, {"variants"}),
    "missing percentage": (
        {"name": "e", "variants": [_v("a", 50), {"name": "b"}]},
        {"variants[1].traffic_percentage"},
    ),
    "primary_event_type of 101 characters": (
        {"name": "e", "primary_event_type": "p" * 101, "variants": [_v("a", 50), _v("b", 50)]},
        {"primary_event_type"},
    ),
}


@pytest.mark.parametrize("body,fields", list(INVALID_EXPERIMENTS.values()), ids=list(INVALID_EXPERIMENTS))
def test_invalid_experiment_is_422_naming_the_fields(client: TestClient, body: dict, fields: set[str]) -> None:
    assert_problem(client.post("/experiments", json=body), 422, fields)
    assert client.get("/experiments").json()["total"] == 0


def test_every_broken_rule_is_listed_at_once(client: TestClient) -> None:
    body = {"name": "", "variants": [_v("a", 33.333), _v("a", 50, is_control=True), _v("c", 1, is_control=True)]}
    assert_problem(
        client.post("/experiments", json=body),
        422,
        {"name", "variants[0].traffic_percentage", "variants[1].name", "variants[2].is_control"},
    )


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b'{"name": "e",',
        b"not json",
        b'{"name": "e", "variants": []} trailing',
        b"\x00\x01",
        b'{"experiment_id": 5, "user_id": ',
        b'{"events": [{"user_id": 5}, ',
    ],
    ids=["empty", "open brace", "truncated", "text", "trailing", "binary", "typed prefix", "batch prefix"],
)
@pytest.mark.parametrize("path", ["/experiments", "/events"])
def test_malformed_json_is_400(client: TestClient, path: str, raw: bytes) -> None:
    response = client.post(path, content=raw, headers={"Content-Type": "application/json"})
    assert_problem(response, 400)


@pytest.mark.parametrize("raw", [b"[]", b"[1, 2]", b'"text"', b"42", b"null", b"true"])
def test_well_formed_json_that_is_not_an_experiment_is_422(client: TestClient, raw: bytes) -> None:
    response = client.post("/experiments", content=raw, headers={"Content-Type": "application/json"})
    assert_problem(response, 422)


@pytest.mark.parametrize("path", ["/experiments", "/events"])
def test_body_over_32_mib_is_413(client: TestClient, path: str) -> None:
    raw = b'{"name": "' + b"x" * (32 * 1024 * 1024) + b'"}'
    response = client.post(path, content=raw, headers={"Content-Type": "application/json"})
    assert_problem(response, 413)


# ---------------------------------------------------------------------------------------------
# GET /experiments, GET /experiments/{id}


def test_list_is_newest_first_with_paging_and_total(client: TestClient, fake_clock: FakeClock) -> None:
    names = []
    for i in range(5):
        names.append(create_experiment(client, f"exp-{i}", [("a", 50), ("b", 50)])["name"])
        if i != 1:  # exp-1 and exp-2 share a created_at: the later-created one is still newer
            fake_clock.advance(minutes=1)
    newest_first = names[::-1]
    page = client.get("/experiments").json()
    assert page["total"] == 5
    assert [e["name"] for e in page["items"]] == newest_first
    assert page["items"][0] == client.get(f"/experiments/{page['items'][0]['id']}").json()
    assert [e["name"] for e in client.get("/experiments", params={"limit": 2}).json()["items"]] == newest_first[:2]
    paged = client.get("/experiments", params={"limit": 2, "offset": 2}).json()
    assert [e["name"] for e in paged["items"]] == newest_first[2:4]
    assert paged["total"] == 5
    beyond = client.get("/experiments", params={"offset": 10}).json()
    assert beyond == {"items": [], "total": 5}
    assert len(client.get("/experiments", params={"limit": 500}).json()["items"]) == 5
    assert len(client.get("/experiments", params={"limit": 1}).json()["items"]) == 1


def test_list_when_empty(client: TestClient) -> None:
    response = client.get("/experiments")
    assert response.status_code == 200
    assert response.json() == {"items": [], "total": 0}


@pytest.mark.parametrize(
    "params,field_name",
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "abc"}, "limit"),
        ({"limit": "1.5"}, "limit"),
        ({"offset": "-1"}, "offset"),
        ({"offset": "abc"}, "offset"),
    ],
)
def test_list_paging_out_of_range_is_422(client: TestClient, params: dict, field_name: str) -> None:
    assert_problem(client.get("/experiments", params=params), 422, {field_name})


def test_get_unknown_experiment_is_404(client: TestClient) -> None:
    assert_problem(client.get("/experiments/does-not-exist"), 404)


# ---------------------------------------------------------------------------------------------
# assignment


def test_the_documented_hash_is_pinned() -> None:
    """The oracle the assignment tests use, pinned to values worked out by hand from the
    README's description, so that neither it nor the service can drift with the other."""
    assert documented_bucket("checkout-button-color", "u-123") == 1352
    assert documented_bucket("exp", "user") == 7901


def test_assignment_is_deterministic_per_the_documented_hash(client: TestClient) -> None:
    experiment = create_experiment(client, "split", [("a", 20), ("b", 30.5), ("c", 49.5)])
    users = [f"u-{i}" for i in range(150)] + ["ü ñ", "with space", "a:b", "100%", "😀", "x" * 256, "?q=1#f"]
    for user_id in users:
        response = assign(client, experiment["id"], user_id)
        assert response.status_code == 200, (user_id, response.text)
        assert response.headers["content-type"].startswith("application/json")
        want = expected_variant(experiment, user_id)
        assert response.json() == {
            "experiment_id": experiment["id"],
            "user_id": user_id,
            "variant_id": want["id"],
            "variant_name": want["name"],
            "assigned_at": response.json()["assigned_at"],
            # docs/api.md adds these; the base contract's fields keep their meaning
            "in_experiment": True,
            "reason": "assigned",
        }
        assert parse_ts(response.json()["assigned_at"]) == T0


def test_assignment_is_sticky(client: TestClient, fake_clock: FakeClock, make_client, database_url: str) -> None:
    experiment = create_experiment(client, "sticky", [("a", 50), ("b", 50)])
    first = assign(client, experiment["id"], "u-1").json()
    fake_clock.advance(hours=5)
    again = assign(client, experiment["id"], "u-1").json()
    assert again == first
    assert parse_ts(again["assigned_at"]) == T0
    # A new app on the same database (empty cache, as after a restart) answers the same.
    restarted = make_client(database_url, FakeClock(T0 + timedelta(days=3)))
    assert assign(restarted, experiment["id"], "u-1").json() == first
    # A new user now is assigned at the new time.
    other = assign(restarted, experiment["id"], "u-2").json()
    assert parse_ts(other["assigned_at"]) == T0 + timedelta(days=3)


async def test_concurrent_first_calls_give_one_answer(async_client: httpx.AsyncClient) -> None:
    experiment = await create_experiment_async(async_client, "race", [("a", 50), ("b", 50)])
    url = f"/experiments/{experiment['id']}/assignment/racer"
    responses = await asyncio.gather(*(async_client.get(url) for _ in range(50)))
    assert {r.status_code for r in responses} == {200}
    answers = {json.dumps(r.json(), sort_keys=True) for r in responses}
    assert len(answers) == 1, answers
    assert responses[0].json()["variant_id"] == expected_variant(experiment, "racer")["id"]
    later = await async_client.get(url)
    assert later.json() == responses[0].json()
    report = (await async_client.get(f"/experiments/{experiment['id']}/results")).json()
    assert report["summary"]["total_users"] == 1


async def _assign_many(client: httpx.AsyncClient, experiment_id: str, users: list[str]) -> Counter[str]:
    """Assign many users, 50 requests in flight at a time; counts per variant_id."""
    seen: Counter[str] = Counter()
    limit = asyncio.Semaphore(50)

    async def one(user_id: str) -> None:
        async with limit:
            response = await client.get(f"/experiments/{experiment_id}/assignment/{user_id}")
        assert response.status_code == 200, response.text
        seen[response.json()["variant_id"]] += 1

    await asyncio.gather(*(one(u) for u in users))
    return seen


async def test_zero_percent_variant_is_never_assigned(async_memory_client: httpx.AsyncClient) -> None:
    experiment = await create_experiment_async(async_memory_client, "zero", [("a", 50), ("off", 0), ("b", 50)])
    off = experiment["variants"][1]["id"]
    seen = await _assign_many(async_memory_client, experiment["id"], [f"user-{i}" for i in range(2_000)])
    assert off not in seen
    assert sum(seen.values()) == 2_000
    report = (await async_memory_client.get(f"/experiments/{experiment['id']}/results")).json()
    assert report["summary"]["srm"]["mismatch"] is False
    assert report["variants"][1]["users"] == 0


async def test_split_is_fair_over_5000_users(async_memory_client: httpx.AsyncClient) -> None:
    experiment = await create_experiment_async(async_memory_client, "fair", [("a", 20), ("b", 30), ("c", 50)])
    users = [f"visitor-{i}" for i in range(5_000)]
    seen = await _assign_many(async_memory_client, experiment["id"], users)
    observed = [seen[v["id"]] for v in experiment["variants"]]
    # The service assigned exactly what the documented hash says...
    assert observed == [
        sum(1 for u in users if expected_variant(experiment, u)["id"] == v["id"]) for v in experiment["variants"]
    ]
    # ...and that is a fair draw from the configured split.
    chi = stats.chisquare(observed, f_exp=[1_000, 1_500, 2_500])
    assert chi.pvalue > 0.001, observed
    # The service's own SRM check agrees with scipy.
    report = (await async_memory_client.get(f"/experiments/{experiment['id']}/results")).json()
    srm = report["summary"]["srm"]
    assert srm["chi_square"] == pytest.approx(chi.statistic, rel=1e-9)
    assert srm["p_value"] == pytest.approx(chi.pvalue, rel=1e-9)
    assert srm["mismatch"] is False


def test_user_id_length(client: TestClient) -> None:
    experiment = create_experiment(client, "ids", [("a", 50), ("b", 50)])
    assert assign(client, experiment["id"], "u" * 256).status_code == 200
    assert_problem(assign(client, experiment["id"], "u" * 257), 422, {"user_id"})


def test_assignment_in_unknown_experiment_is_404(client: TestClient) -> None:
    assert_problem(assign(client, "no-such-experiment", "u-1"), 404)


# ---------------------------------------------------------------------------------------------
# POST /events


@pytest.fixture
def experiment(client: TestClient) -> dict:
    return create_experiment(client, "events", [("control", 50), ("treatment", 50)])


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


# ---------------------------------------------------------------------------------------------
# results: a scenario, and an independent computation of every number


@dataclass(frozen=True)
class Ev:
    experiment_id: str
    user_id: str
    event_type: str
    ts: datetime
    value: float | None = None


@dataclass
class Scenario:
    client: TestClient
    three_arms: dict  # primary_event_type "purchase"; control 40 / b 30 / c 30
    no_primary: dict  # no primary_event_type; ctl 50 / alt 50
    assignments: dict[str, dict[str, tuple[str, datetime]]] = field(default_factory=dict)
    events: list[Ev] = field(default_factory=list)
    users: list[str] = field(default_factory=list)


def _payload(e: Ev) -> dict:
    body: dict[str, Any] = event(e.experiment_id, e.user_id, e.event_type, timestamp=iso(e.ts))
    if e.value is not None:
        body["value"] = e.value
    return body


@pytest.fixture
def scenario(make_client: Callable[..., TestClient], database_url: str, fake_clock: FakeClock) -> Scenario:
    """Two experiments, users assigned at known times over three days, and events before, at and
    after their assignments, of users never assigned, of several types, with and without values.

    Ids are sequential so that the users' buckets, and so the whole scenario, are the same on
    every run (the random choices below are seeded)."""
    client = make_client(database_url, fake_clock, SequentialIds("exp"))
    sc = Scenario(
        client=client,
        three_arms=create_experiment(client, "three-arms", [("control", 40), ("b", 30), ("c", 30)], "purchase"),
        no_primary=create_experiment(client, "no-primary", [("ctl", 50), ("alt", 50)]),
    )
    e1, e2 = sc.three_arms["id"], sc.no_primary["id"]
    sc.assignments = {e1: {}, e2: {}}
    rng = random.Random(20261128)
    wanted = dict(zip((v["id"] for v in sc.three_arms["variants"]), (9, 8, 7), strict=True))
    i = 0
    while any(wanted.values()):
        user_id = f"user-{i}"
        variant_id = expected_variant(sc.three_arms, user_id)["id"]
        if wanted[variant_id]:
            wanted[variant_id] -= 1
            sc.users.append(user_id)
        i += 1
    rng.shuffle(sc.users)

    def assign_now(experiment: dict, user_id: str) -> None:
        body = assign(client, experiment["id"], user_id).json()
        assert body["variant_id"] == expected_variant(experiment, user_id)["id"]
        assert parse_ts(body["assigned_at"]) == fake_clock.now()
        sc.assignments[experiment["id"]][user_id] = (body["variant_id"], fake_clock.now())

    for k, user_id in enumerate(sc.users):
        assign_now(sc.three_arms, user_id)
        if k % 3:
            fake_clock.advance(minutes=20)
            assign_now(sc.no_primary, user_id)
        fake_clock.advance(minutes=97)
    assign_now(sc.no_primary, "only-in-no-primary")
    fake_clock.advance(minutes=1)

    def activity(experiment_id: str, user_id: str, at: datetime) -> None:
        add = sc.events.append
        add(Ev(experiment_id, user_id, "view", at - timedelta(seconds=1)))  # before: never counted
        add(Ev(experiment_id, user_id, "view", at))  # exactly at: counted
        for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
            when = at + timedelta(minutes=rng.randint(0, 3_000), microseconds=rng.randint(0, 999_999))
            add(Ev(experiment_id, user_id, "purchase", when, rng.choice([None, 9.99, 20.0, 0.5, 125.25])))
        if rng.random() < 0.5:
            add(Ev(experiment_id, user_id, "signup", at + timedelta(minutes=rng.randint(1, 900))))
        if rng.random() < 0.3:
            add(Ev(experiment_id, user_id, "purchase", at - timedelta(microseconds=1), 1000.0))  # before

    for user_id in sc.users:
        for experiment in (sc.three_arms, sc.no_primary):
            assigned = sc.assignments[experiment["id"]].get(user_id)
            if assigned is not None:
                activity(experiment["id"], user_id, assigned[1])
            else:  # events of a user not assigned in this experiment: stored, never counted
                activity(experiment["id"], user_id, T0 + timedelta(hours=rng.randint(0, 60)))
    for g in range(5):  # users never assigned anywhere
        for experiment in (sc.three_arms, sc.no_primary):
            activity(experiment["id"], f"ghost-{g}", T0 + timedelta(hours=7 * g))
    activity(e1, "only-in-no-primary", T0 + timedelta(hours=30))
    activity(e2, "only-in-no-primary", sc.assignments[e2]["only-in-no-primary"][1])

    payloads = [_payload(e) for e in sc.events]
    rng.shuffle(payloads)
    half = len(payloads) // 2
    for chunk in (payloads[:half], payloads[half:]):
        response = client.post("/events", json={"events": chunk})
        assert response.json() == {"accepted": len(chunk), "duplicates": 0}
    return sc


def _pooled_z(x1: int, n1: int, x2: int, n2: int) -> tuple[float | None, float | None]:
    if n1 == 0 or n2 == 0:
        return None, None
    pooled = (x1 + x2) / (n1 + n2)
    variance = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    if variance == 0:
        return None, None
    z = (x2 / n2 - x1 / n1) / math.sqrt(variance)
    return z, 2 * stats.norm.sf(abs(z))


def _newcombe(x1: int, n1: int, x2: int, n2: int) -> tuple[float | None, float | None]:
    if n1 == 0 or n2 == 0:
        return None, None
    # statsmodels' "newcomb" is Newcombe's hybrid score (method 10) for count1/nobs1 - count2/nobs2.
    lower, upper = confint_proportions_2indep(x2, n2, x1, n1, method="newcomb", compare="diff")
    return float(lower), float(upper)


def _welch(control: list[float], variant: list[float]) -> dict:
    out: dict[str, Any] = {
        "absolute_lift": None, "relative_lift": None, "t_statistic": None, "p_value": None,
        "significant": False,
        "confidence_interval": {"level": 0.95, "method": "welch", "lower": None, "upper": None},
    }
    if not control or not variant:
        return out
    m1, m2 = statistics.fmean(control), statistics.fmean(variant)
    out["absolute_lift"] = m2 - m1
    out["relative_lift"] = (m2 - m1) / m1 if m1 else None
    if len(control) < 2 or len(variant) < 2:
        return out
    if statistics.variance(control) == 0 and statistics.variance(variant) == 0:
        return out
    test = stats.ttest_ind(variant, control, equal_var=False)
    interval = test.confidence_interval(0.95)
    out.update(t_statistic=float(test.statistic), p_value=float(test.pvalue), significant=bool(test.pvalue < 0.05))
    out["confidence_interval"].update(lower=float(interval.low), upper=float(interval.high))
    return out


def expected_results(
    sc: Scenario,
    experiment: dict,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    event_type: str | None = None,
    variant_id: str | None = None,
    primary: str | None = None,
) -> dict:
    """The contract's counting rule and statistics, computed from the raw scenario."""
    eid = experiment["id"]
    assigned = sc.assignments[eid]
    primary_type = primary or experiment["primary_event_type"] or event_type
    counted = [
        e
        for e in sc.events
        if e.experiment_id == eid
        and e.user_id in assigned
        and e.ts >= assigned[e.user_id][1]
        and (start is None or e.ts >= start)
        and (end is None or e.ts <= end)
    ]
    rows, totals = {}, {}
    for v in experiment["variants"]:
        users = [u for u, (vid, at) in assigned.items() if vid == v["id"] and (end is None or at <= end)]
        mine = [e for e in counted if assigned[e.user_id][0] == v["id"]]
        shown = [e for e in mine if event_type is None or e.event_type == event_type]
        prim = [e for e in mine if primary_type is None or e.event_type == primary_type]
        per_user = dict.fromkeys(users, 0.0)
        for e in prim:
            per_user[e.user_id] += e.value or 0.0  # KeyError: an event counted for an uncounted user
        totals[v["id"]] = list(per_user.values())
        value_sum = math.fsum(e.value or 0.0 for e in prim)
        converters = len({e.user_id for e in prim})
        rows[v["id"]] = {
            "variant_id": v["id"],
            "variant_name": v["name"],
            "is_control": v["is_control"],
            "users": len(users),
            "events": len(shown),
            "unique_users_with_events": len({e.user_id for e in shown}),
            "event_counts": dict(Counter(e.event_type for e in shown)),
            "primary_event_count": len(prim),
            "primary_unique_users": converters,
            "primary_conversion_rate": converters / len(users) if users else None,
            "value_sum": value_sum,
            "value_per_user": value_sum / len(users) if users else None,
        }
    control = next(v for v in experiment["variants"] if v["is_control"])
    c = rows[control["id"]]
    comparisons = []
    for v in experiment["variants"]:
        if v["is_control"]:
            continue
        r = rows[v["id"]]
        x1, n1, x2, n2 = c["primary_unique_users"], c["users"], r["primary_unique_users"], r["users"]
        rate1, rate2 = c["primary_conversion_rate"], r["primary_conversion_rate"]
        absolute = rate2 - rate1 if rate1 is not None and rate2 is not None else None
        z, p = _pooled_z(x1, n1, x2, n2)
        lower, upper = _newcombe(x1, n1, x2, n2)
        comparisons.append({
            "variant_id": v["id"],
            "baseline_variant_id": control["id"],
            "absolute_lift": absolute,
            "relative_lift": absolute / rate1 if absolute is not None and rate1 else None,
            "z_score": z,
            "p_value": p,
            "p_value_adjusted": None,
            "significant": bool(p is not None and p < 0.05),
            "confidence_interval": {"level": 0.95, "method": "newcombe", "lower": lower, "upper": upper},
            "value": _welch(totals[control["id"]], totals[v["id"]]),
        })
    defined = [i for i, comp in enumerate(comparisons) if comp["p_value"] is not None]
    if defined:
        adjusted = multipletests([comparisons[i]["p_value"] for i in defined], method="holm")[1]
        for i, p_adj in zip(defined, adjusted, strict=True):
            comparisons[i]["p_value_adjusted"] = float(p_adj)
    # SRM: over the whole experiment, variants with traffic above 0.
    active = [(rows[v["id"]]["users"], v["traffic_percentage"]) for v in experiment["variants"] if v["traffic_percentage"] > 0]
    n_total = sum(n for n, _ in active)
    srm: dict[str, Any] = {"chi_square": None, "p_value": None, "mismatch": False}
    if n_total and len(active) >= 2:
        share = sum(s for _, s in active)
        chi = stats.chisquare([n for n, _ in active], f_exp=[n_total * s / share for _, s in active])
        srm = {"chi_square": float(chi.statistic), "p_value": float(chi.pvalue), "mismatch": bool(chi.pvalue < 0.001)}
    shown_ids = [v["id"] for v in experiment["variants"] if variant_id in (None, v["id"])]
    variant_rows = [rows[i] for i in shown_ids]
    return {
        "experiment": experiment,
        "filters": {
            "start_date": start,
            "end_date": end,
            "event_type": event_type,
            "variant_id": variant_id,
            "primary_event_type": primary_type,
        },
        "summary": {
            "total_users": sum(r["users"] for r in variant_rows),
            "total_events": sum(r["events"] for r in variant_rows),
            "srm": srm,
        },
        "variants": variant_rows,
        "comparisons": [comp for comp in comparisons if comp["variant_id"] in shown_ids],
    }


def assert_matches(actual: Any, expected: Any, path: str = "$") -> None:
    """Every expected key present and equal (floats to 1e-9 relative); None must be null."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: {actual!r}"
        if path.endswith("event_counts"):
            assert actual == expected, path
        for key, value in expected.items():
            assert key in actual, f"{path}.{key} is missing"
            assert_matches(actual[key], value, f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{path}: {actual!r}"
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_matches(a, e, f"{path}[{i}]")
    elif expected is None:
        assert actual is None, f"{path}: {actual!r} should be null"
    elif isinstance(expected, bool):
        assert actual is expected, f"{path}: {actual!r} != {expected!r}"
    elif isinstance(expected, datetime):
        assert actual is not None and parse_ts(actual) == expected, f"{path}: {actual!r} != {expected}"
    elif isinstance(expected, float):
        assert isinstance(actual, int | float) and not isinstance(actual, bool), f"{path}: {actual!r}"
        assert actual == pytest.approx(expected, rel=1e-9, abs=1e-12), f"{path}: {actual!r} != {expected!r}"
    else:
        assert actual == expected and type(actual) is type(expected), f"{path}: {actual!r} != {expected!r}"


UTC_PLUS_2 = timezone(timedelta(hours=2))
UTC_PLUS_1 = timezone(timedelta(hours=1))


def _three_arm_cases(sc: Scenario) -> dict[str, tuple[dict, dict]]:
    control, b, c = (v["id"] for v in sc.three_arms["variants"])
    pivot = sc.assignments[sc.three_arms["id"]][sc.users[10]][1]  # someone's exact assigned_at
    day2, day2_end = datetime(2026, 11, 29, tzinfo=UTC), datetime(2026, 11, 29, 23, 59, 59, 999_999, tzinfo=UTC)
    return {
        "no filters": ({}, {}),
        "start as a bare date": ({"start_date": "2026-11-29"}, {"start": day2}),
        "end as a bare date": ({"end_date": "2026-11-29"}, {"end": day2_end}),
        "end on the first day": (
            {"end_date": "2026-11-28"},
            {"end": datetime(2026, 11, 28, 23, 59, 59, 999_999, tzinfo=UTC)},
        ),
        "one whole day": ({"start_date": "2026-11-29", "end_date": "2026-11-29"}, {"start": day2, "end": day2_end}),
        "datetimes, Z and no offset": (
            {"start_date": "2026-11-28T18:30:00Z", "end_date": "2026-11-30T01:00:00"},
            {"start": datetime(2026, 11, 28, 18, 30, tzinfo=UTC), "end": datetime(2026, 11, 30, 1, tzinfo=UTC)},
        ),
        "end exactly at an assignment, +02:00": (
            {"end_date": pivot.astimezone(UTC_PLUS_2).isoformat()},
            {"end": pivot},
        ),
        "start exactly at an assignment": ({"start_date": iso(pivot)}, {"start": pivot}),
        "event_type filter": ({"event_type": "view"}, {"event_type": "view"}),
        "event_type matching nothing": ({"event_type": "nothing"}, {"event_type": "nothing"}),
        "primary_event_type overrides": ({"primary_event_type": "signup"}, {"primary": "signup"}),
        "event_type and primary override": (
            {"event_type": "signup", "primary_event_type": "view"},
            {"event_type": "signup", "primary": "view"},
        ),
        "variant_id of a treatment": ({"variant_id": b}, {"variant_id": b}),
        "variant_id of the control": ({"variant_id": control}, {"variant_id": control}),
        "variant_id with every other filter": (
            {"variant_id": c, "event_type": "purchase", "start_date": "2026-11-29", "end_date": "2026-11-30T12:00:00+01:00"},
            {"variant_id": c, "event_type": "purchase", "start": day2, "end": datetime(2026, 11, 30, 11, tzinfo=UTC)},
        ),
    }


def test_results_match_an_independent_computation(scenario: Scenario, subtests) -> None:
    sc, client = scenario, scenario.client
    for name, (params, expect) in _three_arm_cases(sc).items():
        with subtests.test(msg=name):
            actual = results(client, sc.three_arms["id"], **params)
            assert_matches(actual, expected_results(sc, sc.three_arms, **expect))
    no_primary_cases = {
        "no primary anywhere: any event": ({}, {}),
        "primary defaults to the event_type filter": ({"event_type": "signup"}, {"event_type": "signup"}),
        "primary param over the event_type filter": (
            {"event_type": "signup", "primary_event_type": "purchase"},
            {"event_type": "signup", "primary": "purchase"},
        ),
        "end bare date": ({"end_date": "2026-11-29"}, {"end": datetime(2026, 11, 29, 23, 59, 59, 999_999, tzinfo=UTC)}),
    }
    for name, (params, expect) in no_primary_cases.items():
        with subtests.test(msg=name):
            actual = results(client, sc.no_primary["id"], **params)
            assert_matches(actual, expected_results(sc, sc.no_primary, **expect))


def test_scenario_is_not_degenerate(scenario: Scenario) -> None:
    """Guards the scenario itself: the numbers the big test compares are real, not all null."""
    client = scenario.client
    report = results(client, scenario.three_arms["id"])
    assert [v["users"] for v in report["variants"]] == [9, 8, 7]
    for comparison in report["comparisons"]:
        assert comparison["z_score"] is not None and comparison["value"]["t_statistic"] is not None
        assert comparison["confidence_interval"]["lower"] is not None
    assert all(v["value_sum"] > 0 for v in report["variants"])
    # The counting rule excluded something: stored events outnumber counted ones.
    assert report["summary"]["total_events"] < sum(1 for e in scenario.events if e.experiment_id == scenario.three_arms["id"])


def test_variant_filter_keeps_srm_and_holm_over_the_whole_experiment(scenario: Scenario) -> None:
    client = scenario.client
    eid = scenario.three_arms["id"]
    whole = results(client, eid)
    b = scenario.three_arms["variants"][1]["id"]
    narrowed = results(client, eid, variant_id=b)
    assert [v["variant_id"] for v in narrowed["variants"]] == [b]
    assert [c["variant_id"] for c in narrowed["comparisons"]] == [b]
    assert narrowed["summary"]["srm"] == whole["summary"]["srm"]
    assert narrowed["comparisons"][0] == whole["comparisons"][0]
    assert narrowed["summary"]["total_users"] == whole["variants"][1]["users"]


@pytest.mark.parametrize(
    "params,field_name",
    [
        ({"variant_id": "not-a-variant"}, "variant_id"),
        ({"start_date": "yesterday"}, "start_date"),
        ({"end_date": "2026-02-30"}, "end_date"),
        ({"end_date": "2026-11-28T25:00:00"}, "end_date"),
        ({"start_date": "2026-11-29", "end_date": "2026-11-28"}, "start_date"),
        ({"start_date": "2026-11-28T12:00:01Z", "end_date": "2026-11-28T12:00:00Z"}, "start_date"),
        ({"event_type": ""}, "event_type"),
    ],
)
def test_bad_results_filters_are_422(client: TestClient, experiment: dict, params: dict, field_name: str) -> None:
    response = client.get(f"/experiments/{experiment['id']}/results", params=params)
    body = assert_problem(response, 422)
    assert field_name in {e["field"] for e in body["errors"]}


def test_results_of_unknown_experiment_is_404(client: TestClient) -> None:
    assert_problem(client.get("/experiments/nope/results"), 404)


COMPARISON_KEYS = {
    "variant_id", "baseline_variant_id", "absolute_lift", "relative_lift", "z_score", "p_value",
    "p_value_adjusted", "significant", "confidence_interval", "value",
}
VALUE_KEYS = {"absolute_lift", "relative_lift", "t_statistic", "p_value", "significant", "confidence_interval"}
VARIANT_KEYS = {
    "variant_id", "variant_name", "is_control", "users", "events", "unique_users_with_events",
    "event_counts", "primary_event_count", "primary_unique_users", "primary_conversion_rate",
    "value_sum", "value_per_user",
}


def assert_every_documented_field(report: dict) -> None:
    assert {"experiment", "filters", "summary", "variants", "comparisons"} <= set(report)
    assert {"start_date", "end_date", "event_type", "variant_id", "primary_event_type"} <= set(report["filters"])
    assert {"total_users", "total_events", "srm"} <= set(report["summary"])
    assert {"chi_square", "p_value", "mismatch"} <= set(report["summary"]["srm"])
    for row in report["variants"]:
        assert VARIANT_KEYS <= set(row)
    for comparison in report["comparisons"]:
        assert COMPARISON_KEYS <= set(comparison)
        assert VALUE_KEYS <= set(comparison["value"])
        assert {"level", "method", "lower", "upper"} <= set(comparison["confidence_interval"])
        assert comparison["confidence_interval"]["method"] == "newcombe"
        assert comparison["confidence_interval"]["level"] == 0.95
        assert {"level", "method", "lower", "upper"} <= set(comparison["value"]["confidence_interval"])
        assert comparison["value"]["confidence_interval"]["method"] == "welch"
        assert comparison["value"]["confidence_interval"]["level"] == 0.95


def test_empty_experiment_has_nulls_and_no_nan(client: TestClient) -> None:
    experiment = create_experiment(client, "empty", [("a", 30), ("b", 30), ("c", 40)], "purchase")
    response = client.get(f"/experiments/{experiment['id']}/results")
    assert response.status_code == 200
    assert "NaN" not in response.text and "Infinity" not in response.text
    report = response.json()
    assert_every_documented_field(report)
    assert report["summary"] == {
        "total_users": 0,
        "total_events": 0,
        "srm": {"chi_square": None, "p_value": None, "mismatch": False},
    }
    for row in report["variants"]:
        assert row["users"] == row["events"] == row["primary_unique_users"] == 0
        assert row["event_counts"] == {}
        assert row["primary_conversion_rate"] is None and row["value_per_user"] is None
        assert row["value_sum"] in (0, None)
    assert len(report["comparisons"]) == 2
    for comparison in report["comparisons"]:
        for key in ("absolute_lift", "relative_lift", "z_score", "p_value", "p_value_adjusted"):
            assert comparison[key] is None, key
        assert comparison["significant"] is False
        assert comparison["confidence_interval"]["lower"] is None
        assert comparison["confidence_interval"]["upper"] is None
        value = comparison["value"]
        for key in ("absolute_lift", "relative_lift", "t_statistic", "p_value"):
            assert value[key] is None, key
        assert value["significant"] is False
        assert value["confidence_interval"]["lower"] is None and value["confidence_interval"]["upper"] is None


def test_users_without_events_give_zero_rates_null_tests_and_a_defined_interval(client: TestClient) -> None:
    experiment = create_experiment(client, "quiet", [("a", 50), ("b", 50)], "purchase")
    for i in range(40):
        assign(client, experiment["id"], f"u-{i}")
    report = results(client, experiment["id"])
    assert_every_documented_field(report)
    assert all(row["primary_conversion_rate"] == 0.0 for row in report["variants"])
    (comparison,) = report["comparisons"]
    assert comparison["absolute_lift"] == 0.0
    assert comparison["relative_lift"] is None
    assert comparison["z_score"] is None and comparison["p_value"] is None
    assert comparison["p_value_adjusted"] is None and comparison["significant"] is False
    interval = comparison["confidence_interval"]
    assert interval["lower"] is not None and interval["lower"] < 0 < interval["upper"]
    assert comparison["value"]["t_statistic"] is None and comparison["value"]["absolute_lift"] == 0.0


def test_huge_values_never_give_nan_or_infinity(client: TestClient, experiment: dict) -> None:
    eid = experiment["id"]
    for i in range(6):
        assign(client, eid, f"u-{i}")
    batch = [event(eid, f"u-{i}", "buy", value=sign * 1e308) for i in range(6) for sign in (1, 1, -1)]
    assert client.post("/events", json={"events": batch}).status_code == 202
    response = client.get(f"/experiments/{eid}/results")
    assert response.status_code == 200
    assert "NaN" not in response.text and "Infinity" not in response.text
    assert_every_documented_field(response.json())


# ---------------------------------------------------------------------------------------------
# inputs that once gave a 500 or a wrong answer


@pytest.mark.parametrize(
    "path,raw",
    [
        ("/experiments", b'{"name": "\xff", "variants": []}'),
        ("/events", b'{"experiment_id": "e", "user_id": "\xc3\x28", "event_type": "view"}'),
    ],
    ids=["experiments", "events"],
)
def test_invalid_utf8_in_a_json_string_is_400(client: TestClient, path: str, raw: bytes) -> None:
    response = client.post(path, content=raw, headers={"Content-Type": "application/json"})
    assert_problem(response, 400)


@pytest.mark.parametrize(
    "path,raw",
    [
        ("/experiments", b'{"name": 5, "variants": ['),
        ("/experiments", b'{"name": "e"} trailing'),
        ("/experiments", b'{"name": "e", "variants": [{"name": 1}]] '),
    ],
    ids=["truncated", "trailing", "bracket"],
)
def test_malformed_json_after_a_type_error_is_still_400(client: TestClient, path: str, raw: bytes) -> None:
    response = client.post(path, content=raw, headers={"Content-Type": "application/json"})
    assert_problem(response, 400)


@pytest.mark.parametrize("number", [b"1e999", b"-1e999", b"1" + b"0" * 400])
def test_a_number_beyond_a_double_is_422_naming_the_field(client: TestClient, experiment: dict, number: bytes) -> None:
    # Well-formed JSON that no double holds: invalid input, not a malformed body.
    good = json.dumps(event(experiment["id"], "u-1")).encode()
    bad = good[:-1] + b', "value": ' + number + b"}"
    post = lambda raw: client.post("/events", content=raw, headers={"Content-Type": "application/json"})  # noqa: E731
    assert_problem(post(bad), 422, {"value"})
    assert_problem(post(b'{"events": [' + good + b", " + bad + b"]}"), 422, {"events[1].value"})
    variants = b'[{"name": "a", "traffic_percentage": ' + number + b'}, {"name": "b", "traffic_percentage": 50}]'
    response = client.post("/experiments", content=b'{"name": "n", "variants": ' + variants + b"}",
                           headers={"Content-Type": "application/json"})
    assert_problem(response, 422, {"variants[0].traffic_percentage"})


@pytest.mark.parametrize("timestamp", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_event_timestamp_out_of_range_in_utc_is_422(client: TestClient, experiment: dict, timestamp: str) -> None:
    single = client.post("/events", json=event(experiment["id"], "u-1", timestamp=timestamp))
    assert_problem(single, 422, {"timestamp"})
    batch = client.post("/events", json={"events": [event(experiment["id"], "u-1"), event(experiment["id"], "u-1", timestamp=timestamp)]})
    assert_problem(batch, 422, {"events[1].timestamp"})


@pytest.mark.parametrize(
    "params",
    [{"start_date": "0001-01-01T00:00:00+01:00"}, {"end_date": "9999-12-31T23:59:59-01:00"}],
    ids=["start", "end"],
)
def test_results_date_out_of_range_in_utc_is_422_naming_it(client: TestClient, experiment: dict, params: dict) -> None:
    response = client.get(f"/experiments/{experiment['id']}/results", params=params)
    problem = assert_problem(response, 422, set(params))
    assert "years 1 to 9999" in problem["errors"][0]["message"]


def test_an_inverted_range_and_a_batch_out_of_bounds_are_named_as_sent(client: TestClient, experiment: dict) -> None:
    # The core names its own parameters; the HTTP layer answers with the names the client sent.
    inverted = client.get(
        f"/experiments/{experiment['id']}/results", params={"start_date": "2026-11-29", "end_date": "2026-11-28"}
    )
    assert_problem(inverted, 422, {"start_date"})
    assert_problem(client.post("/events", json={"events": []}), 422, {"events"})
    too_many = {"events": [event(experiment["id"], f"u-{i}") for i in range(10_001)]}
    problem = assert_problem(client.post("/events", json=too_many), 422, {"events"})
    assert "got 10001" in problem["errors"][0]["message"]


def test_basic_format_bare_date_means_the_whole_day(client: TestClient, experiment: dict) -> None:
    response = client.get(f"/experiments/{experiment['id']}/results", params={"end_date": "20261128"})
    assert response.status_code == 200, response.text  # ISO 8601's basic format is taken
    assert parse_ts(response.json()["filters"]["end_date"]) == datetime(2026, 11, 28, 23, 59, 59, 999_999, tzinfo=UTC)


# ---------------------------------------------------------------------------------------------
# fuzz: no input, however malformed, gives a 5xx


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)
ALLOWED_FAILURES = {400, 404, 409, 413, 422}


def _check_status(response: httpx.Response, body: Any) -> None:
    assert response.status_code < 500, (body, response.text)
    if response.status_code >= 400:
        assert response.status_code in ALLOWED_FAILURES, (body, response.status_code)
        assert response.headers["content-type"].startswith(PROBLEM_JSON)


FUZZ = settings(max_examples=80, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])


def test_fuzz_json_bodies_never_give_5xx(client: TestClient, experiment: dict) -> None:
    eid = experiment["id"]
    shaped_experiments = st.fixed_dictionaries(
        {"name": st.text(max_size=5) | json_values,
         "variants": st.lists(
             st.fixed_dictionaries({"name": st.text(max_size=3) | json_values,
                                    "traffic_percentage": st.floats() | st.integers() | json_values},
                                   optional={"is_control": json_values}),
             max_size=4) | json_values},
        optional={"description": json_values, "primary_event_type": json_values},
    )
    shaped_event = st.fixed_dictionaries(
        {"experiment_id": st.sampled_from([eid, "nope"]) | json_values,
         "user_id": st.text(max_size=5) | json_values,
         "event_type": st.text(max_size=5) | json_values},
        optional={"value": st.floats() | json_values, "properties": json_values,
                  "event_id": st.text(max_size=5) | json_values, "timestamp": st.text(max_size=30) | json_values},
    )

    @FUZZ
    @given(body=json_values | shaped_experiments)
    def experiments(body: Any) -> None:
        raw = json.dumps(body).encode()  # NaN/Infinity become non-JSON tokens: a 400 then
        _check_status(client.post("/experiments", content=raw, headers={"Content-Type": "application/json"}), body)

    @FUZZ
    @given(body=json_values | shaped_event | st.fixed_dictionaries({"events": st.lists(shaped_event | json_values, max_size=4) | json_values}))
    def events(body: Any) -> None:
        raw = json.dumps(body).encode()
        _check_status(client.post("/events", content=raw, headers={"Content-Type": "application/json"}), body)

    experiments()
    events()


def test_fuzz_random_bytes_never_give_5xx(client: TestClient) -> None:
    @settings(max_examples=40, deadline=None, derandomize=True, database=None)
    @given(raw=st.binary(max_size=64), path=st.sampled_from(["/experiments", "/events"]))
    def post(raw: bytes, path: str) -> None:
        _check_status(client.post(path, content=raw, headers={"Content-Type": "application/json"}), raw)

    post()
