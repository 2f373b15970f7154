"""Prometheus metrics, counted at the edge: the domain and the use cases know nothing of them.

- Requests: an ASGI wrapper around the app counts each response by method, route template
  (``/experiments/{experiment_id}/assignment/{user_id}``, never the raw path: no user id
  in a label) and status, and times it.
- Assignments and cache: thin wrappers around the cache and the store that ``AssignUser`` is
  given (a hit is a cache read that found one; new or stored, whether the store kept this one).
- Events: the events route counts what it accepted, the duplicates and the events of a 422 batch.
- At scrape time only: the folder's lag (one small query on the SQL store) and the Redis
  breaker of this process.

With several workers (``WORKERS`` > 1) the CLI points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh
directory before the workers start; each writes its values there and a scrape, served by any
worker, adds them up (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import asyncio
import os
import time
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Mapping
from time import perf_counter
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from domain.assignment import Assignment
from domain.errors import StoreUnavailable
from entrypoints.telemetry.logs import HEADER, RequestIds, RequestLog

disable_created_metrics()  # the *_created samples would double the text and say little here
MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

REQUESTS = Counter(
    "experiments_http_requests_total",
    "HTTP responses, by method, route template and status.",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "experiments_http_request_duration_seconds",
    "Time to serve a request, by method, route template and status.",
    ["method", "route", "status"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ASSIGNMENTS = Counter(
    "experiments_assignments_served_total",
    "Assignments served: from the cache, newly made, or already in the store.",
    ["source"],
)
EVENTS = Counter(
    "experiments_events_total",
    "Events received: accepted, duplicate (already stored), rejected (in a batch refused with 422).",
    ["outcome"],
)
CACHE = Counter(
    "experiments_cache_requests_total",
    "Cache reads by kind (assignment, experiment) and result (hit, miss).",
    ["kind", "result"],
)
STORE_ERRORS = Counter(
    "experiments_store_unavailable_total",
    "Requests answered 503 because the store could not be reached.",
)
BREAKER_OPEN = Gauge(
    "experiments_cache_breaker_open",
    "1 while the Redis cache is skipped after a failure (circuit breaker open), else 0.",
    multiprocess_mode="livemax",
)

UNMATCHED = "<unmatched>"
_ASSIGNMENT_HIT = ASSIGNMENTS.labels("cache_hit")
_ASSIGNMENT_NEW = ASSIGNMENTS.labels("new")
_ASSIGNMENT_STORED = ASSIGNMENTS.labels("stored")
_CACHE = {(k, r): CACHE.labels(k, r) for k in ("assignment", "experiment") for r in ("hit", "miss")}
_ASSIGNMENT_CACHE_HIT, _ASSIGNMENT_MISS = _CACHE["assignment", "hit"], _CACHE["assignment", "miss"]
# Increments made on the request path, moved into their counters by RequestMetrics.flush: a
# dict entry costs less than a counter's lock.
_pending_counts: defaultdict[Any, int] = defaultdict(int)
for _outcome in ("accepted", "duplicate", "rejected"):
    EVENTS.labels(_outcome)  # present at 0 from the start


RESPONSE_HEADERS = "response_headers"
"""Where, in the ASGI scope's state, a hook leaves headers for the response (the rate limits'):
this wrapper already adds the request id to every response, so no second wrapper of ``send``."""


class RequestMetrics:
    """Wraps the app's ASGI handler: the route template is in the scope once Litestar routed.

    The request path only adds to plain numbers of this process (a count, a sum and a bucket per
    method, route and status); ``flush`` moves them into the Prometheus metrics, before every
    scrape and every ``FLUSH_SECONDS`` (so that with several workers a scrape served by one
    sees the others' requests within that delay). Updating the metrics on every request cost
    the cache-hit assignment route several percent of its throughput.

    It also gives each request its id (``X-Request-ID``, in and out) and, with the same
    figures, hands the request log its line (``entrypoints.telemetry.logs.RequestLog``)."""

    FLUSH_SECONDS = 1.0

    def __init__(self, app: Any, log: RequestLog | None = None) -> None:
        self._app = app
        self._pending: dict[tuple[str, str, int], list[float]] = {}
        self._bounds = LATENCY._upper_bounds  # the buckets' upper bounds, +Inf last
        self._flusher: asyncio.Task[None] | None = None
        self._ids = RequestIds()
        self._log = RequestLog() if log is None else log

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        start = perf_counter()
        status = 500
        # Here, outside Litestar, rather than in a middleware: the responses Litestar makes
        # before any middleware runs (404, 405) carry the id too.
        rid = scope["request_id"] = self._ids.of(scope["headers"])

        async def send_status(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                extra = scope.get("state", {}).get(RESPONSE_HEADERS, ())
                message["headers"] = [*message.get("headers", ()), (HEADER, rid), *extra]
            await send(message)

        try:
            await self._app(scope, receive, send_status)
        finally:
            elapsed = perf_counter() - start
            method, route = scope["method"], scope.get("path_template") or UNMATCHED
            key = (method, route, status)
            pending = self._pending.get(key)
            if pending is None:
                pending = self._pending[key] = [0.0] * (2 + len(self._bounds))
            pending[0] += 1
            pending[1] += elapsed
            pending[2 + bisect_left(self._bounds, elapsed)] += 1
            log = self._log
            if log.every_request or status >= 500:
                log.pending.append((start, elapsed, method, route, status, rid))
                if len(log.pending) >= log.MAX_PENDING:
                    log.flush()

    def wrap(self, app: Any) -> None:
        self._app = app

    def flush(self) -> None:
        counts = dict(_pending_counts)
        for child, n in counts.items():
            _pending_counts[child] -= n
            child.inc(n)
        pending, self._pending = self._pending, {}
        for (method, route, status), (count, total, *buckets) in pending.items():
            labels = (method, route, str(status))
            REQUESTS.labels(*labels).inc(count)
            histogram = LATENCY.labels(*labels)
            histogram._sum.inc(total)  # prometheus_client keeps a value per bucket and a sum
            for value, n in zip(histogram._buckets, buckets, strict=True):
                if n:
                    value.inc(n)

    async def start(self) -> None:
        async def flush_every() -> None:
            while True:
                await asyncio.sleep(self.FLUSH_SECONDS)
                self.flush()

        self._flusher = asyncio.get_running_loop().create_task(flush_every())
        await self._log.start()

    async def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        self.flush()
        await self._log.stop()


class CountingCache:
    """The cache ``AssignUser`` reads through: counts hits and misses, and assignment hits."""

    def __init__(self, cache: Any) -> None:
        self._cache = cache

    async def get_assignment(self, experiment_id: str, user_id: str) -> Assignment | None:
        assignment = await self._cache.get_assignment(experiment_id, user_id)
        if assignment is None:
            _pending_counts[_ASSIGNMENT_MISS] += 1
        else:
            _pending_counts[_ASSIGNMENT_CACHE_HIT] += 1
            _pending_counts[_ASSIGNMENT_HIT] += 1
        return assignment

    async def get_experiment(self, experiment_id: str) -> Any:
        experiment = await self._cache.get_experiment(experiment_id)
        _CACHE["experiment", "miss" if experiment is None else "hit"].inc()
        return experiment

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cache, name)


class CountingAssignments:
    """The store ``AssignUser`` writes through: the store returns the first assignment ever
    stored, so one equal to the one decided is new, another was stored before."""

    def __init__(self, store: Any) -> None:
        self._store = store

    async def add_assignment(self, decided: Assignment) -> Assignment:
        kept = await self._store.add_assignment(decided)
        (_ASSIGNMENT_NEW if kept == decided else _ASSIGNMENT_STORED).inc()
        return kept

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def count_events(accepted: int, duplicates: int) -> None:
    if accepted:
        EVENTS.labels("accepted").inc(accepted)
    if duplicates:
        EVENTS.labels("duplicate").inc(duplicates)


def count_rejected(events: int) -> None:
    if events:
        EVENTS.labels("rejected").inc(events)


def counting_store_errors(handlers: Mapping[Any, Any]) -> dict[Any, Any]:
    """The exception handlers, the one for StoreUnavailable counting each time it answers."""
    handlers = dict(handlers)
    answer = handlers[StoreUnavailable]

    def unavailable(request: Any, exc: StoreUnavailable) -> Any:
        STORE_ERRORS.inc()
        return answer(request, exc)

    handlers[StoreUnavailable] = unavailable
    return handlers


def breaker_changed(down: bool) -> None:
    BREAKER_OPEN.set(1 if down else 0)


async def folder_lag(store: Any) -> tuple[float, float] | None:
    """(seconds since the last fold, events not yet folded) on the SQL store, else None.

    One query on the one-row fold_state and the events past its horizon (an index range)."""
    folder = getattr(store, "folder", None)
    database = getattr(store, "database", None)
    if folder is None or database is None:
        return None
    from adapters.sqlalchemy.folding import pending_events_query

    async with database.engine.connect() as conn:
        row = (await conn.execute(pending_events_query(database.dialect))).one()
    folded_at, pending = row
    return max(0.0, time.time() - folded_at / 1_000_000), float(pending or 0)


class _ScrapeTime:
    """What is read when scraped, in the worker that serves the scrape."""

    def __init__(self, lag: tuple[float, float] | None) -> None:
        self._lag = lag

    def collect(self) -> Iterable[Any]:
        if self._lag is not None:
            yield GaugeMetricFamily(
                "experiments_folder_lag_seconds",
                "Seconds since the folder last committed a fold.",
                value=self._lag[0],
            )
            yield GaugeMetricFamily(
                "experiments_folder_pending_events",
                "Events written that the folder has not folded into the totals yet.",
                value=self._lag[1],
            )


async def exposition(store: Any, requests: RequestMetrics | None = None) -> tuple[bytes, str]:
    """The body and content type of a scrape."""
    if requests is not None:
        requests.flush()
    if MULTIPROCESS:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    scrape = CollectorRegistry()
    scrape.register(_ScrapeTime(await folder_lag(store)))
    return generate_latest(registry) + generate_latest(scrape), CONTENT_TYPE_LATEST


def process_ended() -> None:
    """At a worker's shutdown: its live gauges (the breaker) no longer count in a scrape."""
    if MULTIPROCESS:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid())
