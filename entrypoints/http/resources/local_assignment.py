"""Local assignment: the definitions a client assigns from in-process, and the exposures it
reports back so that the service stores what it would have stored (docs/api.md)."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from application.assignment import MAX_EXPOSURES, RecordExposures
from application.experiments import AllExperiments
from domain.assignment import Exposure
from domain.errors import FieldError, ValidationFailed
from domain.event import TimestampOutOfRange, as_utc
from domain.experiment import Experiment
from domain.keys import ASSIGN
from entrypoints.http import openapi
from entrypoints.http.decoding import StrictDTO
from entrypoints.http.resources.assignments import AttributeName, AttributeValue, attribute_errors
from entrypoints.http.resources.events import UserId
from entrypoints.http.wire import Id, doc

BasisPoints = Annotated[int, msgspec.Meta(ge=0, le=10_000, description="Hundredths of a percent, 0 to 10,000.")]


class VariantDefinitionOut(msgspec.Struct):
    id: Id
    name: str
    traffic_basis_points: BasisPoints
    is_control: bool


class LayerDefinitionOut(msgspec.Struct):
    id: Id
    seed: Annotated[str, doc("The layer's hash seed: bucket('layer:{seed}:{user_id}').")]
    start: Annotated[int, doc("First bucket of the experiment's slice.", 0)]
    end: Annotated[int, doc("The slice's end, exclusive.", 3000)]


class HoldoutDefinitionOut(msgspec.Struct):
    id: Id
    seed: Annotated[str, doc("The holdout's hash seed: bucket('holdout:{seed}:{user_id}').")]
    basis_points: BasisPoints


class OverrideDefinitionOut(msgspec.Struct):
    user_id: str
    variant_id: Id


class ExperimentDefinitionOut(msgspec.Struct):
    """What deciding a user's variant needs of an experiment, and nothing more."""

    id: Id
    name: str
    status: Literal["draft", "running", "paused", "stopped", "archived"]
    variants: list[VariantDefinitionOut]
    coverage_basis_points: BasisPoints
    audience: dict[str, Any] | None
    layer: LayerDefinitionOut | None
    holdout: HoldoutDefinitionOut | None
    winner_variant_id: Id | None
    overrides: list[OverrideDefinitionOut]

    @classmethod
    def of(cls, e: Experiment) -> ExperimentDefinitionOut:
        return cls(
            e.id,
            e.name,
            e.status.value,  # type: ignore[arg-type]
            [VariantDefinitionOut(v.id, v.name, v.traffic_basis_points, v.is_control) for v in e.variants],
            e.coverage_basis_points,
            None if e.audience is None else e.audience.source,
            None if e.layer is None else LayerDefinitionOut(e.layer.layer_id, e.layer.seed, e.layer.slice.start, e.layer.slice.end),
            None if e.holdout is None else HoldoutDefinitionOut(e.holdout.holdout_id, e.holdout.seed, e.holdout.basis_points),
            e.winner_variant_id,
            [OverrideDefinitionOut(o.user_id, o.variant_id) for o in e.overrides],
        )


class DefinitionsOut(msgspec.Struct):
    """Every experiment, oldest first, as a client needs it to assign users in-process."""

    experiments: list[ExperimentDefinitionOut]


class ExposureIn(msgspec.Struct):
    experiment_id: Id
    user_id: UserId
    variant_id: Annotated[str, doc("The variant the client served the user.", "0b7e6a52c1d94f40")]
    timestamp: Annotated[
        datetime,
        doc("When the user was served; RFC 3339 (without an offset: UTC). Becomes the stored "
            "assignment's assigned_at; at most EVENT_CLOCK_SKEW_SECONDS from the service's clock.",
            "2026-11-28T14:00:05Z"),
    ]
    attributes: (
        Annotated[
            dict[AttributeName, AttributeValue],
            msgspec.Meta(max_length=100, description="The attributes the client judged the audience "
                         "on, for an experiment with an audience; the values of the experiment's "
                         "analysis.dimensions among them are stored with the assignment (breakdowns)."),
        ]
        | None
    ) = None


class ExposuresIn(msgspec.Struct):
    exposures: Annotated[list[ExposureIn], msgspec.Meta(min_length=1, max_length=MAX_EXPOSURES)]


class ExposuresOut(msgspec.Struct):
    accepted: Annotated[int, doc("Exposures in the report.", 1000)]
    assigned: Annotated[int, doc("Assignments this report stored.", 990)]
    already_assigned: Annotated[int, doc("Users assigned before (their first assignment stays).", 5)]
    held_out: Annotated[int, doc("Users a holdout kept out, recorded for its results.", 5)]


class ExposuresDTO(StrictDTO[ExposuresIn]):
    closed = True

    def decode_json(self, value: bytes) -> ExposuresIn:
        try:
            return super().decode_json(value)
        except ValidationFailed as exc:
            raise ValidationFailed(_attributes_by_key(value, exc.errors)) from None


class _RawExposure(msgspec.Struct):
    attributes: dict[str, msgspec.Raw] | None = None


class _RawExposures(msgspec.Struct):
    exposures: list[_RawExposure] = []


_ABOUT_ATTRIBUTES = re.compile(r"exposures\[\d+\]\.attributes")


def _attributes_by_key(raw: bytes, errors: list[FieldError]) -> list[FieldError]:
    """A bad attribute named by its exposure and key (``exposures[2].attributes.age``), as the
    assignment route names it, rather than as msgspec does (``attributes[...]``)."""
    about = [e for e in errors if _ABOUT_ATTRIBUTES.match(e.field)]
    if not about:
        return errors
    try:
        items = msgspec.json.decode(raw, type=_RawExposures).exposures
    except msgspec.MsgspecError:
        return errors
    named = [
        FieldError(f"exposures[{i}].{e.field}", e.message)
        for i, item in enumerate(items)
        if item.attributes
        for e in attribute_errors(item.attributes)
    ]
    return [e for e in errors if e not in about] + named if named else errors


def entity_tag(body: bytes) -> str:
    """A strong validator: the same definitions give the same tag on every instance."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def none_match(header: str | None, tag: str) -> bool:
    """Whether ``If-None-Match`` names ``tag`` (RFC 9110 §13.1.2: weak comparison, a list, ``*``)."""
    if not header:
        return False
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return "*" in tags or tag in tags


class DefinitionsController(Controller):
    path = "/definitions"
    tags = [openapi.ASSIGNMENTS]
    opt = {"scope": ASSIGN}

    @get(
        summary="Every experiment as a client needs it to assign users in-process.",
        responses={**openapi.error_responses(*openapi.AUTHENTICATED), **openapi.not_modified()},
    )
    async def definitions(
        self, request: Request[Any, Any, Any], all_experiments: NamedDependency[AllExperiments]
    ) -> Response[DefinitionsOut]:
        """With an `ETag`; a request whose `If-None-Match` names it is answered `304` with no
        body. Deciding from these as docs/api.md (Local assignment) says gives the service's
        answer for every user; report each user served with `POST /exposures`."""
        experiments = sorted(await all_experiments(), key=lambda e: (e.created_at, e.id))
        body = msgspec.json.encode(DefinitionsOut([ExperimentDefinitionOut.of(e) for e in experiments]))
        tag = entity_tag(body)
        headers = {"ETag": tag, "Cache-Control": "no-cache"}
        if none_match(request.headers.get("if-none-match"), tag):
            return Response(b"", status_code=304, headers=headers)  # type: ignore[arg-type]
        return Response(body, headers=headers, media_type="application/json")  # type: ignore[arg-type]


class ExposuresController(Controller):
    path = "/exposures"
    tags = [openapi.ASSIGNMENTS]
    opt = {"scope": ASSIGN}

    @post(
        dto=ExposuresDTO,
        return_dto=None,
        status_code=202,
        summary="Store the users a client served by local assignment: 1 to 10,000, all or nothing.",
        responses=openapi.error_responses(*openapi.AUTHENTICATED, *openapi.WITH_BODY),
    )
    async def record_exposures(
        self, data: JSONBody[ExposuresIn], record_exposures: NamedDependency[RecordExposures]
    ) -> ExposuresOut:
        """The service decides each user again from the experiment as it stands; a user it
        would not have assigned to that variant (or not stored at all: a paused experiment, a
        user outside the coverage, a forced user) makes the report a 422 naming each such
        exposure, and nothing is stored. A user's first assignment stays."""
        exposures, errors = [], []
        for i, x in enumerate(data.exposures):
            try:
                exposures.append(Exposure(x.experiment_id, x.user_id, x.variant_id, as_utc(x.timestamp), x.attributes))
            except TimestampOutOfRange as exc:
                errors.append(FieldError(f"exposures[{i}].timestamp", str(exc)))
        if errors:
            raise ValidationFailed(errors)
        try:
            outcome = await record_exposures(exposures)
        except ValidationFailed as exc:
            raise ValidationFailed([FieldError("exposures" + e.field, e.message) for e in exc.errors]) from None
        return ExposuresOut(outcome.accepted, outcome.assigned, outcome.already_assigned, outcome.held_out)
