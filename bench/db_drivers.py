"""Micro-benchmark of the PostgreSQL drivers (psycopg 3, asyncpg) through the real SqlStore.

    .venv/bin/python bench/db_drivers.py [--rounds 7]

Both drivers are dependencies (pyproject.toml), so `make test` or `make run` has installed them.

Creates a database ``exp_bench_<random>`` on BENCH_POSTGRES_URL (default: the local server's
``postgres`` database), migrates it, and for each round and driver, in alternating order so that
neither always runs on a warmer server, times on an emptied database:
  * 2,000 first assignments one after another (each: INSERT … ON CONFLICT DO NOTHING, then the read
    of the stored one, in one transaction), and 2,000 more from 20 concurrent tasks;
  * 2,000 assignment reads;
  * five batches of 10,000 events (1% of them duplicates) through add_events, checking its count;
  * one results aggregation over those 50,000 events.
Prints the median of each over the rounds, and drops the database.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from adapters.sqlalchemy.engine import create_engine_for  # noqa: E402
from adapters.sqlalchemy.migrate import upgrade  # noqa: E402
from adapters.sqlalchemy.store import SqlStore  # noqa: E402
from domain.assignment import Assignment  # noqa: E402
from domain.event import Event, EventBatch  # noqa: E402
from domain.experiment import Experiment, VariantDraft  # noqa: E402
from domain.results import ResultQuery  # noqa: E402

ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DRIVERS = ("psycopg", "asyncpg")
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def new_experiment() -> Experiment:
    counter = iter(range(1_000_000))
    return Experiment.create(
        name="bench",
        description=None,
        primary_event_type="buy",
        variants=[VariantDraft("control", 50), VariantDraft("treatment", 50)],
        new_id=lambda: f"bench{next(counter):06d}",
        created_at=T0,
    )


def event_batch(exp: Experiment, batch: int, size: int = 10_000) -> list[Event]:
    unique = size - size // 100  # the last 1% repeat earlier event_ids of the same batch
    return [
        Event(
            exp.id,
            f"user{i % 2_000}",
            "buy" if i % 4 == 0 else "view",
            T0 + timedelta(days=1, seconds=i),
            float(i % 50) if i % 4 == 0 else None,
            '{"sku":"A-1"}',
            f"b{batch}-e{i % unique}",
        )
        for i in range(size)
    ]


async def timed(action: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await action()
    return time.perf_counter() - start


async def one_round(url: str, driver: str) -> dict[str, float]:
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [
            f'"{name}"'
            for (name,) in conn.execute(
                "SELECT tablename FROM pg_tables"
                " WHERE schemaname = current_schema() AND tablename <> 'alembic_version'"
            )
        ]
        conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY")
        conn.execute("INSERT INTO fold_state VALUES (1, 1, 1, 0)")  # as migration 0005 leaves it
    if driver == "asyncpg":
        engine = create_engine_for(url)  # the service's own engine
    else:  # the same URL on another async driver, built here: the service offers no switch
        from sqlalchemy.ext.asyncio import create_async_engine

        from adapters.sqlalchemy.engine import parse_url

        engine = create_async_engine(parse_url(url, asynchronous=True).set(drivername=f"postgresql+{driver}"))
    store = SqlStore(engine)
    exp = new_experiment()
    await store.add_experiment(exp)
    results: dict[str, float] = {}

    async def sequential() -> None:
        for i in range(2_000):
            await store.add_assignment(Assignment.decide(exp, f"user{i}", T0))

    async def concurrent() -> None:
        users = iter(range(2_000, 4_000))

        async def worker() -> None:
            for i in users:
                await store.add_assignment(Assignment.decide(exp, f"user{i}", T0))

        await asyncio.gather(*(worker() for _ in range(20)))

    async def reads() -> None:
        for i in range(2_000):
            await store.get_assignment(exp.id, f"user{i}")

    async def events() -> None:
        for batch in range(5):
            accepted = await store.add_events(EventBatch.of(event_batch(exp, batch)))
            assert accepted == 9_900, f"add_events counted {accepted}, not 9,900"

    async def aggregate() -> None:
        await store.variant_aggregates(exp, ResultQuery(primary_event_type="buy"))

    await store.get_experiment(exp.id)  # the pool's first connection, outside the timings
    results["2,000 assignments, sequential"] = await timed(sequential)
    results["2,000 assignments, 20 concurrent"] = await timed(concurrent)
    results["2,000 assignment reads"] = await timed(reads)
    results["5 x 10,000-event add_events"] = await timed(events)
    results["results over 50,000 events"] = await timed(aggregate)
    await store.close()
    return results


async def main(rounds: int) -> None:
    name = f"exp_bench_{secrets.token_hex(4)}"
    url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        upgrade(url)
        samples: dict[str, dict[str, list[float]]] = {d: {} for d in DRIVERS}
        for round_ in range(rounds):
            order = DRIVERS if round_ % 2 == 0 else DRIVERS[::-1]
            for driver in order:
                for label, seconds in (await one_round(url, driver)).items():
                    samples[driver].setdefault(label, []).append(seconds)
        labels = list(samples[DRIVERS[0]])
        print(f"median of {rounds} rounds, seconds (lower is better)")
        print(f"{'':36} {'psycopg':>9} {'asyncpg':>9} {'asyncpg/psycopg':>16}")
        for label in labels:
            p = statistics.median(samples["psycopg"][label])
            a = statistics.median(samples["asyncpg"][label])
            print(f"{label:36} {p:9.3f} {a:9.3f} {a / p:16.2f}")
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    asyncio.run(main(parser.parse_args().rounds))
