"""`make bench`: load the real server the way `make run` starts it, and print each figure with
its floor (or reference) measured in the same run on the same machine, the ratio, and the
target. SQLite with the memory cache first, then PostgreSQL with Redis when both answer."""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import random
import re
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.sqlalchemy.migrate import upgrade  # noqa: E402
from bench.servers import (  # noqa: E402
    AUTH,
    PRIMARY,
    TOKEN,
    FoldLag,
    Postgres,
    Service,
    first_line,
    free_port,
    new_experiment,
    pg_txid_column,
    start_service,
    start_trivial,
)
from domain.experiment import Experiment, VariantDraft  # noqa: E402

T0_US = 1_790_000_000_000_000  # 2026-09-21T14:13:20Z in microseconds; bench event i is at T0 + i ms
HOUR_US = 3_600_000_000
DAY_US = 86_400_000_000

# ---------------------------------------------------------------------------------- the table


@dataclass
class Row:
    section: str
    figure: str
    value: str
    floor: str
    ratio: str
    target: str
    met: bool | None


rows: list[Row] = []
mismatches: list[str] = []
section = ""


def heading(text: str, short: str = "") -> None:
    global section
    section = short
    print(f"\n== {text}", flush=True)


def record(figure: str, value: str, floor: str = "", ratio: str = "", target: str = "",
           met: bool | None = None) -> None:
    rows.append(Row(section, figure, value, floor, ratio, target, met))
    mark = "" if met is None else ("yes" if met else "NO")
    print(f"{figure:<40} {value:>22} {floor:>18} {ratio:>6}  {target:<26} {mark}".rstrip(), flush=True)


def ratio_text(value: float, floor: float) -> str:
    if not floor:
        return ""
    r = value / floor
    return f"{r:.2f}" if r >= 0.1 else f"{r:.3f}"


# ---------------------------------------------------------------------------------- wrk


@dataclass
class WrkRun:
    rps: float
    p50: float
    p99: float
    requests: int
    elapsed: float
    errors: int  # non-2xx answers and socket errors


def wrk(url: str, seconds: int, script: Path | None = None, connections: int = 32,
        timeout_s: int = 2) -> WrkRun:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", f"--timeout={timeout_s}s", "--latency",
           "-H", f"Authorization: Bearer {TOKEN}"]
    if script:
        cmd += ["-s", str(script)]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=seconds + 120).stdout
    try:
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        requests = int(re.search(r"(\d+) requests in", out).group(1))
        elapsed_value, elapsed_unit = re.search(r"requests in ([\d.]+)(m|s)", out).groups()
    except AttributeError:
        raise SystemExit(f"could not read wrk's output:\n{out}") from None
    elapsed = float(elapsed_value) * (60 if elapsed_unit == "m" else 1)

    def pct(p: str) -> float:
        value, unit = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]

    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    if errors:
        print(f"  warning: {errors:,} of {requests:,} requests to {url} failed or timed out", flush=True)
    return WrkRun(rps, pct("50"), pct("99"), requests, elapsed, errors)


def median_run(runs: list[WrkRun]) -> WrkRun:
    """The run with the median throughput, its latencies with it."""
    return sorted(runs, key=lambda r: r.rps)[len(runs) // 2]


NEW_USERS_LUA = """
counter = 0
prefix = tostring(math.random(1, 1000000000))
request = function()
  counter = counter + 1
  return wrk.format("GET", "/experiments/EID/assignment/new-" .. prefix .. "-" .. counter)
end
"""

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


def lua_script(tmp: Path, template: str, eid: str) -> Path:
    path = tmp / f"load-{secrets.token_hex(4)}.lua"
    path.write_text(template.replace("EID", eid))
    return path


# ---------------------------------------------------------------------------------- assignment


@dataclass
class AssignmentFigures:
    runs: dict[str, list[WrkRun]]

    def median(self, key: str) -> WrkRun | None:
        return median_run(self.runs[key]) if self.runs.get(key) else None


def measure_assignment(services: dict[str, Service], new_users_for: set[str], seconds: int, rounds: int,
                       tmp: Path) -> AssignmentFigures:
    """Interleaved rounds over every load (the two cores shared with wrk make any single run
    noisy; interleaving spreads the machine's drift over all of them alike), medians after."""
    trivial_port = free_port()
    trivial = start_trivial(trivial_port)
    try:
        loads: list[tuple[str, str, Path | None]] = [
            ("trivial", f"http://127.0.0.1:{trivial_port}/ping", None),
            ("shape", f"http://127.0.0.1:{trivial_port}/shape/experiments/{'0' * 32}/assignment/u1", None),
        ]
        for label, service in services.items():
            eid = new_experiment(service, f"assign-{label}")
            httpx.get(f"{service.base}/experiments/{eid}/assignment/u1", headers=AUTH).raise_for_status()
            loads.append((f"{label} hit", f"{service.base}/experiments/{eid}/assignment/u1", None))
            if label in new_users_for:
                loads.append((f"{label} new", service.base, lua_script(tmp, NEW_USERS_LUA, eid)))
        runs: dict[str, list[WrkRun]] = {key: [] for key, _, _ in loads}
        for _ in range(rounds):
            for key, url, script in loads:
                runs[key].append(wrk(url, seconds, script))
                for service in services.values():
                    if service.process.poll() is not None:
                        raise SystemExit(service.failure(f"during the {key} load"))
    finally:
        trivial.terminate()
        trivial.wait()
    return AssignmentFigures(runs)


def record_floors(figures: AssignmentFigures, sqlite_hit: bool) -> None:
    trivial, shape = figures.median("trivial"), figures.median("shape")
    record("trivial endpoint: req/s", f"{trivial.rps:,.0f}", "", "", "(bench/trivial_app.py /ping)")
    record("same-shape endpoint, no work: req/s", f"{shape.rps:,.0f}", f"{trivial.rps:,.0f}",
           ratio_text(shape.rps, trivial.rps), "(the framework's own cost)")
    record("same-shape endpoint: p50 / p99 ms", f"{shape.p50:.2f} / {shape.p99:.2f}")
    if sqlite_hit:  # printed here when the SQLite section is not run: PostgreSQL's floor
        hit = figures.median("sqlite hit")
        record("SQLite + memory, cache hit: req/s", f"{hit.rps:,.0f}", f"{shape.rps:,.0f}",
               ratio_text(hit.rps, shape.rps), "(PostgreSQL's floor)")


def record_assignment(figures: AssignmentFigures, label: str, new_share: float, hit_floor_key: str,
                      hit_share: float, hit_floor_name: str) -> None:
    shape = figures.median("shape")
    new = figures.median(f"{label} new")
    if new is not None:
        share = new.rps / shape.rps
        record("assignment, new users: req/s", f"{new.rps:,.0f}", f"{shape.rps:,.0f}", ratio_text(new.rps, shape.rps),
               f"≥ {new_share}× same shape", share >= new_share)
        record("assignment, new users: p50 / p99 ms", f"{new.p50:.2f} / {new.p99:.2f}",
               f"{shape.p50:.2f} / {shape.p99:.2f}")
    hit, floor = figures.median(f"{label} hit"), figures.median(hit_floor_key)
    if hit is not None:
        record("assignment, cache hit: req/s", f"{hit.rps:,.0f}", f"{floor.rps:,.0f}", ratio_text(hit.rps, floor.rps),
               f"≥ {hit_share}× {hit_floor_name}", hit.rps / floor.rps >= hit_share)
        record("assignment, cache hit: p50 / p99 ms", f"{hit.p50:.2f} / {hit.p99:.2f}",
               f"{floor.p50:.2f} / {floor.p99:.2f}")


# ---------------------------------------------------------------------------------- ingestion


def run_ingest_load(service: Service, seconds: int, tmp: Path, drain_timeout_s: float) -> tuple[int, float, FoldLag, float | None]:
    """Four connections posting 1,000-event batches, every event new; wrk builds the bodies in
    LuaJIT, so the client takes little of the two cores the server shares with it. Returns the
    batches, the events/s, and the folder's lag with the drain time."""
    eid = new_experiment(service, f"ingest-{service.label}")
    script = lua_script(tmp, INGEST_LUA, eid)
    lag = FoldLag(service.database_url)
    lag.start()
    run = wrk(service.base, seconds, script, connections=4, timeout_s=30)
    drain = lag.end_of_load(time.monotonic(), drain_timeout_s)
    lag.close()
    if run.errors:
        raise SystemExit(service.failure(f"ingestion answered {run.errors} errors"))
    return run.requests, run.requests * 1000 / run.elapsed, lag, drain


def raw_sqlite_ingest(tmp: Path, batches: int) -> float:
    """raw sqlite3.executemany of as many events into the same schema and indexes, with the
    service's settings (WAL, synchronous=FULL, 64 MiB cache), one commit per 1,000."""
    raw_db = tmp / f"raw-{secrets.token_hex(3)}.db"
    upgrade(f"sqlite:///{raw_db}")
    conn = sqlite3.connect(raw_db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA cache_size=-65536")
    spent = 0.0
    for b in range(batches):
        batch = event_rows("raw", 1000, 50_000, b * 1000)  # built outside the timing
        started = time.perf_counter()
        conn.execute("BEGIN")
        conn.executemany(f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", batch)
        conn.execute("COMMIT")
        spent += time.perf_counter() - started
    conn.close()
    return batches * 1000 / spent


def raw_pg_ingest(pg: Postgres, batches: int) -> float:
    """psycopg executemany (pipelined) of as many events into the same schema and indexes, one
    commit per 1,000."""
    import psycopg

    url = pg.create("raw")
    upgrade(url)
    spent = 0.0
    with psycopg.connect(url) as conn:
        txid = ", txid_current()" if pg_txid_column(conn) else ""
        txid_col = ", txid" if txid else ""
        sql = (f"INSERT INTO events ({EVENT_COLUMNS}{txid_col})"
               f" VALUES (%s, %s, %s, %s, %s, %s, %s{txid})")
        conn.commit()
        for b in range(batches):
            batch = event_rows("raw", 1000, 50_000, b * 1000)
            started = time.perf_counter()
            with conn.cursor() as cur:
                cur.executemany(sql, batch)
            conn.commit()
            spent += time.perf_counter() - started
    return batches * 1000 / spent


def bench_ingest(service: Service, seconds: int, tmp: Path, drain_timeout_s: float,
                 raw: Callable[[int], float], raw_name: str, target_eps: int) -> None:
    batches, events_per_s, lag, drain = run_ingest_load(service, seconds, tmp, drain_timeout_s)
    floor = raw(batches)
    record("ingestion, 1,000-event batches: ev/s", f"{events_per_s:,.0f}", f"{floor:,.0f}",
           ratio_text(events_per_s, floor), f"≥ {target_eps:,} ev/s", events_per_s >= target_eps)
    print(f"  floor: {raw_name} of the same {batches * 1000:,} events", flush=True)
    if lag.reason is not None:
        record(f"folder lag: n/a ({lag.reason})", "")
    else:
        record("folder lag: max pending events", f"{lag.max_pending:,}", "", "",
               f"(sampled {lag.samples}× under load)")
        record("folder lag: drain after the load, s", f"> {drain_timeout_s:.0f}" if drain is None else f"{drain:.2f}",
               "", "", "(until nothing is pending)")


# ---------------------------------------------------------------------------------- results

EVENT_COLUMNS = 'experiment_id, user_id, event_type, "timestamp", value, properties, event_id'


def event_rows(eid: str, n: int, users: int, start: int = 0) -> list[tuple]:
    rng = random.Random(start)
    out = []
    for i in range(start, start + n):
        kind = rng.choice(("view", "view", "click", PRIMARY))
        value = round(rng.uniform(1, 100), 2) if kind == PRIMARY else None
        out.append((eid, f"u{rng.randrange(users)}", kind, T0_US + i * 1000, value, '{"sku":"A-1"}', f"ev-{i}"))
    return out


def iso(micros: int) -> str:
    return (dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=micros)).isoformat()


@dataclass(frozen=True)
class Ranges:
    """The four results queries and their inclusive bounds in microseconds (None: unbounded)."""

    bounds: dict[str, tuple[int | None, int | None]]

    @classmethod
    def for_events(cls, n_events: int) -> Ranges:
        """Bench event i is at T0 + i ms. The time-of-day range starts half a second past a
        whole second a fifth into the data and ends at a whole second four fifths in, so both of
        its edge hours hold events inside and outside it (at 10M: 14:46:39.5 to 16:26:39 on
        2026-09-21; the whole hours around it, 14:00 to 16:59:59.999999)."""
        first, last = T0_US, T0_US + (n_events - 1) * 1000
        span_s = (last - first) // 1_000_000
        start = first + span_s // 5 * 1_000_000 + 500_000
        end = first + span_s * 4 // 5 * 1_000_000
        hour_start, hour_end = start // HOUR_US * HOUR_US, (end // HOUR_US + 1) * HOUR_US - 1
        if not (hour_start < first < start and end < last <= hour_end):
            raise SystemExit(f"the edge hours of the time-of-day range hold no events at {n_events:,} events")
        day = first // DAY_US * DAY_US
        return cls({
            "unfiltered": (None, None),
            "two whole days": (day, day + 2 * DAY_US - 1),
            "whole hours": (hour_start, hour_end),
            "time of day": (start, end),
        })

    def params(self, name: str) -> dict[str, str]:
        lo, hi = self.bounds[name]
        if name == "two whole days":  # dates, as a team asks for whole days
            return {"start_date": iso(lo)[:10], "end_date": iso(hi)[:10]}
        return {} if lo is None else {"start_date": iso(lo), "end_date": iso(hi)}

    def raw_sql(self, placeholder: str) -> str:
        """One walk over the raw events that counts, per variant and range, what results must
        answer: counted events (at or after the user's assignment), converters (users with a
        counted primary event) and the sum of the primary events' values."""
        figures = []
        for lo, hi in self.bounds.values():
            inside = " AND ".join([*([f"e.timestamp >= {lo}"] if lo is not None else []),
                                   *([f"e.timestamp <= {hi}"] if hi is not None else [])]) or "1 = 1"
            primary = f"{inside} AND e.event_type = '{PRIMARY}'"
            figures += [f"SUM(CASE WHEN {inside} THEN 1 ELSE 0 END)",
                        f"COUNT(DISTINCT CASE WHEN {primary} THEN e.user_id END)",
                        f"SUM(CASE WHEN {primary} THEN COALESCE(e.value, 0.0) ELSE 0.0 END)"]
        # "+ 0": walk events once, assignments by their unique key (see REBUILD_SQL in aggregates.py).
        return (f"SELECT a.variant_id, {', '.join(figures)} FROM events e JOIN user_assignments a"
                " ON a.experiment_id = e.experiment_id AND a.user_id = e.user_id"
                f" WHERE e.experiment_id = {placeholder} AND e.timestamp + 0 >= a.assigned_at"
                " GROUP BY a.variant_id")

    def split(self, raw_rows: list[tuple]) -> dict[str, dict[str, tuple[int, int, float]]]:
        out: dict[str, dict[str, tuple[int, int, float]]] = {name: {} for name in self.bounds}
        for variant_id, *figures in raw_rows:
            for i, name in enumerate(self.bounds):
                n, converters, value_sum = figures[3 * i: 3 * i + 3]
                out[name][variant_id] = (int(n or 0), int(converters or 0), float(value_sum or 0.0))
        return out


def check(where: str, answer: dict, raw: dict[str, tuple[int, int, float]]) -> None:
    seen = set()
    for v in answer["variants"]:
        seen.add(v["variant_id"])
        want = raw.get(v["variant_id"], (0, 0, 0.0))
        got = (v["events"], v["primary_unique_users"], float(v["value_sum"] or 0.0))
        if got[:2] != want[:2] or not math.isclose(got[2], want[2], rel_tol=1e-9):
            mismatches.append(f"{where}, {v['variant_name']}: service (events, converters, value sum) {got}"
                              f" != raw SQL {want}")
            print(f"  MISMATCH: {mismatches[-1]}", flush=True)
    if set(raw) - seen:
        mismatches.append(f"{where}: variants {sorted(set(raw) - seen)} missing from the answer")
        print(f"  MISMATCH: {mismatches[-1]}", flush=True)


def bench_experiment(n_events: int) -> Experiment:
    return Experiment.create(name=f"results-{n_events}", description=None, primary_event_type=PRIMARY,
                             variants=[VariantDraft("control", 50), VariantDraft("green", 50)],
                             new_id=iter([f"e{n_events}", "vc", "vg"]).__next__,
                             created_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))


def setup_rows(exp: Experiment, n_users: int) -> tuple[tuple, list[tuple], Iterator[tuple]]:
    experiment = (exp.id, exp.name, PRIMARY, T0_US)
    variants = [(v.id, exp.id, i, v.name, v.traffic_basis_points, v.is_control) for i, v in enumerate(exp.variants)]
    assignments = ((exp.id, f"u{u}", exp.variant_for_user(f"u{u}").id, T0_US + u) for u in range(n_users))
    return experiment, variants, assignments


SETUP_SQL = (
    "INSERT INTO experiments (id, name, description, primary_event_type, created_at) VALUES ({p}, {p}, NULL, {p}, {p})",
    "INSERT INTO variants (id, experiment_id, position, name, traffic_basis_points, is_control)"
    " VALUES ({p}, {p}, {p}, {p}, {p}, {p})",
    "INSERT INTO user_assignments (experiment_id, user_id, variant_id, assigned_at) VALUES ({p}, {p}, {p}, {p})",
    "INSERT INTO assignment_dimensions (experiment_id, user_id, dimension, value) VALUES ({p}, {p}, {p}, {p})",
)
DIMENSIONS = {"platform": 3, "country": 60}
"""The breakdowns' dimensions and their values: country has more than the 50 a breakdown shows."""


def dimension_rows(exp: Experiment, n_users: int) -> Iterator[tuple]:
    """Every user's values, as assignments with attributes would store them; one in ten has
    no platform (the slice unknown)."""
    for u in range(n_users):
        if u % 10:
            yield exp.id, f"u{u}", "platform", ("ios", "android", "web")[u % 3]
        yield exp.id, f"u{u}", "country", f"c{u % DIMENSIONS['country']:02d}"


def load_sqlite(url: str, exp: Experiment, n_events: int, n_users: int) -> None:
    """Raw rows straight into the tables, as a restore would; the totals come from rebuild."""
    conn = sqlite3.connect(url.removeprefix("sqlite:///"))
    experiment, variants, assignments = setup_rows(exp, n_users)
    experiments_sql, variants_sql, assignments_sql, dimensions_sql = (s.format(p="?") for s in SETUP_SQL)
    conn.execute(experiments_sql, experiment)
    conn.executemany(variants_sql, variants)
    conn.executemany(assignments_sql, assignments)
    conn.executemany(dimensions_sql, dimension_rows(exp, n_users))
    for start in range(0, n_events, 100_000):
        conn.executemany(f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, NULL, NULL)",
                         (r[:5] for r in event_rows(exp.id, min(100_000, n_events - start), n_users, start)))
    conn.commit()
    conn.close()


def load_pg(url: str, exp: Experiment, n_events: int, n_users: int) -> None:
    """The same rows through psycopg: COPY for the events, then ANALYZE for the planner."""
    import psycopg

    experiment, variants, assignments = setup_rows(exp, n_users)
    experiments_sql, variants_sql, assignments_sql, _ = (s.format(p="%s") for s in SETUP_SQL)
    with psycopg.connect(url) as conn:
        with conn.cursor() as cur:
            cur.execute(experiments_sql, experiment)
            cur.executemany(variants_sql, variants)
            with cur.copy("COPY user_assignments (experiment_id, user_id, variant_id, assigned_at) FROM STDIN") as copy:
                for row in assignments:
                    copy.write_row(row)
            with cur.copy("COPY assignment_dimensions (experiment_id, user_id, dimension, value) FROM STDIN") as copy:
                for row in dimension_rows(exp, n_users):
                    copy.write_row(row)
            txid = cur.execute("SELECT txid_current()").fetchone()[0] if pg_txid_column(conn) else None
            columns = 'experiment_id, user_id, event_type, "timestamp", value' + (", txid" if txid else "")
            with cur.copy(f"COPY events ({columns}) FROM STDIN") as copy:
                for start in range(0, n_events, 100_000):
                    for r in event_rows(exp.id, min(100_000, n_events - start), n_users, start):
                        copy.write_row(r[:5] + ((txid,) if txid else ()))
        conn.commit()
        conn.autocommit = True
        conn.execute("ANALYZE")


def timed_calls(client: httpx.Client, path: str, params: dict[str, str], n: int, budget_s: float,
                read: Callable[[httpx.Response], Any] = httpx.Response.json) -> tuple[float, Any]:
    """Median ms of up to n calls, fewer once budget_s is spent (a scan at 10M events takes a
    minute); the last answer, as ``read`` reads it (its JSON by default)."""
    times = []
    spent_from = time.perf_counter()
    while len(times) < n and (not times or time.perf_counter() - spent_from < budget_s):
        t = time.perf_counter()
        answer = client.get(path, params=params)
        times.append((time.perf_counter() - t) * 1000)
        answer.raise_for_status()
    return statistics.median(times), read(answer)


def _html(answer: httpx.Response) -> str:
    return answer.text


def signed_in(base: str, admin: httpx.Client) -> httpx.Client:
    """A client holding a results pages' session, signed in with a new read key."""
    key = admin.post(f"{base}/keys", json={"name": "bench reader", "scopes": ["read"]}).json()["key"]
    pages = httpx.Client(base_url=base, timeout=900)
    form = pages.get("/ui/sign-in").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
    signed = pages.post("/ui/sign-in", data={"csrf": csrf, "api_key": key})
    if signed.status_code != 303:
        raise httpx.HTTPError(f"sign-in answered {signed.status_code}")
    return pages


SCORECARD = [
    {"name": "buyers", "kind": "conversion", "event_type": PRIMARY, "role": "primary"},
    {"name": "revenue", "kind": "value", "event_type": PRIMARY},
    {"name": "views", "kind": "count", "event_type": "view", "role": "guardrail", "tolerance": 0.05},
    {"name": "clicks per view", "kind": "ratio", "event_type": "click", "denominator_event_type": "view"},
    {"name": "order value", "kind": "ratio", "event_type": PRIMARY, "numerator": "value",
     "denominator_event_type": PRIMARY},
]
# The same, with the revenue capped at its 99th percentile: a read of every buyer's total.
CAPPED_SCORECARD = [*SCORECARD, {"name": "revenue, capped", "kind": "value", "event_type": PRIMARY,
                                 "cap": {"percentile": 0.99}}]


def check_scorecard(where: str, answer: dict) -> None:
    """The scorecard's conversion and value metrics on the primary event equal the answer's own
    per-variant figures (themselves checked against the raw walk)."""
    card = {m["metric"]["name"]: {v["variant_id"]: v for v in m["variants"]} for m in answer["scorecard"]["metrics"]}
    for v in answer["variants"]:
        got = (card["buyers"][v["variant_id"]]["numerator"], card["revenue"][v["variant_id"]]["numerator"])
        if got[0] != v["primary_unique_users"] or not math.isclose(got[1], v["value_sum"], rel_tol=1e-9):
            mismatches.append(f"{where}, {v['variant_name']}: scorecard (buyers, revenue) {got}"
                              f" != ({v['primary_unique_users']}, {v['value_sum']})")
            print(f"  MISMATCH: {mismatches[-1]}", flush=True)


def bench_results(kind: str, n_events: int, n_users: int, tmp: Path, pg: Postgres | None, targets: bool) -> None:
    exp = bench_experiment(n_events)
    ranges = Ranges.for_events(n_events)
    if kind == "sqlite":
        url, cache_url = f"sqlite:///{tmp / f'results-{n_events}.db'}", "memory://"
    else:
        url, cache_url = pg.create(f"results_{n_events}"), pg.redis_url
    upgrade(url)
    started = time.perf_counter()
    (load_sqlite if kind == "sqlite" else load_pg)(url, exp, n_events, n_users)
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "entrypoints", "rebuild-aggregates"], cwd=ROOT, check=True,
                   env={**os.environ, "DATABASE_URL": url, "CACHE_URL": "memory://"}, stdout=subprocess.DEVNULL)
    print(f"  {n_events:,} events, {n_users:,} users: loaded in {load_s:.0f} s;"
          f" rebuilt aggregates in {time.perf_counter() - started:.1f} s", flush=True)
    if kind == "pg":
        pg.flush_redis()
    # Timed to the end: the guard that stops a read past 5 s (RESULTS_TIMEOUT_SECONDS) would
    # turn the slowest range at 10M events into a 503 instead of a figure.
    service = start_service(f"results-{kind}", url, cache_url, tmp, RESULTS_TIMEOUT_SECONDS="900")
    # rebuild-aggregates should leave nothing for a background folder to do; if it does, time
    # the answers once the folder is through, and say so.
    lag = FoldLag(url)
    if lag.reason is None and (pending := lag.pending()):
        waited_from = time.monotonic()
        drained = lag.end_of_load(waited_from, 600)
        print(f"  {pending:,} events pending after rebuild-aggregates; the folder took "
              + ("over 600 s" if drained is None else f"{drained:.1f} s"), flush=True)
    lag.close()
    ms: dict[str, float] = {}
    answers: dict[str, dict] = {}
    try:
        path = f"{service.base}/experiments/{exp.id}/results"
        # One client for every call: httpx.get() builds a client (and its TLS context) per call.
        with httpx.Client(headers=AUTH, timeout=900) as client:
            client.get(path).raise_for_status()  # warm-up
            ms["unfiltered"], answers["unfiltered"] = timed_calls(client, path, {}, 10, 30)
            # The read-outs a watching team asks for: the same read, more arithmetic after it.
            method_answers = {}
            for method in ("sequential", "bayesian"):
                ms[method], method_answers[method] = timed_calls(client, path, {"method": method}, 10, 30)
            ms["two whole days"], answers["two whole days"] = timed_calls(
                client, path, ranges.params("two whole days"), 5, 20)
            hours, tod = [], []  # alternating, so neither has the warmer cache
            spent_from = time.perf_counter()
            while len(tod) < 5 and (not tod or time.perf_counter() - spent_from < 30):
                for name, times in (("whole hours", hours), ("time of day", tod)):
                    one, answers[name] = timed_calls(client, path, ranges.params(name), 1, 0)
                    times.append(one)
            ms["whole hours"], ms["time of day"] = statistics.median(hours), statistics.median(tod)
            # Results over time: every day (and every hour) since the first assignment, each
            # variant's cumulative figures and the comparisons at every point.
            series_path = f"{path}/timeseries"
            client.get(series_path).raise_for_status()
            ms["series by day"], series_by_day = timed_calls(client, series_path, {}, 10, 30)
            ms["series by hour"], series_by_hour = timed_calls(client, series_path, {"period": "hour"}, 10, 30)
            # Breakdowns: 3 platforms and unknown; 60 countries, 50 shown and other.
            client.patch(f"{service.base}/experiments/{exp.id}",
                         json={"analysis": {"dimensions": list(DIMENSIONS)}}).raise_for_status()
            breakdowns = {}
            for dimension in DIMENSIONS:
                ms[f"breakdown by {dimension}"], breakdowns[dimension] = timed_calls(
                    client, f"{path}/breakdown", {"dimension": dimension}, 10, 30)
            # Last, as every read after it carries the scorecard: five metrics, two of them ratios
            # (which read per-user totals, not per-variant ones).
            client.patch(f"{service.base}/experiments/{exp.id}",
                         json={"analysis": {"metrics": SCORECARD}}).raise_for_status()
            time.sleep(3)  # the background folder fills the ratios' cross sums at its next fold
            client.get(path).raise_for_status()
            ms["scorecard"], scorecards = timed_calls(client, path, {}, 10, 30)
            ms["scorecard, two whole days"], ranged_scorecards = timed_calls(
                client, path, ranges.params("two whole days"), 5, 20)
            # The results pages over the same read: the experiment's (its table, bars, scorecard
            # and decision) and the list's (one read per experiment listed; one here).
            pages = signed_in(service.base, client)
            try:
                pages.get(f"/ui/experiments/{exp.id}").raise_for_status()
                ms["experiment page"], page_html = timed_calls(pages, f"/ui/experiments/{exp.id}", {}, 10, 30, read=_html)
                ms["list page"], _ = timed_calls(pages, "/ui/experiments", {}, 10, 30, read=_html)
            finally:
                pages.close()
            client.patch(f"{service.base}/experiments/{exp.id}",
                         json={"analysis": {"metrics": CAPPED_SCORECARD}}).raise_for_status()
            ms["capped scorecard"], capped_scorecards = timed_calls(client, path, {}, 10, 30)
            # CUPED turned on: filled by the next fold from every event stored, then read.
            client.patch(f"{service.base}/experiments/{exp.id}",
                         json={"analysis": {"cuped": True}}).raise_for_status()
            started = time.perf_counter()
            while client.get(path).status_code == 503:
                time.sleep(0.05)
            cuped_fill_s = time.perf_counter() - started
            ms["cuped"], cuped_answer = timed_calls(client, path, {}, 10, 30)
        rss = service.peak_rss_mib()
    except httpx.HTTPError as exc:
        raise SystemExit(service.failure(f"a results call failed ({first_line(exc)})")) from None
    finally:
        service.stop()
    raw_sql = ranges.raw_sql("?" if kind == "sqlite" else "%s")
    started = time.perf_counter()
    if kind == "sqlite":
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        conn.execute("PRAGMA cache_size=-65536")
        raw_rows = conn.execute(raw_sql, (exp.id,)).fetchall()
        conn.close()
    else:
        import psycopg

        with psycopg.connect(url) as conn:
            raw_rows = conn.execute(raw_sql, (exp.id,)).fetchall()
    raw_ms = (time.perf_counter() - started) * 1000
    raw = ranges.split(raw_rows)
    for name in ranges.bounds:
        check(f"{kind} {n_events:,} events, {name}", answers[name], raw[name])
    for method, answer in method_answers.items():
        check(f"{kind} {n_events:,} events, unfiltered, method={method}", answer, raw["unfiltered"])
    for name, answer in (("unfiltered", scorecards), ("two whole days", ranged_scorecards),
                         ("unfiltered", capped_scorecards)):
        check(f"{kind} {n_events:,} events, {name}, with a scorecard", answer, raw[name])
        check_scorecard(f"{kind} {n_events:,} events, {name}, scorecard", answer)
    at = f"{n_events:,} ev"
    record(f"{at}: unfiltered, ms", f"{ms['unfiltered']:,.1f}", f"{raw_ms:,.0f}", ratio_text(ms["unfiltered"], raw_ms),
           "≤ 50 ms" if targets else "", ms["unfiltered"] <= 50 if targets else None)
    for method in method_answers:
        record(f"{at}: unfiltered, method={method}, ms", f"{ms[method]:,.1f}", f"{ms['unfiltered']:,.1f}",
               ratio_text(ms[method], ms["unfiltered"]), "≤ 50 ms" if targets else "(fixed's reference)",
               ms[method] <= 50 if targets else None)
    for name, plain in (("scorecard", "unfiltered"), ("scorecard, two whole days", "two whole days")):
        record(f"{at}: {name} (5 metrics, 2 ratios), ms", f"{ms[name]:,.1f}", f"{ms[plain]:,.1f}",
               ratio_text(ms[name], ms[plain]), f"(the {plain} read's reference)")
    for name, series in (("by day", series_by_day), ("by hour", series_by_hour)):
        last = {a["variant_id"]: a for a in series["points"][-1]["variants"]}
        for v in answers["unfiltered"]["variants"]:
            got = last[v["variant_id"]]
            if (got["users"], got["conversions"]) != (v["users"], v["primary_unique_users"]) or not math.isclose(
                got["value_sum"], v["value_sum"] or 0.0, rel_tol=1e-9
            ):
                mismatches.append(f"{kind} {n_events:,} events: the series {name} ends at {got}, not at the results' {v}")
                print(f"  MISMATCH: {mismatches[-1]}", flush=True)
        points = len(series["points"]) + len(series["since_exposure"])
        record(f"{at}: results over time {name} ({points} points), ms", f"{ms['series ' + name]:,.1f}",
               f"{ms['unfiltered']:,.1f}", ratio_text(ms["series " + name], ms["unfiltered"]),
               "≤ 300 ms" if targets else "(the unfiltered read's reference)",
               ms["series " + name] <= 300 if targets else None)
    for dimension, breakdown in breakdowns.items():
        for v in answers["unfiltered"]["variants"]:
            parts = [w for sl in breakdown["slices"] for w in sl["variants"] if w["variant_id"] == v["variant_id"]]
            if (sum(w["users"] for w in parts), sum(w["conversions"] for w in parts)) != (
                v["users"], v["primary_unique_users"]
            ):
                mismatches.append(f"{kind} {n_events:,} events: the breakdown by {dimension} does not add up to {v}")
                print(f"  MISMATCH: {mismatches[-1]}", flush=True)
        shown = len(breakdown["slices"])
        record(f"{at}: breakdown by {dimension} ({shown} slices), ms", f"{ms['breakdown by ' + dimension]:,.1f}",
               f"{ms['unfiltered']:,.1f}", ratio_text(ms["breakdown by " + dimension], ms["unfiltered"]),
               "(the unfiltered read's reference)")
    page_users = sum(int(u) for u in re.findall(r'data-field="users" data-value="(\d+)"', page_html))
    if page_users != sum(v["users"] for v in scorecards["variants"]):
        mismatches.append(f"{kind} {n_events:,} events: the experiment page shows {page_users:,} users, not the API's")
        print(f"  MISMATCH: {mismatches[-1]}", flush=True)
    for name in ("experiment page", "list page"):
        record(f"{at}: {name} (scorecard on), ms", f"{ms[name]:,.1f}", f"{ms['scorecard']:,.1f}",
               ratio_text(ms[name], ms["scorecard"]), "≤ 100 ms" if targets and name == "experiment page" else
               "(the scorecard read's reference)", ms[name] <= 100 if targets and name == "experiment page" else None)
    check(f"{kind} {n_events:,} events, unfiltered, with CUPED", cuped_answer, raw["unfiltered"])
    record(f"{at}: CUPED turned on, filled within, s", f"{cuped_fill_s:,.1f}", "", "", "(the next fold reads every event)")
    record(f"{at}: unfiltered with CUPED, ms", f"{ms['cuped']:,.1f}", f"{ms['unfiltered']:,.1f}",
           ratio_text(ms["cuped"], ms["unfiltered"]), "(no user has a pre-period event in this data)")
    record(f"{at}: scorecard + revenue capped at p99, ms", f"{ms['capped scorecard']:,.1f}", f"{ms['scorecard']:,.1f}",
           ratio_text(ms["capped scorecard"], ms["scorecard"]), "(the scorecard's reference)")
    record(f"{at}: two whole days, ms", f"{ms['two whole days']:,.1f}", f"{raw_ms:,.0f}",
           ratio_text(ms["two whole days"], raw_ms), "≤ 300 ms" if targets else "",
           ms["two whole days"] <= 300 if targets else None)
    record(f"{at}: whole hours, ms", f"{ms['whole hours']:,.1f}", f"{raw_ms:,.0f}",
           ratio_text(ms["whole hours"], raw_ms), "(time of day's reference)")
    record(f"{at}: time of day, ms", f"{ms['time of day']:,.1f}", f"{ms['whole hours']:,.1f}",
           ratio_text(ms["time of day"], ms["whole hours"]), "≤ 1.5× whole hours",
           ms["time of day"] <= 1.5 * ms["whole hours"])
    record(f"{at}: server peak RSS", f"{rss:.0f} MiB")
    lo, hi = ranges.bounds["time of day"]
    hlo, hhi = ranges.bounds["whole hours"]
    state = "equal" if not any(m.startswith(f"{kind} {n_events:,}") for m in mismatches) else "NOT equal"
    print(f"  floor: one raw SQL walk over the events for all four ranges ({raw_ms / 1000:.1f} s);"
          f" every answer {state} to it (events, converters, value sums per variant)\n"
          f"  time of day {iso(lo)} to {iso(hi)}; whole hours {iso(hlo)} to {iso(hhi)}", flush=True)


# ---------------------------------------------------------------------------------- main

SECTIONS = ("assignment", "ingest", "results", "pg-assignment", "pg-ingest", "pg-results", "mixed", "client")


def bench_mixed(tmp: Path, pg: Postgres | None, seconds: float) -> None:
    """The production-like mix (bench/mixed.py) on SQLite, then on PostgreSQL + Redis, the
    server pinned to one core; the targets of a mixed load."""
    from bench.mixed import print_figures, run_mix

    figures = {}
    stores = [("sqlite", f"sqlite:///{tmp / 'mixed.db'}", "memory://")]
    if pg is not None:
        pg.flush_redis()
        stores.append(("postgres", pg.create("mixed"), pg.redis_url))
    for store, url, cache in stores:
        service = start_service(f"mixed-{store}", url, cache, tmp, cpus="0")
        try:
            figures[store] = run_mix(service, seconds, 16)
        finally:
            service.stop()
        f = figures[store]
        print_figures(f)
        name = "SQLite" if store == "sqlite" else "PostgreSQL + Redis"
        record(f"{name}: mixed, req/s", f"{f.rps:,.0f}", "", "", "0 errors, 0 timeouts",
               not f.errors and not f.timeouts)
        record(f"{name}: mixed, results p50 / p99 ms", f"{f.p50['results']:,.0f} / {f.p99['results']:,.0f}", "", "",
               "p99 ≤ 250 ms", f.p99["results"] <= 250)
        for kind in ("assign", "events", "read"):
            record(f"{name}: mixed, {kind} p50 / p99 ms", f"{f.p50[kind]:,.1f} / {f.p99[kind]:,.1f}")
        record(f"{name}: mixed, folder lag", f"≤ {f.max_pending:,} pending",
               "" if f.drained_s is None else f"drained {f.drained_s:.1f} s after")
        if f.busy:
            record(f"{name}: mixed, results answered 503 (busy)", f"{f.busy:,}")
    if len(figures) == 2:
        share = figures["postgres"].rps / figures["sqlite"].rps
        record("PostgreSQL + Redis / SQLite, mixed req/s", f"{figures['postgres'].rps:,.0f}",
               f"{figures['sqlite'].rps:,.0f}", ratio_text(figures["postgres"].rps, figures["sqlite"].rps),
               "≥ 0.6× SQLite", share >= 0.6)


def bench_client(tmp: Path) -> None:
    """Local assignment in this process, pinned to one core, checked user by user against a
    server; then `experiments import` of a million events against a fresh server."""
    from bench.client import bench_import, bench_local_assignment

    service = start_service("client", f"sqlite:///{tmp / 'client.db'}", "memory://", tmp, cpus="0")
    affinity = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {1})
        bench_local_assignment(service, record, ratio_text)
    finally:
        os.sched_setaffinity(0, affinity)
        service.stop()
    service = start_service("import", f"sqlite:///{tmp / 'import.db'}", "memory://", tmp)
    try:
        bench_import(service, tmp, record, ratio_text)
    finally:
        service.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="5 s loads, one round; results at 100k and 1M events (PostgreSQL: 100k)")
    parser.add_argument("--only", nargs="+", choices=[*SECTIONS, "pg"], metavar="SECTION",
                        help=f"any of {', '.join(SECTIONS)}; pg means the three pg-* sections")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432",
                        help="PostgreSQL server for throwaway databases (default: %(default)s)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13",
                        help="Redis database, flushed before use (default: %(default)s)")
    args = parser.parse_args()
    sections = set(SECTIONS) if not args.only else set(args.only)
    if "pg" in sections:
        sections |= {"pg-assignment", "pg-ingest", "pg-results"}
    seconds, rounds = (5, 1) if args.quick else (10, 3)
    drain_timeout_s = 30 if args.quick else 120
    sqlite_sizes = [(100_000, 10_000), (1_000_000, 100_000)] if args.quick else [(1_000_000, 100_000), (10_000_000, 100_000)]
    pg_sizes = [(100_000, 10_000)] if args.quick else [(1_000_000, 100_000)]
    has_wrk = shutil.which("wrk") is not None
    if not has_wrk and sections & {"assignment", "ingest", "pg-assignment", "pg-ingest"}:
        print("wrk is not installed (apt-get install wrk): skipping the HTTP load figures")
    pg: Postgres | None = None
    if sections & {"pg-assignment", "pg-ingest", "pg-results", "mixed"}:
        pg = Postgres(args.postgres.rstrip("/"), args.redis)
        if (why := pg.why_not()) is not None:
            print(f"PostgreSQL + Redis section skipped: {why}")
            sections -= {"pg-assignment", "pg-ingest", "pg-results"}
            pg = None
    print(f"{'figure':<40} {'value':>22} {'floor':>18} {'ratio':>6}  target")
    with tempfile.TemporaryDirectory() as tmp_name, ExitStack() as cleanup:
        tmp = Path(tmp_name)
        if pg is not None:
            cleanup.callback(pg.flush_redis)
            cleanup.callback(pg.drop_all)
        http = sections & {"assignment", "ingest", "pg-assignment", "pg-ingest"} if has_wrk else set()
        if http:
            services: dict[str, Service] = {}
            # The PostgreSQL cache hit is held to the SQLite one, so pg-assignment needs SQLite too.
            if http & {"assignment", "ingest", "pg-assignment"}:
                services["sqlite"] = start_service("sqlite", f"sqlite:///{tmp / 'service.db'}", "memory://", tmp)
                cleanup.callback(services["sqlite"].stop)
            if http & {"pg-assignment", "pg-ingest"}:
                pg.flush_redis()
                services["pg"] = start_service("pg", pg.create("http"), pg.redis_url, tmp)
                cleanup.callback(services["pg"].stop)
            figures = None
            if http & {"assignment", "pg-assignment"}:
                assigned = {k: s for k, s in services.items() if k == "sqlite" or "pg-assignment" in http}
                new_for = {k for k in assigned if (k == "sqlite" and "assignment" in http)
                           or (k == "pg" and "pg-assignment" in http)}
                heading(f"HTTP floors (wrk -t1 -c32, {rounds} interleaved round(s) of {seconds} s, medians)", "floors")
                figures = measure_assignment(assigned, new_for, seconds, rounds, tmp)
                record_floors(figures, sqlite_hit="assignment" not in http)
            if http & {"assignment", "ingest"}:
                heading("SQLite + memory cache (WORKERS=1, a fresh file)", "SQLite")
                if "assignment" in http:
                    record_assignment(figures, "sqlite", 0.5, "shape", 0.9, "same shape")
                if "ingest" in http:
                    bench_ingest(services["sqlite"], seconds, tmp, drain_timeout_s,
                                 lambda batches: raw_sqlite_ingest(tmp, batches), "raw sqlite3.executemany", 100_000)
                record("server peak RSS (HTTP loads)", f"{services['sqlite'].peak_rss_mib():.0f} MiB")
            if http & {"pg-assignment", "pg-ingest"}:
                heading(f"PostgreSQL + Redis (WORKERS=1, a throwaway database, {pg.redis_url})", "PostgreSQL")
                if "pg-assignment" in http:
                    record_assignment(figures, "pg", 0.25, "sqlite hit", 0.8, "SQLite cache hit")
                if "pg-ingest" in http:
                    bench_ingest(services["pg"], seconds, tmp, drain_timeout_s,
                                 lambda batches: raw_pg_ingest(pg, batches), "raw psycopg executemany", 50_000)
                record("server peak RSS (HTTP loads)", f"{services['pg'].peak_rss_mib():.0f} MiB")
            for service in services.values():
                service.stop()
        if "results" in sections:
            heading("results, SQLite + memory cache (bulk-loaded, then rebuild-aggregates)", "results SQLite")
            for n_events, n_users in sqlite_sizes:
                bench_results("sqlite", n_events, n_users, tmp, None, targets=n_events >= 10_000_000)
        if "pg-results" in sections:
            heading("results, PostgreSQL + Redis (COPY, then rebuild-aggregates)", "results PostgreSQL")
            for n_events, n_users in pg_sizes:
                bench_results("pg", n_events, n_users, tmp, pg, targets=False)
        if "mixed" in sections:
            mixed_s = 20 if args.quick else 90
            heading(f"mixed load, 16 clients, {mixed_s} s per store, server on one core (bench/mixed.py)", "mixed")
            bench_mixed(tmp, pg, mixed_s)
        if "client" in sections:
            heading("the Python client: local assignment on one core, import (bench/client.py)", "client")
            bench_client(tmp)
    targets = [r for r in rows if r.met is not None]
    if targets:
        unmet = [r.figure for r in targets if not r.met]
        heading(f"targets met: {len(targets) - len(unmet)} of {len(targets)}")
        for r in targets:
            print(f"  {'yes' if r.met else 'NO ':<4} {r.section}: {r.figure} {r.value} (target {r.target})")
    if mismatches:
        print(f"\n{len(mismatches)} MISMATCH(ES) between the service's results and the raw SQL scan:")
        for m in mismatches:
            print(f"  {m}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
