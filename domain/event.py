"""What users do: events, the rules an event keeps, and the columns a batch travels in."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from domain.assignment import user_id_error
from domain.errors import FieldError, text_error
from domain.experiment import MAX_EVENT_TYPE_LENGTH

MAX_PROPERTIES_BYTES = 64 * 1024
MAX_EVENT_ID_LENGTH = 256
MAX_BATCH = 10_000
OUT_OF_RANGE = "is outside years 1 to 9999 once converted to UTC"


class TimestampOutOfRange(ValueError):
    """In UTC the instant falls before year 1 or after year 9999."""


def as_utc(moment: datetime) -> datetime:
    """A timestamp without an offset is UTC; one with an offset is converted to UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise TimestampOutOfRange(OUT_OF_RANGE) from None


def event_errors(
    *,
    user_id: str,
    event_type: str,
    timestamp: datetime | None = None,
    value: float | None = None,
    properties: str | None = None,
    event_id: str | None = None,
) -> list[FieldError]:
    """Every rule one event breaks on its own (its experiment is the use case's to look up).

    The rules that name every bad event of a batch; a decoder may check a whole batch faster
    its own way, but must accept exactly the events that this accepts.
    """
    errors: list[FieldError] = []
    if timestamp is not None and not MIN_MICROS <= to_micros(timestamp) <= MAX_MICROS:
        errors.append(FieldError("timestamp", OUT_OF_RANGE))
    for name, text in (("event_type", event_type), ("event_id", event_id)):
        if text is not None and (error := text_error(text, name)) is not None:
            errors.append(error)
    if (error := user_id_error(user_id, "user_id")) is not None:
        errors.append(error)
    if not 1 <= len(event_type) <= MAX_EVENT_TYPE_LENGTH:
        errors.append(FieldError("event_type", f"must be 1 to {MAX_EVENT_TYPE_LENGTH} characters"))
    if value is not None and not math.isfinite(value):
        errors.append(FieldError("value", "must be a finite number"))
    if properties is not None and len(properties.encode()) > MAX_PROPERTIES_BYTES:
        errors.append(
            FieldError("properties", f"must be at most {MAX_PROPERTIES_BYTES} bytes serialized")
        )
    if event_id is not None and not 1 <= len(event_id) <= MAX_EVENT_ID_LENGTH:
        errors.append(FieldError("event_id", f"must be 1 to {MAX_EVENT_ID_LENGTH} characters"))
    return errors


def batch_size_error(count: int) -> FieldError | None:
    """A batch is stored in one transaction, all or nothing: its size is bounded. The error is
    about the whole batch (no field: the caller names it)."""
    if not 1 <= count <= MAX_BATCH:
        return FieldError("", f"must hold 1 to {MAX_BATCH} events, got {count}")
    return None


@dataclass(frozen=True, slots=True)
class Event:
    """One stored event, as a row: for the in-memory store and for tests."""

    experiment_id: str
    user_id: str
    event_type: str
    timestamp: datetime
    value: float | None = None
    properties: str | None = None  # a JSON object, kept as the text it was serialized to
    event_id: str | None = None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = _EPOCH.replace(tzinfo=None)
_MICROSECOND = timedelta(microseconds=1)
MIN_MICROS = (datetime(1, 1, 1, tzinfo=UTC) - _EPOCH) // _MICROSECOND
MAX_MICROS = (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC) - _EPOCH) // _MICROSECOND


def to_micros(moment: datetime) -> int:
    """Microseconds since 1970-01-01 UTC; a moment without an offset is UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MICROSECOND


def from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def micros_of(moments: list[datetime | None]) -> list[int | None]:
    """``to_micros`` of each moment, None kept: a whole column in one comprehension."""
    return [
        None if m is None else (m - (_NAIVE_EPOCH if m.tzinfo is None else _EPOCH)) // _MICROSECOND
        for m in moments
    ]


def events_ahead(timestamps: Iterable[int | None], now: datetime, skew: timedelta) -> list[int]:
    """Positions of the timestamps (``to_micros``) later than ``now + skew``. Device clocks are
    often wrong by hours or days, and a real event must not be lost to that; an event stamped
    years ahead would count in every future window, so beyond the skew it is refused."""
    limit = to_micros(now + skew)
    return [i for i, t in enumerate(timestamps) if t is not None and t > limit]


@dataclass(slots=True)
class NewEvents:
    """Events as a client sent them, in EventBatch's columns, aligned by position.

    A timestamp the client left out is None: the event happened when it was received, which
    ``stamped`` fills in. Every event already keeps the rules of ``event_errors``, which concern
    each event alone: whoever reads events from outside checks them, as a decoder can for a whole
    batch while it decodes. What needs the store or the clock is the use case's to check.
    """

    experiment_ids: list[str]
    user_ids: list[str]
    event_types: list[str]
    timestamps: list[int | None]
    values: list[float | None]
    properties: list[str | None]
    event_ids: list[str | None]

    def __len__(self) -> int:
        return len(self.experiment_ids)

    def stamped(self, received_at: datetime) -> EventBatch:
        """The batch to store, the events without a timestamp timed at ``received_at``."""
        timestamps = self.timestamps
        if None in timestamps:
            now = to_micros(received_at)
            timestamps = [now if t is None else t for t in timestamps]
        return EventBatch(
            self.experiment_ids, self.user_ids, self.event_types, timestamps,  # type: ignore[arg-type]
            self.values, self.properties, self.event_ids,
        )


@dataclass(slots=True)
class EventBatch:
    """Events as the columns a store writes: one list per field, aligned by position.

    A batch reaches the store in this shape, with no object per event on the way.
    Timestamps are microseconds since the epoch, UTC (``to_micros``).
    """

    experiment_ids: list[str]
    user_ids: list[str]
    event_types: list[str]
    timestamps: list[int]
    values: list[float | None]
    properties: list[str | None]
    event_ids: list[str | None]

    def __len__(self) -> int:
        return len(self.experiment_ids)

    @classmethod
    def of(cls, events: Iterable[Event]) -> EventBatch:
        events = list(events)
        return cls(
            [e.experiment_id for e in events],
            [e.user_id for e in events],
            [e.event_type for e in events],
            [to_micros(e.timestamp) for e in events],
            [e.value for e in events],
            [e.properties for e in events],
            [e.event_id for e in events],
        )

    def events(self) -> list[Event]:
        """One Event per row: for the in-memory store and for tests, not for the hot path."""
        return [
            Event(x, u, t, from_micros(ts), v, p, i)
            for x, u, t, ts, v, p, i in zip(
                self.experiment_ids, self.user_ids, self.event_types, self.timestamps,
                self.values, self.properties, self.event_ids, strict=True,
            )
        ]

    def rows(self) -> list[tuple[str, str, str, int, float | None, str | None, str | None]]:
        """Row tuples in the column order above, for a driver's executemany."""
        return list(
            zip(
                self.experiment_ids, self.user_ids, self.event_types, self.timestamps,
                self.values, self.properties, self.event_ids, strict=True,
            )
        )
