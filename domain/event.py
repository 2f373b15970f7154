"""What users do: events, validated one by one so a batch can name every bad one."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from domain.assignment import user_id_error
from domain.errors import FieldError
from domain.experiment import MAX_EVENT_TYPE_LENGTH

MAX_PROPERTIES_BYTES = 64 * 1024
MAX_EVENT_ID_LENGTH = 256
MAX_BATCH = 10_000


class TimestampOutOfRange(ValueError):
    """In UTC the instant falls before year 1 or after year 9999."""


def as_utc(moment: datetime) -> datetime:
    """A timestamp without an offset is UTC; one with an offset is converted to UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise TimestampOutOfRange("is outside years 1 to 9999 once converted to UTC") from None


def text_error(value: str, field: str) -> FieldError | None:
    """NUL cannot be stored as text by every database, and no name or id needs it."""
    return FieldError(field, "must not contain the NUL character") if "\x00" in value else None


@dataclass(frozen=True, slots=True)
class Event:
    experiment_id: str
    user_id: str
    event_type: str
    timestamp: datetime
    value: float | None = None
    properties: str | None = None  # a JSON object, kept as the text it was serialized to
    event_id: str | None = None

    def errors(self, prefix: str = "") -> list[FieldError]:
        """Every rule this event breaks, with field paths under ``prefix``."""
        errors: list[FieldError] = [
            e for name in ("event_type", "event_id")
            if (e := text_error(getattr(self, name) or "", prefix + name)) is not None
        ]
        if (error := user_id_error(self.user_id, f"{prefix}user_id")) is not None:
            errors.append(error)
        if not 1 <= len(self.event_type) <= MAX_EVENT_TYPE_LENGTH:
            errors.append(
                FieldError(f"{prefix}event_type", f"must be 1 to {MAX_EVENT_TYPE_LENGTH} characters")
            )
        if self.value is not None and not math.isfinite(self.value):
            errors.append(FieldError(f"{prefix}value", "must be a finite number"))
        if self.properties is not None and len(self.properties.encode()) > MAX_PROPERTIES_BYTES:
            errors.append(
                FieldError(f"{prefix}properties", f"must be at most {MAX_PROPERTIES_BYTES} bytes serialized")
            )
        if self.event_id is not None and not 1 <= len(self.event_id) <= MAX_EVENT_ID_LENGTH:
            errors.append(
                FieldError(f"{prefix}event_id", f"must be 1 to {MAX_EVENT_ID_LENGTH} characters")
            )
        return errors


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
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


@dataclass(slots=True)
class EventBatch:
    """Events as the columns a store writes: one list per field, aligned by position.

    A valid batch goes from the decoder to the store in this shape, with no object per event.
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
