"""What users do: events, validated one by one so a batch can name every bad one."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

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
