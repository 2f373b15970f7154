"""Sending items in the background, in batches, without ever holding up the caller.

An application records events (or exposures) on its hot path; a request per item would cost
it a round trip each and tie its latency to the service's. ``BackgroundBatcher`` queues items
in memory and one daemon thread sends them in batches, when ``max_batch`` are waiting or the
oldest has waited ``max_age_seconds``. Memory is bounded: past ``max_queue`` items, ``put``
drops (at once, or after ``block_seconds``), counts the drop, and says so.

The service stores a batch all or nothing. When it refuses one because of some items (a
``422`` naming them by index), those are counted ``rejected`` and the rest is sent again. When
a batch fails for a passing reason (no connection, ``503``, ``429``, after the client's own
retries), it is sent again later with a growing wait, up to ``max_attempts``, then counted
``failed``; meanwhile new items wait in the bounded queue. Every item given up on is handed to
``on_drop``, so nothing vanishes unseen.
"""

from __future__ import annotations

import atexit
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, Self, TypedDict, TypeVar

from experiments_client.errors import ApiError, TransportError

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """What became of a batch: stored whole (``rejected`` empty), or refused whole because of
    the items in ``rejected`` (their index in the batch, and the service's reasons)."""

    rejected: Mapping[int, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BatcherStats:
    """A snapshot of the counters; ``queued`` = ``sent`` + ``rejected`` + ``failed`` +
    ``pending`` at every moment."""

    queued: int  # items ``put`` accepted, ever
    sent: int  # stored by the service
    dropped_full: int  # refused by ``put``: the queue was full
    dropped_closed: int  # refused by ``put``: the batcher was closed
    rejected: int  # refused by the service by name (never sent again)
    failed: int  # in batches given up on after the retries (or left when closing)
    pending: int  # queued or being sent now


def transient(error: BaseException) -> bool:
    """Whether a batch that failed with ``error`` may succeed later: no answer at all, a
    rate limit, or a server error. Any other refusal (a bad credential, a missing scope, a
    ``422`` that names no item) would fail the same way again."""
    if isinstance(error, ApiError):
        return error.status == 429 or error.status >= 500
    return isinstance(error, TransportError)


OnDrop = Callable[[list[T], str], None]
"""``on_drop(items, reason)``: ``reason`` is ``full`` or ``closed`` (``put`` refused the
item), ``rejected: <the service's reasons>`` (one call per item), or ``failed: <the last
error>``. Called from the caller's thread (full, closed) or the sending thread (the others);
what it raises is logged and ignored."""


class BatcherOptions(TypedDict, Generic[T], total=False):
    """BackgroundBatcher's settings, as the senders built on it pass them through."""

    max_batch: int
    max_age_seconds: float
    max_queue: int
    block_seconds: float
    max_attempts: int
    retry_base_seconds: float
    retry_cap_seconds: float
    on_drop: OnDrop[T] | None
    is_transient: Callable[[BaseException], bool]
    exit_timeout_seconds: float
    jitter: Callable[[], float]
    name: str


class BackgroundBatcher(Generic[T]):
    """A bounded queue of items sent by ``send`` in batches from one daemon thread.

    ``send(items)`` must return a SendOutcome, or raise: an error ``is_transient`` accepts
    makes the batch wait and go again (up to ``max_attempts`` sends in all, with full-jitter
    backoff from ``retry_base_seconds`` up to ``retry_cap_seconds``); any other ends it as
    ``failed`` at once. ``close`` runs at interpreter exit (``atexit``) when not called before,
    for up to ``exit_timeout_seconds``; until then the batcher stays referenced.
    """

    def __init__(
        self,
        send: Callable[[list[T]], SendOutcome],
        *,
        max_batch: int = 500,
        max_age_seconds: float = 1.0,
        max_queue: int = 10_000,
        block_seconds: float = 0.0,
        max_attempts: int = 5,
        retry_base_seconds: float = 0.5,
        retry_cap_seconds: float = 30.0,
        on_drop: OnDrop[T] | None = None,
        is_transient: Callable[[BaseException], bool] = transient,
        exit_timeout_seconds: float = 5.0,
        jitter: Callable[[], float] = random.random,
        name: str = "experiments-batcher",
    ) -> None:
        if max_batch < 1 or max_queue < 1 or max_attempts < 1:
            raise ValueError("max_batch, max_queue and max_attempts must be at least 1")
        self._send, self._on_drop, self._is_transient = send, on_drop, is_transient
        self._max_batch, self._max_age, self._max_queue = max_batch, max_age_seconds, max_queue
        self._block, self._max_attempts = block_seconds, max_attempts
        self._retry_base, self._retry_cap = retry_base_seconds, retry_cap_seconds
        self._jitter = jitter
        self._exit_timeout = exit_timeout_seconds

        self._cond = threading.Condition()
        self._queue: deque[tuple[float, T]] = deque()  # (when it was put, the item)
        self._accepted = 0  # items put, ever: the last one's sequence number
        self._taken = 0  # items taken from the queue into batches
        self._done = 0  # items of finished batches (sent, rejected or failed)
        self._flush_upto = 0  # every item up to this one is due now
        self._closed = False  # no more puts; everything is due
        self._stopping = False  # give up: fail what is left, and end the thread
        self._sent = self._dropped_full = self._dropped_closed = self._rejected = self._failed = 0

        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        atexit.register(self._at_exit)

    # -------------------------------------------------------------------------- the caller's side

    def put(self, item: T) -> bool:
        """Queue ``item``; False when it was dropped (the queue stayed full for
        ``block_seconds``, or the batcher is closed). Never waits longer than
        ``block_seconds``, and never for the service: safe on a hot path, and from async code
        (with the default ``block_seconds=0`` it never waits at all)."""
        with self._cond:
            if not self._closed and len(self._queue) >= self._max_queue and self._block > 0:
                self._cond.wait_for(
                    lambda: self._closed or len(self._queue) < self._max_queue, self._block
                )
            if self._closed:
                self._dropped_closed += 1
                reason = "closed"
            elif len(self._queue) >= self._max_queue:
                self._dropped_full += 1
                reason = "full"
            else:
                self._queue.append((time.monotonic(), item))
                self._accepted += 1
                if len(self._queue) == 1 or len(self._queue) >= self._max_batch:
                    self._cond.notify_all()  # the age timer starts, or a batch is full
                return True
        self._drop([item], reason)
        return False

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything queued now, whatever its age, and wait until it is settled; True
        when all of it was stored or rejected by name within ``timeout`` (None: no limit),
        False on timeout or when a batch of it failed."""
        with self._cond:
            target, failed = self._accepted, self._failed
            self._flush_upto = max(self._flush_upto, target)
            self._cond.notify_all()
            settled = self._cond.wait_for(lambda: self._done >= target, timeout)
            return settled and self._failed == failed

    def close(self, timeout: float | None = 5.0) -> bool:
        """Refuse new items, send everything queued, and stop the thread. Whatever is not
        settled within ``timeout`` is given up on (``failed``, through ``on_drop``) unless a
        send is under way, which the thread finishes alone. True when everything was
        delivered. Closing twice does nothing more."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._closed = True
            self._cond.notify_all()  # a put waiting for room gives up now
        delivered = self.flush(timeout)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        atexit.unregister(self._at_exit)
        return delivered

    def _at_exit(self) -> None:
        self.close(self._exit_timeout)

    @property
    def stats(self) -> BatcherStats:
        with self._cond:
            return BatcherStats(
                queued=self._accepted,
                sent=self._sent,
                dropped_full=self._dropped_full,
                dropped_closed=self._dropped_closed,
                rejected=self._rejected,
                failed=self._failed,
                pending=self._accepted - self._sent - self._rejected - self._failed,
            )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -------------------------------------------------------------------------- the thread

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._deliver(batch)
            with self._cond:
                self._done += len(batch)
                self._cond.notify_all()
        self._abandon_queue()

    def _next_batch(self) -> list[T] | None:
        """The next batch once one is due (full, old enough, flushed, or closing); None when
        the thread is to stop."""
        with self._cond:
            while True:
                if self._stopping:
                    return None
                timeout = None
                if self._queue:
                    waited = time.monotonic() - self._queue[0][0]
                    if (
                        len(self._queue) >= self._max_batch
                        or waited >= self._max_age
                        or self._taken < self._flush_upto
                        or self._closed
                    ):
                        count = min(self._max_batch, len(self._queue))
                        batch = [self._queue.popleft()[1] for _ in range(count)]
                        self._taken += count
                        self._cond.notify_all()  # room for a blocked put
                        return batch
                    timeout = self._max_age - waited
                self._cond.wait(timeout)

    def _deliver(self, batch: list[T]) -> None:
        """Send ``batch`` until it is stored, refused item by item, or given up on."""
        items, attempts = batch, 0
        while items:
            try:
                outcome = self._send(items)
            except Exception as error:
                attempts += 1
                if attempts >= self._max_attempts or not self._is_transient(error):
                    self._fail(items, f"failed: {error}")
                    return
                if self._wait_or_stop(self._backoff(attempts - 1)):
                    self._fail(items, f"failed: closed while retrying after: {error}")
                    return
                continue
            if not outcome.rejected:
                with self._cond:
                    self._sent += len(items)
                return
            if not all(0 <= i < len(items) for i in outcome.rejected):
                self._fail(items, f"failed: the service refused items this batch does not have: "
                                  f"{sorted(outcome.rejected)}")
                return
            with self._cond:
                self._rejected += len(outcome.rejected)
            for i, reason in sorted(outcome.rejected.items()):
                self._drop([items[i]], f"rejected: {reason}")
            items = [item for i, item in enumerate(items) if i not in outcome.rejected]

    def _backoff(self, retry: int) -> float:
        return self._jitter() * min(self._retry_cap, self._retry_base * 2.0**retry)

    def _wait_or_stop(self, seconds: float) -> bool:
        """Wait ``seconds`` before a retry; True when the batcher is stopping meanwhile."""
        with self._cond:
            return self._cond.wait_for(lambda: self._stopping, seconds)

    def _fail(self, items: Sequence[T], reason: str) -> None:
        with self._cond:
            self._failed += len(items)
        self._drop(list(items), reason)

    def _abandon_queue(self) -> None:
        """What is still queued when the thread stops is given up on, and said so."""
        with self._cond:
            left = [item for _, item in self._queue]
            self._queue.clear()
            self._taken += len(left)
        if left:
            self._fail(left, "failed: closed before it could be sent")
            with self._cond:
                self._done += len(left)
                self._cond.notify_all()

    def _drop(self, items: list[T], reason: str) -> None:
        if self._on_drop is None:
            return
        try:
            self._on_drop(items, reason)
        except Exception:
            log.exception("on_drop raised; the items are dropped all the same")
