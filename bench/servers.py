"""What the benchmarks share: the service started as `make run` starts it, PostgreSQL's
throwaway databases (and Redis' flush), a new experiment over HTTP, and the folder's lag."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOKEN = "bench-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PRIMARY = "purchase"


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ---------------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Service:
    """The real server, started as `make run` starts it (`python -m entrypoints serve`)."""

    label: str
    database_url: str
    cache_url: str
    port: int
    process: subprocess.Popen
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def peak_rss_mib(self) -> float:
        return peak_rss_mib(self.process.pid)

    def failure(self, what: str) -> str:
        """What went wrong, whether the server still runs, and the end of its log."""
        code = self.process.poll()
        state = "still running" if code is None else f"exited with {code}"
        tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-15:])
        return f"{what}; the {self.label} server {state}; its log ends with:\n{tail}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_service(
    label: str, database_url: str, cache_url: str, tmp: Path, cpus: str | None = None, **settings: str
) -> Service:
    """``cpus``: pin the server to these cores (taskset's list), where taskset exists;
    ``settings``: more of its environment (README.md, Configuration)."""
    port = free_port()
    log = tmp / f"server-{label}-{port}.log"
    env = {**os.environ, "DATABASE_URL": database_url, "CACHE_URL": cache_url, "API_TOKENS": TOKEN,
           "PORT": str(port), "WORKERS": "1", **settings}
    with log.open("wb") as out:
        pin = ["taskset", "-c", cpus] if cpus is not None and shutil.which("taskset") else []
        process = subprocess.Popen([*pin, sys.executable, "-m", "entrypoints", "serve"], cwd=ROOT, env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
    service = Service(label, database_url, cache_url, port, process, log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            healthy = httpx.get(f"{service.base}/health", timeout=1).status_code == 200
            # ours, not another process that took the port first: ours says it is listening
            if healthy and f"running on http://127.0.0.1:{port} " in log.read_text(errors="replace"):
                return service
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    message = service.failure("it did not become healthy")
    service.stop()
    raise SystemExit(message)


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
    process.kill()
    raise SystemExit("trivial app did not start")


def peak_rss_mib(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", text).group(1)) / 1024


def new_experiment(service: Service, prefix: str) -> str:
    body = {"name": f"{prefix}-{secrets.token_hex(6)}", "primary_event_type": PRIMARY,
            "variants": [{"name": "a", "traffic_percentage": 50}, {"name": "b", "traffic_percentage": 50}]}
    answer = httpx.post(f"{service.base}/experiments", json=body, headers=AUTH, timeout=30)
    answer.raise_for_status()
    return answer.json()["id"]


# ---------------------------------------------------------------------------------- PostgreSQL, Redis


@dataclass
class Postgres:
    """Throwaway databases on one PostgreSQL server (created here, dropped at the end) and one
    Redis database, flushed before every server that uses it starts."""

    server: str  # postgresql://user@host:port, no database
    redis_url: str
    created: list[str] = field(default_factory=list)

    def url(self, database: str) -> str:
        return f"{self.server}/{database}"

    def _admin(self):  # noqa: ANN202
        import psycopg

        return psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=5)

    def why_not(self) -> str | None:
        """None when PostgreSQL and Redis both answer, else what does not."""
        try:
            self._admin().close()
        except Exception as exc:
            return f"PostgreSQL at {self.server} does not answer ({first_line(exc)})"
        try:
            import redis

            redis.Redis.from_url(self.redis_url, socket_timeout=3, socket_connect_timeout=3).ping()
        except Exception as exc:
            return f"Redis at {self.redis_url} does not answer ({first_line(exc)})"
        return None

    def create(self, purpose: str) -> str:
        name = f"bench_{purpose}_{os.getpid()}_{secrets.token_hex(3)}"
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return self.url(name)

    def drop_all(self) -> None:
        if not self.created:
            return
        with self._admin() as conn:
            for name in self.created:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created.clear()

    def flush_redis(self) -> None:
        import redis

        client = redis.Redis.from_url(self.redis_url, socket_timeout=5)
        client.flushdb()
        client.close()


def pg_txid_column(conn) -> bool:  # noqa: ANN001
    """Whether events has a txid column the writer must fill itself (no default): bulk loads
    then stamp it with the loading transaction's id, as the service's own inserts would."""
    row = conn.execute(
        "SELECT column_default FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = 'events' AND column_name = 'txid'"
    ).fetchone()
    return row is not None and row[0] is None



class FoldLag:
    """Events not yet folded into the totals, counted from the fold_state row over a read-only
    connection of its own: every ~0.25 s on a thread while a load runs, then until none is left.

    SQLite: an event is folded when events.id <= events_horizon; PostgreSQL: when
    events.txid < events_horizon. Without a fold_state table (totals folded in the write's own
    transaction) there is no lag to report.
    """

    PERIOD_S = 0.25

    def __init__(self, database_url: str) -> None:
        self.reason: str | None = None
        self.max_pending = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        pending = "SELECT COUNT(*) FROM events WHERE {} COALESCE((SELECT MAX(events_horizon) FROM fold_state), 0)"
        if database_url.startswith("sqlite:///"):
            path = database_url.removeprefix("sqlite:///")
            self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None,
                                         check_same_thread=False)
            exists = self._conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'fold_state'").fetchone()
            self._sql = pending.format("id >")
        else:
            import psycopg

            self._conn = psycopg.connect(database_url, autocommit=True,
                                         options="-c default_transaction_read_only=on")
            exists = self._conn.execute("SELECT to_regclass('fold_state')").fetchone()[0]
            self._sql = pending.format("txid >=")
        if not exists:
            self.reason = "no fold_state"

    def pending(self) -> int:
        return int(self._conn.execute(self._sql).fetchone()[0])

    def start(self) -> None:
        if self.reason is None:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                n = self.pending()
            except Exception as exc:
                self.reason = f"query failed: {first_line(exc)}"
                return
            self.max_pending = max(self.max_pending, n)
            self.samples += 1
            took = time.monotonic() - started
            # Every ~0.25 s, but never more than a tenth of a core: the server shares two.
            self._stop.wait(max(self.PERIOD_S - took, 9 * took))

    def end_of_load(self, load_ended: float, timeout_s: float) -> float | None:
        """Stop sampling; then seconds from the load's end until nothing is pending (None: not
        within timeout_s)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.reason is not None:
            return None
        while True:
            started = time.monotonic()
            try:
                if self.pending() == 0:
                    return time.monotonic() - load_ended
            except Exception as exc:
                self.reason = f"query failed: {first_line(exc)}"
                return None
            if time.monotonic() - load_ended > timeout_s:
                return None
            time.sleep(max(0.1, 4 * (time.monotonic() - started)))  # finer than under load

    def close(self) -> None:
        self._conn.close()
