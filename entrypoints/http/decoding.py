"""Strict JSON request bodies: msgspec decoding whose errors name the field that broke.

Litestar's own body parsing is lenient (it turns ``"50"`` into ``50``) and reports malformed
and invalid input alike as 400. A DTO is Litestar's hook for decoding bodies, so these DTOs
decode strictly and keep the handler's request schema in the OpenAPI document.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import chain
from typing import Any, ClassVar

import msgspec
import msgspec.inspect
from litestar.dto import MsgspecDTO
from litestar.typing import FieldDefinition

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
    MAX_MICROS,
    MAX_PROPERTIES_BYTES,
    MIN_MICROS,
    NewEvents,
    batch_size_error,
    event_errors,
    micros_of,
)
from domain.experiment import VariantDraft
from entrypoints.http.schemas import (
    AssignmentIn,
    EventBatch,
    EventBatchIn,
    EventFieldsIn,
    EventIn,
    ExperimentIn,
    ExperimentPatchIn,
    HoldoutIn,
    LayerIn,
    OverrideIn,
    VariantIn,
    KeyIn,
    NewExperiment,
)


class MalformedBody(ValueError):
    """The body is not JSON at all: a 400, where JSON of the wrong shape is a 422."""


_PATH = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]+)`$")


def field_error(error: msgspec.ValidationError, prefix: str = "") -> FieldError:
    """``Expected `str`, got `int` - at `$.variants[0].name``` -> FieldError("variants[0].name", …)."""
    match = _PATH.match(str(error))
    assert match is not None  # the pattern matches any string
    message, path = match["message"], (match["path"] or "").lstrip(".")
    if missing := _MISSING.match(message):
        path = f"{path}.{missing['name']}" if path else missing["name"]
        message = "is required"
    name = f"{prefix}{path}" if path else prefix.rstrip(".") or "body"
    return FieldError(name, message)


def _well_formed(raw: bytes) -> None:
    """msgspec stops at the first wrong type, maybe before a syntax error further on; JSON that
    is not JSON at all is a 400 whatever its types, so the error path checks the syntax alone."""
    try:
        msgspec.json.decode(raw, type=msgspec.Raw)
        msgspec.json.decode(raw)
    except msgspec.ValidationError:
        pass  # well-formed, with a number beyond a double's range (1e999): invalid, not malformed
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise MalformedBody(f"the body is not valid JSON: {exc}") from exc
    except RecursionError:
        pass


def decode(raw: bytes, type_: Any, prefix: str = "") -> Any:
    try:
        return msgspec.json.decode(raw, type=type_)
    except msgspec.ValidationError as exc:
        _well_formed(raw)
        raise ValidationFailed([field_error(exc, prefix)]) from exc
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise MalformedBody(f"the body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise ValidationFailed([FieldError(prefix.rstrip(".") or "body", "is nested too deeply")]) from exc


class UnsupportedMediaType(ValueError):
    """The body was sent as something other than JSON: a 415."""


def media_type_error(headers: Sequence[tuple[bytes, bytes]]) -> UnsupportedMediaType | None:
    """None when the raw ASGI ``headers`` declare a JSON body (``application/json`` or
    ``application/*+json``, any parameters) or declare no type at all: clients written before
    the check sent JSON without one, and JSON is the only body there is."""
    for name, value in headers:
        if name == b"content-type":
            media = value.partition(b";")[0].strip().lower()
            if not media or media == b"application/json":
                return None
            if media.startswith(b"application/") and media.endswith(b"+json"):
                return None
            shown = media[:100].decode("latin-1")
            return UnsupportedMediaType(
                f"the body must be JSON sent as Content-Type application/json; got {shown!r}"
            )
    return None


UNKNOWN_FIELD = "is not a known field"


def unknown_fields(value: Any, shape: msgspec.inspect.Type, path: str = "") -> list[FieldError]:
    """Every key of the decoded JSON ``value`` that ``shape`` (a Struct, maybe nested in lists
    and unions) does not declare, named by its path: ``variants[0].is_contorl``."""
    if isinstance(shape, msgspec.inspect.StructType) and isinstance(value, dict):
        declared = {f.encode_name: f.type for f in shape.fields}
        errors = []
        for key, item in value.items():
            name = f"{path}.{key}" if path else str(key)
            if key in declared:
                errors += unknown_fields(item, declared[key], name)
            else:
                errors.append(FieldError(name, UNKNOWN_FIELD))
        return errors
    if isinstance(shape, msgspec.inspect.ListType) and isinstance(value, list):
        return [e for i, item in enumerate(value) for e in unknown_fields(item, shape.item_type, f"{path}[{i}]")]
    if isinstance(shape, msgspec.inspect.UnionType):
        for option in shape.types:
            if errors := unknown_fields(value, option, path):
                return errors
    return []


class StrictDTO(MsgspecDTO):
    """Decodes the body, once its Content-Type says it is JSON, into the DTO's Struct with
    msgspec's strict rules. With ``closed``, a
    field the Struct does not declare is an error too (a typo must not pass for a default):
    every such field is named, with the first wrong type if there is one. The OpenAPI document
    shows ``schema``, the same body with the limits the domain checks, rather than Litestar's
    copy of the types alone."""

    closed: ClassVar[bool] = False
    schema: ClassVar[Any] = None

    def decode_bytes(self, value: bytes) -> Any:
        self.check_media_type()
        if not self.closed:
            return decode(value, self.model_type)
        try:
            loose = msgspec.json.decode(value)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            return decode(value, self.model_type)  # which names the fault as it would anyway
        extra = unknown_fields(loose, msgspec.inspect.type_info(self.model_type))
        try:
            decoded = decode(value, self.model_type)
        except ValidationFailed as exc:
            if extra:
                raise ValidationFailed(extra + exc.errors) from exc
            raise
        if extra:
            raise ValidationFailed(extra)
        return decoded

    def check_media_type(self) -> None:
        if (error := media_type_error(self.asgi_connection.scope["headers"])) is not None:
            raise error

    @classmethod
    def create_openapi_schema(cls, field_definition, handler_id, schema_creator):  # type: ignore[no-untyped-def]
        if cls.schema is None:
            return super().create_openapi_schema(field_definition, handler_id, schema_creator)
        return schema_creator.for_field_definition(FieldDefinition.from_annotation(cls.schema))

class ExperimentDTO(StrictDTO[ExperimentIn]):
    closed = True
    schema: ClassVar[Any] = NewExperiment


@dataclass(frozen=True, slots=True)
class ClosedBody:
    """A body decoded by a ClosedDTO: the Struct, and an error for each field it did not know.
    The handler reports those with the domain's own findings, so that every fault is named."""

    value: Any
    unknown: list[FieldError]


class ClosedDTO(StrictDTO):
    """Like StrictDTO, and a field the Struct does not know is an error, each one named: a body
    that grants access should not have a misspelt field (``expire_at``) silently ignored."""

    def decode_bytes(self, value: bytes) -> ClosedBody:
        fields = decode(value, dict[str, msgspec.Raw])
        known = set(self.model_type.__struct_fields__)
        unknown = [FieldError(name, "is not a known field") for name in fields if name not in known]
        try:
            decoded = decode(value, self.model_type)
        except ValidationFailed as exc:
            raise ValidationFailed(unknown + exc.errors) from None
        return ClosedBody(decoded, unknown)


KeyDTO = ClosedDTO[KeyIn]


class ExperimentPatchDTO(StrictDTO[ExperimentPatchIn]):
    closed = True


class AssignmentDTO(StrictDTO[AssignmentIn]):
    closed = True


class OverrideDTO(StrictDTO[OverrideIn]):
    closed = True


class LayerDTO(StrictDTO[LayerIn]):
    closed = True


class HoldoutDTO(StrictDTO[HoldoutIn]):
    closed = True


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

    def decode_bytes(self, value: bytes) -> DecodedEvents:
        self.check_media_type()
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
        raise ValidationFailed([error])
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


def _event_index(error: FieldError) -> int:
    head = error.field.partition("]")[0]
    return int(head[len("events[") :]) if head.startswith("events[") else -1


def variant_drafts(variants: list[VariantIn]) -> list[VariantDraft]:
    return [VariantDraft(v.name, v.traffic_percentage, v.is_control) for v in variants]
