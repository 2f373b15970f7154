"""Creating, listing and reading experiments: the body's rules, its errors, paging. End to end,
through the real app in-process (routes, auth, DI container, SQLite migrated by Alembic, a clock
the tests move), against the contract (../shared/API.md)."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import TestClient

from tests.e2e.helpers import T0, assert_problem, parse_ts
from tests.factories import create_experiment, experiment_body
from tests.fakes import FakeClock

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


