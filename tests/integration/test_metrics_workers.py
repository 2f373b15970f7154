"""/metrics of a server with two workers: a scrape, whichever worker serves it, adds up both."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from adapters.sqlalchemy.migrate import upgrade
from entrypoints.telemetry.metrics import RequestMetrics

TOKEN = "metrics-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HEALTH = {"method": "GET", "route": "/health", "status": "200"}
REQUESTS = 300


def health_count(text: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "experiments_http_requests_total" and sample.labels == HEALTH:
                return sample.value
    return 0.0


def per_worker_health_counts(directory: Path) -> dict[str, float]:
    """From each worker's own counter file: what that worker alone counted."""
    counts = {}
    for path in directory.glob("counter_*.db"):
        pid = re.fullmatch(r"counter_(\d+)\.db", path.name).group(1)  # type: ignore[union-attr]
        for metric in MultiProcessCollector.merge([str(path)]):
            for sample in metric.samples:
                if sample.name == "experiments_http_requests_total" and sample.labels == HEALTH:
                    counts[pid] = sample.value
    return counts


def test_a_scrape_adds_up_the_counts_of_both_workers(
    start_servers: Callable[..., list], tmp_path: Path
) -> None:
    database = tmp_path / "metrics.db"
    upgrade(f"sqlite:///{database}")
    scratch = tmp_path / "tmp"  # the CLI makes its metrics directory in TMPDIR
    scratch.mkdir()
    (server,) = start_servers(
        {
            "DATABASE_URL": f"sqlite:///{database}",
            "API_TOKENS": TOKEN,
            "WORKERS": "2",
            "TMPDIR": str(scratch),
        }
    )
    (directory,) = scratch.glob("experiments-metrics-*")
    # Only the workers write metric files, and only there.
    assert not list(Path(__file__).resolve().parents[2].glob("counter_*.db"))
    # A new connection per request: the kernel hands each to either worker.
    for _ in range(REQUESTS):
        with httpx.Client(base_url=server.base_url) as client:
            assert client.get("/health").status_code == 200
    time.sleep(RequestMetrics.FLUSH_SECONDS * 2.5)  # each worker moves its counts in every second
    per_worker = per_worker_health_counts(directory)
    assert len(per_worker) == 2, per_worker  # both workers served some
    assert all(count > 0 for count in per_worker.values()), per_worker
    # Every scrape, served by one worker or the other, reports the sum of both (the startup
    # health checks included).
    total = sum(per_worker.values())
    assert total >= REQUESTS
    for _ in range(10):
        with httpx.Client(base_url=server.base_url, headers=AUTH) as client:
            response = client.get("/metrics")
            assert response.status_code == 200, response.text
            assert health_count(response.text) == total
