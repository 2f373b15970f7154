"""`python -m entrypoints serve` with bad settings: one `error:` line each, fast, exit code 2."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from entrypoints.config.startup import listen_problem
from tests.integration.conftest import REPO_ROOT, free_port, server_env
from tests.integration.test_server import FAIL_FAST_TIMEOUT, entrypoint

UNRESOLVABLE = "no-such-host.invalid"  # .invalid never resolves (RFC 2606)
NOT_OURS = "192.0.2.1"  # TEST-NET-1 (RFC 5737): no machine has it


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another process listens on, as when a second copy of the service is started."""
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def start(
    tmp_path: Path, command: str = "serve", cwd: Path = REPO_ROOT, **settings: str
) -> subprocess.CompletedProcess[str]:
    # memory:// unless a test is about the database: a migration on a busy disk takes seconds.
    env = server_env(DATABASE_URL="memory://", API_TOKENS="t1", PORT=str(free_port()))
    env.update(settings)
    env["PYTHONPATH"] = str(REPO_ROOT)  # for a working directory other than the checkout
    started = time.monotonic()
    done = subprocess.run(
        entrypoint(command),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=FAIL_FAST_TIMEOUT,
    )
    assert time.monotonic() - started < FAIL_FAST_TIMEOUT
    return done


def error_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    """The errors, having checked that stderr holds nothing else and that the start failed."""
    lines = done.stderr.splitlines()
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert lines and all(line.startswith("error: ") for line in lines), done.stderr
    assert "Uvicorn" not in done.stderr + done.stdout
    return lines


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"HOST": UNRESOLVABLE}, f"HOST '{UNRESOLVABLE}' does not resolve"),
        ({"HOST": NOT_OURS}, f"HOST '{NOT_OURS}' is not an address of this machine"),
        ({"PORT": "-1"}, "PORT must be from 0 to 65535"),
        ({"WORKERS": "0"}, "WORKERS must be positive"),
        ({"DATABASE_URL": "sqlite:///{tmp}/missing/x.db"}, "/missing' does not exist"),
    ],
    ids=["host-unresolvable", "host-not-ours", "port-negative", "workers-zero", "sqlite-directory"],
)
def test_one_bad_setting_one_line(tmp_path: Path, settings: dict[str, str], expected: str) -> None:
    settings = {k: v.format(tmp=tmp_path) for k, v in settings.items()}
    lines = error_lines(start(tmp_path, **settings))
    assert len(lines) == 1 and expected in lines[0], lines


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use_is_one_line(tmp_path: Path, busy_port: int, workers: str) -> None:
    # Uvicorn binds one worker's port through the event loop and several workers' through a
    # socket of its own; the check comes before either.
    lines = error_lines(start(tmp_path, PORT=str(busy_port), WORKERS=workers))
    assert lines == [f"error: PORT {busy_port} is already in use on HOST '127.0.0.1'"]


def test_a_port_in_use_on_a_name_with_several_addresses_is_one_line(
    tmp_path: Path, busy_port: int
) -> None:
    lines = error_lines(start(tmp_path, HOST="localhost", PORT=str(busy_port)))
    assert len(lines) == 1 and f"PORT {busy_port} is already in use" in lines[0], lines


def test_every_bad_setting_is_reported_at_once(tmp_path: Path, busy_port: int) -> None:
    lines = error_lines(
        start(
            tmp_path,
            DATABASE_URL=f"sqlite:///{tmp_path / 'missing' / 'x.db'}",
            CACHE_URL="memcached://127.0.0.1:1",
            WORKERS="0",
            NEAR_CACHE_TTL_SECONDS="soon",
            HOST=UNRESOLVABLE,
        )
    )
    assert len(lines) == 5, lines
    for name in ("DATABASE_URL", "CACHE_URL", "WORKERS", "NEAR_CACHE_TTL_SECONDS", "HOST"):
        assert sum(name in line for line in lines) == 1, (name, lines)
    assert not (tmp_path / "missing").exists()


def test_a_port_that_cannot_be_read_leaves_the_host_checked(tmp_path: Path) -> None:
    lines = error_lines(start(tmp_path, PORT="abc", HOST=UNRESOLVABLE))
    assert len(lines) == 2 and "PORT" in lines[0] and "HOST" in lines[1], lines


def test_a_bad_port_and_a_busy_port_are_not_confused(tmp_path: Path, busy_port: int) -> None:
    # PORT unreadable: the default port is not probed in its place.
    lines = error_lines(start(tmp_path, PORT="abc"))
    assert len(lines) == 1 and "whole number" in lines[0], lines


def test_migrate_refuses_a_missing_sqlite_directory_and_creates_nothing(tmp_path: Path) -> None:
    database = tmp_path / "typo" / "experiments.db"
    lines = error_lines(start(tmp_path, command="migrate", DATABASE_URL=f"sqlite:///{database}"))
    assert lines == [
        f"error: DATABASE_URL: directory '{database.parent}' does not exist; create it first"
    ]
    assert not database.parent.exists()


def test_the_default_data_directory_is_created(tmp_path: Path) -> None:
    # `make run` on a fresh checkout: ./data does not exist yet, and the default URL points into it.
    env = server_env()
    env.pop("DATABASE_URL", None)
    env["PYTHONPATH"] = str(REPO_ROOT)
    done = subprocess.run(
        entrypoint("migrate"), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "data" / "experiments.db").is_file()


def test_the_probe_does_not_mistake_a_just_closed_port_for_a_busy_one() -> None:
    # A restart finds the old server's connections in TIME_WAIT on its port; uvicorn binds it
    # anyway (SO_REUSEADDR), so the probe must too, or it would refuse every quick restart.
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn's has
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = listener.accept()
            accepted.close()  # the server side closes first: its end waits in TIME_WAIT
            client.recv(1)
    assert listen_problem("127.0.0.1", port) is None


def test_the_probe_leaves_the_port_free() -> None:
    port = free_port()
    assert listen_problem("127.0.0.1", port) is None
    with socket.socket() as after:
        after.bind(("127.0.0.1", port))
