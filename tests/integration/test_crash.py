"""kill -9 under load: every acknowledged write survives, and results after the restart are exact.

A real server takes new-user assignments and event batches from several clients at once; its
whole process group is killed mid-load. A server restarted on the same database must still hold
every write it acknowledged (a 2xx is a promise of durability), hold each batch whole or not at
all, and answer results that equal both a rebuild of every total from raw events and a count
straight from the raw rows. Whatever the store keeps besides raw rows (totals, folded or not
yet folded) must come out of the crash consistent with them.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import signal
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection

from tests.integration.conftest import REPO_ROOT, ServerProcess, create_experiment
from tests.integration.database import micros, raw_engine

AUTH = {"Authorization": "Bearer t"}
ASSIGNING_CLIENTS = 4
BATCHING_CLIENTS = 4
TYPES = ["buy", "view", "view", "click"]  # views the commonest, as on a real page


def environment(database_url: str, **extra: str) -> dict[str, str]:
    return {"DATABASE_URL": database_url, "API_TOKENS": "t", "CACHE_URL": "memory://", **extra}


@dataclass
class Load:
    """What the clients sent, and which of it the server acknowledged."""

    experiment_id: str
    now: datetime
    issued: itertools.count = field(default_factory=itertools.count)
    next_user: int = 0
    assigned: dict[str, dict] = field(default_factory=dict)  # acknowledged: user -> the answer
    assigned_order: list[str] = field(default_factory=list)
    batches: list[list[str]] = field(default_factory=list)  # every batch sent, by event_id
    acknowledged_events: set[str] = field(default_factory=set)
    unexpected: list[str] = field(default_factory=list)  # any answer but the 2xx expected

    def new_user(self) -> str:
        self.next_user = next(self.issued)
        return f"user-{self.next_user}"


async def assign_one(client: httpx.AsyncClient, load: Load) -> bool:
    """One new user's first call; False once the server is gone."""
    user = load.new_user()
    try:
        response = await client.get(f"/experiments/{load.experiment_id}/assignment/{user}")
    except httpx.TransportError:
        return False
    if response.status_code == 200:
        load.assigned[user] = response.json()
        load.assigned_order.append(user)
    else:
        load.unexpected.append(f"assignment {user}: {response.status_code} {response.text[:300]}")
    return True


async def assign_new_users(client: httpx.AsyncClient, load: Load) -> None:
    while await assign_one(client, load):
        pass


def an_event(rng: random.Random, load: Load, event_id: str) -> dict:
    """Of a user assigned already (often stamped before the assignment: never counted), of a
    user about to be assigned by the other clients, or of a user never assigned; stamped over
    three days around now. Values are multiples of 1/4, so every sum of them is exact in any
    order: a difference in results is a difference in what was counted, not rounding."""
    roll = rng.random()
    if roll < 0.5 and load.assigned_order:
        user = rng.choice(load.assigned_order)
        assigned_at = datetime.fromisoformat(load.assigned[user]["assigned_at"])
        placed = rng.random()
        if placed < 0.3:
            moment = assigned_at - timedelta(seconds=rng.uniform(0.001, 3 * 3600))
        elif placed < 0.35:
            moment = assigned_at  # exactly at the assignment: counted
        else:
            moment = assigned_at + timedelta(seconds=rng.uniform(0, 2 * 86400))
    else:
        if roll < 0.8:
            user = f"user-{load.next_user + rng.randrange(1, 300)}"
        else:
            user = f"stranger-{rng.randrange(200)}"
        moment = load.now + timedelta(seconds=rng.uniform(-86400, 2 * 86400))
    event = {
        "experiment_id": load.experiment_id,
        "user_id": user,
        "event_type": rng.choice(TYPES),
        "timestamp": moment.isoformat(),
        "event_id": event_id,
    }
    if rng.random() < 0.7:
        event["value"] = rng.randrange(1, 400) / 4
    if rng.random() < 0.2:
        event["properties"] = {"sku": f"A-{rng.randrange(50)}"}
    return event


async def post_one_batch(
    client: httpx.AsyncClient, load: Load, rng: random.Random, tag: str
) -> bool:
    """One batch of 50 to 500 new events; False once the server is gone."""
    events = [an_event(rng, load, f"ev-{tag}-{i}") for i in range(rng.randint(50, 500))]
    ids = [e["event_id"] for e in events]
    load.batches.append(ids)
    try:
        response = await client.post("/events", json={"events": events})
    except httpx.TransportError:
        return False
    all_new = {"accepted": len(ids), "duplicates": 0}
    if response.status_code == 202 and response.json() == all_new:
        load.acknowledged_events.update(ids)
    else:
        load.unexpected.append(f"batch: {response.status_code} {response.text[:300]}")
    return True


async def post_batches(client: httpx.AsyncClient, load: Load, seed: int) -> None:
    rng = random.Random(seed)
    for batch_number in itertools.count():
        if not await post_one_batch(client, load, rng, f"{seed}-{batch_number}"):
            return


async def load_then_kill(server: ServerProcess, experiment_id: str, kill_after: float) -> Load:
    """Drive the load; once it has run ``kill_after`` seconds, SIGKILL the server's process
    group with requests in flight."""
    load = Load(experiment_id, now=datetime.now(UTC))
    limits = httpx.Limits(max_connections=ASSIGNING_CLIENTS + BATCHING_CLIENTS)
    async with httpx.AsyncClient(
        base_url=server.base_url, headers=AUTH, limits=limits, timeout=30
    ) as client:
        # A first round, acknowledged before the load starts: even the earliest kill then
        # finds counted events (of users assigned, stamped after it) in the database.
        for _ in range(20):
            assert await assign_one(client, load)
        assert await post_one_batch(client, load, random.Random(-1), "first")
        clients = [
            asyncio.create_task(assign_new_users(client, load)) for _ in range(ASSIGNING_CLIENTS)
        ]
        clients += [
            asyncio.create_task(post_batches(client, load, seed))
            for seed in range(BATCHING_CLIENTS)
        ]
        await asyncio.sleep(kill_after)
        os.killpg(server.process.pid, signal.SIGKILL)
        await asyncio.to_thread(server.process.wait)
        # Every client ends at its first request that finds the server gone.
        await asyncio.wait_for(asyncio.gather(*clients), timeout=30)
    assert not load.unexpected, load.unexpected[:5]
    return load


def check_acknowledged_writes_are_stored(database_url: str, load: Load) -> None:
    engine = raw_engine(database_url)
    with engine.connect() as conn:
        stored_ids = {row[0] for row in conn.execute(text("SELECT event_id FROM events"))}
        rows = conn.execute(
            text(
                "SELECT user_id, variant_id, assigned_at FROM user_assignments"
                " WHERE experiment_id = :x"
            ),
            {"x": load.experiment_id},
        ).all()
    engine.dispose()
    missing = load.acknowledged_events - stored_ids
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:3]}"
    sent = {event_id for batch in load.batches for event_id in batch}
    assert stored_ids <= sent
    # A batch cut off by the crash is stored whole or not at all.
    for batch in load.batches:
        kept = stored_ids.intersection(batch)
        assert len(kept) in (0, len(batch)), f"{len(kept)} of a batch of {len(batch)} stored"

    stored = {user: (variant_id, assigned_at) for user, variant_id, assigned_at in rows}
    assert len(stored) == len(rows), "a user with two assignments"
    for user, answer in load.assigned.items():
        assert stored.get(user) == (answer["variant_id"], micros(answer["assigned_at"])), user


async def check_assignments_answer_as_before(base_url: str, load: Load) -> None:
    limits = httpx.Limits(max_connections=16)
    async with httpx.AsyncClient(
        base_url=base_url, headers=AUTH, limits=limits, timeout=30
    ) as client:
        users = list(load.assigned)
        responses = await asyncio.gather(
            *(client.get(f"/experiments/{load.experiment_id}/assignment/{u}") for u in users)
        )
    for user, response in zip(users, responses, strict=True):
        assert response.status_code == 200, response.text
        assert response.json() == load.assigned[user]


def result_queries(day: date) -> list[dict[str, str]]:
    """No range, whole days, and ranges with a time of day; each with type filters."""
    d1, d2 = day + timedelta(days=1), day + timedelta(days=2)
    return [
        {},
        {"event_type": "view"},
        {"primary_event_type": "click"},
        {"start_date": f"{d1}", "end_date": f"{d1}"},
        {
            "start_date": f"{day}",
            "end_date": f"{d1}",
            "event_type": "buy",
            "primary_event_type": "view",
        },
        {"start_date": f"{d1}T05:30:00", "end_date": f"{d2}T17:45:00"},
        {
            "start_date": f"{day}T05:30:00",
            "end_date": f"{d1}T17:45:00",
            "event_type": "click",
            "primary_event_type": "buy",
        },
    ]


async def results_of(
    base_url: str, experiment_id: str, queries: list[dict[str, str]]
) -> list[dict]:
    async with httpx.AsyncClient(base_url=base_url, headers=AUTH, timeout=30) as client:
        bodies = []
        for query in queries:
            response = await client.get(f"/experiments/{experiment_id}/results?{urlencode(query)}")
            assert response.status_code == 200, response.text
            bodies.append(response.json())
    return bodies


def _bound(value: str | None, *, at_end: bool) -> int | None:
    """As API.md reads start_date and end_date: a bare date is that whole UTC day."""
    if value is None:
        return None
    if "T" in value:
        return micros(datetime.fromisoformat(value).replace(tzinfo=UTC))
    day = date.fromisoformat(value) + timedelta(days=1 if at_end else 0)
    return micros(datetime.combine(day, time.min, UTC)) - (1 if at_end else 0)


FIGURES = (
    "users",
    "events",
    "unique_users_with_events",
    "event_counts",
    "primary_event_count",
    "primary_unique_users",
    "value_sum",
)


def counted_from_raw_rows(conn: Connection, experiment_id: str, query: dict[str, str]) -> dict:
    """Per variant, the figures of the counting rule (README), counted by plain SQL over the
    raw rows: an event counts when its user is assigned and it is not older than the assignment."""
    start = _bound(query.get("start_date"), at_end=False)
    end = _bound(query.get("end_date"), at_end=True)
    event_type = query.get("event_type")
    primary = query.get("primary_event_type", "buy")  # else the experiment's
    params = {"x": experiment_id, "start": start, "end": end, "t": event_type, "p": primary}
    counted = (
        " FROM events e JOIN user_assignments a"
        "   ON a.experiment_id = e.experiment_id AND a.user_id = e.user_id"
        # + 0: else SQLite walks an index range of events once per assignment: seconds.
        " WHERE e.experiment_id = :x AND e.timestamp + 0 >= a.assigned_at"
        + (" AND e.timestamp >= :start" if start is not None else "")
        + (" AND e.timestamp <= :end" if end is not None else "")
    )
    shown = counted + (" AND e.event_type = :t" if event_type is not None else "")
    figures: dict[str, dict] = defaultdict(
        lambda: {name: 0 for name in FIGURES} | {"event_counts": {}, "value_sum": 0.0}
    )
    users = conn.execute(
        text(
            "SELECT variant_id, COUNT(*) FROM user_assignments WHERE experiment_id = :x"
            + (" AND assigned_at <= :end" if end is not None else "")
            + " GROUP BY variant_id"
        ),
        params,
    )
    for variant_id, n in users:
        figures[variant_id]["users"] = n
    for variant_id, event_type_, n in conn.execute(
        text(
            f"SELECT a.variant_id, e.event_type, COUNT(*) {shown}"
            " GROUP BY a.variant_id, e.event_type"
        ),
        params,
    ):
        figures[variant_id]["event_counts"][event_type_] = n
        figures[variant_id]["events"] += n
    for variant_id, n in conn.execute(
        text(f"SELECT a.variant_id, COUNT(DISTINCT e.user_id) {shown} GROUP BY a.variant_id"),
        params,
    ):
        figures[variant_id]["unique_users_with_events"] = n
    for variant_id, n, converters, value_sum in conn.execute(
        text(
            "SELECT a.variant_id, COUNT(*), COUNT(DISTINCT e.user_id), SUM(COALESCE(e.value, 0.0))"
            f" {counted} AND e.event_type = :p GROUP BY a.variant_id"
        ),
        params,
    ):
        figures[variant_id].update(
            primary_event_count=n, primary_unique_users=converters, value_sum=float(value_sum)
        )
    return figures


def check_results_count_the_raw_rows(
    database_url: str, experiment_id: str, queries, bodies
) -> None:
    engine = raw_engine(database_url)
    with engine.connect() as conn:
        expectations = [counted_from_raw_rows(conn, experiment_id, query) for query in queries]
    engine.dispose()
    for query, body, expected in zip(queries, bodies, expectations, strict=True):
        got = {v["variant_id"]: {name: v[name] for name in FIGURES} for v in body["variants"]}
        assert got == {v["variant_id"]: expected[v["variant_id"]] for v in body["variants"]}, query
        assert body["summary"]["total_users"] == sum(v["users"] for v in expected.values()), query
        assert body["summary"]["total_events"] == sum(v["events"] for v in expected.values()), query


def rebuild_aggregates(database_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "entrypoints", "rebuild-aggregates"],
        cwd=REPO_ROOT,
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


async def crash_and_check(
    start_servers: Callable[..., list[ServerProcess]], env: dict[str, str], kill_after: float
) -> None:
    database_url = env["DATABASE_URL"]
    (server,) = start_servers(env)
    experiment_id = (await create_experiment(server.base_url, (40, 35, 25)))["id"]
    load = await load_then_kill(server, experiment_id, kill_after)

    env = {**env, "WORKERS": "1"}  # from here on it serves reads alone
    (server,) = start_servers(env)
    # (a) What was acknowledged is stored, and answered as before.
    check_acknowledged_writes_are_stored(database_url, load)
    await check_assignments_answer_as_before(server.base_url, load)

    # (b) Results after the crash equal results from totals rebuilt from raw events...
    queries = result_queries(load.now.date())
    after_crash = await results_of(server.base_url, experiment_id, queries)
    server.stop()
    rebuild_aggregates(database_url)
    (server,) = start_servers(env)
    after_rebuild = await results_of(server.base_url, experiment_id, queries)
    for query, crashed, rebuilt in zip(queries, after_crash, after_rebuild, strict=True):
        assert crashed["variants"] == rebuilt["variants"], query
        assert crashed["summary"] == rebuilt["summary"], query
        assert crashed == rebuilt, query
    # ...and a count straight from the raw rows.
    check_results_count_the_raw_rows(database_url, experiment_id, queries, after_crash)
    assert after_crash[0]["summary"]["total_events"] > 0, "no event was counted: a weak test"


KILL_POINTS = pytest.mark.parametrize("kill_after", [0.3, 2.0], ids=["early", "later"])


@KILL_POINTS
async def test_sqlite_survives_kill_9_under_load(
    start_servers, tmp_path, kill_after: float
) -> None:
    env = environment(f"sqlite:///{tmp_path / 'crash.db'}", WORKERS="1")
    await crash_and_check(start_servers, env, kill_after)


@pytest.mark.postgres
@KILL_POINTS
async def test_postgres_survives_kill_9_under_load(
    start_servers, postgres_database: str, kill_after: float
) -> None:
    # Two worker processes: more writers at once, and a process group of three to kill.
    env = environment(postgres_database, WORKERS="2")
    await crash_and_check(start_servers, env, kill_after)
