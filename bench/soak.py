"""`make soak`: a bounded soak of the real server under a mixed load, reporting errors and the
server's memory over time. Not part of `make test`: it runs for minutes, and what it finds (a
slow leak, a rare 5xx) shows as a trend in its table rather than as one assertion.

Each client loops over a mix like production's: assignments of new and returning users, event
batches of 1 to 200 (some repeating event ids), results with and without filters, experiment
reads, and hostile requests that must be 4xx (malformed JSON, unknown experiments, bad tokens,
future timestamps). Every interval prints requests served, their rate, errors, and the server's
resident memory. Exit status 1 if any request got a 5xx or no answer, or if memory kept growing
past ``--rss-growth`` after the first interval (the warm-up).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import secrets
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.servers import AUTH, Postgres, Service, new_experiment, start_service  # noqa: E402


def rss_mib(pid: int) -> float:
    """Resident memory of the server process and its children (workers), now."""
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{p}/status").read_text())
        except OSError:
            continue
        if match:
            total += int(match.group(1))
    return total / 1024


@dataclass
class Tally:
    by_kind: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)  # 5xx, no answer, or an unexpected status
    served: int = 0

    def check(self, kind: str, response: httpx.Response | None, expected: set[int], note: str = "") -> None:
        self.served += 1
        self.by_kind[kind] += 1
        if kind == "results" and response is not None and response.status_code == 503 \
                and "retry-after" in response.headers:
            self.by_kind["results busy (503, Retry-After)"] += 1  # the bound on results: by design
        elif response is None:
            self.errors.append(f"{kind}: no answer {note}")
        elif response.status_code not in expected:
            self.errors.append(f"{kind}: {response.status_code} {response.text[:200]}")


async def call(client: httpx.AsyncClient, method: str, path: str, **kwargs) -> httpx.Response | None:  # noqa: ANN003
    try:
        return await client.request(method, path, **kwargs)
    except httpx.HTTPError:
        return None


async def one_client(client: httpx.AsyncClient, experiments: list[str], tally: Tally, stop: float, seed: int) -> None:
    rng = random.Random(seed)
    users = 0
    while time.monotonic() < stop:
        x = rng.choice(experiments)
        roll = rng.random()
        if roll < 0.55:  # assignment: a new user a third of the time, else a returning one
            users += rng.random() < 0.33
            user = f"soak-{seed}-{rng.randrange(users + 1)}"
            tally.check("assign", await call(client, "GET", f"/experiments/{x}/assignment/{user}"), {200})
        elif roll < 0.85:  # a batch of events, some ids repeated across batches
            n = rng.randint(1, 200)
            events = [
                {"experiment_id": x, "user_id": f"soak-{seed}-{rng.randrange(users + 1)}",
                 "event_type": rng.choice(["view", "click", "purchase"]), "value": rng.randrange(100) / 4,
                 "event_id": f"soak-{seed}-{rng.randrange(10**9)}" if rng.random() < 0.9 else f"soak-{seed}-dup"}
                for _ in range(n)
            ]
            tally.check("events", await call(client, "POST", "/events", json={"events": events}), {202})
        elif roll < 0.92:
            params = {"event_type": "click"} if rng.random() < 0.3 else {}
            tally.check("results", await call(client, "GET", f"/experiments/{x}/results", params=params), {200})
        elif roll < 0.96:
            tally.check("read", await call(client, "GET", f"/experiments/{x}"), {200})
        else:  # hostile: each must be refused with a 4xx, never a 5xx
            kind = rng.randrange(4)
            if kind == 0:
                answer = await call(client, "POST", "/events", content=b'{"events": [', headers={"Content-Type": "application/json"})
                tally.check("hostile", answer, {400})
            elif kind == 1:
                answer = await call(client, "GET", f"/experiments/nope-{rng.randrange(10**6)}/assignment/u")
                tally.check("hostile", answer, {404})
            elif kind == 2:
                answer = await call(client, "GET", f"/experiments/{x}", headers={"Authorization": "Bearer wrong"})
                tally.check("hostile", answer, {401})
            else:
                event = {"experiment_id": x, "user_id": "u", "event_type": "view", "timestamp": "2099-01-01T00:00:00Z"}
                tally.check("hostile", await call(client, "POST", "/events", json=event), {422})


async def soak(service: Service, seconds: float, interval: float, clients: int, rss_growth: float) -> int:
    experiments = [new_experiment(service, "soak") for _ in range(3)]
    tally = Tally()
    stop = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients)
    samples: list[float] = []
    print(f"{'t (s)':>6} {'requests':>9} {'req/s':>7} {'errors':>6} {'RSS MiB':>8}", flush=True)
    async with httpx.AsyncClient(base_url=service.base, headers=AUTH, limits=limits, timeout=30) as client:
        tasks = [asyncio.create_task(one_client(client, experiments, tally, stop, seed)) for seed in range(clients)]
        started = last_t = time.monotonic()
        last_served = 0
        while not all(t.done() for t in tasks):
            await asyncio.sleep(min(interval, max(0.1, stop - time.monotonic())))
            now = time.monotonic()
            rss = rss_mib(service.process.pid)
            samples.append(rss)
            rate = (tally.served - last_served) / max(now - last_t, 1e-9)
            print(f"{now - started:6.0f} {tally.served:9d} {rate:7.0f} {len(tally.errors):6d} {rss:8.1f}", flush=True)
            last_served, last_t = tally.served, now
        await asyncio.gather(*tasks)
    print("by kind:", dict(tally.by_kind))
    failed = False
    if tally.errors:
        failed = True
        print(f"{len(tally.errors)} errors, the first ones:")
        for line in tally.errors[:10]:
            print("  ", line)
    if len(samples) >= 3:
        warm, end = samples[0], samples[-1]
        growth = (end - warm) / warm if warm else 0.0
        print(f"RSS after warm-up {warm:.1f} MiB, at the end {end:.1f} MiB, peak {max(samples):.1f} MiB "
              f"({growth:+.0%}; allowed {rss_growth:+.0%})")
        failed |= growth > rss_growth
    if service.process.poll() is not None:
        print(service.failure("the server died during the soak"))
        failed = True
    print("soak FAILED" if failed else "soak passed")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=180, help="how long the load runs (default 180)")
    parser.add_argument("--interval", type=float, default=10, help="seconds between report lines")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients")
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite",
                        help="sqlite with the memory cache, or PostgreSQL with Redis")
    parser.add_argument("--rss-growth", type=float, default=0.5,
                        help="largest growth of resident memory after warm-up, as a fraction")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="soak-") as directory:
        tmp = Path(directory)
        pg = None
        if args.store == "postgres":
            pg = Postgres("postgresql://postgres@127.0.0.1:5432", "redis://127.0.0.1:6379/7")
            if (why := pg.why_not()) is not None:
                print(why)
                return 1
            pg.flush_redis()
            url, cache = pg.create("soak"), pg.redis_url
        else:
            url, cache = f"sqlite:///{tmp / 'soak.db'}", "memory://"
        service = start_service(f"soak-{args.store}", url, cache, tmp)
        try:
            print(f"soak: {args.seconds:.0f} s, {args.clients} clients, {args.store}, server pid {service.process.pid}")
            return asyncio.run(soak(service, args.seconds, args.interval, args.clients, args.rss_growth))
        finally:
            service.stop()
            if pg is not None:
                pg.drop_all()


if __name__ == "__main__":
    sys.exit(main())
