"""Strict JSON request bodies: msgspec decoding whose errors name the field that broke.

Litestar's own body parsing is lenient (it turns ``"50"`` into ``50``) and reports malformed
and invalid input alike as 400. A DTO is Litestar's hook for decoding bodies, so these DTOs
decode strictly and keep the handler's request schema in the OpenAPI document.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

import msgspec
from litestar.dto import MsgspecDTO
from litestar.typing import FieldDefinition

from application.use_cases import EventDraft
from domain.errors import FieldError, ValidationFailed
from domain.experiment import VariantDraft
from entrypoints.schemas import EventBatchIn, EventIn, ExperimentIn


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
    field = f"{prefix}{path}" if path else prefix.rstrip(".") or "body"
    return FieldError(field, message)


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


class StrictDTO(MsgspecDTO):
    """Decodes the body into the DTO's Struct with msgspec's strict rules."""

    def decode_bytes(self, value: bytes) -> Any:
        return decode(value, self.model_type)


ExperimentDTO = StrictDTO[ExperimentIn]


@dataclass(frozen=True, slots=True)
class DecodedEvents:
    drafts: list[EventDraft | None]  # None where an event of a batch was of the wrong shape
    batch: bool
    rejected: list[FieldError]  # why those were of the wrong shape


class _Envelope(msgspec.Struct):
    events: msgspec.Raw = msgspec.Raw(b"")


class EventsDTO(StrictDTO[EventBatchIn]):
    """A single event, or ``{"events": [...]}``; in a batch every bad event is named by index."""

    schema: ClassVar[Any] = EventIn | EventBatchIn

    def decode_bytes(self, value: bytes) -> DecodedEvents:
        try:  # the common case, a well-formed batch, in one pass
            batch = msgspec.json.decode(value, type=EventBatchIn)
        except (msgspec.DecodeError, RecursionError):  # DecodeError covers ValidationError too
            pass
        else:
            return DecodedEvents([event_draft(e) for e in batch.events], batch=True, rejected=[])
        envelope = decode(value, _Envelope)
        if not envelope.events:
            return DecodedEvents([event_draft(decode(value, EventIn))], batch=False, rejected=[])
        # A batch that did not decode above has a bad event (or is no list): name every one.
        return self._one_by_one(envelope.events)

    @staticmethod
    def _one_by_one(raw: msgspec.Raw) -> DecodedEvents:
        """The slow path, only for a batch that has a bad event: name every bad one."""
        items = decode(raw, list[msgspec.Raw], prefix="events")
        drafts: list[EventDraft | None] = []
        rejected: list[FieldError] = []
        for i, item in enumerate(items):
            try:
                drafts.append(event_draft(decode(item, EventIn, prefix=f"events[{i}].")))
            except ValidationFailed as exc:
                drafts.append(None)
                rejected.extend(exc.errors)
        return DecodedEvents(drafts, batch=True, rejected=rejected)

    @classmethod
    def create_openapi_schema(cls, field_definition, handler_id, schema_creator):  # type: ignore[no-untyped-def]
        return schema_creator.for_field_definition(FieldDefinition.from_annotation(cls.schema))


def variant_drafts(body: ExperimentIn) -> list[VariantDraft]:
    return [VariantDraft(v.name, v.traffic_percentage, v.is_control) for v in body.variants]


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

