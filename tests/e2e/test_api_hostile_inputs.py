"""Inputs that once gave a 500 or a wrong answer, and fuzzed bodies: none gives a 5xx. End to end,
through the real app in-process (routes, auth, DI container, SQLite migrated by Alembic, a clock
the tests move), against the contract (../shared/API.md)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient

from tests.e2e.helpers import PROBLEM_JSON, assert_problem, event, parse_ts

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
