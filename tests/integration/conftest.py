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
from tests.polling import eventually

REPO_ROOT = Path(__file__).resolve().parents[2]
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Settings the server reads; cleared so that the environment running the tests cannot leak in.
SERVER_VARIABLES = (
    "DATABASE_URL",
    "CACHE_URL",
    "API_TOKENS",
    "HOST",
    "PORT",
    "WORKERS",
    "CACHE_TTL_SECONDS",
    "NEAR_CACHE_TTL_SECONDS",
    "NEAR_CACHE_MAX_ENTRIES",
    "HEADER_READ_TIMEOUT_SECONDS",
    "BODY_READ_TIMEOUT_SECONDS",
    "KEEP_ALIVE_TIMEOUT_SECONDS",
)


def server_env(**settings: str) -> dict[str, str]:
    """This process's environment without the server's settings, on 127.0.0.1, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if k not in SERVER_VARIABLES}
    env["HOST"] = "127.0.0.1"
    env.update(settings)
    return env


class ServerProcess:
    """``python -m entrypoints serve`` in a process group of its own, its stdout and stderr each
    in a file: the token it generates goes to stdout, its logs to stderr."""

    def __init__(
        self,
        env: Mapping[str, str],
        directory: Path,
        name: str = "server",
        python: str | Path = sys.executable,
        cwd: Path = REPO_ROOT,
    ) -> None:
        """``env``: the whole environment (``server_env``'s), with a ``PORT``; ``python``, ``cwd``:
        another interpreter and working directory, as for an installed image."""
        self.port = int(env["PORT"])
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.stdout_path = directory / f"{name}.stdout"
        self.stderr_path = directory / f"{name}.stderr"
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                [str(python), "-m", "entrypoints", "serve"],
                cwd=cwd,
                env=dict(env),
                stdout=out,
                stderr=err,
                # Its own group: stopping it also stops the worker processes uvicorn forks.
                start_new_session=True,
            )

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def output(self) -> str:
        """The ends of both, for the message of a failure."""
        return f"stdout:\n{self.stdout()[-2000:]}\nstderr:\n{self.stderr()[-4000:]}"

    def wait_until_healthy(self, deadline: float) -> None:
        """Until ``GET /health`` answers ``{"status": "ok"}``; fails, with the output, if the
        server exits first or the ``time.monotonic()`` deadline passes."""

        def healthy() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited {self.process.returncode}")
            try:
                response = httpx.get(f"{self.base_url}/health", timeout=1)
            except httpx.HTTPError:
                return False
            return response.status_code == 200 and response.json() == {"status": "ok"}

        try:
            eventually(healthy, deadline - time.monotonic(), f"a healthy server on port {self.port}")
        except AssertionError as failure:
            raise AssertionError(f"{failure}\n{self.output()}") from None

    def stop(self) -> int:
        """SIGTERM to its group, as a process manager stops it; SIGKILL only if it has not
        exited within 10 s. Its exit status."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode

    def stopped_gracefully(self) -> bool:
        """Stop it; whether its shutdown ran to its end. Uvicorn ends a SIGTERM'd server by
        re-raising the signal once it has shut down, so the exit status is -SIGTERM (or 0)."""
        return self.stop() in (0, -signal.SIGTERM) and "Application shutdown complete" in self.stderr()

    def client(self, token: str) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=10)


@pytest.fixture
def start_servers(tmp_path: Path) -> Iterator[Callable[..., list[ServerProcess]]]:
    """Start servers together (as a deployment would), each on a free port; wait until all
    answer /health. Every one is stopped when the test ends, whatever happened."""
    started: list[ServerProcess] = []

    def start(*envs: Mapping[str, str], timeout: float = 30) -> list[ServerProcess]:
        """``envs``: each server's settings, on top of ``server_env``."""
        batch = []
        for env in envs:
            full = server_env(**{"PORT": str(free_port()), **env})
            server = ServerProcess(full, tmp_path, f"server-{len(started)}")
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
