"""The per-event decoding and validation of main before columnar ingestion (commit 1b7bff4),
frozen: the oracle that the columnar decoder is held to (tests/unit/test_event_decoding.py) and
the "before" of bench/decode.py. Not used by the service.

One object per event at each step: a Struct from msgspec, an EventDraft, a domain Event with
its timestamp converted to UTC, then the rules one by one, then the columns. The ``decode``
helper is the service's own, so a later fix to it (a number beyond a double's range is invalid,
not malformed) holds here too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import msgspec

from domain.assignment import user_id_error
from domain.errors import ExperimentNotFound, FieldError, ValidationFailed
from domain.event import (
    MAX_BATCH,
    MAX_EVENT_ID_LENGTH,
    MAX_PROPERTIES_BYTES,
    EventBatch,
    TimestampOutOfRange,
    as_utc,
    text_error,
)
from domain.experiment import MAX_EVENT_TYPE_LENGTH
from entrypoints.http.decoding import decode
from entrypoints.http.resources.events import (
    EventFieldsIn as EventIn,  # main's EventIn: the types alone
)


class EventBatchIn(msgspec.Struct):
    events: list[EventIn]


class _Envelope(msgspec.Struct):
    events: msgspec.Raw = msgspec.Raw(b"")


@dataclass(slots=True)
class EventDraft:
    experiment_id: str
    user_id: str
    event_type: str
    timestamp: datetime | None = None
    value: float | None = None
    properties: str | None = None
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class Event:
    experiment_id: str
    user_id: str
    event_type: str
    timestamp: datetime
    value: float | None = None
    properties: str | None = None
    event_id: str | None = None

    def errors(self, prefix: str = "") -> list[FieldError]:
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


def event_draft(e: EventIn) -> EventDraft:
    return EventDraft(
        experiment_id=e.experiment_id,
        user_id=e.user_id,
        event_type=e.event_type,
        timestamp=e.timestamp,
        value=e.value,
        properties=None if e.properties is None else msgspec.json.encode(e.properties).decode(),
        event_id=e.event_id,
    )


def decode_drafts(raw: bytes) -> tuple[list[EventDraft | None], bool, list[FieldError]]:
    """main's EventsDTO.decode_bytes: (drafts, batch, rejected)."""
    try:
        batch = msgspec.json.decode(raw, type=EventBatchIn)
    except (msgspec.DecodeError, RecursionError):
        pass
    else:
        return [event_draft(e) for e in batch.events], True, []
    envelope = decode(raw, _Envelope)
    if not envelope.events:
        return [event_draft(decode(raw, EventIn))], False, []
    items = decode(envelope.events, list[msgspec.Raw], prefix="events")
    drafts: list[EventDraft | None] = []
    rejected: list[FieldError] = []
    for i, item in enumerate(items):
        try:
            drafts.append(event_draft(decode(item, EventIn, prefix=f"events[{i}].")))
        except ValidationFailed as exc:
            drafts.append(None)
            rejected.extend(exc.errors)
    return drafts, True, rejected


def validate(
    drafts: list[EventDraft | None],
    *,
    batch: bool,
    rejected: list[FieldError],
    received_at: datetime,
    known: set[str],
) -> EventBatch:
    """main's RecordEvents.__call__ up to the store, with the experiments that exist given."""
    if batch and not 1 <= len(drafts) <= MAX_BATCH:
        raise ValidationFailed(
            [FieldError("events", f"must hold 1 to {MAX_BATCH} events, got {len(drafts)}")]
        )
    if not batch:
        for d in drafts:
            if d is not None and d.experiment_id not in known:
                raise ExperimentNotFound(d.experiment_id)
    events: list[Event] = []
    errors: list[FieldError] = list(rejected)
    for i, draft in enumerate(drafts):
        if draft is None:
            continue
        prefix = f"events[{i}]." if batch else ""
        try:
            timestamp = received_at if draft.timestamp is None else as_utc(draft.timestamp)
        except TimestampOutOfRange as exc:
            errors.append(FieldError(f"{prefix}timestamp", str(exc)))
            timestamp = received_at
        event = Event(
            draft.experiment_id, draft.user_id, draft.event_type, timestamp,
            draft.value, draft.properties, draft.event_id,
        )
        errors.extend(event.errors(prefix))
        if draft.experiment_id not in known:
            errors.append(FieldError(f"{prefix}experiment_id", "experiment does not exist"))
        events.append(event)
    if errors:
        raise ValidationFailed(sorted(errors, key=_event_index))
    return EventBatch.of(events)  # type: ignore[arg-type]  # main's Event had these fields


def per_event_path(raw: bytes, *, received_at: datetime, known: set[str]) -> EventBatch:
    """The body as main decoded, checked and turned into columns; raises as main did."""
    drafts, batch, rejected = decode_drafts(raw)
    return validate(drafts, batch=batch, rejected=rejected, received_at=received_at, known=known)


def _event_index(error: FieldError) -> int:
    head = error.field.partition("]")[0]
    return int(head[len("events[") :]) if head.startswith("events[") else -1
