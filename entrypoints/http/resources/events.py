"""Events: one or a batch, decoded strictly and fast, every bad event named by its index."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import chain
from typing import Annotated, Any, ClassVar

import msgspec
from litestar import Controller, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from application.tracking import RecordEvents
from domain.assignment import MAX_USER_ID_LENGTH
from domain.errors import (
    DomainError,
    EventsAhead,
    ExperimentNotFound,
    FieldError,
    UnknownExperiments,
    ValidationFailed,
    describe,
)
from domain.event import (
    MAX_BATCH,
    MAX_EVENT_ID_LENGTH,
    MAX_MICROS,
    MAX_PROPERTIES_BYTES,
    MIN_MICROS,
    NewEvents,
    batch_size_error,
    event_errors,
    micros_of,
)
from domain.experiment import MAX_EVENT_TYPE_LENGTH
from domain.keys import INGEST
from entrypoints.http import openapi
from entrypoints.http.decoding import StrictDTO, decode
from entrypoints.telemetry import metrics

UserId = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_USER_ID_LENGTH,
        description="The client's id of the user; no NUL character.",
        examples=["u-123"],
    ),
]


EventType = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_EVENT_TYPE_LENGTH,
        description="What the user did; no NUL character.",
        examples=["purchase"],
    ),
]


EventId = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_EVENT_ID_LENGTH,
        description="Idempotency key: an event whose `event_id` is already stored is skipped and "
        "counted as a duplicate.",
        examples=["order-1001"],
    ),
]


# msgspec refuses a JSON number beyond a double's range (1e999) as it parses; the bounds say in
# the schema that a value is finite, and keep infinity out should a decoder let one through.
FiniteFloat = Annotated[float, msgspec.Meta(ge=-sys.float_info.max, le=sys.float_info.max)]


class EventIn(msgspec.Struct, gc=False):
    """An event, with the limits the decoder checks in C. What a constraint cannot say (no NUL
    in text, a timestamp within years 1 to 9999 in UTC, the properties' serialized size) the
    decoder checks over the batch's columns. ``gc=False``: a batch makes thousands of these,
    and none can be part of a reference cycle, so the collector need not track them."""

    experiment_id: Annotated[
        str, msgspec.Meta(description="An existing experiment's id.", examples=["0b7e6a52c1d94f3e"])
    ]
    user_id: UserId
    event_type: EventType
    timestamp: Annotated[
        datetime | None,
        msgspec.Meta(
            description="RFC 3339, within years 1 to 9999 in UTC; without an offset it is UTC. "
            "Default: the time received.",
            examples=["2026-11-28T14:03:00Z"],
        ),
    ] = None
    value: Annotated[
        FiniteFloat | None,
        msgspec.Meta(description="A finite number, for value metrics.", examples=[19.99]),
    ] = None
    properties: Annotated[
        dict[str, Any] | None,
        msgspec.Meta(
            description=f"Any JSON object, at most {MAX_PROPERTIES_BYTES} bytes serialized.",
            examples=[{"sku": "A-1"}],
        ),
    ] = None
    event_id: EventId | None = None


class EventBatchIn(msgspec.Struct, gc=False):
    events: list[EventIn]


class EventBatch(msgspec.Struct):
    """A batch of events, stored all or nothing: EventBatchIn as the OpenAPI document shows it.
    Its size is the use case's rule, so the decoder leaves it out."""

    events: Annotated[list[EventIn], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


class EventFieldsIn(msgspec.Struct):
    """An event's types alone: a bad batch is decoded event by event with it, and the domain's
    ``event_errors`` names every broken rule."""

    experiment_id: str
    user_id: str
    event_type: str
    timestamp: datetime | None = None
    value: float | None = None
    properties: dict[str, Any] | None = None
    event_id: str | None = None


class EventsAcceptedOut(msgspec.Struct):
    """The events are durably committed."""

    accepted: Annotated[int, msgspec.Meta(ge=0, description="Events stored.", examples=[998])]
    duplicates: Annotated[
        int,
        msgspec.Meta(ge=0, description="Events skipped: their event_id was stored.", examples=[2]),
    ]


UNKNOWN_EXPERIMENT = "experiment does not exist"


def ahead_message(skew: timedelta) -> str:
    return f"is more than {describe(skew)} in the future (the clock skew allowed)"


@dataclass(frozen=True, slots=True)
class OneEvent:
    """The body was a single event."""

    events: NewEvents  # of one

    def unknown(self, exc: UnknownExperiments) -> DomainError:
        """A single event of an unknown experiment is a 404, like any unknown experiment."""
        return ExperimentNotFound(exc.experiment_ids[0])

    def ahead(self, exc: EventsAhead) -> ValidationFailed:
        return ValidationFailed([FieldError("timestamp", ahead_message(exc.skew))])


@dataclass(frozen=True, slots=True)
class Batch:
    """The body was a batch, and every event kept the rules of an event alone."""

    events: NewEvents

    def unknown(self, exc: UnknownExperiments) -> DomainError:
        """In a batch, an unknown experiment is one more invalid event, named by its index."""
        return ValidationFailed(
            [FieldError(f"events[{i}].experiment_id", UNKNOWN_EXPERIMENT) for i in exc.experiment_ids]
        )

    def ahead(self, exc: EventsAhead) -> ValidationFailed:
        message = ahead_message(exc.skew)
        return ValidationFailed([FieldError(f"events[{i}].timestamp", message) for i in exc.positions])


@dataclass(frozen=True, slots=True)
class InvalidBatch:
    """A batch with a bad event: every fault of the events, and the experiments of those that
    could be read, so that the unknown ones are named too."""

    errors: list[FieldError]
    experiment_ids: dict[int, str]  # by index in the batch
    size: int = 0  # events in the batch
    timestamps: dict[int, int | None] = field(default_factory=dict)  # of the events read

    def failure(
        self, unknown: set[str], ahead: Sequence[int] = (), skew: timedelta | None = None
    ) -> ValidationFailed:
        """Every fault at once: the events' own, the unknown experiments, and the timestamps
        too far ahead (``ahead``: positions among ``timestamps``' keys, in their order)."""
        positions = list(self.timestamps)
        errors = self.errors + [
            FieldError(f"events[{i}].experiment_id", UNKNOWN_EXPERIMENT)
            for i, experiment_id in self.experiment_ids.items()
            if experiment_id in unknown
        ]
        if skew is not None:
            errors += [
                FieldError(f"events[{positions[k]}].timestamp", ahead_message(skew)) for k in ahead
            ]
        return ValidationFailed(sorted(errors, key=_event_index))  # stable: an event's own order


DecodedEvents = OneEvent | Batch | InvalidBatch


class _Envelope(msgspec.Struct):
    events: msgspec.Raw = msgspec.Raw(b"")


class EventsDTO(StrictDTO[EventBatchIn]):
    """A single event, or ``{"events": [...]}``; in a batch every bad event is named by index."""

    schema: ClassVar[Any] = EventIn | EventBatch

    def decode_json(self, value: bytes) -> DecodedEvents:
        return decode_events(value)


def decode_events(raw: bytes) -> DecodedEvents:
    """A single event or a batch, as columns; a bad single event raises ValidationFailed."""
    try:  # the common case, a valid batch: decoded and checked in C, then made columns
        batch = msgspec.json.decode(raw, type=EventBatchIn)
    except (msgspec.DecodeError, RecursionError):  # DecodeError covers ValidationError too
        pass
    else:
        events = columns(batch.events)
        if not breaks_a_rule(events):
            return Batch(events)
    envelope = decode(raw, _Envelope)
    if not envelope.events:
        event = decode(raw, EventFieldsIn)
        if errors := event_errors_of(event):
            raise ValidationFailed(errors)
        return OneEvent(columns([event]))
    return _one_by_one(envelope.events)


def _one_by_one(raw: msgspec.Raw) -> Batch | InvalidBatch:
    """The slow path, for a batch that broke a rule above: name every bad event."""
    items = decode(raw, list[msgspec.Raw], prefix="events")
    if (error := batch_size_error(len(items))) is not None:
        raise ValidationFailed([error]).renamed(BATCH)
    read: list[EventFieldsIn] = []
    errors: list[FieldError] = []
    experiment_ids: dict[int, str] = {}
    timestamps: dict[int, int | None] = {}
    for i, item in enumerate(items):
        prefix = f"events[{i}]."
        try:
            event = decode(item, EventFieldsIn, prefix=prefix)
        except ValidationFailed as exc:
            errors.extend(exc.errors)
            continue
        read.append(event)
        experiment_ids[i] = event.experiment_id
        own = event_errors_of(event, prefix)
        errors.extend(own)
        if event.timestamp is not None and not any(e.field == prefix + "timestamp" for e in own):
            timestamps[i] = micros_of([event.timestamp])[0]
    if errors:
        return InvalidBatch(errors, experiment_ids, len(items), timestamps)
    # Every event keeps the rules: the fast path refused the batch for a reason of its own
    # (a recursion limit met at a different depth, say), which is no fault of the client's.
    return Batch(columns(read))


def columns(events: Sequence[EventIn | EventFieldsIn]) -> NewEvents:
    """The events as the columns the store writes: one list per field, no object per event."""
    encode = msgspec.json.encode
    return NewEvents(
        experiment_ids=[e.experiment_id for e in events],
        user_ids=[e.user_id for e in events],
        event_types=[e.event_type for e in events],
        timestamps=micros_of([e.timestamp for e in events]),
        values=[e.value for e in events],
        properties=[None if e.properties is None else encode(e.properties).decode() for e in events],
        event_ids=[e.event_id for e in events],
    )


def breaks_a_rule(events: NewEvents) -> bool:
    """The rules of ``event_errors`` that EventIn's constraints cannot say, over whole columns.

    NUL is refused by one search of the joined columns rather than by a ``pattern`` constraint:
    a regular expression per string cost more than all the rest of the decoding
    (bench/decode.py).
    """
    texts = chain(events.user_ids, events.event_types, filter(None, events.event_ids))
    if "\x00" in "".join(texts):
        return True
    timestamps = [t for t in events.timestamps if t is not None]
    if timestamps and (min(timestamps) < MIN_MICROS or max(timestamps) > MAX_MICROS):
        return True
    return any(
        len(p.encode()) > MAX_PROPERTIES_BYTES for p in events.properties if p is not None
    )


def event_errors_of(event: EventFieldsIn, prefix: str = "") -> list[FieldError]:
    """The domain's ``event_errors`` of one decoded event, its fields named under ``prefix``."""
    properties = None if event.properties is None else msgspec.json.encode(event.properties).decode()
    return [
        FieldError(prefix + e.field, e.message)
        for e in event_errors(
            user_id=event.user_id,
            event_type=event.event_type,
            timestamp=event.timestamp,
            value=event.value,
            properties=properties,
            event_id=event.event_id,
        )
    ]


BATCH = {"": "events"}
"""The core's errors about a whole batch concern the body's ``events``."""


def _event_index(error: FieldError) -> int:
    head = error.field.partition("]")[0]
    return int(head[len("events[") :]) if head.startswith("events[") else -1


class EventsController(Controller):
    path = "/events"
    tags = [openapi.EVENTS]
    opt = {"scope": INGEST}

    @post(
        dto=EventsDTO,
        return_dto=None,
        status_code=202,
        summary="Record one event, or a batch of 1 to 10,000 stored all or nothing.",
        response_description="The events are stored.",
        responses=openapi.error_responses(*openapi.AUTHENTICATED, *openapi.WITH_BODY, 404),
    )
    async def record_events(
        self, data: JSONBody[EventBatchIn], record_events: NamedDependency[RecordEvents]
    ) -> EventsAcceptedOut:
        """The 202 comes once the events are durably committed. An event whose `event_id` is
        already stored is skipped and counted in `duplicates`. A single event of an unknown
        experiment is a 404; in a batch every bad event, unknown experiments included, is named
        by its index in one 422 and nothing is stored."""
        body: DecodedEvents = data  # type: ignore[assignment]  # EventsDTO decodes either shape
        if isinstance(body, InvalidBatch):
            metrics.count_rejected(body.size)
            unknown = await record_events.unknown_experiments(body.experiment_ids.values())
            ahead = record_events.too_far_ahead(body.timestamps.values())
            raise body.failure(unknown, ahead, record_events.future_skew)
        try:
            outcome = await record_events(body.events)
        except UnknownExperiments as exc:
            metrics.count_rejected(len(body.events))
            raise body.unknown(exc) from None
        except EventsAhead as exc:
            metrics.count_rejected(len(body.events))
            raise body.ahead(exc) from None
        except ValidationFailed as exc:
            metrics.count_rejected(len(body.events))
            raise exc.renamed(BATCH) from None
        metrics.count_events(outcome.accepted, outcome.duplicates)
        return EventsAcceptedOut(accepted=outcome.accepted, duplicates=outcome.duplicates)
