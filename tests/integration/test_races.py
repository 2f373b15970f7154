"""Races that only a lock or a version check wins, run for real: each test fails if its guard
is taken away (the layer row's lock, the experiment's version)."""

from __future__ import annotations

import asyncio
from itertools import combinations

import httpx

from adapters.memory.cache import MemoryCache
from adapters.sqlalchemy.engine import create_engine_for
from adapters.sqlalchemy.store import SqlStore
from application.experiments import CreateExperiment
from domain.errors import ConcurrentChange
from domain.experiment import VariantDraft
from domain.layers import Layer, LayerFull
from tests.factories import experiment_body
from tests.fakes import FakeClock, SequentialIds
from tests.integration.conftest import ServerProcess

ATTEMPTS = 24  # all at once: 24 × 10% of a layer that holds 10


async def test_concurrent_creations_in_one_layer_never_share_a_bucket(database_url: str) -> None:
    """On PostgreSQL two stores, each with its own pool, as two instances of the service; on
    SQLite one, as one process is its one writer (two stores in one event loop would wait on
    each other's write lock)."""
    creators_count = 2 if database_url.startswith("postgresql") else 1
    stores = [SqlStore(create_engine_for(database_url)) for _ in range(creators_count)]
    try:
        layer = Layer("L", "checkout", "seed", FakeClock().now())
        await stores[0].add_layer(layer)
        creators = [
            CreateExperiment(store, MemoryCache(), FakeClock(), SequentialIds(f"s{i}-"))
            for i, store in enumerate(stores)
        ]

        async def create(creator: CreateExperiment, n: int) -> str:
            try:
                experiment = await creator(
                    actor="ci", name=f"x-{id(creator)}-{n}", layer_id="L", layer_percentage=10,
                    variants=[VariantDraft("a", 50), VariantDraft("b", 50)],
                )
            except (LayerFull, ConcurrentChange) as refused:  # the layer filled up, or kept moving
                return type(refused).__name__
            return experiment.id

        outcomes = await asyncio.gather(
            *(create(creators[n % len(creators)], n) for n in range(ATTEMPTS))
        )
        slices = await stores[0].layer_slices("L")
        created = [o for o in outcomes if o not in ("LayerFull", "ConcurrentChange")]
        assert sorted(x for x, _ in slices) == sorted(created)
        # Those that lost every retry to another creation gave up: the layer need not be full.
        assert 1 <= len(created) <= 10
        for (_, one), (_, other) in combinations(slices, 2):
            assert not one.overlaps(other), (one, other)
    finally:
        for store in stores:
            await store.close()


async def test_concurrent_patches_lose_no_update(
    start_servers, database_url: str  # noqa: ANN001
) -> None:
    """Twenty PATCHes of one experiment at once on two servers: those that read a version
    another changed meanwhile are 409s, and every 200 is in the audit trail, each changing
    from what the one before it set (none was written over)."""
    env = {"DATABASE_URL": database_url, "CACHE_URL": "memory://", "API_TOKENS": "t"}
    servers: list[ServerProcess] = start_servers(env, env)
    auth = {"Authorization": "Bearer t"}
    async with httpx.AsyncClient(headers=auth, timeout=30) as client:
        created = await client.post(f"{servers[0].base_url}/experiments", json=experiment_body("raced"))
        x = created.json()["id"]
        responses = await asyncio.gather(*(
            client.patch(f"{servers[i % 2].base_url}/experiments/{x}", json={"description": f"writer {i}"})
            for i in range(20)
        ))
        statuses = [r.status_code for r in responses]
        assert set(statuses) <= {200, 409}, [r.text for r in responses]
        assert 409 in statuses and 200 in statuses
        audit = await client.get(f"{servers[0].base_url}/audit", params={"target_id": x, "action": "experiment.changed"})
        changes = [e["details"]["description"] for e in reversed(audit.json()["items"])]
        assert len(changes) == statuses.count(200)
        previous = None
        for change in changes:
            assert change["from"] == previous, changes
            previous = change["to"]
        final = await client.get(f"{servers[1].base_url}/experiments/{x}")
        assert final.json()["description"] == previous
        won = {r.json()["description"] for r in responses if r.status_code == 200}
        assert {c["to"] for c in changes} == won
