"""Strict JSON request bodies: msgspec decoding whose errors name the field that broke.

Litestar's own body parsing is lenient (it turns ``"50"`` into ``50``) and reports malformed
and invalid input alike as 400. A DTO is Litestar's hook for decoding bodies, so these DTOs
decode strictly and keep the handler's request schema in the OpenAPI document.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import msgspec
import msgspec.inspect
from litestar.dto import MsgspecDTO
from litestar.typing import FieldDefinition

from domain.errors import (
    FieldError,
    ValidationFailed,
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
        """Every body of the API comes through here: the media type first, whatever the DTO."""
        self.check_media_type()
        return self.decode_json(value)

    def decode_json(self, value: bytes) -> Any:
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


@dataclass(frozen=True, slots=True)
class ClosedBody:
    """A body decoded by a ClosedDTO: the Struct, and an error for each field it did not know.
    The handler reports those with the domain's own findings, so that every fault is named."""

    value: Any
    unknown: list[FieldError]


class ClosedDTO(StrictDTO):
    """Like StrictDTO, and a field the Struct does not know is an error, each one named: a body
    that grants access should not have a misspelt field (``expire_at``) silently ignored."""

    def decode_json(self, value: bytes) -> ClosedBody:
        fields = decode(value, dict[str, msgspec.Raw])
        known = set(self.model_type.__struct_fields__)
        unknown = [FieldError(name, "is not a known field") for name in fields if name not in known]
        try:
            decoded = decode(value, self.model_type)
        except ValidationFailed as exc:
            raise ValidationFailed(unknown + exc.errors) from None
        return ClosedBody(decoded, unknown)
