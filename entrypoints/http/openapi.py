"""The OpenAPI document's shared parts: tags, the problem+json error responses, headers, examples.

A route states what it can answer with one call, ``responses=error_responses(401, 404, ...)``,
and ``operation_class=ProblemOperation``; the document then shows each error in the shape the
error table (entrypoints/http/problems.py) sends, and nothing the service never sends.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from litestar.datastructures import ResponseHeader
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example, OpenAPIHeader, OpenAPIResponse, Operation, Schema, Tag
from litestar.openapi.spec.enums import OpenAPIType

from application.results import ResultsSlots
from domain.errors import ResultsBusy
from entrypoints.http.wire import FieldErrorOut, ProblemOut

PROBLEM_JSON = "application/problem+json"

HEALTH, EXPERIMENTS, ASSIGNMENTS, EVENTS, RESULTS, KEYS, AUDIT, LAYERS = (
    "health",
    "experiments",
    "assignments",
    "events",
    "results",
    "keys",
    "audit",
    "layers",
)
TAGS = [
    Tag(name=HEALTH, description="Whether the service can serve: no authentication."),
    Tag(name=EXPERIMENTS, description="Experiments and their variants' traffic split."),
    Tag(name=ASSIGNMENTS, description="A user's sticky, deterministic variant in an experiment."),
    Tag(name=EVENTS, description="What users do, recorded one by one or in all-or-nothing batches."),
    Tag(name=RESULTS, description="Counts, conversion rates and the statistics comparing variants."),
    Tag(name=KEYS, description="Scoped API keys: created, listed and revoked by admin keys."),
    Tag(name=AUDIT, description="Who did which admin action, when: readable by admin keys."),
    Tag(name=LAYERS, description="Layers whose experiments share no user, and holdouts kept out of experiments."),
]


@dataclass(frozen=True)
class _Error:
    description: str
    example: ProblemOut
    headers: dict[str, OpenAPIHeader]


def _header(description: str, type_: OpenAPIType) -> OpenAPIHeader:
    return OpenAPIHeader(description=description, required=True, schema=Schema(type=type_))


def _problem(status: int, detail: str, errors: list[FieldErrorOut] | None = None) -> ProblemOut:
    return ProblemOut(status=status, title=HTTPStatus(status).phrase, detail=detail, errors=errors)


# Every error the service sends, as the error table words it; the examples are real responses.
ERRORS: dict[int, _Error] = {
    400: _Error(
        "Malformed JSON: the body is not JSON at all (JSON of the wrong shape is a 422).",
        _problem(400, "the body is not valid JSON: JSON is malformed: object keys must be strings (byte 1)"),
        {},
    ),
    401: _Error(
        "No bearer token, or one the service does not know.",
        _problem(401, "a valid bearer token is required in the Authorization header"),
        {"WWW-Authenticate": _header("Always `Bearer`: the scheme to authenticate with.", OpenAPIType.STRING)},
    ),
    403: _Error(
        "The token is valid but lacks the scope this operation needs.",
        _problem(403, "the API key lacks the scope this operation needs"),
        {},
    ),
    404: _Error(
        "The experiment (or key) does not exist.",
        _problem(404, "experiment '0b7e6a52c1d94f3e' does not exist"),
        {},
    ),
    409: _Error(
        "An experiment with this name already exists.",
        _problem(
            409,
            "an experiment named 'checkout-button-color' already exists",
            [FieldErrorOut("name", "is already taken")],
        ),
        {},
    ),
    413: _Error(
        "The request body is larger than 32 MiB.",
        _problem(413, "the request body is larger than 32 MiB"),
        {},
    ),
    415: _Error(
        "The body is not sent as `application/json`.",
        _problem(415, "the body must be sent as application/json"),
        {},
    ),
    422: _Error(
        "Well-formed but invalid input; `errors` names every field that broke a rule.",
        _problem(
            422,
            "variants[1].traffic_percentage: must have at most two decimals",
            [FieldErrorOut("variants[1].traffic_percentage", "must have at most two decimals")],
        ),
        {},
    ),
    429: _Error(
        "Too many requests for this key; retry after the number of seconds given.",
        _problem(429, "too many requests; retry in 1 second"),
        {"Retry-After": _header("Seconds to wait before trying again.", OpenAPIType.INTEGER)},
    ),
    503: _Error(
        "The store cannot be reached; nothing was written. Try again shortly.",
        _problem(503, "the store cannot be reached; try again shortly"),
        {},
    ),
}

# What an authenticated operation can answer whatever it does.
AUTHENTICATED = (401, 403, 429, 503)
# ... and one that reads a JSON body.
WITH_BODY = (400, 413, 415, 422)


# The results routes' 503: besides the store being away, the two ways they decline a read that
# would pile up on the database (entrypoints/http/problems.py, Overloaded), with Retry-After.
RESULTS_UNAVAILABLE = _Error(
    "The store cannot be reached; or results are busy: `RESULTS_MAX_CONCURRENT` are being "
    "computed on this server and none finished within `RESULTS_QUEUE_SECONDS`; or the read ran "
    "past `RESULTS_TIMEOUT_SECONDS` and was stopped. The last two carry `Retry-After`.",
    _problem(503, str(ResultsBusy(4, ResultsSlots.RETRY_AFTER_SECONDS))),
    {
        "Retry-After": OpenAPIHeader(
            description="Seconds to wait before trying again; sent when results are busy or "
            "their read was stopped, not when the store cannot be reached.",
            required=False,
            schema=Schema(type=OpenAPIType.INTEGER),
        )
    },
)


def error_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """The problem+json responses for these statuses, with a real example of each."""
    return {status: _response(status, ERRORS[status]) for status in sorted(set(statuses))}


def results_error_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """As ``error_responses``, with the results routes' own 503 (and its ``Retry-After``)."""
    return {**error_responses(*statuses, 503), 503: _response(503, RESULTS_UNAVAILABLE)}


def _response(status: int, error: _Error) -> ResponseSpec:
    return ResponseSpec(
        data_container=ProblemOut,
        description=error.description,
        media_type=PROBLEM_JSON,
        generate_examples=False,
        examples=[Example(summary=HTTPStatus(status).phrase, value=_example_value(error))],
    )


def _example_value(error: _Error) -> dict[str, Any]:
    example = error.example
    value: dict[str, Any] = {"status": example.status, "title": example.title, "detail": example.detail}
    if example.errors is not None:
        value["errors"] = [{"field": e.field, "message": e.message} for e in example.errors]
    return value


def location_header() -> list[ResponseHeader]:
    """The ``Location`` of a created experiment, for ``response_headers=``."""
    return [
        ResponseHeader(
            name="Location",
            description="The path of the new experiment: `/experiments/{experiment_id}`.",
            documentation_only=True,
            required=True,
        )
    ]


@dataclass
class ProblemOperation(Operation):
    """An operation whose error responses are the ones the route declared, with their headers.

    Litestar adds a 400 in the shape of its own ValidationException to every operation with
    parameters or a body; the service never sends that shape (the error table answers with
    problem+json, and invalid parameters are a 422), so any error response that is not
    problem+json is dropped here.
    """

    def __post_init__(self) -> None:
        for status, response in list((self.responses or {}).items()):
            if not isinstance(response, OpenAPIResponse):
                continue
            if _litestar_exception_shape(response):
                del self.responses[status]  # type: ignore[union-attr]
            elif (error := _declared(int(status), response)) is not None and error.headers:
                response.headers = {**(response.headers or {}), **error.headers}


def _declared(status: int, response: OpenAPIResponse) -> _Error | None:
    """The error a route declared for ``status``: the results routes' own 503 where its
    description says so (a ResponseSpec carries no headers of its own), else the table's."""
    if status == 503 and response.description == RESULTS_UNAVAILABLE.description:
        return RESULTS_UNAVAILABLE
    return ERRORS.get(status)


def _litestar_exception_shape(response: OpenAPIResponse) -> bool:
    """Litestar's own error body, ``{"status_code", "detail", "extra"}``, as its default 400."""
    for media in (response.content or {}).values():
        schema = media.schema
        if isinstance(schema, Schema) and schema.properties and "status_code" in schema.properties:
            return True
    return False


def not_modified() -> dict[int, ResponseSpec]:
    """A conditional GET's ``304``: the ``If-None-Match`` sent names the current ``ETag``."""
    return {
        304: ResponseSpec(
            data_container=None,
            description="Not Modified: `If-None-Match` names the current `ETag`; no body.",
            generate_examples=False,
        )
    }
