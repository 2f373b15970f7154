"""The real server's output (``python -m entrypoints serve``): every line of it in one format,
uvicorn's included; request lines with route templates and ids; whole lines with two workers;
nothing secret; a bad LOG_FORMAT or LOG_LEVEL stops the start with one line."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.integration.conftest import REPO_ROOT, ServerProcess, create_experiment

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
TEXT_LINE = re.compile(rf"^{STAMP} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [a-z.]+ \S.*$")
TEXT_REQUEST = re.compile(
    rf"^{STAMP} (INFO|ERROR) experiments\.request (?P<method>[A-Z]+) (?P<route>\S+) "
    r"(?P<status>\d{3}) \d+\.\d{3}ms request_id=(?P<id>[A-Za-z0-9._:-]{1,128})$"
)
ASSIGNMENT = "/experiments/{experiment_id}/assignment/{user_id}"
AUTH = {"Authorization": "Bearer t"}
FORGED = quote("u-1\n2026-11-29T00:00:00.000Z INFO experiments.request GET forged 200", safe="")


def output_of(server: ServerProcess) -> list[str]:
    """Every line the server wrote (stdout and stderr), once it has stopped."""
    server.stop()
    return server.stdout().splitlines() + server.stderr().splitlines()


def sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'logs.db'}"


async def some_requests(base_url: str) -> tuple[str, list[httpx.Response]]:
    eid = (await create_experiment(base_url))["id"]
    async with httpx.AsyncClient(base_url=base_url, headers=AUTH) as client:
        answers = [
            await client.get(f"/experiments/{eid}/assignment/user-7?token=query-s3cret"),
            await client.get(f"/experiments/{eid}/assignment/user-7", headers={"X-Request-ID": "trace-1"}),
            await client.get(f"/experiments/{eid}/assignment/{FORGED}"),
            await client.get("/nowhere", headers={"X-Request-ID": "bad id\tx"}),
            await client.get("/experiments", headers={"Authorization": "Bearer wrong-s3cret"}),
        ]
    return eid, answers


def test_text_every_line_one_format_request_lines_and_ids(
    start_servers: Callable[..., list[ServerProcess]], tmp_path: Path
) -> None:
    [server] = start_servers({"DATABASE_URL": sqlite(tmp_path), "API_TOKENS": "t"})
    eid, answers = asyncio.run(some_requests(server.base_url))
    assert [a.status_code for a in answers] == [200, 200, 200, 404, 401]
    sent_ids = [a.headers["X-Request-ID"] for a in answers]
    assert sent_ids[1] == "trace-1"
    assert re.fullmatch(r"[0-9a-f]{12}-[0-9a-f]+", sent_ids[3])  # "bad id\tx" was replaced
    lines = output_of(server)
    assert lines and all(TEXT_LINE.match(line) for line in lines), lines
    assert any("uvicorn.error Application shutdown complete." in line for line in lines)
    requests = [m.groupdict() for line in lines if (m := TEXT_REQUEST.match(line))]
    assert [(r["method"], r["route"], r["status"]) for r in requests[-5:]] == [
        ("GET", ASSIGNMENT, "200"),
        ("GET", ASSIGNMENT, "200"),
        ("GET", ASSIGNMENT, "200"),
        ("GET", "<unmatched>", "404"),
        ("GET", "/experiments", "401"),
    ]
    assert [r["id"] for r in requests[-5:]] == sent_ids
    text = "\n".join(lines)
    for secret in ("Bearer", "query-s3cret", "wrong-s3cret", "user-7", eid, "forged"):
        assert secret not in text


def test_json_every_line_is_an_object_uvicorns_included(
    start_servers: Callable[..., list[ServerProcess]], tmp_path: Path
) -> None:
    [server] = start_servers({"DATABASE_URL": sqlite(tmp_path), "API_TOKENS": "t", "LOG_FORMAT": "json"})
    eid, answers = asyncio.run(some_requests(server.base_url))
    records = [json.loads(line) for line in output_of(server)]
    assert all({"ts", "level", "logger", "msg"} <= set(r) for r in records), records
    assert any(r["logger"] == "uvicorn.error" and r["msg"] == "Application startup complete." for r in records)
    requests = [r for r in records if r["logger"] == "experiments.request"]
    assert [(r["route"], r["status"], r["request_id"]) for r in requests[-5:]] == [
        (ASSIGNMENT, 200, answers[0].headers["X-Request-ID"]),
        (ASSIGNMENT, 200, "trace-1"),
        (ASSIGNMENT, 200, answers[2].headers["X-Request-ID"]),
        ("<unmatched>", 404, answers[3].headers["X-Request-ID"]),
        ("/experiments", 401, answers[4].headers["X-Request-ID"]),
    ]
    text = json.dumps(records)
    for secret in ("Bearer", "query-s3cret", "wrong-s3cret", "user-7", eid, "forged"):
        assert secret not in text


def test_two_workers_write_whole_lines(
    start_servers: Callable[..., list[ServerProcess]], tmp_path: Path
) -> None:
    [server] = start_servers(
        {"DATABASE_URL": sqlite(tmp_path), "API_TOKENS": "t", "LOG_FORMAT": "json", "WORKERS": "2"}
    )
    eid = asyncio.run(create_experiment(server.base_url))["id"]

    async def load() -> list[str]:
        """16 clients, each sending its requests one after another (no pool queue to time out
        on a busy machine): both workers serve some and write their lines meanwhile."""
        sent: list[str] = []
        async with httpx.AsyncClient(base_url=server.base_url, headers=AUTH, timeout=30) as client:
            async def one_client(k: int) -> None:
                for i in range(k, 800, 16):
                    url = f"/experiments/{eid}/assignment/u-{i % 50}"
                    response = await client.get(url, headers={"X-Request-ID": f"load-{i}"})
                    assert response.status_code == 200
                    sent.append(response.headers["X-Request-ID"])

            await asyncio.gather(*(one_client(k) for k in range(16)))
        return sent

    sent = asyncio.run(load())
    records = [json.loads(line) for line in output_of(server)]  # a mixed line would not parse
    served = [r["request_id"] for r in records if r.get("route") == ASSIGNMENT]
    assert sorted(served) == sorted(sent)
    assert len({r["msg"] for r in records if r["msg"].startswith("Started server process")}) == 2


def test_at_warning_no_request_lines_but_ids_still_returned(
    start_servers: Callable[..., list[ServerProcess]], tmp_path: Path
) -> None:
    [server] = start_servers({"DATABASE_URL": sqlite(tmp_path), "API_TOKENS": "t", "LOG_LEVEL": "warning"})
    response = httpx.get(f"{server.base_url}/experiments", headers={**AUTH, "X-Request-ID": "quiet-1"})
    assert response.headers["X-Request-ID"] == "quiet-1"
    assert output_of(server) == []  # not even uvicorn's info lines


@pytest.mark.postgres
def test_the_database_password_is_in_no_line(
    start_servers: Callable[..., list[ServerProcess]], postgres_database: str
) -> None:
    # The test server trusts local connections: any password works, and none may be logged.
    url = make_url(postgres_database).set(password="pg-s3cret").render_as_string(hide_password=False)
    [server] = start_servers({"DATABASE_URL": url, "API_TOKENS": "t", "LOG_LEVEL": "debug"})
    asyncio.run(some_requests(server.base_url))
    text = "\n".join(output_of(server))
    assert "experiments.request" in text
    assert "pg-s3cret" not in text


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("LOG_FORMAT", "xml", "error: LOG_FORMAT must be text or json, got 'xml'"),
        ("LOG_LEVEL", "trace", "error: LOG_LEVEL must be debug, info, warning or error, got 'trace'"),
    ],
)
def test_a_bad_log_setting_stops_the_start_with_one_line(
    name: str, value: str, message: str, tmp_path: Path
) -> None:
    env = {**os.environ, "DATABASE_URL": sqlite(tmp_path), "API_TOKENS": "t", name: value}
    done = subprocess.run(
        [sys.executable, "-m", "entrypoints", "serve"], cwd=REPO_ROOT, env=env,
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [message]
