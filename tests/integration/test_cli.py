"""`experiments`, the command line, end to end: the console script in processes of its own,
talking HTTP to a real server by URL and key, including an import killed halfway and resumed."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import free_port
from tests.polling import eventually

TOKEN = "t"
COMMAND = str(Path(sys.executable).with_name("experiments"))


@pytest.fixture
def server(start_servers, database_url: str):  # noqa: ANN001, ANN201
    (started,) = start_servers({"DATABASE_URL": database_url, "API_TOKENS": TOKEN})
    return started


def run(server, *args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:  # noqa: ANN001
    environment = {**os.environ, "EXPERIMENTS_URL": server.base_url, "EXPERIMENTS_TOKEN": TOKEN,
                   "EXPERIMENTS_CONFIG": "/nonexistent", **(env or {})}
    done = subprocess.run([COMMAND, *args], capture_output=True, text=True, env=environment, timeout=120)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def test_experiments_from_a_file_to_their_results(server, tmp_path: Path) -> None:  # noqa: ANN001
    spec = tmp_path / "checkout.yaml"
    spec.write_text(
        "name: checkout-button\nprimary_event_type: buy\nvariants:\n"
        "  - {name: control, traffic_percentage: 50, is_control: true}\n"
        "  - {name: green, traffic_percentage: 50}\n"
    )
    created = json.loads(run(server, "create", str(spec), "--format", "json").stdout)
    x = created["id"]
    assert created["name"] == "checkout-button" and created["status"] == "running"
    (tmp_path / "draft.json").write_text(json.dumps({
        "name": "draft-one", "status": "draft",
        "variants": [{"name": "a", "traffic_percentage": 50}, {"name": "b", "traffic_percentage": 50}]}))
    run(server, "create", str(tmp_path / "draft.json"))

    listed = run(server, "list").stdout.splitlines()
    assert listed[0].split()[:3] == ["id", "name", "status"] and len(listed) == 4
    assert [e["name"] for e in json.loads(run(server, "list", "--format", "json").stdout)] == ["draft-one", "checkout-button"]
    rows = list(csv.DictReader(io.StringIO(run(server, "list", "--status", "running", "--format", "csv").stdout)))
    assert [r["name"] for r in rows] == ["checkout-button"] and rows[0]["created_at"].endswith("Z")
    assert "control" in run(server, "show", x).stdout

    api = httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {TOKEN}"})
    variants = {}
    for i in range(60):
        variants[f"u{i}"] = api.get(f"/experiments/{x}/assignment/u{i}").json()["variant_name"]
    events = tmp_path / "events.jsonl"
    events.write_text("".join(
        json.dumps({"experiment_id": x, "user_id": f"u{i}", "event_type": "buy", "value": 10.0}) + "\n"
        for i in range(0, 60, 2)))
    assert "30 stored" in run(server, "import", str(events)).stdout

    table = run(server, "results", x).stdout
    assert "checkout-button" in table and "green" in table and "p_value" in table
    shown = json.loads(run(server, "results", x, "--format", "json").stdout)
    assert sum(v["primary_unique_users"] for v in shown["variants"]) == 30
    by_csv = list(csv.DictReader(io.StringIO(run(server, "results", x, "--format", "csv").stdout)))
    assert {r["variant"]: int(r["users"]) for r in by_csv} == {
        name: sum(1 for v in variants.values() if v == name) for name in ("control", "green")}
    assert json.loads(run(server, "results", x, "--method", "bayesian", "--format", "json").stdout)[
        "comparisons"][0]["bayesian"]["chance_to_beat_control"] is not None
    run(server, "export", x, "--out", str(tmp_path / "results.csv"))
    assert (tmp_path / "results.csv").read_text() == run(server, "results", x, "--format", "csv").stdout
    run(server, "export", x, "--out", str(tmp_path / "results.json"))
    assert json.loads((tmp_path / "results.json").read_text())["experiment"]["id"] == x

    assert "is paused" in run(server, "status", x, "paused").stdout
    assert "is stopped" in run(server, "status", x, "stopped", "--winner", "green").stdout
    shown = json.loads(run(server, "show", x, "--format", "json").stdout)
    assert shown["winner_variant_id"] == next(v["id"] for v in shown["variants"] if v["name"] == "green")
    refused = run(server, "status", x, "running", check=False)
    assert refused.returncode == 1 and refused.stderr.startswith("error: 409")


def test_keys_and_where_the_credential_comes_from(server, tmp_path: Path) -> None:  # noqa: ANN001
    made = run(server, "keys", "create", "--name", "ci", "--scope", "read", "--scope", "assign").stdout
    secret = made.split("store it now): ")[1].strip()
    key_id = made.split()[2]
    listed = run(server, "keys", "list", "--format", "json").stdout
    assert [k["id"] for k in json.loads(listed)] == [key_id] and secret not in listed
    config = tmp_path / "config.toml"
    config.write_text(f'url = "http://127.0.0.1:1"\ntoken = "wrong"\n\n[profiles.here]\n'
                      f'url = "{server.base_url}"\ntoken = "{secret}"\n')
    without_env = {"EXPERIMENTS_URL": "", "EXPERIMENTS_TOKEN": "", "EXPERIMENTS_CONFIG": str(config)}
    assert run(server, "--profile", "here", "list", env=without_env).returncode == 0  # a read key lists
    denied = run(server, "--profile", "here", "keys", "list", env=without_env, check=False)
    assert denied.returncode == 1 and "403" in denied.stderr and secret not in denied.stderr
    unreachable = run(server, "list", env=without_env, check=False)  # the file's own url: nothing there
    assert unreachable.returncode == 1 and "wrong" not in unreachable.stderr
    missing = run(server, "list", env={"EXPERIMENTS_TOKEN": ""}, check=False)
    assert missing.returncode == 1 and "no credential" in missing.stderr
    assert "revoked key" in run(server, "keys", "revoke", key_id).stdout
    assert run(server, "--profile", "here", "list", env=without_env, check=False).returncode == 1


def test_every_command_has_its_help() -> None:
    for args in (["--help"], ["import", "--help"], ["keys", "create", "--help"], ["results", "--help"]):
        done = subprocess.run([COMMAND, *args], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0 and "usage: experiments" in done.stdout
    via_module = subprocess.run([sys.executable, "-m", "entrypoints", "--help"], capture_output=True, text=True,
                                timeout=30)
    assert "import" in via_module.stdout and "serve" in via_module.stdout


def test_an_import_killed_halfway_resumes_and_counts_each_event_once(server, tmp_path: Path) -> None:  # noqa: ANN001
    api = httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    x = api.post("/experiments", json={"name": "import", "primary_event_type": "buy", "variants": [
        {"name": "a", "traffic_percentage": 50}, {"name": "b", "traffic_percentage": 50}]}).json()["id"]
    users = 2_000
    for i in range(users):
        assert api.get(f"/experiments/{x}/assignment/u{i}").status_code == 200
    source = tmp_path / "events.csv"
    lines = ["user_id,event_type,value,timestamp"]
    good = 0
    for i in range(150_000):
        if i % 10_000 == 7:
            lines.append(f"u{i % users},buy,not-a-number,")
        elif i % 10_000 == 8:
            lines.append(f"u{i % users},buy,1,1999-99-99")  # the service refuses the timestamp
        else:
            lines.append(f"u{i % users},buy,1.0,")
            good += 1
    source.write_text("\n".join(lines) + "\n")
    command = [COMMAND, "--url", server.base_url, "--token", TOKEN, "import", str(source), "--experiment", x,
               "--batch-size", "500", "--concurrency", "1"]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    state = tmp_path / "events.csv.import-state"

    def halfway() -> bool:
        try:
            saved = json.loads(state.read_text())
        except (OSError, ValueError):
            return False
        return saved["line"] > 10_000

    eventually(halfway, 60, "the import halfway", interval=0.01)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    saved = json.loads(state.read_text())
    assert not saved["done"] and saved["line"] < 150_001

    second = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert "resuming" in second.stderr
    final = json.loads(state.read_text())
    assert final["done"] and final["accepted"] + final["duplicates"] >= good and final["rejected"] == 30
    rejects = [json.loads(line) for line in (tmp_path / "events.csv.rejects.jsonl").read_text().splitlines()]
    assert len({r["line"] for r in rejects}) == 30  # each bad line set aside once
    assert {r["reason"].split(":")[0] for r in rejects} == {"value", "timestamp"}

    def counted() -> bool:
        shown = api.get(f"/experiments/{x}/results").json()
        return shown["summary"]["total_events"] == good

    eventually(counted, 30, "every good event counted")
    again = run(server, "import", str(source), "--experiment", x)
    assert "imported already" in again.stdout


def test_an_import_waits_out_a_server_killed_and_restarted(start_servers, tmp_path: Path) -> None:  # noqa: ANN001
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}", "API_TOKENS": TOKEN, "PORT": str(free_port())}
    (first,) = start_servers(env)
    api = first.client(TOKEN)
    x = api.post("/experiments", json={"name": "restart", "variants": [
        {"name": "a", "traffic_percentage": 50}, {"name": "b", "traffic_percentage": 50}]}).json()["id"]
    source = tmp_path / "events.jsonl"
    source.write_text("".join(json.dumps({"experiment_id": x, "user_id": f"u{i}", "event_type": "view"}) + "\n"
                              for i in range(60_000)))
    state = tmp_path / "events.jsonl.import-state"
    importing = subprocess.Popen([COMMAND, "--url", first.base_url, "--token", TOKEN, "import", str(source),
                                  "--batch-size", "500", "--concurrency", "1"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def started() -> bool:
        try:
            return json.loads(state.read_text())["line"] > 2_000
        except (OSError, ValueError):
            return False

    eventually(started, 60, "the import under way", interval=0.01)
    os.killpg(first.process.pid, signal.SIGKILL)
    first.process.wait(10)
    time.sleep(1)
    start_servers(env)  # the same port and database, as a process manager restarts it
    out, err = importing.communicate(timeout=120)
    assert importing.returncode == 0, err
    final = json.loads(state.read_text())
    assert final["done"] and final["accepted"] + final["duplicates"] == 60_000 and "imported" in out
    with sqlite3.connect(tmp_path / "store.db") as db:
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT event_id) FROM events").fetchone() == (60_000, 60_000)
