"""Results under a burst, over HTTP: a bound on the results computed at once, 503 with
Retry-After past it and for a read the store stopped, the other routes answering meanwhile,
and a client that disconnects cancelling its read (README.md, Results under load).

The store is the memory store behind a gate the test opens: a results read waits at the gate,
so the test decides how many are under way at once, as a slow database would."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from dependency_injector import providers

from adapters.memory.store import MemoryStore
from domain.errors import ReadTimedOut
from entrypoints.config.container import Container
from entrypoints.http.app import create_app
from tests.e2e.conftest import AUTH, TOKEN, build_container
from tests.factories import create_experiment_async
from tests.polling import eventually_async

WAIT = 5.0


class GatedStore:
    """The memory store, whose results reads wait until ``gate`` opens (or fail with ``fail``)."""

    def __init__(self) -> None:
        self._store = MemoryStore()
        self.gate = asyncio.Event()
        self.reading = 0  # results reads waiting at the gate now
        self.cancelled = 0
        self.fail: Exception | None = None

    async def _through_gate(self) -> None:
        if self.fail is not None:
            raise self.fail
        self.reading += 1
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.reading -= 1

    async def variant_aggregates(self, experiment: Any, query: Any) -> Any:
        await self._through_gate()
        return await self._store.variant_aggregates(experiment, query)

    async def holdout_outcomes(self, holdout_id: str, event_type: str) -> Any:
        await self._through_gate()
        return await self._store.holdout_outcomes(holdout_id, event_type)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@pytest.fixture
def store() -> GatedStore:
    return GatedStore()


@pytest.fixture
def make_app(store: GatedStore) -> Callable[..., Container]:
    def make(**settings: Any) -> Container:
        container = build_container("memory://", **settings)
        container.store.override(providers.Object(store))
        return container

    return make


@pytest.fixture
async def open_client(make_app: Callable[..., Container]) -> AsyncIterator[Callable[..., Any]]:
    opened: list[httpx.AsyncClient] = []

    async def open_(**settings: Any) -> tuple[httpx.AsyncClient, Any]:
        app = create_app(make_app(**settings))
        transport = httpx.ASGITransport(app=app)
        client = httpx.AsyncClient(transport=transport, base_url="http://testserver", headers=AUTH)
        opened.append(client)
        return client, app

    yield open_
    for client in opened:
        await client.aclose()




async def new_experiment(client: httpx.AsyncClient, **extra: Any) -> str:
    return (await create_experiment_async(client, split=[("control", 50), ("b", 50)], primary="buy", **extra))["id"]


def assert_busy(response: httpx.Response, retry_after: str = "1") -> dict:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == retry_after
    problem = response.json()
    assert problem["status"] == 503 and problem["title"] == "Service Unavailable"
    return problem


async def test_past_the_bound_results_are_503_with_retry_after_and_other_routes_still_answer(
    open_client: Any, store: GatedStore
) -> None:
    client, _ = await open_client(results_max_concurrent=2, results_queue_seconds=0)
    response = await client.post("/holdouts", json={"name": "h", "percentage": 10})
    holdout = response.json()["id"]
    x = await new_experiment(client, holdout_id=holdout)
    # Two different results (the same one asked twice at once may share one read).
    running = [asyncio.create_task(client.get(f"/experiments/{x}/results", params=p))
               for p in ({}, {"event_type": "buy"})]
    await eventually_async(lambda: store.reading == 2, WAIT)

    problem = assert_busy(await client.get(f"/experiments/{x}/results"))
    assert "results are busy" in problem["detail"]
    # Holdout results share the bound.
    assert_busy(await client.get(f"/holdouts/{holdout}/results", params={"event_type": "buy"}))

    # Everything else answers meanwhile.
    assert (await client.get(f"/experiments/{x}")).status_code == 200
    assert (await client.get(f"/experiments/{x}/assignment/u-1")).status_code == 200
    stamp = datetime(2026, 11, 28, tzinfo=UTC).isoformat()
    event = {"experiment_id": x, "user_id": "u-1", "event_type": "buy", "timestamp": stamp}
    assert (await client.post("/events", json=event)).status_code == 202
    assert (await client.get("/health")).status_code == 200
    # A results request that is refused before the read (an unknown experiment) is not busy.
    assert (await client.get("/experiments/nope/results")).status_code == 404

    store.gate.set()
    for answer in await asyncio.gather(*running):
        assert answer.status_code == 200, answer.text
    assert (await client.get(f"/experiments/{x}/results")).status_code == 200


async def test_a_request_past_the_bound_waits_up_to_the_queue_time_for_a_slot(
    open_client: Any, store: GatedStore
) -> None:
    client, _ = await open_client(results_max_concurrent=1, results_queue_seconds=WAIT)
    x = await new_experiment(client)
    first = asyncio.create_task(client.get(f"/experiments/{x}/results"))
    await eventually_async(lambda: store.reading == 1, WAIT)
    second = asyncio.create_task(client.get(f"/experiments/{x}/results"))
    await asyncio.sleep(0.1)
    assert not second.done() and store.reading == 1  # queued for the slot, not at the store
    store.gate.set()
    assert (await first).status_code == 200
    assert (await second).status_code == 200


async def test_a_read_the_store_stopped_is_503_with_retry_after_the_timeout(
    open_client: Any, store: GatedStore
) -> None:
    client, _ = await open_client()
    x = await new_experiment(client)
    store.fail = ReadTimedOut(2.5)
    problem = assert_busy(await client.get(f"/experiments/{x}/results"), retry_after="3")
    assert "2.5 s" in problem["detail"]
    # The slot it held is free again.
    store.fail = None
    store.gate.set()
    assert (await client.get(f"/experiments/{x}/results")).status_code == 200


async def test_a_client_that_disconnects_cancels_its_results_read(
    open_client: Any, store: GatedStore
) -> None:
    client, app = await open_client(results_max_concurrent=1, results_queue_seconds=0)
    x = await new_experiment(client)
    gone = asyncio.Event()
    sent: list[dict] = []
    requested = False

    async def receive() -> dict:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    path = f"/experiments/{x}/results"
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"authorization", f"Bearer {TOKEN}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    request = asyncio.create_task(app(scope, receive, send))
    await eventually_async(lambda: store.reading == 1, WAIT)
    gone.set()
    await asyncio.wait_for(request, WAIT)
    assert store.cancelled == 1 and store.reading == 0
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert [m["status"] for m in starts] == [499]  # what the log and metrics record
    # The slot was given back: the next request is computed, not refused.
    store.gate.set()
    response = await client.get(path)
    assert response.status_code == 200, response.text
