"""The cost of a results read with CUPED when every user has a pre-period (SQLite, or
PostgreSQL with --store postgres): bulk-loaded events before and after each user's
assignment, totals rebuilt, then the store's read timed with and without the covariate sums.

    .venv/bin/python bench/cuped_read.py [--users 100000] [--store sqlite|postgres] [--fold] [--plain]

``--fold`` folds the loaded rows as the folder does (a backlog, in folds of at most 500,000
events on SQLite) instead of rebuilding, and prints how long that took; ``--plain`` leaves
CUPED off, for the same figures without it. Prints the medians of 10 reads; bench/RESULTS.md
(CUPED) has the figures."""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.sqlalchemy.engine import create_engine_for  # noqa: E402
from adapters.sqlalchemy.migrate import upgrade  # noqa: E402
from adapters.sqlalchemy.store import SqlStore  # noqa: E402
from domain.event import to_micros  # noqa: E402
from domain.experiment import Experiment, VariantDraft  # noqa: E402
from domain.results import ResultQuery  # noqa: E402

START = datetime(2026, 11, 15, tzinfo=UTC)


def rows(exp: Experiment, users: int) -> tuple[list[tuple], list[tuple]]:
    rng = random.Random(7)
    assignments, events = [], []
    at = to_micros(START)
    for i in range(users):
        user = f"user-{i}"
        variant = exp.variants[i % 2].id
        assignments.append((exp.id, user, variant, at))
        for _ in range(2):  # in the pre-period
            events.append((exp.id, user, "purchase", at - rng.randrange(1, 13 * 86_400_000_000), rng.uniform(5, 50)))
        for _ in range(8):
            events.append((exp.id, user, rng.choice(["purchase", "view"]), at + rng.randrange(0, 7 * 86_400_000_000),
                           rng.uniform(5, 50)))
    return assignments, events


def load(url: str, exp: Experiment, users: int, postgres: bool) -> None:
    assignments, events = rows(exp, users)
    sql_a = "INSERT INTO user_assignments (experiment_id, user_id, variant_id, assigned_at) VALUES ({p}, {p}, {p}, {p})"
    sql_e = 'INSERT INTO events (experiment_id, user_id, event_type, "timestamp", value) VALUES ({p}, {p}, {p}, {p}, {p})'
    if postgres:
        import psycopg

        with psycopg.connect(url) as conn, conn.cursor() as cur:
            with cur.copy("COPY user_assignments (experiment_id, user_id, variant_id, assigned_at) FROM STDIN") as cp:
                for r in assignments:
                    cp.write_row(r)
            with cur.copy('COPY events (experiment_id, user_id, event_type, "timestamp", value) FROM STDIN') as cp:
                for r in events:
                    cp.write_row(r)
            conn.commit()
            conn.execute("ANALYZE")
        return
    conn = sqlite3.connect(url.removeprefix("sqlite:///"))
    conn.executemany(sql_a.format(p="?"), assignments)
    conn.executemany(sql_e.format(p="?"), events)
    conn.commit()
    conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--fold", action="store_true", help="fold the rows instead of a rebuild")
    parser.add_argument("--plain", action="store_true", help="without CUPED")
    args = parser.parse_args()
    if args.store == "postgres":
        import psycopg

        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
            c.execute("DROP DATABASE IF EXISTS bench_cuped")
            c.execute("CREATE DATABASE bench_cuped")
        url = "postgresql://postgres@127.0.0.1:5432/bench_cuped"
    else:
        url = f"sqlite:///{tempfile.mkdtemp()}/cuped.db"
    upgrade(url)
    exp = Experiment.create(
        name="cuped-bench", description=None, primary_event_type="purchase",
        variants=[VariantDraft("control", 50), VariantDraft("treatment", 50)],
        new_id=iter(f"id{i:06d}" for i in range(100)).__next__, created_at=START - timedelta(days=30),
    )
    if not args.plain:
        exp, _ = exp.changed(START, iter(f"v{i:05d}" for i in range(100)).__next__, analysis={"cuped": True})
    store = SqlStore(create_engine_for(url), fold_interval=3600)
    try:
        await store.add_experiment(exp)
        load(url, exp, args.users, args.store == "postgres")
        started = time.perf_counter()
        if args.fold:
            folds = 0
            while await store.fold():
                folds += 1
            done = f"folded in {time.perf_counter() - started:.1f} s ({folds} folds)"
        else:
            await store.rebuild_aggregates()
            done = f"rebuilt in {time.perf_counter() - started:.1f} s"
        print(f"{args.users:,} users, {args.users * 10:,} events{'' if args.plain else ', CUPED'}: {done}")
        reads = [("plain", ResultQuery(primary_event_type="purchase"))]
        if not args.plain:
            reads.append(("cuped", ResultQuery(primary_event_type="purchase", covariates=True)))
        for name, query in reads:
            times = []
            for _ in range(10):
                t = time.perf_counter()
                got = await store.variant_aggregates(exp, query)
                times.append((time.perf_counter() - t) * 1000)
            users = sum(a.covariate.users for a in got.values() if a.covariate)
            print(f"{args.store} {name}: {statistics.median(times):,.1f} ms (users with a pre-period: {users:,})")
    finally:
        await store.close()


asyncio.run(main())
