"""Assignment: the documented hash, stickiness, races, the split over thousands of users. End to
end, through the real app in-process (routes, auth, DI container, SQLite migrated by Alembic, a
clock the tests move), against the contract (../shared/API.md)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import timedelta

import httpx
import pytest
from litestar.testing import TestClient
from scipy import stats

from tests.e2e.helpers import (
    T0,
    assert_problem,
    assign,
    documented_bucket,
    expected_variant,
    parse_ts,
)
from tests.factories import create_experiment, create_experiment_async
from tests.fakes import FakeClock

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


