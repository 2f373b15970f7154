"""The assignment lane (``AssignmentLane``): a user's variant fetched by GET is answered in front of
the router when the Authorization header alone settles the caller. Every outcome it answers must
be the router's answer, byte for byte; every caller it must not settle goes to the router."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from dependency_injector import providers
from litestar.testing import TestClient

from application.assignment import AssignUser
from domain.assignment import Answer
from entrypoints.config.settings import RATE_LIMIT_DEFAULTS
from entrypoints.http.app import create_app
from tests.e2e.helpers import assert_problem, requests, scrape
from tests.e2e.conftest import AUTH, build_container
from tests.factories import create_experiment
from tests.fakes import FakeClock

ROUTE = "/experiments/{experiment_id}/assignment/{user_id}"
NO_LIMITS = dict.fromkeys(RATE_LIMIT_DEFAULTS)


def both_ways(client: TestClient, experiment_id: str, user_id: str, **headers: str) -> tuple[httpx.Response, httpx.Response]:
    """The same request by the lane, then by the router (a query string sends it there:
    Litestar ignores what this route does not read)."""
    path = f"/experiments/{quote(experiment_id, safe='')}/assignment/{quote(user_id, safe='')}"
    return client.get(path, headers=headers), client.get(path + "?by=router", headers=headers)


def assert_same(lane: httpx.Response, router: httpx.Response) -> None:
    def kept(response: httpx.Response) -> dict[str, str]:
        return {k: v for k, v in response.headers.items() if k not in ("x-request-id", "date")}

    assert (lane.status_code, kept(lane), lane.content) == (router.status_code, kept(router), router.content)


def test_every_outcome_of_the_lane_is_the_routers_byte_for_byte(client: TestClient) -> None:
    experiment = create_experiment(client, "lane", [("a", 50), ("b", 50)])
    x = experiment["id"]
    first, again = both_ways(client, x, "u-1")  # decided and stored by the lane, then read back
    assert first.status_code == 200 and first.json()["reason"] == "assigned"
    assert_same(first, again)
    for user_id in ("u-1", "ü ñ", "a:b", "100%", "x" * 256):
        assert_same(*both_ways(client, x, user_id))
    forced = experiment["variants"][1]["id"]
    assert client.put(f"/experiments/{x}/assignment/u-2", json={"variant_id": forced}).status_code == 200
    lane, router = both_ways(client, x, "u-2")
    assert lane.json()["reason"] == "forced"
    assert_same(lane, router)
    # Errors the use case raises: the lane hands them to the handler, Litestar answers them.
    for lane, router in (both_ways(client, "no-such-experiment", "u-1"), both_ways(client, x, "x" * 257)):
        assert lane.status_code in (404, 422)
        assert_same(lane, router)
    assert_problem(both_ways(client, x, "x" * 257)[0], 422, {"user_id"})
    assert client.patch(f"/experiments/{x}", json={"status": "paused"}).status_code == 200
    lane, router = both_ways(client, x, "u-3")
    assert lane.json()["reason"] == "paused"
    assert_same(lane, router)


def test_lane_requests_are_counted_and_timed_under_the_routes_template(client: TestClient) -> None:
    x = create_experiment(client, "counted", [("a", 50), ("b", 50)])["id"]
    _, before = scrape(client)
    for user_id in ("u-1", "u-1", "u-2"):
        assert client.get(f"/experiments/{x}/assignment/{user_id}").status_code == 200
    assert client.get("/experiments/missing/assignment/u-1").status_code == 404
    _, after = scrape(client)
    assert requests(after, ROUTE, 200) - requests(before, ROUTE, 200) == 3
    assert requests(after, ROUTE, 404) - requests(before, ROUTE, 404) == 1


@pytest.mark.parametrize(("scopes", "status"), [(["assign"], 200), (["read", "ingest"], 403)])
def test_a_key_is_held_to_its_scope_whichever_way_it_goes(
    make_client: Callable[..., TestClient], database_url: str, scopes: list[str], status: int
) -> None:
    """With no rate limits a cached key is settled by its header alone, so the lane answers it:
    only with the assign scope; without it the router refuses, as for every other route."""
    client = make_client(database_url, FakeClock(), rate_limits=NO_LIMITS)
    x = create_experiment(client, "keyed", [("a", 50), ("b", 50)])["id"]
    secret = client.post("/keys", json={"name": "k", "scopes": scopes}).json()["key"]
    client.get("/experiments", headers={"Authorization": f"Bearer {secret}"})  # the key ring learns it
    lane, router = both_ways(client, x, "u-1", Authorization=f"Bearer {secret}")
    assert lane.status_code == status
    assert_same(lane, router)


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Basic dGVzdA==", "Bearer "])
def test_a_caller_the_lane_cannot_settle_gets_the_routers_answer(client: TestClient, authorization: str | None) -> None:
    x = create_experiment(client, "refused", [("a", 50), ("b", 50)])["id"]
    headers = {"Authorization": authorization or ""}
    lane, router = both_ways(client, x, "u-1", **headers)
    assert lane.status_code == 401
    assert_same(lane, router)


def test_an_error_through_the_lane_asks_the_use_case_once(database_url: str) -> None:
    """The lane hands what the use case raised to the handler instead of letting the handler
    ask again: one call of the use case per request, whichever way it went."""
    container = build_container(database_url, FakeClock())
    calls: list[str] = []

    class Counted(AssignUser):  # the handler's dependency is checked to be an AssignUser
        def __init__(self, real: AssignUser) -> None:
            self._real = real

        async def __call__(self, experiment_id: str, user_id: str, attributes: Any = None) -> Answer:
            calls.append(experiment_id)
            return await self._real(experiment_id, user_id, attributes)

    container.assign_user.override(providers.Object(Counted(container.assign_user())))
    with TestClient(create_app(container)) as client:
        client.headers.update(AUTH)
        for path in ("/experiments/missing/assignment/u-1", "/experiments/missing/assignment/u-1?by=router",
                     "/experiments/missing/assignment/u-1"):
            before = len(calls)
            assert client.get(path).status_code == 404
            assert len(calls) - before == 1, path
