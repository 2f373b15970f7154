"""Calls to a Redis the service can do without: a short timeout, then a circuit breaker."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

T = TypeVar("T")


def redacted(url: str) -> str:
    """``scheme://host:port/db`` of a Redis URL: what a log line may show, never the password."""
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}{parts.path}"
    except ValueError:
        return "redis (unparseable URL)"


def client_for(url: str, timeout: float, *, retry: bool = True) -> Redis:
    """A client that gives up after ``timeout`` seconds, and (with ``retry``) sends a command
    again, once, after ~10 ms, on a new connection when its connection turns out to be dead.
    Connections open on first use, in the event loop that serves the requests. Raises
    ValueError for a URL it cannot parse.

    A pooled connection can be dead without a word: Redis restarted, or a proxy or NAT in
    between forgot it. The pool finds out only when it is used, one connection at a time, and
    with no retry each one was a failure, so the breaker tripped again at every burst that
    reached an older connection. The retry opens a new connection instead. Only connection
    errors are retried (a timeout is not: a slow Redis would then cost twice the time), and
    every command used here (GET, SETEX, DEL, PUBLISH, SUBSCRIBE, the rate limiter's script)
    is safe to send twice. redis-py's own default, three retries with backoff, cost seconds per
    call while Redis is down; the breaker, not the retry, covers an outage."""
    return Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(
            ExponentialBackoff(cap=0.05, base=0.005), 1 if retry else 0, supported_errors=(RedisConnectionError,)
        ),
        retry_on_timeout=False,
    )


class Breaker:
    """Runs calls to one Redis; a call that fails or outlasts ``timeout`` answers None.

    After a failure Redis is skipped for ``retry_after`` seconds, so that requests during an
    outage do not each wait out a timeout; then one call probes it, and if it answers, Redis is
    back. Logs one warning per outage (``what`` failed; ``meanwhile`` says what the service does
    instead) and one line when it ends.
    """

    def __init__(
        self,
        url: str,
        *,
        what: str,
        meanwhile: str,
        logger: logging.Logger,
        timeout: float = 0.25,
        retry_after: float = 2.0,
        on_change: Callable[[bool], object] | None = None,
        on_open: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._where = redacted(url)
        self._what = what
        self._meanwhile = meanwhile
        self._log = logger
        self._timeout = timeout
        self._retry_after = retry_after
        self._skip_until = 0.0
        self._down = False
        self._back_at = 0.0  # when the breaker last closed
        # Told True when the breaker opens, False when Redis is back (a metric, say).
        self._on_change = on_change or (lambda down: None)
        # Awaited when the breaker opens: whatever broke one pooled connection may have broken
        # the others too, so the probe and the calls after it start on new ones.
        self._on_open = on_open

    @property
    def open(self) -> bool:
        """Whether Redis is being skipped (or probed) after a failure."""
        return self._down

    async def call(self, command: Callable[[], Awaitable[T]]) -> T | None:
        """``command()``'s result, or None when Redis is skipped or fails."""
        now = time.monotonic()
        if now < self._skip_until:
            return None
        if self._down:
            # Half-open: this call is the probe; the others keep skipping until it is done.
            self._skip_until = now + self._retry_after
        try:
            # The socket timeouts do not cover name resolution; this bounds the whole call.
            async with asyncio.timeout(self._timeout * 2):
                reply = await command()
        except (RedisError, OSError, TimeoutError, RuntimeError) as exc:
            # RuntimeError: under uvloop, redis-py writing to a connection whose transport was
            # closed meanwhile (the pool dropped, Redis gone) raises it rather than a
            # ConnectionError; it is Redis failing all the same, never a reason for a 500.
            if not self._down and now < self._back_at:
                # Sent before Redis was found back (a probe that outlasted the next one, a call
                # in flight when it went down): its failure is old news, not a new outage.
                return None
            self._skip_until = time.monotonic() + self._retry_after
            if not self._down:
                self._down = True
                self._on_change(True)
                self._log.warning(
                    "%s at %s failed (%s); %s until it is back",
                    self._what,
                    self._where,
                    type(exc).__name__,
                    self._meanwhile,
                )
                if self._on_open is not None:
                    await self._on_open()
            return None
        if self._down:
            self._down = False
            self._skip_until = 0.0
            self._back_at = time.monotonic()
            self._on_change(False)
            self._log.warning("%s at %s is back", self._what, self._where)
        return reply
