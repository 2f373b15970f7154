"""Assignments: a user's variant, judged on attributes when sent, and QA overrides."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from litestar.types import Scope

from application.assignment import AssignUser
from application.experiments import ChangeExperiment
from domain.assignment import Answer
from domain.errors import FieldError, ValidationFailed
from domain.keys import ADMIN, ASSIGN
from entrypoints.http import openapi
from entrypoints.http.decoding import StrictDTO
from entrypoints.http.security.bearer import BearerAuth, authorization
from entrypoints.http.wire import Id, doc

MAX_ATTRIBUTE_NAME = 100
AttributeName = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ATTRIBUTE_NAME)]


# Whole numbers decode as floats: JSON has one number type, and a schema offering integer and
# number both would match 0 twice (oneOf).
AttributeValue = Annotated[str, msgspec.Meta(max_length=1000)] | float | bool | None


class AssignmentIn(msgspec.Struct):
    """The user's attributes, for an experiment's audience rules."""

    attributes: Annotated[
        dict[AttributeName, AttributeValue],
        msgspec.Meta(
            max_length=100,
            description="Up to 100 attributes: strings (at most 1,000 characters), numbers, booleans or null.",
            examples=[{"country": "DE", "app_version": "3.1.0", "age": 34}],
        ),
    ] = {}


class OverrideIn(msgspec.Struct):
    variant_id: Annotated[str, doc("The variant to force the user into.", "0b7e6a52c1d94f40")]


class AssignmentOut(msgspec.Struct):
    """A user's variant: decided by the hash on the first call, the same on every call after."""

    experiment_id: Id
    user_id: Annotated[str, doc("As the client sent it.", "u-123")]
    variant_id: Id
    variant_name: Annotated[str, doc("The variant's name.", "green")]
    assigned_at: Annotated[
        datetime | None,
        doc("When the assignment was first stored; RFC 3339, UTC. Null when nothing is stored "
             "(see in_experiment and reason).", "2026-11-28T14:00:05Z"),
    ]
    in_experiment: Annotated[bool, doc("Whether the user is in the experiment (docs/experiments-that-live.md).", True)]
    reason: Annotated[
        str,
        doc("Why: assigned, forced, winner, draft, paused, archived, audience, holdout, layer, coverage.", "assigned"),
    ]

    @classmethod
    def of(cls, a: Answer) -> AssignmentOut:
        return cls(a.experiment_id, a.user_id, a.variant_id, a.variant_name, a.assigned_at,
                   a.in_experiment, str(a.reason))


class AssignmentDTO(StrictDTO[AssignmentIn]):
    closed = True

    def decode_json(self, value: bytes) -> AssignmentIn:
        try:
            return super().decode_json(value)
        except ValidationFailed as exc:
            raise ValidationFailed(_named_by_key(value, exc.errors)) from None


class _Attributes(msgspec.Struct):
    attributes: dict[str, msgspec.Raw] = {}


def _named_by_key(raw: bytes, errors: list[FieldError]) -> list[FieldError]:
    """msgspec names a bad dict entry ``attributes[...]`` (or the whole body, for a bad key):
    each attribute is checked again alone, so that the 422 names it by its key."""
    about_attributes = [e for e in errors if e.field.startswith("attributes[") or "$.attributes" in e.message]
    if not about_attributes:
        return errors
    try:
        attributes = msgspec.json.decode(raw, type=_Attributes).attributes
    except msgspec.MsgspecError:
        return errors
    named = attribute_errors(attributes)
    others = [e for e in errors if e not in about_attributes]
    return others + named if named else errors


def attribute_errors(attributes: dict[str, msgspec.Raw]) -> list[FieldError]:
    """Each bad attribute, named by its key: ``attributes.age``, or ``attributes`` for a bad key."""
    named: list[FieldError] = []
    for key, item in attributes.items():
        if not 1 <= len(key) <= MAX_ATTRIBUTE_NAME:
            shown = key if len(key) <= MAX_ATTRIBUTE_NAME else key[:MAX_ATTRIBUTE_NAME] + "…"
            named.append(FieldError("attributes", f"the name {shown!r} must be 1 to {MAX_ATTRIBUTE_NAME} characters"))
            continue
        try:
            msgspec.json.decode(item, type=AttributeValue)
        except msgspec.ValidationError as error:
            named.append(FieldError(f"attributes.{key}", str(error).split(" - at ")[0]))
    return named


class OverrideDTO(StrictDTO[OverrideIn]):
    closed = True


class AssignmentsController(Controller):
    path = "/experiments/{experiment_id:str}/assignment/{user_id:str}"
    tags = [openapi.ASSIGNMENTS]
    opt = {"scope": ASSIGN}

    @get(
        summary="Get the user's variant, assigning it on the first call.",
        responses=openapi.error_responses(*openapi.AUTHENTICATED, 404, 422),
    )
    async def assign(
        self,
        experiment_id: FromPath[str],
        user_id: FromPath[str],
        assign_user: NamedDependency[AssignUser],
        scope: Scope,
    ) -> AssignmentOut:
        """The variant is a pure function of SHA-256 of `experiment_id:user_id` over 10,000
        buckets (README.md, The assignment hash). Once stored it never changes, and
        `assigned_at` stays that of the first call. `user_id`: 1 to 256 characters, no NUL
        (else 422)."""
        if (failed := scope["state"].pop(AssignmentLane.FAILED, None)) is not None:
            raise failed  # the lane asked already (AssignmentLane): answered as if asked here
        return AssignmentOut.of(await assign_user(experiment_id, user_id))

    @post(
        dto=AssignmentDTO,
        return_dto=None,
        status_code=200,
        summary="Get the user's variant, judged on the attributes sent, assigning it on the first call.",
        responses=openapi.error_responses(*openapi.AUTHENTICATED, *openapi.WITH_BODY, 404),
    )
    async def assign_with_attributes(
        self,
        experiment_id: FromPath[str],
        user_id: FromPath[str],
        data: JSONBody[AssignmentIn],
        assign_user: NamedDependency[AssignUser],
    ) -> AssignmentOut:
        """As the GET, with the user's `attributes` for the experiment's audience rules
        (docs/experiments-that-live.md): up to 100, each a string, number, boolean or null."""
        return AssignmentOut.of(await assign_user(experiment_id, user_id, data.attributes))

    @put(
        dto=OverrideDTO,
        return_dto=None,
        summary="Force the user into a variant, for QA.",
        responses=openapi.error_responses(*openapi.AUTHENTICATED, *openapi.WITH_BODY, 404),
        opt={"scope": ADMIN},
    )
    async def force_assignment(
        self,
        experiment_id: FromPath[str],
        user_id: FromPath[str],
        data: JSONBody[OverrideIn],
        change_experiment: NamedDependency[ChangeExperiment],
        assign_user: NamedDependency[AssignUser],
        actor: NamedDependency[str],
    ) -> AssignmentOut:
        """In any state; answered before every rule with reason `forced`, never stored as an
        assignment, so never counted in results. Answers the forced assignment."""
        await change_experiment.force(experiment_id, user_id, data.variant_id, actor)
        return AssignmentOut.of(await assign_user(experiment_id, user_id))

    @delete(
        status_code=204,
        summary="Remove the user's QA override.",
        responses=openapi.error_responses(*openapi.AUTHENTICATED, 404),
        opt={"scope": ADMIN},
    )
    async def remove_override(
        self,
        experiment_id: FromPath[str],
        user_id: FromPath[str],
        change_experiment: NamedDependency[ChangeExperiment],
        actor: NamedDependency[str],
    ) -> None:
        """A 204 whether or not the user was forced; the user is then served by the rules
        again."""
        await change_experiment.unforce(experiment_id, user_id, actor)


class AssignmentLane:
    """ASGI, in front of the router: the GET of a user's variant, by a caller whom the
    Authorization header alone settles (``BearerAuth.settled``: a known credential with the
    assign scope that no rate limit counts), answered here. It is the hottest route, and
    Litestar's routing, dependency injection and response building were a third of a cached
    assignment. The use case is the same call the handler makes; what it answers is the same
    document (a test holds the bytes equal), and whatever it raises goes on to the handler
    through the scope, which raises it, so that Litestar answers it as it answers the handler's
    own errors. Every other request (another method, a query string, a root path, a caller to
    look up, refuse or count) goes on untouched."""

    FAILED = "assignment_failed"
    # The route's path as Litestar's path_template spells it, and a pattern for its parameters.
    ROUTE = re.sub(r":\w+\}", "}", AssignmentsController.path)
    _PATH = re.compile(re.sub(r"\{\w+\}", "([^/]+)", ROUTE))
    _HEADERS = [(b"content-type", b"application/json")]

    def __init__(self, app: Any, auth: BearerAuth, assign_user: AssignUser) -> None:
        self._app, self._auth, self._assign_user = app, auth, assign_user

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or scope["query_string"]
            or scope.get("root_path")
            or (path := self._PATH.fullmatch(scope["path"])) is None
        ):
            await self._app(scope, receive, send)
            return
        if self._auth.settled(authorization(scope["headers"]), ASSIGN) is None:
            await self._app(scope, receive, send)
            return
        scope["path_template"] = self.ROUTE  # for the request metrics and log, as Litestar sets it
        try:
            answer = await self._assign_user(path[1], path[2])
        except Exception as exc:
            scope.setdefault("state", {})[self.FAILED] = exc
            await self._app(scope, receive, send)
            return
        body = msgspec.json.encode(AssignmentOut.of(answer))
        headers = [*self._HEADERS, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
