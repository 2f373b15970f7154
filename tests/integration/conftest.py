"""Fixtures of the integration tests: real servers, databases and caches on this machine."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import httpx
import pytest

from tests.factories import create_experiment_async

REPO_ROOT = Path(__file__).resolve().parents[2]
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """``python -m entrypoints serve`` in a process group of its own, with its output in a file."""

    def __init__(self, env: Mapping[str, str], log_path: Path) -> None:
        self.port = int(env["PORT"])
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "entrypoints", "serve"],
            cwd=REPO_ROOT,
            env={**os.environ, "HOST": "127.0.0.1", **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            # Its own group: stopping it also stops the worker processes uvicorn forks.
            start_new_session=True,
        )

    def wait_until_healthy(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.base_url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server on port {self.port} not healthy in time:\n{self.output()}")

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


@pytest.fixture
def start_servers(tmp_path: Path) -> Iterator[Callable[..., list[ServerProcess]]]:
    """Start servers together (as a deployment would), each on a free port; wait until all
    answer /health. Every one is stopped when the test ends, whatever happened."""
    started: list[ServerProcess] = []

    def start(*envs: Mapping[str, str], timeout: float = 30) -> list[ServerProcess]:
        batch = []
        for env in envs:
            full = {"PORT": str(free_port()), **env}
            server = ServerProcess(full, tmp_path / f"server-{len(started)}.log")
            started.append(server)
            batch.append(server)
        deadline = time.monotonic() + timeout
        for server in batch:
            server.wait_until_healthy(deadline)
        return batch

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def redis_url() -> str:
    """The Redis database the tests write to; skipped (failed on CI) when Redis is down."""
    import redis

    client = redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        message = f"Redis is not reachable at {TEST_REDIS_URL}: {type(exc).__name__}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    finally:
        client.close()
    return TEST_REDIS_URL


async def create_experiment(base_url: str, shares: tuple[float, float, float] = (34, 33, 33)) -> dict:
    """A new experiment over HTTP (control, b, c, primary event "buy"); its JSON body."""
    split = list(zip(("control", "b", "c"), shares, strict=True))
    async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": "Bearer t"}) as client:
        return await create_experiment_async(client, split=split, primary="buy")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database of each kind, migrated to head."""
    from adapters.sqlalchemy.migrate import upgrade

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("postgres_database")
    upgrade(url)
    return url
