"""`make bench`: load the real server the way `make run` starts it, and print each figure with
its ratio to a floor measured in the same run on the same machine."""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.sqlalchemy.migrate import upgrade  # noqa: E402
from domain.experiment import Experiment, VariantDraft  # noqa: E402

TOKEN = "bench-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
T0_US = 1_790_000_000_000_000  # late 2026, in microseconds
rows: list[tuple[str, str, str, str, str]] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit("server did not become healthy")


def start_service(db: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{db}", "API_TOKENS": TOKEN, "PORT": str(port), "WORKERS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "entrypoints", "serve"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_healthy(port, process)
    return process


def start_trivial(port: int) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.trivial_app:create", "--factory", "--port", str(port),
         "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/ping", timeout=1)
            return process
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("trivial app did not start")


def peak_rss_mib(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", text).group(1)) / 1024


def wrk(url: str, seconds: int, script: str | None = None) -> tuple[float, float, float]:
    """requests/s, p50 ms, p99 ms."""
    cmd = ["wrk", "-t1", "-c32", f"-d{seconds}s", "--latency", "-H", f"Authorization: Bearer {TOKEN}"]
    if script:
        cmd += ["-s", script]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=seconds + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def pct(p: str) -> float:
        value, unit = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]

    return rps, pct("50"), pct("99")


def record(figure: str, value: str, floor: str, ratio: str, target: str) -> None:
    rows.append((figure, value, floor, ratio, target))
    print(f"{figure:<38} {value:>16} {floor:>16} {ratio:>7}  {target}", flush=True)


def bench_assignment(port: int, seconds: int, rounds: int) -> None:
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk): skipping the HTTP load figures")
        return
    body = {"name": f"bench-{random.random()}", "variants": [{"name": "a", "traffic_percentage": 50},
                                                             {"name": "b", "traffic_percentage": 50}]}
    eid = httpx.post(f"http://127.0.0.1:{port}/experiments", json=body, headers=AUTH).json()["id"]
    httpx.get(f"http://127.0.0.1:{port}/experiments/{eid}/assignment/u1", headers=AUTH)
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(
        'counter = 0\nprefix = tostring(math.random(1, 1000000000))\n'
        'request = function()\n  counter = counter + 1\n'
        f'  return wrk.format("GET", "/experiments/{eid}/assignment/new-" .. prefix .. "-" .. counter)\nend\n'
    )
    trivial_port = free_port()
    trivial = start_trivial(trivial_port)
    floors, shapes, hits, news = [], [], [], []
    try:
        # Interleaved rounds, medians: two cores shared with wrk make any single run noisy.
        for _ in range(rounds):
            floors.append(wrk(f"http://127.0.0.1:{trivial_port}/ping", seconds))
            shapes.append(wrk(f"http://127.0.0.1:{trivial_port}/shape/experiments/{eid}/assignment/u1", seconds))
            hits.append(wrk(f"http://127.0.0.1:{port}/experiments/{eid}/assignment/u1", seconds))
            news.append(wrk(f"http://127.0.0.1:{port}", seconds, str(script)))
    finally:
        trivial.terminate()
        trivial.wait()
    floor = median_run(floors)
    shape = median_run(shapes)
    record("same-shape endpoint, no work: req/s", f"{shape[0]:,.0f}", f"{floor[0]:,.0f}",
           f"{shape[0] / floor[0]:.2f}", "(the framework's own cost)")
    for name, runs in (("assignment, cache hit", hits), ("assignment, new users", news)):
        rps, p50, p99 = median_run(runs)
        record(f"{name}: req/s", f"{rps:,.0f}", f"{floor[0]:,.0f}", f"{rps / floor[0]:.2f}",
               "≥ 0.9× trivial" if "hit" in name else "")
        record(f"{name}: p50 / p99 ms", f"{p50:.2f} / {p99:.2f}", f"{floor[1]:.2f} / {floor[2]:.2f}", "", "")
        if "hit" in name:
            record(f"{name}: vs same shape", f"{rps:,.0f}", f"{shape[0]:,.0f}", f"{rps / shape[0]:.2f}", "")


def median_run(runs: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    """The run with the median throughput, its latencies with it."""
    return sorted(runs)[len(runs) // 2]


def event_rows(eid: str, n: int, users: int, start: int = 0) -> list[tuple]:
    rng = random.Random(start)
    out = []
    for i in range(start, start + n):
        kind = rng.choice(("view", "view", "click", "purchase"))
        value = round(rng.uniform(1, 100), 2) if kind == "purchase" else None
        out.append((eid, f"u{rng.randrange(users)}", kind, T0_US + i * 1000, value, '{"sku":"A-1"}', f"ev-{i}"))
    return out


INGEST_LUA = """
counter = 0
prefix = tostring(math.random(1, 1000000000))
types = {"view", "view", "click", "purchase"}
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  counter = counter + 1
  local parts = {}
  for i = 1, 1000 do
    local t = types[(i % 4) + 1]
    local value = ""
    if t == "purchase" then value = ',"value":' .. (i % 97 + 0.25) end
    parts[i] = '{"experiment_id":"EID","user_id":"u' .. ((counter * 7919 + i * 104729) % 50000)
      .. '","event_type":"' .. t .. '","timestamp":"2026-11-28T12:00:00Z"' .. value
      .. ',"properties":{"sku":"A-1"},"event_id":"' .. prefix .. '-' .. counter .. '-' .. i .. '"}'
  end
  return wrk.format(nil, "/events", nil, '{"events":[' .. table.concat(parts, ",") .. ']}')
end
"""


def bench_ingest(port: int, seconds: int, tmp: Path) -> None:
    """Four connections posting 1,000-event batches, every event new; wrk builds the bodies
    in LuaJIT, so the client takes little of the two cores the server shares with it."""
    if shutil.which("wrk") is None:
        return
    body = {"name": f"ingest-{random.random()}", "variants": [{"name": "a", "traffic_percentage": 50},
                                                              {"name": "b", "traffic_percentage": 50}]}
    eid = httpx.post(f"http://127.0.0.1:{port}/experiments", json=body, headers=AUTH).json()["id"]
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(INGEST_LUA.replace("EID", eid))
    cmd = ["wrk", "-t1", "-c4", f"-d{seconds}s", "-H", f"Authorization: Bearer {TOKEN}", "-s", str(script),
           f"http://127.0.0.1:{port}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"ingestion answered errors:\n{out}")
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    elapsed = float(re.search(r"requests in ([\d.]+)s", out).group(1))
    service = requests * 1000 / elapsed
    batches = requests
    raw_db = tmp / "raw.db"
    upgrade(f"sqlite:///{raw_db}")
    conn = sqlite3.connect(raw_db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA cache_size=-65536")  # the service's settings, so only the code differs
    rows_ = [event_rows("raw", 1000, 50_000, b * 1000) for b in range(batches)]
    started = time.perf_counter()
    for batch in rows_:
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO events (experiment_id, user_id, event_type, timestamp, value, properties,"
                         " event_id) VALUES (?, ?, ?, ?, ?, ?, ?)", batch)
        conn.execute("COMMIT")
    raw = batches * 1000 / (time.perf_counter() - started)
    conn.close()
    record("ingestion, 1,000-event batches: ev/s", f"{service:,.0f}", f"{raw:,.0f}", f"{service / raw:.2f}",
           "≥ 100,000 ev/s and ≥ 0.5× raw")


# "+ 0": walk events once, assignments by their unique key (see REBUILD_SQL in aggregates.py).
RAW_JOIN = """
SELECT a.variant_id, COUNT(*), COUNT(DISTINCT CASE WHEN e.event_type = 'purchase' THEN e.user_id END)
FROM events e JOIN user_assignments a ON a.experiment_id = e.experiment_id AND a.user_id = e.user_id
WHERE e.experiment_id = ? AND e.timestamp + 0 >= a.assigned_at GROUP BY a.variant_id
"""


def bench_results(n_events: int, n_users: int, tmp: Path) -> None:
    db = tmp / f"results-{n_events}.db"
    url = f"sqlite:///{db}"
    upgrade(url)
    exp = Experiment.create(name=f"results-{n_events}", description=None, primary_event_type="purchase",
                            variants=[VariantDraft("control", 50), VariantDraft("green", 50)],
                            new_id=iter([f"e{n_events}", "vc", "vg"]).__next__,
                            created_at=__import__("datetime").datetime(2026, 1, 1, tzinfo=__import__("datetime").UTC))
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO experiments VALUES (?, ?, NULL, 'purchase', ?)", (exp.id, exp.name, T0_US))
    for i, v in enumerate(exp.variants):
        conn.execute("INSERT INTO variants VALUES (?, ?, ?, ?, ?, ?)", (v.id, exp.id, i, v.name, v.traffic_basis_points, v.is_control))
    conn.executemany("INSERT INTO user_assignments VALUES (?, ?, ?, ?)",
                     ((exp.id, f"u{u}", exp.variant_for_user(f"u{u}").id, T0_US + u) for u in range(n_users)))
    started = time.perf_counter()
    for start in range(0, n_events, 100_000):
        conn.executemany("INSERT INTO events (experiment_id, user_id, event_type, timestamp, value, properties,"
                         " event_id) VALUES (?, ?, ?, ?, ?, NULL, NULL)",
                         (r[:5] for r in event_rows(exp.id, min(100_000, n_events - start), n_users, start)))
    conn.commit()
    load = time.perf_counter() - started
    conn.close()
    rebuilt = time.perf_counter()
    subprocess.run([sys.executable, "-m", "entrypoints", "rebuild-aggregates"], cwd=ROOT, check=True,
                   env={**os.environ, "DATABASE_URL": url}, stdout=subprocess.DEVNULL)
    print(f"  loaded {n_events:,} events in {load:.0f} s; rebuilt aggregates in {time.perf_counter() - rebuilt:.1f} s")
    port = free_port()
    server = start_service(db, port)
    try:
        path = f"http://127.0.0.1:{port}/experiments/{exp.id}/results"
        times, dated = [], []
        # One client for every call: httpx.get() builds a client (and its TLS context) per call,
        # 40 ms that the service never sees.
        with httpx.Client(headers=AUTH, timeout=600) as client:
            body = client.get(path).json()  # warm-up
            for _ in range(10):
                t = time.perf_counter()
                client.get(path).raise_for_status()
                times.append((time.perf_counter() - t) * 1000)
            days = {"start_date": "2026-09-21", "end_date": "2026-09-22", "event_type": "purchase"}
            for _ in range(3):  # whole days: the per-day totals
                t = time.perf_counter()
                by_days = client.get(path, params=days)
                by_days.raise_for_status()
                dated.append((time.perf_counter() - t) * 1000)
            # A time of day: the fallback scan of raw events in range; it must agree.
            t = time.perf_counter()
            scanned = client.get(path, params={**days, "start_date": "2026-09-21T00:00:00.000001"})
            scan_ms = (time.perf_counter() - t) * 1000
            mine = {v["variant_id"]: (v["events"], v["primary_unique_users"]) for v in by_days.json()["variants"]}
            theirs = {v["variant_id"]: (v["events"], v["primary_unique_users"]) for v in scanned.json()["variants"]}
            if mine != theirs:  # no event of the bench falls in that first microsecond
                raise SystemExit(f"MISMATCH: per-day totals {mine} != scan {theirs}")
        rss = peak_rss_mib(server.pid)
    finally:
        server.terminate()
        server.wait()
    raw_conn = sqlite3.connect(db)
    t = time.perf_counter()
    raw = {v: (n, p) for v, n, p in raw_conn.execute(RAW_JOIN, (exp.id,))}
    raw_ms = (time.perf_counter() - t) * 1000
    raw_conn.close()
    for variant in body["variants"]:
        want = raw.get(variant["variant_id"], (0, 0))
        got = (variant["events"], variant["primary_unique_users"])
        if got != want:
            raise SystemExit(f"MISMATCH for {variant['variant_name']}: service {got} != raw SQL {want}")
    median = statistics.median(times)
    record(f"results, {n_events:,} events: ms", f"{median:.1f}", f"{raw_ms:.1f}", f"{median / raw_ms:.3f}",
           "≤ 50 ms at 10M" if n_events >= 10_000_000 else "")
    record(f"results, {n_events:,} ev, whole days: ms", f"{statistics.median(dated):.1f}", f"{raw_ms:.1f}",
           f"{statistics.median(dated) / raw_ms:.3f}", "")
    record(f"results, {n_events:,} ev, time of day: ms", f"{scan_ms:.1f}", f"{raw_ms:.1f}",
           f"{scan_ms / raw_ms:.3f}", "(falls back to a scan)")
    record(f"server peak RSS (results {n_events:,})", f"{rss:.0f} MiB", "", "", "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="results at 100k and 1M events, shorter loads")
    parser.add_argument("--only", choices=["assignment", "ingest", "results"])
    args = parser.parse_args()
    seconds = 5 if args.quick else 10
    sizes = [(100_000, 10_000), (1_000_000, 100_000)] if args.quick else [(1_000_000, 100_000), (10_000_000, 100_000)]
    print(f"{'figure':<38} {'value':>16} {'floor':>16} {'ratio':>7}  target")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if args.only in (None, "assignment", "ingest"):
            port = free_port()
            server = start_service(tmp / "service.db", port)
            try:
                if args.only in (None, "assignment"):
                    bench_assignment(port, seconds, 1 if args.quick else 3)
                if args.only in (None, "ingest"):
                    bench_ingest(port, seconds, tmp)
                record("server peak RSS (HTTP figures)", f"{peak_rss_mib(server.pid):.0f} MiB", "", "", "")
            finally:
                server.terminate()
                server.wait()
        if args.only in (None, "results"):
            for n_events, n_users in sizes:
                bench_results(n_events, n_users, tmp)


if __name__ == "__main__":
    main()
