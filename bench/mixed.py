"""A production-like mix against the real server, on SQLite and on PostgreSQL + Redis in the same
run: what each request kind costs while the others run, the folder's lag, and (PostgreSQL) any
results query still running on the server after its client has had its answer or given up.

The mix, per request: half assignments (a third of them new users), a third event batches of 1
to 200 events, a tenth results (a third of those filtered by ``event_type``), the rest
experiment reads. 16 clients, each a loop; a request with no answer in 10 s is a timeout. The
server runs pinned to one core (``taskset``, where the machine has it), the clients on the other.

Used by ``make bench`` (its mixed-load section) and runnable alone:
``.venv/bin/python bench/mixed.py --seconds 90``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.servers import TOKEN, FoldLag, Postgres, Service, new_experiment, start_service  # noqa: E402

TIMEOUT_S = 10.0
KINDS = ("assign", "events", "results", "read")


@dataclass
class Answer:
    status_code: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")


@dataclass
class MixTally:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, dict[int, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    errors: list[str] = field(default_factory=list)
    timeouts: int = 0
    busy: int = 0  # 503 with Retry-After from the results bound: reported, not an error

    def note(self, kind: str, response: Answer | None, took: float, expected: int) -> None:
        if response is None:
            self.timeouts += 1
            self.errors.append(f"{kind}: no answer in {TIMEOUT_S:.0f} s")
            return
        self.statuses[kind][response.status_code] += 1
        if response.status_code == expected:
            self.latencies[kind].append(took)
        elif kind == "results" and response.status_code == 503 and "retry-after" in response.headers:
            self.busy += 1
        else:
            self.errors.append(f"{kind}: {response.status_code} {response.text[:160]}")


class Connection:
    """One keep-alive HTTP/1.1 connection on plain asyncio streams. A Python client must not be
    what the figures measure: httpx took most of a core for this mix, so its queueing showed in
    every latency. A request with no answer in TIMEOUT_S drops the connection (a timeout)."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self._host, self._port = host, port
        self._head = f"Host: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> Answer | None:
        try:
            return await asyncio.wait_for(self._exchange(method, path, body), TIMEOUT_S)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            await self.close()
            return None

    async def _exchange(self, method: str, path: str, body: bytes) -> Answer:
        if self._streams is None:
            self._streams = await asyncio.open_connection(self._host, self._port)
        reader, writer = self._streams
        extra = f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n" if body else ""
        writer.write(f"{method} {path} HTTP/1.1\r\n{self._head}{extra}\r\n".encode() + body)
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
        if "content-length" in headers:
            content = await reader.readexactly(int(headers["content-length"]))
        else:  # chunked
            parts = []
            while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
                parts.append(await reader.readexactly(size))
                await reader.readexactly(2)
            await reader.readexactly(2)
            content = b"".join(parts)
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return Answer(status, headers, content)

    async def close(self) -> None:
        if self._streams is not None:
            writer = self._streams[1]
            self._streams = None
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def timed(conn: Connection, method: str, path: str, body: bytes = b"") -> tuple[Answer | None, float]:
    started = time.perf_counter()
    response = await conn.request(method, path, body)
    return response, (time.perf_counter() - started) * 1000


EVENT_TYPES = ("view", "view", "click", "purchase")


async def one_client(conn: Connection, experiments: list[str], tally: MixTally, stop: float, seed: int) -> None:
    rng = random.Random(seed)
    known = 0  # users this client has assigned so far
    encode = msgspec.json.encode
    while time.monotonic() < stop:
        x = rng.choice(experiments)
        roll = rng.random()
        if roll < 0.5:
            if known == 0 or rng.random() < 1 / 3:
                known += 1
                user = f"m{seed}-{known}"
            else:
                user = f"m{seed}-{rng.randint(1, known)}"
            response, took = await timed(conn, "GET", f"/experiments/{x}/assignment/{user}")
            tally.note("assign", response, took, 200)
        elif roll < 0.5 + 1 / 3:
            top = max(known, 1)
            events = [
                {"experiment_id": x, "user_id": f"m{seed}-{rng.randint(1, top)}",
                 "event_type": EVENT_TYPES[rng.getrandbits(2)], "value": rng.getrandbits(7) / 4,
                 "event_id": f"m{seed}-{rng.getrandbits(60):x}"}
                for _ in range(rng.randint(1, 200))
            ]
            response, took = await timed(conn, "POST", "/events", encode({"events": events}))
            tally.note("events", response, took, 202)
        elif roll < 0.5 + 1 / 3 + 0.1:
            query = "?event_type=click" if rng.random() < 1 / 3 else ""
            response, took = await timed(conn, "GET", f"/experiments/{x}/results{query}")
            tally.note("results", response, took, 200)
        else:
            response, took = await timed(conn, "GET", f"/experiments/{x}")
            tally.note("read", response, took, 200)


class LongQueries:
    """PostgreSQL: samples pg_stat_activity for results queries of this database running longer
    than a second; the longest seen, and how many ran at once at most."""

    def __init__(self, database_url: str) -> None:
        import psycopg

        self._conn = psycopg.connect(database_url, autocommit=True)
        self._database = database_url.rsplit("/", 1)[1]
        self.most_at_once = 0
        self.longest_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def running(self) -> list[float]:
        rows = self._conn.execute(
            "SELECT EXTRACT(EPOCH FROM clock_timestamp() - query_start) FROM pg_stat_activity"
            " WHERE datname = %s AND state = 'active' AND pid <> pg_backend_pid()"
            " AND query LIKE '%%counted%%'", (self._database,)).fetchall()
        return [float(r[0]) for r in rows]

    def start(self) -> None:
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            ages = self.running()
            slow = [a for a in ages if a > 1.0]
            self.most_at_once = max(self.most_at_once, len(slow))
            self.longest_s = max([self.longest_s, *ages])

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def close(self) -> None:
        self._conn.close()


@dataclass
class MixFigures:
    store: str
    seconds: float
    requests: int
    rps: float
    p50: dict[str, float]
    p99: dict[str, float]
    errors: list[str]
    timeouts: int
    busy: int
    max_pending: int
    drained_s: float | None
    long_queries: tuple[int, float] | None  # most at once (> 1 s), longest (s); PostgreSQL only
    left_running: int | None  # results queries still running 2 s after the load; PostgreSQL only


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def drive(service: Service, seconds: float, clients: int) -> tuple[MixTally, float]:
    experiments = [new_experiment(service, "mixed") for _ in range(3)]
    tally = MixTally()
    connections = [Connection("127.0.0.1", service.port, TOKEN) for _ in range(clients)]
    started = time.monotonic()
    stop = started + seconds
    try:
        await asyncio.gather(*(one_client(c, experiments, tally, stop, seed) for seed, c in enumerate(connections)))
    finally:
        for c in connections:
            await c.close()
    return tally, time.monotonic() - started


def run_mix(service: Service, seconds: float, clients: int) -> MixFigures:
    lag = FoldLag(service.database_url)
    watch = None if service.database_url.startswith("sqlite") else LongQueries(service.database_url)
    lag.start()
    if watch is not None:
        watch.start()
    tally, elapsed = asyncio.run(drive(service, seconds, clients))
    drained = lag.end_of_load(time.monotonic(), 60)
    lag.close()
    left = None
    long_queries = None
    if watch is not None:
        watch.stop()
        time.sleep(2)
        left = len(watch.running())
        long_queries = (watch.most_at_once, watch.longest_s)
        watch.close()
    served = sum(sum(s.values()) for s in tally.statuses.values()) + tally.timeouts
    if service.process.poll() is not None:
        tally.errors.append(service.failure("the server died under the mixed load"))
    return MixFigures(
        store=service.label, seconds=elapsed, requests=served, rps=served / elapsed,
        p50={k: percentile(tally.latencies[k], 50) for k in KINDS},
        p99={k: percentile(tally.latencies[k], 99) for k in KINDS},
        errors=tally.errors, timeouts=tally.timeouts, busy=tally.busy, max_pending=lag.max_pending,
        drained_s=drained, long_queries=long_queries, left_running=left,
    )


def print_figures(f: MixFigures) -> None:
    print(f"  {f.store}: {f.requests:,} requests in {f.seconds:.0f} s, {f.rps:,.0f} req/s;"
          f" {len(f.errors)} errors, {f.timeouts} timeouts, {f.busy} results answered 503 (busy)", flush=True)
    for k in KINDS:
        print(f"    {k:<8} p50 {f.p50[k]:8.1f} ms   p99 {f.p99[k]:8.1f} ms", flush=True)
    drained = "not within 60 s" if f.drained_s is None else f"{f.drained_s:.1f} s after the load"
    print(f"    folder: at most {f.max_pending:,} events pending; drained {drained}", flush=True)
    if f.long_queries is not None:
        print(f"    results queries over 1 s at once: at most {f.long_queries[0]}; longest {f.long_queries[1]:.1f} s;"
              f" still running 2 s after the load: {f.left_running}", flush=True)
    for line in f.errors[:5]:
        print(f"    error: {line}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=90)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/12")
    args = parser.parse_args()
    figures: list[MixFigures] = []
    with tempfile.TemporaryDirectory(prefix="mixed-") as directory:
        tmp = Path(directory)
        stores = ["sqlite", "postgres"] if args.store == "both" else [args.store]
        for store in stores:
            pg = None
            if store == "postgres":
                pg = Postgres(args.postgres.rstrip("/"), args.redis)
                if (why := pg.why_not()) is not None:
                    print(f"PostgreSQL + Redis skipped: {why}")
                    continue
                pg.flush_redis()
                url, cache = pg.create("mixed"), pg.redis_url
            else:
                url, cache = f"sqlite:///{tmp / 'mixed.db'}", "memory://"
            service = start_service(store, url, cache, tmp, cpus="0")
            try:
                print(f"mixed load: {args.seconds:.0f} s, {args.clients} clients, {store}", flush=True)
                figures.append(run_mix(service, args.seconds, args.clients))
                print_figures(figures[-1])
            finally:
                service.stop()
                if pg is not None:
                    pg.drop_all()
    if len(figures) == 2:
        print(f"PostgreSQL + Redis throughput / SQLite's: {figures[1].rps / figures[0].rps:.2f}")
    return 1 if any(f.errors for f in figures) else 0


if __name__ == "__main__":
    sys.exit(main())
