"""Events and exposures sent in the background: ``track`` and ``report`` queue, and return.

Both post batches through a ``Client`` from a BackgroundBatcher's thread (batching.py says how
batches are formed, retried and bounded). A ``422`` names the bad items of a batch by index
(``events[3].timestamp``, ``exposures[0].variant_id``); those are rejected, handed to
``on_drop`` with the service's reasons, and the rest of the batch is sent again.

Each event gets its ``event_id`` when it is tracked, not when it is sent: a batch sent again
(after a lost answer, or a later retry) carries the same ids, and the service counts each
event once. ``track`` and ``report`` never wait for the service, so an async application may
call them from its event loop.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Generic, Self, TypeVar, Unpack

from experiments_client.batching import (
    BackgroundBatcher,
    BatcherOptions,
    BatcherStats,
    SendOutcome,
)
from experiments_client.client import Client
from experiments_client.definitions import Exposure
from experiments_client.errors import ValidationError

T = TypeVar("T")
MAX_BATCH = 10_000
"""The service's largest batch of events or exposures."""


def sent(post: Callable[[], object], collection: str) -> SendOutcome:
    """Post a batch; a ``422`` naming items of ``collection`` by index is the outcome that
    rejects them. A ``422`` about the batch as a whole is no item's fault: it is raised."""
    try:
        post()
    except ValidationError as error:
        rejected = error.by_index(collection)
        if not rejected:
            raise
        return SendOutcome(rejected)
    return SendOutcome()


def rfc3339(moment: datetime) -> str:
    """``moment`` in UTC with a ``Z``; a naive datetime is taken as UTC, as the service does."""
    utc = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return utc.isoformat(timespec="microseconds").replace("+00:00", "Z")


class _Background(Generic[T]):
    """What both senders share: their batcher's flush, close, counters and context."""

    def __init__(self, send: Callable[[list[T]], SendOutcome], options: BatcherOptions[T]) -> None:
        if options.get("max_batch", 1) > MAX_BATCH:
            raise ValueError(f"max_batch must be at most {MAX_BATCH:,}, the service's limit")
        self._batcher: BackgroundBatcher[T] = BackgroundBatcher(send, **options)

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything queued and wait for it; see BackgroundBatcher.flush."""
        return self._batcher.flush(timeout)

    def close(self, timeout: float | None = 5.0) -> bool:
        """Send everything queued and stop (also done at interpreter exit). The client stays
        open: it is the caller's."""
        return self._batcher.close(timeout)

    @property
    def stats(self) -> BatcherStats:
        return self._batcher.stats

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class EventTracker(_Background[dict[str, Any]]):
    """Records events in the background through ``client``; ``options`` are
    BackgroundBatcher's (``max_batch`` at most 10,000)."""

    def __init__(self, client: Client, **options: Unpack[BatcherOptions[dict[str, Any]]]) -> None:
        self._client = client
        super().__init__(self._send, options)

    def track(
        self,
        experiment_id: str,
        user_id: str,
        event_type: str,
        *,
        value: float | None = None,
        timestamp: datetime | str | None = None,
        properties: Mapping[str, Any] | None = None,
        event_id: str | None = None,
    ) -> bool:
        """Queue an event; False when it was dropped (see BackgroundBatcher.put). The
        timestamp defaults to now (UTC); the event id to a new random one."""
        when = timestamp if isinstance(timestamp, str) else rfc3339(timestamp or datetime.now(UTC))
        event: dict[str, Any] = {
            "experiment_id": experiment_id,
            "user_id": user_id,
            "event_type": event_type,
            "timestamp": when,
            "event_id": event_id or uuid.uuid4().hex,
        }
        if value is not None:
            event["value"] = value
        if properties is not None:
            event["properties"] = dict(properties)
        return self._batcher.put(event)

    def _send(self, events: list[dict[str, Any]]) -> SendOutcome:
        return sent(lambda: self._client.track(events), "events")


class ExposureDropped(RuntimeError):
    """An exposure was not queued: the reporter's queue was full, or it was closed."""

    def __init__(self, experiment_id: str, user_id: str) -> None:
        super().__init__(f"the exposure of {user_id!r} in {experiment_id!r} was dropped")


EXPOSURE_DEFAULTS: BatcherOptions[Exposure] = {"max_batch": 5_000, "max_queue": 200_000}
"""An exposure not stored is a user results never count, and a process assigns locally far
faster than any service stores: a burst (a cold start serving a queue of users, a batch job)
must fit. Exposures are small (about 200 bytes), so the queue holds 200,000 (about 40 MB at
the most), and batches are large, so that it drains at the service's pace."""


class ExposureReporter(_Background[Exposure]):
    """Reports users served by local assignment in the background through ``client``:
    ``report`` is what LocalAssigner takes as its ``report``. ``options`` are
    BackgroundBatcher's."""

    def __init__(self, client: Client, **options: Unpack[BatcherOptions[Exposure]]) -> None:
        self._client = client
        super().__init__(self._send, {**EXPOSURE_DEFAULTS, **options})

    def report(self, exposure: Exposure) -> None:
        """Queue an exposure; raises ExposureDropped when it could not be (a full queue, a
        closed reporter), so that LocalAssigner, which forgets a user whose report raised,
        reports them again on their next assignment rather than never."""
        if not self._batcher.put(exposure):
            raise ExposureDropped(exposure.experiment_id, exposure.user_id)

    def _send(self, exposures: list[Exposure]) -> SendOutcome:
        return sent(lambda: self._client.record_exposures(exposures), "exposures")
