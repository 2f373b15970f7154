"""Sustained ingestion: millions of events through the API into one database, and how the rate
holds as the database grows, against the burst rate of the same run's first seconds.

The load: ``--users`` users (100,000) assigned through the API first, then ``--events``
(10,000,000) events in 1,000-event batches over four keep-alive connections, every event new,
each with an ``event_id`` (``--ids uuid``: random, as client libraries make them, the default;
``--ids sequential``: counters, which land next to each other in the unique index), a user drawn
at random among the assigned ones, four event types, a value on purchases. The server runs as
``make run`` starts it, pinned to one core; the client builds bodies from pre-rendered pieces on
the other core.

Printed per segment of ``--segment`` events: the rate over that segment, the events not yet
folded at its end, and the database's size on disk. The burst rate is that of the first
``--burst`` events (a fresh database); the sustained rate is all events over all the time; their
ratio is the figure the target holds (≥ 0.8). After the load: the seconds until the folder has
folded everything.

``.venv/bin/python bench/sustained.py --store sqlite|postgres [--events N]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench.mixed  # noqa: E402
from bench.mixed import Connection  # noqa: E402
from bench.servers import TOKEN, FoldLag, Postgres, Service, new_experiment, start_service  # noqa: E402

BATCH = 1000
CONNECTIONS = 4
TYPES = ("view", "view", "click", "purchase")


class Bodies:
    """1,000-event bodies from pre-rendered pieces: the client must not be what is measured."""

    def __init__(self, experiment_id: str, users: int, ids: str, seed: int) -> None:
        self._rng = random.Random(seed)
        self._users = [f'"user_id":"s{u}"' for u in range(users)]
        self._head = f'{{"experiment_id":"{experiment_id}",'
        self._ids = ids
        self._seed = seed
        self._n = 0
        self._stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    def next(self) -> bytes:
        rng, users, head = self._rng, self._users, self._head
        parts = []
        for i in range(BATCH):
            self._n += 1
            t = TYPES[i & 3]
            value = f',"value":{i % 97 + 0.25}' if t == "purchase" else ""
            eid = uuid.UUID(int=rng.getrandbits(128), version=4) if self._ids == "uuid" else f"{self._seed}-{self._n:012d}"
            parts.append(f'{head}{users[rng.randrange(len(users))]},"event_type":"{t}"{value},'
                         f'"timestamp":"{self._stamp}","event_id":"{eid}"}}')
        return ('{"events":[' + ",".join(parts) + "]}").encode()


def size_mib(service: Service) -> float:
    url = service.database_url
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p)) / 2**20
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT pg_database_size(current_database())").fetchone()[0] / 2**20


async def assign_all(service: Service, experiment_id: str, users: int) -> float:
    started = time.perf_counter()
    connections = [Connection("127.0.0.1", service.port, TOKEN) for _ in range(16)]

    async def worker(k: int) -> None:
        for u in range(k, users, len(connections)):
            answer = await connections[k].request("GET", f"/experiments/{experiment_id}/assignment/s{u}")
            if answer is None or answer.status_code != 200:
                raise SystemExit(f"assignment of s{u} failed: {answer and answer.text}")

    await asyncio.gather(*(worker(k) for k in range(len(connections))))
    for c in connections:
        await c.close()
    return users / (time.perf_counter() - started)


async def ingest(service: Service, experiment_id: str, args: argparse.Namespace, lag: FoldLag) -> tuple[float, float, float]:
    """Returns the burst rate, the sustained rate and the load's seconds; prints each segment."""
    total_batches = args.events // BATCH
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=CONNECTIONS * 2)
    done = 0
    started = time.perf_counter()
    segment_start, segment_done = started, 0
    burst: float | None = None
    loop = asyncio.get_running_loop()

    async def produce() -> None:
        makers = [Bodies(experiment_id, args.users, args.ids, seed) for seed in range(CONNECTIONS)]
        for b in range(total_batches):
            await queue.put(makers[b % CONNECTIONS].next())
        for _ in range(CONNECTIONS):
            await queue.put(None)

    async def post(conn: Connection) -> None:
        nonlocal done, segment_start, segment_done, burst
        while (body := await queue.get()) is not None:
            answer = await conn.request("POST", "/events", body)
            if answer is None or answer.status_code != 202:
                raise SystemExit(f"a batch failed: {answer and (answer.status_code, answer.text[:300])}")
            done += BATCH
            now = time.perf_counter()
            if burst is None and done >= args.burst:
                burst = done / (now - started)
                print(f"  burst: first {done:,} events at {burst:,.0f} ev/s", flush=True)
            if done - segment_done >= args.segment:
                rate = (done - segment_done) / (now - segment_start)
                segment_start, segment_done = now, done  # before awaiting: one line a segment
                at, since = done, now - started
                pending = await loop.run_in_executor(None, lag.pending)
                size = await loop.run_in_executor(None, size_mib, service)
                print(f"  {at:>12,} events  {since:7.0f} s  segment {rate:9,.0f} ev/s"
                      f"  overall {at / since:9,.0f} ev/s  pending {pending:>9,}"
                      f"  on disk {size:8,.0f} MiB", flush=True)

    connections = [Connection("127.0.0.1", service.port, TOKEN) for _ in range(CONNECTIONS)]
    await asyncio.gather(produce(), *(post(c) for c in connections))
    elapsed = time.perf_counter() - started
    for c in connections:
        await c.close()
    return burst or done / elapsed, done / elapsed, elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--ids", choices=["uuid", "sequential"], default="uuid")
    parser.add_argument("--segment", type=int, default=1_000_000)
    parser.add_argument("--burst", type=int, default=200_000)
    parser.add_argument("--dir", help="where the SQLite file goes (default: a temporary directory)")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/12")
    args = parser.parse_args()
    bench.mixed.TIMEOUT_S = 60.0  # a checkpoint may hold a batch for seconds: only a hang is an error
    with tempfile.TemporaryDirectory(prefix="sustained-", dir=args.dir) as directory:
        tmp = Path(directory)
        pg = None
        if args.store == "postgres":
            pg = Postgres(args.postgres.rstrip("/"), args.redis)
            if (why := pg.why_not()) is not None:
                print(f"PostgreSQL + Redis not available: {why}")
                return 1
            pg.flush_redis()
            url, cache = pg.create("sustained"), pg.redis_url
        else:
            url, cache = f"sqlite:///{tmp / 'sustained.db'}", "memory://"
        service = start_service(args.store, url, cache, tmp, cpus="0")
        try:
            experiment_id = new_experiment(service, "sustained")
            rate = asyncio.run(assign_all(service, experiment_id, args.users))
            print(f"sustained ingestion, {args.store}: {args.users:,} users assigned ({rate:,.0f}/s);"
                  f" {args.events:,} events, ids {args.ids}", flush=True)
            lag = FoldLag(url)
            lag.start()
            burst, sustained, elapsed = asyncio.run(ingest(service, experiment_id, args, lag))
            drained = lag.end_of_load(time.monotonic(), 300)
            lag.close()
            print(f"  {args.store}: {args.events:,} events in {elapsed:,.0f} s: sustained {sustained:,.0f} ev/s,"
                  f" burst {burst:,.0f} ev/s, ratio {sustained / burst:.2f} (target ≥ 0.80);"
                  f" folder at most {lag.max_pending:,} pending, drained"
                  f" {'not within 300 s' if drained is None else f'{drained:.1f} s'} after the load;"
                  f" {size_mib(service):,.0f} MiB on disk; server peak RSS {service.peak_rss_mib():,.0f} MiB", flush=True)
            if service.process.poll() is not None:
                print(service.failure("the server died"))
                return 1
        finally:
            service.stop()
            if pg is not None:
                pg.drop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
