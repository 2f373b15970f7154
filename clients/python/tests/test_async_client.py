"""The async client: the same endpoints as the sync one, sending the same requests and
reading the same answers (both are built on the same Calls), and the same retries, awaited."""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest
from experiments_client import (
    AsyncClient,
    Client,
    Exposure,
    NotFound,
    TransportError,
    ValidationError,
)
from fake_service import NOW, TOKEN, FakeService, answer, lose_answer, refuse, segments

URL = "http://experiments.test"
TWO_VARIANTS = [
    {"name": "control", "traffic_percentage": 50, "is_control": True},
    {"name": "green", "traffic_percentage": 50},
]
# The fake numbers what it makes in order: the experiment, its two variants, its audit entry…
EXPERIMENT, CONTROL, GREEN, KEY, LAYER, HOLDOUT = (
    "id0001",
    "id0002",
    "id0003",
    "id0005",
    "id0007",
    "id0008",
)

EVERY_ENDPOINT: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
    ("health", (), {}),
    (
        "create_experiment",
        ({"name": "checkout", "variants": TWO_VARIANTS},),
        {"primary_event_type": "buy"},
    ),
    ("list_experiments", (), {"limit": 10}),
    ("get_experiment", (EXPERIMENT,), {}),
    ("update_experiment", (EXPERIMENT,), {"description": "changed", "coverage": 50}),
    ("assign", (EXPERIMENT, "u 1 ü?"), {}),
    ("assign", (EXPERIMENT, "u-2"), {"attributes": {"plan": "pro"}}),
    ("force_assignment", (EXPERIMENT, "qa 1", GREEN), {}),
    ("remove_override", (EXPERIMENT, "qa 1"), {}),
    (
        "track",
        ({"experiment_id": EXPERIMENT, "user_id": "u-1", "event_type": "buy", "event_id": "e1"},),
        {},
    ),
    (
        "track",
        ([{"experiment_id": EXPERIMENT, "user_id": "u-2", "event_type": "buy", "event_id": "e2"}],),
        {},
    ),
    ("record_exposures", ([Exposure(EXPERIMENT, "u-3", CONTROL, NOW)],), {}),
    ("definitions", (), {}),
    (
        "results",
        (EXPERIMENT,),
        {"method": "sequential", "start_date": "2026-11-01", "prior_sd": 0.2},
    ),
    ("power", ({"mde": 0.05},), {"baseline_rate": 0.1}),
    ("create_key", ("k", ["read"]), {"expires_at": "2027-01-01T00:00:00Z"}),
    ("list_keys", (), {"limit": 5, "offset": 0}),
    ("get_key", (KEY,), {}),
    ("revoke_key", (KEY,), {}),
    ("audit", (), {"action": "key.created", "target_id": KEY}),
    ("create_layer", ("checkout page",), {}),
    ("list_layers", (), {}),
    ("get_layer", (LAYER,), {}),
    ("create_holdout", ("global", 5), {}),
    ("list_holdouts", (), {}),
    ("get_holdout", (HOLDOUT,), {}),
    ("holdout_results", (HOLDOUT, "buy"), {}),
    ("metrics", (), {}),
]


def wire(request: httpx.Request) -> tuple[str, bytes, bytes, str | None]:
    return (
        request.method,
        request.url.raw_path,
        request.content,
        request.headers.get("Authorization"),
    )


@pytest.fixture
async def client(service: FakeService, delays: list[float]) -> AsyncIterator[AsyncClient]:
    async def sleep(seconds: float) -> None:
        delays.append(seconds)

    async with AsyncClient(
        URL, TOKEN, transport=service.transport(), sleep=sleep, jitter=lambda: 0.5
    ) as c:
        yield c


def test_both_clients_have_the_same_endpoints() -> None:
    def endpoints(kind: type) -> dict[str, list[str]]:
        return {
            name: list(inspect.signature(method).parameters)
            for name, method in vars(kind).items()
            if callable(method) and not name.startswith("_")
        }

    sync, async_ = endpoints(Client), endpoints(AsyncClient)
    sync["aclose"] = sync.pop("close")
    assert sync == async_
    assert {name for name, _, _ in EVERY_ENDPOINT} == set(sync) - {
        "aclose",
        "iter_experiments",
        "iter_keys",
    }


async def test_every_endpoint_sends_what_the_sync_client_sends_and_reads_the_same(
    client: AsyncClient, service: FakeService
) -> None:
    sync_service = FakeService()
    sync_answers, async_answers = [], []
    with Client(URL, TOKEN, transport=sync_service.transport()) as sync:
        for name, args, kwargs in EVERY_ENDPOINT:
            sync_answers.append(msgspec.to_builtins(getattr(sync, name)(*args, **kwargs)))
            async_answers.append(msgspec.to_builtins(await getattr(client, name)(*args, **kwargs)))
    assert len(service.requests) == len(EVERY_ENDPOINT)
    assert [wire(r) for r in service.requests] == [wire(r) for r in sync_service.requests]
    assert async_answers == sync_answers
    assert sync_answers[1]["id"] == EXPERIMENT and sync_answers[15]["id"] == KEY  # the ids assumed
    assert sync_answers[20]["id"] == LAYER and sync_answers[23]["id"] == HOLDOUT


async def test_iter_experiments_reads_every_page(client: AsyncClient, service: FakeService) -> None:
    ids = [
        (await client.create_experiment(name=f"e{i}", variants=TWO_VARIANTS)).id for i in range(5)
    ]
    assert [e.id async for e in client.iter_experiments(page_size=2)] == ids[::-1]
    assert [k.id async for k in client.iter_keys()] == []


async def test_user_ids_are_quoted(client: AsyncClient, service: FakeService) -> None:
    experiment = await client.create_experiment(name="x", variants=TWO_VARIANTS)
    for user_id in ("q?x=1", "with space", "ünïcødé 用户", "50%"):
        assert (await client.assign(experiment.id, user_id)).user_id == user_id
        assert segments(service.requests[-1])[-1] == user_id


async def test_a_304_means_the_definitions_are_current(
    client: AsyncClient, service: FakeService
) -> None:
    await client.create_experiment(name="x", variants=TWO_VARIANTS)
    definitions, etag = await client.definitions()
    assert definitions is not None and len(definitions.experiments) == 1
    assert await client.definitions(etag) == (None, etag)
    assert service.requests[-1].headers["If-None-Match"] == etag


async def test_errors_are_those_of_the_sync_client(client: AsyncClient) -> None:
    with pytest.raises(NotFound):
        await client.get_experiment("missing")
    with pytest.raises(ValidationError) as caught:
        await client.create_experiment(name="", variants=[])
    assert [e.field for e in caught.value.errors] == ["name", "variants"]


async def test_retries_are_awaited(
    client: AsyncClient, service: FakeService, delays: list[float]
) -> None:
    service.fail_next(
        answer(503, retry_after="1"), answer(429, retry_after="2"), refuse(httpx.ConnectError)
    )
    assert (await client.list_experiments()).total == 0
    assert delays == [1.0, 2.0, 0.2]  # the third wait is the backoff's: 0.5 of 0.4
    assert len(service.requests) == 4


async def test_creating_is_not_retried_after_a_lost_answer(
    client: AsyncClient, service: FakeService, delays: list[float]
) -> None:
    service.fail_next(lose_answer(httpx.ReadTimeout))
    with pytest.raises(TransportError):
        await client.create_experiment(name="x", variants=TWO_VARIANTS)
    assert len(service.requests) == 1 and delays == [] and len(service.experiments) == 1


async def test_an_event_batch_is_retried_with_the_same_ids(
    client: AsyncClient, service: FakeService
) -> None:
    experiment = await client.create_experiment(name="x", variants=TWO_VARIANTS)
    service.fail_next(lose_answer(httpx.ReadTimeout))
    outcome = await client.track(
        [{"experiment_id": experiment.id, "user_id": "u", "event_type": "buy"}]
    )
    first, second = (
        json.loads(r.content)["events"][0]["event_id"] for r in service.sent("POST", "/events")
    )
    assert first == second and (outcome.accepted, outcome.duplicates) == (0, 1)
