"""The background batcher against in-memory sinks: when batches go, what a full queue does,
flushing and closing, items refused by name, and a service that keeps failing. Waits are on
events and conditions with generous timeouts; no test asserts how long anything took."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from experiments_client import (
    BackgroundBatcher,
    SendOutcome,
    ServiceUnavailable,
    TransportError,
    Unauthorized,
)

WAIT = 10.0  # seconds: far beyond what any wait here needs, so only a bug reaches it
REFUSED = httpx.ConnectError("refused")


class Sink:
    """Receives batches; ``outcomes`` (consumed in order) say what each send answers, else
    the batch is stored. ``gate``, when closed, holds every send until it opens."""

    def __init__(self, *outcomes: SendOutcome | Exception) -> None:
        self.batches: list[list[int]] = []
        self.outcomes = list(outcomes)
        self.begun = 0  # sends entered, the gate passed or not
        self.gate = threading.Event()
        self.gate.set()
        self.received = threading.Condition()

    def send(self, items: list[int]) -> SendOutcome:
        with self.received:
            self.begun += 1
            self.received.notify_all()
        assert self.gate.wait(WAIT)
        with self.received:
            self.batches.append(list(items))
            self.received.notify_all()
        outcome = self.outcomes.pop(0) if self.outcomes else SendOutcome()
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def wait_for_sends(self, count: int) -> None:
        with self.received:
            assert self.received.wait_for(lambda: self.begun >= count, WAIT)

    def wait_for_batches(self, count: int) -> list[list[int]]:
        with self.received:
            assert self.received.wait_for(lambda: len(self.batches) >= count, WAIT)
            return list(self.batches)


@pytest.fixture
def batchers() -> Iterator[list[BackgroundBatcher[int]]]:
    """Every batcher a test makes is closed after it, whatever happened."""
    made: list[BackgroundBatcher[int]] = []
    yield made
    for batcher in made:
        batcher.close(WAIT)


def test_a_full_batch_goes_at_once(batchers: list[BackgroundBatcher[int]]) -> None:
    sink = Sink()
    batcher = BackgroundBatcher(sink.send, max_batch=5, max_age_seconds=3600)
    batchers.append(batcher)
    for i in range(12):
        assert batcher.put(i)
    assert sink.wait_for_batches(2)[:2] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert batcher.flush(WAIT)  # 10 and 11 waited for more, or for their age
    assert sink.batches[2:] == [[10, 11]]


def test_an_old_enough_batch_goes_however_small(batchers: list[BackgroundBatcher[int]]) -> None:
    sink = Sink()
    batcher = BackgroundBatcher(sink.send, max_batch=1000, max_age_seconds=0.05)
    batchers.append(batcher)
    for i in range(3):
        batcher.put(i)
    with sink.received:  # no batch is full and nothing flushes: only their age sends them
        assert sink.received.wait_for(lambda: sum(map(len, sink.batches)) == 3, WAIT)
    assert [i for batch in sink.batches for i in batch] == [0, 1, 2]
    batcher.put(3)
    with sink.received:
        assert sink.received.wait_for(lambda: sink.batches[-1] == [3], WAIT)


def test_a_full_queue_drops_counts_and_reports(batchers: list[BackgroundBatcher[int]]) -> None:
    sink = Sink()
    sink.gate.clear()  # the service hangs: the first batch stays in flight
    dropped: list[tuple[list[int], str]] = []
    batcher = BackgroundBatcher(
        sink.send,
        max_batch=1,
        max_queue=3,
        max_age_seconds=0,
        on_drop=lambda items, reason: dropped.append((items, reason)),
    )
    batchers.append(batcher)
    assert batcher.put(0)
    sink.wait_for_sends(1)  # item 0 is out of the queue, stuck in flight
    assert [batcher.put(i) for i in (1, 2, 3)] == [True, True, True]
    assert batcher.put(4) is False and batcher.put(5) is False
    assert dropped == [([4], "full"), ([5], "full")]
    stats = batcher.stats
    assert (stats.queued, stats.dropped_full, stats.pending, stats.sent) == (4, 2, 4, 0)

    sink.gate.set()
    assert batcher.flush(WAIT)
    assert [b[0] for b in sink.batches] == [0, 1, 2, 3] and batcher.stats.sent == 4


def test_a_full_queue_blocks_no_longer_than_block_seconds(
    batchers: list[BackgroundBatcher[int]],
) -> None:
    sink = Sink()
    sink.gate.clear()
    batcher = BackgroundBatcher(
        sink.send, max_batch=1, max_queue=1, max_age_seconds=0, block_seconds=0.05
    )
    batchers.append(batcher)
    batcher.put(0)
    sink.wait_for_sends(1)
    batcher.put(1)  # the queue is full now, and stays full while the sink hangs
    outcome: list[bool] = []
    putter = threading.Thread(target=lambda: outcome.append(batcher.put(2)))
    putter.start()
    putter.join(WAIT)
    assert not putter.is_alive() and outcome == [False]  # it gave up, rather than wait for the sink
    assert batcher.stats.dropped_full == 1
    sink.gate.set()


def test_flush_delivers_everything_queued(batchers: list[BackgroundBatcher[int]]) -> None:
    sink = Sink()
    batcher = BackgroundBatcher(sink.send, max_batch=100, max_age_seconds=3600)
    batchers.append(batcher)
    for i in range(1234):
        batcher.put(i)
    assert batcher.flush(WAIT)
    assert [i for batch in sink.batches for i in batch] == list(range(1234))
    assert max(len(b) for b in sink.batches) == 100
    stats = batcher.stats
    assert (stats.queued, stats.sent, stats.pending, stats.failed) == (1234, 1234, 0, 0)
    assert batcher.flush(WAIT)  # nothing left: at once


def test_close_flushes_then_refuses(batchers: list[BackgroundBatcher[int]]) -> None:
    sink = Sink()
    dropped: list[tuple[list[int], str]] = []
    batcher = BackgroundBatcher(
        sink.send,
        max_batch=10,
        max_age_seconds=3600,
        on_drop=lambda items, reason: dropped.append((items, reason)),
    )
    for i in range(25):
        batcher.put(i)
    assert batcher.close(WAIT)
    assert [i for batch in sink.batches for i in batch] == list(range(25))
    assert batcher.put(99) is False and dropped == [([99], "closed")]
    assert batcher.stats.dropped_closed == 1
    assert batcher.close(WAIT)  # twice is harmless


def test_items_rejected_by_index_are_dropped_and_the_rest_sent_again(
    batchers: list[BackgroundBatcher[int]],
) -> None:
    sink = Sink(SendOutcome({3: "timestamp: is in the future", 7: "user_id: is missing"}))
    dropped: list[tuple[list[int], str]] = []
    batcher = BackgroundBatcher(
        sink.send,
        max_batch=10,
        max_age_seconds=3600,
        on_drop=lambda items, reason: dropped.append((items, reason)),
    )
    batchers.append(batcher)
    for i in range(10):
        batcher.put(100 + i)
    assert batcher.flush(WAIT)
    assert sink.batches == [list(range(100, 110)), [100, 101, 102, 104, 105, 106, 108, 109]]
    assert dropped == [
        ([103], "rejected: timestamp: is in the future"),
        ([107], "rejected: user_id: is missing"),
    ]
    stats = batcher.stats
    assert (stats.sent, stats.rejected, stats.failed, stats.pending) == (8, 2, 0, 0)


def test_a_failing_service_ends_in_failed_with_bounded_memory(
    batchers: list[BackgroundBatcher[int]],
) -> None:
    outage = [
        ServiceUnavailable(503, "Service Unavailable"),
        TransportError("POST", "/events", REFUSED),
    ]
    sink = Sink(*outage * 1000)
    dropped: list[tuple[list[int], str]] = []
    pending_seen: list[int] = []

    def send(items: list[int]) -> SendOutcome:
        pending_seen.append(batcher.stats.pending)
        return sink.send(items)

    batcher = BackgroundBatcher(
        send,
        max_batch=10,
        max_queue=50,
        max_age_seconds=0,
        max_attempts=3,
        retry_base_seconds=0.001,
        on_drop=lambda items, reason: dropped.append((items, reason)),
    )
    batchers.append(batcher)
    sink.gate.clear()  # the first batch hangs while the queue fills
    accepted = sum(batcher.put(i) for i in range(2000))
    sink.gate.set()
    assert not batcher.flush(WAIT)  # everything settled, as failures
    stats = batcher.stats
    assert (stats.queued, stats.failed, stats.sent, stats.pending) == (accepted, accepted, 0, 0)
    assert stats.dropped_full == 2000 - accepted > 0
    assert max(pending_seen) <= 50 + 10  # the queue's bound and one batch in flight, never more
    assert all(len(batch) <= 10 for batch in sink.batches)
    failed = [(items, reason) for items, reason in dropped if reason != "full"]
    assert sum(len(items) for items, _ in failed) == accepted
    assert all(reason.startswith("failed: ") for _, reason in failed)
    assert "503 Service Unavailable" in failed[0][1]


def test_a_batch_is_retried_until_the_service_is_back(
    batchers: list[BackgroundBatcher[int]],
) -> None:
    sink = Sink(
        ServiceUnavailable(503, "Service Unavailable"), TransportError("POST", "/events", REFUSED)
    )
    batcher = BackgroundBatcher(
        sink.send, max_batch=5, max_age_seconds=3600, retry_base_seconds=0.001
    )
    batchers.append(batcher)
    for i in range(5):
        batcher.put(i)
    assert batcher.flush(WAIT)
    assert sink.batches == [[0, 1, 2, 3, 4]] * 3 and batcher.stats.sent == 5


def test_a_refusal_that_retrying_cannot_fix_fails_at_once(
    batchers: list[BackgroundBatcher[int]],
) -> None:
    sink = Sink(Unauthorized(401, "Unauthorized"))
    batcher = BackgroundBatcher(sink.send, max_batch=2, max_age_seconds=3600)
    batchers.append(batcher)
    batcher.put(1)
    batcher.put(2)
    assert not batcher.flush(WAIT)
    assert len(sink.batches) == 1 and batcher.stats.failed == 2


def test_a_process_that_exits_normally_flushes(tmp_path: Path) -> None:
    script = textwrap.dedent("""
        import sys
        from experiments_client import BackgroundBatcher, SendOutcome

        def send(items):
            print("sent", *items, flush=True)
            return SendOutcome()

        batcher = BackgroundBatcher(send, max_batch=100, max_age_seconds=3600)
        for i in range(5):
            batcher.put(i)
        # no flush, no close: the interpreter's exit does it
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["sent", "0", "1", "2", "3", "4"]
