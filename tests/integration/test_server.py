"""The real server, started as `make run` starts it (``python -m entrypoints serve``), over HTTP.
Its stdout and stderr are apart: the generated token goes to stdout, errors and logs to stderr.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from threading import Barrier

import httpx
import pytest

from tests.factories import create_experiment
from tests.integration.conftest import REPO_ROOT, ServerProcess, free_port, server_env

HEALTH_TIMEOUT = 20.0
FAIL_FAST_TIMEOUT = 15.0


def entrypoint(command: str) -> list[str]:
    return [sys.executable, "-m", "entrypoints", command]


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'x.db'}"


@pytest.fixture
def serve(start_servers: Callable[..., list[ServerProcess]]) -> Callable[..., ServerProcess]:
    """Start one server on ``settings`` (healthy before it returns); stopped when the test ends."""

    def start(**settings: str) -> ServerProcess:
        (server,) = start_servers(settings, timeout=HEALTH_TIMEOUT)
        return server

    return start


def test_both_tokens_work_for_the_whole_flow(serve: Callable[..., ServerProcess], database_url: str) -> None:
    server = serve(DATABASE_URL=database_url, API_TOKENS="t1,t2")
    with server.client("t1") as one, server.client("t2") as two, server.client("t3") as wrong:
        experiment = create_experiment(one, "flow", primary="purchase")
        eid = experiment["id"]
        assert two.get(f"/experiments/{eid}").json() == experiment
        first = one.get(f"/experiments/{eid}/assignment/u-1")
        assert first.status_code == 200
        assert two.get(f"/experiments/{eid}/assignment/u-1").json() == first.json()
        events = {
            "events": [
                {"experiment_id": eid, "user_id": "u-1", "event_type": "purchase", "value": 19.99, "event_id": "o-1"},
                {"experiment_id": eid, "user_id": "u-1", "event_type": "view"},
                {"experiment_id": eid, "user_id": "stranger", "event_type": "purchase", "value": 5},
            ]
        }
        posted = two.post("/events", json=events)
        assert posted.status_code == 202
        assert posted.json() == {"accepted": 3, "duplicates": 0}
        report = one.get(f"/experiments/{eid}/results")
        assert report.status_code == 200
        rows = {row["variant_id"]: row for row in report.json()["variants"]}
        mine = rows[first.json()["variant_id"]]
        assert mine["users"] == 1
        assert mine["event_counts"] == {"purchase": 1, "view": 1}
        assert mine["primary_unique_users"] == 1 and mine["value_sum"] == pytest.approx(19.99)
        assert report.json()["summary"]["total_users"] == 1
        denied = wrong.get("/experiments")
        assert denied.status_code == 401
        assert denied.headers["WWW-Authenticate"] == "Bearer"
        assert denied.headers["content-type"].startswith("application/problem+json")
    assert httpx.get(f"{server.base_url}/health").json() == {"status": "ok"}


def test_restart_keeps_assignments_experiments_and_results(serve: Callable[..., ServerProcess], database_url: str) -> None:
    port = str(free_port())
    server = serve(DATABASE_URL=database_url, API_TOKENS="t1", PORT=port)
    once = {"experiment_id": "", "user_id": "a", "event_type": "view", "event_id": "once"}
    with server.client("t1") as client:
        experiment = create_experiment(client, "durable", primary="purchase")
        eid = once["experiment_id"] = experiment["id"]
        assignments = {u: client.get(f"/experiments/{eid}/assignment/{u}").json() for u in ("a", "b", "c")}
        client.post(
            "/events",
            json={"events": [{"experiment_id": eid, "user_id": u, "event_type": "purchase", "value": 2.5} for u in ("a", "b")]},
        )
        assert client.post("/events", json=once).json() == {"accepted": 1, "duplicates": 0}
        before = client.get(f"/experiments/{eid}/results").json()
        listed = client.get("/experiments").json()
    assert server.stopped_gracefully(), server.stderr()

    again = serve(DATABASE_URL=database_url, API_TOKENS="t1", PORT=port)
    with again.client("t1") as client:
        for user_id, assignment in assignments.items():
            assert client.get(f"/experiments/{eid}/assignment/{user_id}").json() == assignment
        assert client.get(f"/experiments/{eid}").json() == experiment
        assert client.get("/experiments").json() == listed
        after = client.get(f"/experiments/{eid}/results").json()
        assert after == before
        assert after["summary"]["total_users"] == 3 and after["summary"]["total_events"] == 3
        # Event ids survive too: a retried event is a duplicate, not a second one.
        assert client.post("/events", json=once).json() == {"accepted": 0, "duplicates": 1}


def test_concurrent_first_calls_store_one_assignment(serve: Callable[..., ServerProcess], database_url: str) -> None:
    server = serve(DATABASE_URL=database_url, API_TOKENS="t1")
    with server.client("t1") as client:
        eid = create_experiment(client, "race")["id"]
    url = f"{server.base_url}/experiments/{eid}/assignment/new-user"
    barrier = Barrier(40)

    def first_call(_: int) -> tuple[int, dict]:
        with httpx.Client(headers={"Authorization": "Bearer t1"}, timeout=20) as own:
            own.get(f"{server.base_url}/health")  # connected before the race starts
            barrier.wait()
            response = own.get(url)
            return response.status_code, response.json()

    with ThreadPoolExecutor(max_workers=40) as pool:
        answers = list(pool.map(first_call, range(40)))
    assert {status for status, _ in answers} == {200}
    assert len({(a["variant_id"], a["assigned_at"]) for _, a in answers}) == 1, answers
    with server.client("t1") as client:
        assert client.get(url).json() == answers[0][1]
        report = client.get(f"/experiments/{eid}/results").json()
        assert report["summary"]["total_users"] == 1
        assert sum(row["users"] for row in report["variants"]) == 1


def test_generated_token_is_printed_once_and_never_logged(serve: Callable[..., ServerProcess], database_url: str) -> None:
    server = serve(DATABASE_URL=database_url)
    lines = [line for line in server.stdout().splitlines() if line.strip()]
    assert len(lines) == 1, lines
    token = lines[0].split()[-1]
    assert len(token) >= 20
    with server.client(token) as client:
        assert client.get("/experiments").status_code == 200
    wrong_token = "wrong-token-0123456789"
    with server.client(wrong_token) as client:
        assert client.get("/experiments").status_code == 401
        assert client.post("/events", json={"experiment_id": "x"}).status_code == 401
    assert server.stopped_gracefully(), server.stderr()
    stderr = server.stderr()
    assert token not in stderr
    assert wrong_token not in stderr
    assert server.stdout().count(token) == 1


@pytest.mark.parametrize(
    "settings",
    [
        {"DATABASE_URL": "mysql://x/y"},
        {"DATABASE_URL": "postgresql://nouser@127.0.0.1:1/db"},
        {"DATABASE_URL": "postgresql://nouser:s3cr3t-pw@127.0.0.1:1/db"},
        {"PORT": "abc"},
        {"CACHE_URL": "memcached://127.0.0.1:1"},
        {"NEAR_CACHE_TTL_SECONDS": "0"},
        {"HEADER_READ_TIMEOUT_SECONDS": "soon"},
        {"KEY_CACHE_TTL_SECONDS": "soon"},
        {"JWT_PUBLIC_KEY_FILE": "/nonexistent/jwt.pem", "JWT_ISSUER": "i", "JWT_AUDIENCE": "a"},
        {"JWT_PUBLIC_KEY_FILE": "README.md", "JWT_ISSUER": "i", "JWT_AUDIENCE": "a"},
        {"JWT_JWKS_FILE": "README.md", "JWT_ISSUER": "i", "JWT_AUDIENCE": "a"},
        {"JWT_ISSUER": "i", "JWT_AUDIENCE": "a"},
        {"JWT_PUBLIC_KEY_FILE": "README.md"},
        {"RATE_LIMIT_READ": "20 per minute"},
        {"RATE_LIMIT_API_TOKENS": "maybe"},
    ],
    ids=[
        "mysql",
        "postgres-unreachable",
        "postgres-with-password",
        "port-abc",
        "cache-scheme",
        "near-cache-ttl-zero",
        "header-timeout-word",
        "key-cache-ttl",
        "jwt-key-missing",
        "jwt-key-not-pem",
        "jwt-jwks-not-json",
        "jwt-without-key",
        "jwt-without-issuer",
        "rate-limit-syntax",
        "rate-limit-tokens-bool",
    ],
)
def test_bad_configuration_fails_fast_with_one_error_line(tmp_path: Path, settings: dict[str, str]) -> None:
    env = server_env(DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}", API_TOKENS="t1", PORT=str(free_port()))
    env.update(settings)
    started = time.monotonic()
    done = subprocess.run(
        entrypoint("serve"), cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=FAIL_FAST_TIMEOUT
    )
    assert time.monotonic() - started < FAIL_FAST_TIMEOUT
    assert done.returncode != 0
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error:"), done.stderr
    assert "Traceback" not in done.stderr
    assert "s3cr3t-pw" not in done.stderr + done.stdout
    assert "t1" not in done.stdout


def test_port_out_of_range_fails_fast(tmp_path: Path) -> None:
    env = server_env(DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}", API_TOKENS="t1", PORT="70000")
    server = ServerProcess(env, tmp_path)
    try:
        deadline = time.monotonic() + FAIL_FAST_TIMEOUT
        while server.process.poll() is None and time.monotonic() < deadline:
            if "Uvicorn running" in server.stderr():
                break  # it is serving: it did not fail fast; no need to wait out the timeout
            time.sleep(0.05)
        assert server.process.poll() is not None and server.process.returncode != 0, "the server started"
        lines = server.stderr().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), lines
    finally:
        server.stop()


def test_migrate_creates_the_tables_on_a_fresh_path(tmp_path: Path) -> None:
    path = tmp_path / "new.db"  # a new file in an existing directory, as a new deployment has
    env = server_env(DATABASE_URL=f"sqlite:///{path}")
    for _ in range(2):  # and again: migrating an up-to-date database is a no-op
        done = subprocess.run(
            entrypoint("migrate"), cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
    with sqlite3.connect(path) as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        version = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    assert {"experiments", "variants", "user_assignments", "events", "alembic_version"} <= tables
    assert len(version) == 1 and re.fullmatch(r"\w+", version[0][0])


def test_serve_migrates_a_fresh_database_itself(serve: Callable[..., ServerProcess], tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    server = serve(DATABASE_URL=f"sqlite:///{path}", API_TOKENS="t1")
    with server.client("t1") as client:
        create_experiment(client, "fresh")
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM experiments").fetchone() == (1,)
