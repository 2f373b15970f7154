"""The client's two speed targets, against a real server (`make bench`, section `client`):

- local assignment: users decided per second on one core, over 1,000,000 users of three
  experiments (a plain 50/50; coverage 50% in a layer slice with a holdout; an audience of
  three rules), each decision then checked against the service's: every one, through
  ``POST /exposures`` (the service decides each user again; a batch of decisions it shares is
  stored, and one it refuses names each exposure with the reason it decided instead);
- import: a file of 1,000,000 events through ``experiments import`` (the console script, in a
  process of its own) against a local server, in events per second, beside the floor of the
  same events sent as ready-made request bodies by plain HTTP.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.servers import AUTH, TOKEN, Service

USERS = 1_000_000
IMPORT_EVENTS = 1_000_000


def experiments(api: Any, tag: str) -> dict[str, Any]:
    """The three kinds of experiment the figures are of, on the service."""
    halves = [{"name": "control", "traffic_percentage": 50}, {"name": "b", "traffic_percentage": 50}]
    layer = api.create_layer(f"layer-{tag}")
    holdout = api.create_holdout(f"holdout-{tag}", 5)
    audience = {"all": [{"attribute": "country", "op": "in", "value": ["DE", "AT", "CH"]},
                        {"attribute": "age", "op": "gte", "value": 18},
                        {"not": {"attribute": "app_version", "op": "version_lt", "value": "3.0.0"}}]}
    return {
        "plain 50/50": api.create_experiment(name=f"plain-{tag}", variants=halves),
        "coverage 50%, layer, holdout": api.create_experiment(
            name=f"gated-{tag}", variants=halves, coverage=50,
            layer={"id": layer.id, "percentage": 60}, holdout_id=holdout.id),
        "audience of 3 rules": api.create_experiment(name=f"aimed-{tag}", variants=halves, audience=audience),
    }


def attributes_of(i: int) -> dict[str, Any]:
    return {"country": ("DE", "FR", "AT")[i % 3], "age": 15 + i % 10, "app_version": f"{2 + i % 3}.1.0"}


def decide_all(assigner: Any, experiment_id: str, users: list[str], attributes: list[dict[str, Any]] | None) -> tuple[float, list[Any]]:
    """Seconds to decide every user, and the decisions."""
    assign = assigner.assign
    start = time.perf_counter()
    if attributes is None:
        decisions = [assign(experiment_id, u) for u in users]
    else:
        decisions = [assign(experiment_id, u, a) for u, a in zip(users, attributes, strict=True)]
    return time.perf_counter() - start, decisions


def sha_floor(experiment_id: str, users: list[str]) -> float:
    """The hash alone over the same users: what no decision can beat."""
    sha = hashlib.sha256
    start = time.perf_counter()
    for u in users:
        int.from_bytes(sha(f"{experiment_id}:{u}".encode()).digest()[:8], "big") % 10_000
    return time.perf_counter() - start


def check_with_service(api: Any, name: str, decisions: list[Any],
                       attributes: list[dict[str, Any]] | None) -> tuple[int, list[str]]:
    """Every decision against the service's, 10,000 per request: (users checked, mismatches).

    A decision the service stores is sent as the exposure it is; it must be accepted. A user the
    decision leaves out is sent as if served the control: the service must refuse exactly those,
    each with the reason the decision gave."""
    from experiments_client import Exposure, ValidationError

    now = datetime.now(UTC).isoformat()
    mismatches: list[str] = []
    for start in range(0, len(decisions), 10_000):
        chunk = decisions[start:start + 10_000]
        items = [Exposure(d.experiment_id, d.user_id, d.variant_id, now,
                          None if attributes is None else attributes[start + k]) for k, d in enumerate(chunk)]
        left_out = {k: d.reason for k, d in enumerate(chunk) if d.reason not in ("assigned", "holdout")}
        if left_out:
            try:
                api.record_exposures(items)
                refused: dict[int, str] = {}
            except ValidationError as exc:
                refused = exc.by_index("exposures")
            if set(refused) != set(left_out):
                mismatches.append(f"{name}: refused {sorted(set(refused) ^ set(left_out))[:5]}")
            mismatches += [f"{name}: {chunk[k].user_id} {left_out[k]} vs {m}"
                           for k, m in refused.items() if k in left_out and f"({left_out[k]})" not in m][:5]
        stored = [items[k] for k in range(len(chunk)) if k not in left_out]
        if stored:
            api.record_exposures(stored)  # any refusal here is an error, and ends the bench
    return len(decisions), mismatches


def bench_local_assignment(service: Service, record: Callable[..., None], ratio_text: Callable[[float, float], str]) -> None:
    from experiments_client import Client, LocalAssigner

    with Client(service.base, TOKEN, timeout=120) as api:
        made = experiments(api, hex(os.getpid())[2:] + str(int(time.time())))
        assigner = LocalAssigner(fetch=api.definitions)
        assigner.refresh()
        users = [f"user-{i}" for i in range(USERS)]
        attributes = [attributes_of(i) for i in range(USERS)]
        for label, experiment in made.items():
            with_attributes = attributes if experiment.audience else None
            seconds, decisions = decide_all(assigner, experiment.id, users, with_attributes)
            floor = sha_floor(experiment.id, users)
            checked, mismatches = check_with_service(api, experiment.name, decisions, with_attributes)
            rate = USERS / seconds
            record(f"local assignment, {label}, users/s", f"{rate:,.0f}", f"{USERS / floor:,.0f} sha256",
                   ratio_text(rate, USERS / floor), "≥ 200,000/s, all = service", rate >= 200_000 and not mismatches)
            record("  checked against the service", f"{checked:,} users", "", "", "", None)
            for line in mismatches[:5]:
                print(f"    MISMATCH {line}")
        assigner.close()


def write_events(path: Path, experiment_id: str, n: int) -> None:
    with path.open("w") as out:
        for i in range(n):
            out.write(json.dumps({"experiment_id": experiment_id, "user_id": f"u{i % 100_000}", "event_type": "buy",
                                  "timestamp": "2026-12-01T00:00:00Z", "value": 1.5, "event_id": f"e{i}"}) + "\n")


def raw_http_floor(service: Service, experiment_id: str, n: int, batch: int = 5000, concurrency: int = 2) -> float:
    """Events per second of ready-made bodies, as many in flight as the import keeps."""
    bodies = [json.dumps({"events": [
        {"experiment_id": experiment_id, "user_id": f"f{i % 100_000}", "event_type": "buy",
         "timestamp": "2026-12-01T00:00:00Z", "value": 1.5, "event_id": f"floor-{i}"}
        for i in range(k, min(k + batch, n))]}).encode() for k in range(0, n, batch)]
    clients = [httpx.Client(base_url=service.base, headers={**AUTH, "content-type": "application/json"}, timeout=120)
               for _ in range(concurrency)]

    def send(k: int) -> None:
        assert clients[k % concurrency].post("/events", content=bodies[k]).status_code == 202

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(send, range(len(bodies))))
    return n / (time.perf_counter() - start)


def bench_import(service: Service, tmp: Path, record: Callable[..., None], ratio_text: Callable[[float, float], str]) -> None:
    from experiments_client import Client

    with Client(service.base, TOKEN) as api:
        experiment = api.create_experiment(name=f"import-{int(time.time())}", primary_event_type="buy", variants=[
            {"name": "a", "traffic_percentage": 50}, {"name": "b", "traffic_percentage": 50}])
    floor = raw_http_floor(service, experiment.id, 200_000)
    path = tmp / "events.jsonl"
    write_events(path, experiment.id, IMPORT_EVENTS)
    command = [str(Path(sys.executable).with_name("experiments")), "--url", service.base, "--token", TOKEN,
               "import", str(path)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        print(f"    import failed: {done.stderr[-500:]}")
    rate = IMPORT_EVENTS / seconds
    record("import of 1M events (JSONL), events/s", f"{rate:,.0f}", f"{floor:,.0f} raw HTTP",
           ratio_text(rate, floor), "≥ 50,000/s", done.returncode == 0 and rate >= 50_000)
    record("  the command said", done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "(nothing)")
