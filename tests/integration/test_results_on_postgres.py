"""Results that must not pile up on PostgreSQL, against a real server process: a client that
disconnects leaves no query behind; a read past RESULTS_TIMEOUT_SECONDS is stopped and
answered 503; past RESULTS_MAX_CONCURRENT results are answered 503 while other routes go on.

A results read is made slow from outside, with nothing in the service's code: another session
takes an ACCESS EXCLUSIVE lock on ``fold_state``, which every experiment results read reads
first, so the read waits on the server. The test also holds the folder's lease (an advisory
lock), so that the server's own folder, which reads ``fold_state`` too, never runs: every
session waiting on that lock is then a results read.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterator

import httpx
import psycopg
import pytest

from adapters.sqlalchemy.dialects.postgresql import LEASE_LOCK_ID
from tests.integration.conftest import ServerProcess, create_experiment
from tests.integration.database import fold_state_lock, waiting_on_fold_state
from tests.polling import eventually

pytestmark = pytest.mark.postgres

AUTH = {"Authorization": "Bearer t"}
SECONDS = 10  # to see a state come about, far above what it takes


@pytest.fixture
def lease_held(postgres_database: str) -> Iterator[None]:
    """The folder's lease, held by the test before any server starts."""
    with psycopg.connect(postgres_database, autocommit=True, connect_timeout=3) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (LEASE_LOCK_ID,))
        yield


@pytest.fixture
def lock_fold_state(postgres_database: str) -> Iterator[Callable[[], psycopg.Connection]]:
    """Takes the lock when called: once a server has migrated the database."""
    with contextlib.ExitStack() as held:
        yield lambda: held.enter_context(fold_state_lock(postgres_database))


def start(start_servers: Callable[..., list[ServerProcess]], url: str, **settings: str) -> ServerProcess:
    (server,) = start_servers({"DATABASE_URL": url, "API_TOKENS": "t", "CACHE_URL": "memory://", **settings})
    return server


def backend(url: str, pid: int) -> tuple[str, str | None] | None:
    """The state and wait event type of one server session, None once it has ended."""
    with psycopg.connect(url, autocommit=True, connect_timeout=3) as watcher:
        row = watcher.execute(
            "SELECT state, wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)
        ).fetchone()
    return None if row is None else (row[0], row[1])




def send_results_request(server: ServerProcess, experiment_id: str) -> socket.socket:
    """A results request on a raw connection, left unanswered for the test to close."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=SECONDS)
    sock.sendall(
        f"GET /experiments/{experiment_id}/results HTTP/1.1\r\nHost: test\r\n"
        "Authorization: Bearer t\r\n\r\n".encode()
    )
    return sock


async def test_a_client_that_disconnects_leaves_no_query_running(
    start_servers: Callable[..., list[ServerProcess]],
    postgres_database: str,
    lease_held: None,
    lock_fold_state: Callable[[], psycopg.Connection],
) -> None:
    # A timeout far away, so that only the disconnect can end the read.
    server = start(
        start_servers,
        postgres_database,
        RESULTS_TIMEOUT_SECONDS="600",
        RESULTS_MAX_CONCURRENT="1",
        RESULTS_QUEUE_SECONDS="0",
    )
    x = (await create_experiment(server.base_url))["id"]
    locker = lock_fold_state()
    client = send_results_request(server, x)
    try:
        ((pid, state, waiting_on),) = eventually(
            lambda: waiting_on_fold_state(postgres_database), SECONDS, "the results read waits for the lock"
        )
        assert (state, waiting_on) == ("active", "Lock")

        with httpx.Client(base_url=server.base_url, headers=AUTH, timeout=SECONDS) as other:
            # The one slot is taken: more results are refused at once, the rest is served.
            busy = other.get(f"/experiments/{x}/results")
            assert busy.status_code == 503 and busy.headers["retry-after"] == "1", busy.text
            assert "results are busy" in busy.json()["detail"]
            assert other.get(f"/experiments/{x}").status_code == 200
            assert other.get(f"/experiments/{x}/assignment/u-1").status_code == 200
            assert other.get("/health").status_code == 200
    finally:
        client.close()

    # The lock is still held: only a cancel can have ended the wait.
    eventually(
        lambda: backend(postgres_database, pid) is None
        or backend(postgres_database, pid) != ("active", "Lock"),
        SECONDS,
        f"the results read (pid {pid}) stops waiting once its client is gone",
    )
    assert waiting_on_fold_state(postgres_database) == []
    locker.rollback()

    with httpx.Client(base_url=server.base_url, headers=AUTH, timeout=SECONDS) as later:
        # The slot came back and the pool serves: the next results are computed.
        response = later.get(f"/experiments/{x}/results")
        assert response.status_code == 200, response.text
    # The request log writes in batches: the line comes within a second or so.
    eventually(lambda: " 499 " in server.stderr(), SECONDS, "the request log records the disconnect as 499")


async def test_a_results_read_past_its_time_is_stopped_and_answered_503(
    start_servers: Callable[..., list[ServerProcess]],
    postgres_database: str,
    lease_held: None,
    lock_fold_state: Callable[[], psycopg.Connection],
) -> None:
    server = start(start_servers, postgres_database, RESULTS_TIMEOUT_SECONDS="1")
    x = (await create_experiment(server.base_url))["id"]
    locker = lock_fold_state()
    with httpx.Client(base_url=server.base_url, headers=AUTH, timeout=SECONDS) as client:
        started = time.monotonic()
        response = client.get(f"/experiments/{x}/results")
        took = time.monotonic() - started
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["retry-after"] == "1"
        assert "longer than 1 s" in response.json()["detail"]
        assert 1 <= took < 5
        assert waiting_on_fold_state(postgres_database) == []  # stopped on the server, not just left
        locker.rollback()
        response = client.get(f"/experiments/{x}/results")
        assert response.status_code == 200, response.text
