"""The one table that maps errors to HTTP status codes and RFC 9457 problem details."""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from domain.errors import (
    ConcurrentChange,
    DomainError,
    DuplicateExperimentName,
    DuplicateName,
    ExperimentNotFound,
    FieldError,
    KeyNotFound,
    NotFound,
    Overloaded,
    RateLimited,
    ReadTimedOut,
    StoreUnavailable,
    ValidationFailed,
)
from domain.experiment import ChangeRefused
from domain.lifecycle import IllegalMove
from entrypoints.http.decoding import MalformedBody, UnsupportedMediaType
from entrypoints.http.disconnects import CLIENT_CLOSED_REQUEST, ClientGone
from entrypoints.http.security.rate_limits import refusal_headers
from entrypoints.http.wire import FieldErrorOut, ProblemOut
from entrypoints.telemetry.logs import request_id

PROBLEM_JSON = "application/problem+json"
_MISSING_PARAMETER = re.compile(r"^Missing required \w+ parameter '(?P<name>[^']+)'")
log = logging.getLogger("experiments")


def problem(
    status: int,
    detail: str,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[ProblemOut]:
    body = ProblemOut(
        status=status,
        title=HTTPStatus(status).phrase,
        detail=detail,
        errors=None if errors is None else [FieldErrorOut(e.field, e.message) for e in errors],
    )
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _validation_failed(_: Request, exc: ValidationFailed) -> Response[ProblemOut]:
    return problem(422, exc.detail, exc.errors)


def _malformed(_: Request, exc: MalformedBody) -> Response[ProblemOut]:
    return problem(400, str(exc))


def _unsupported_media_type(_: Request, exc: UnsupportedMediaType) -> Response[ProblemOut]:
    return problem(415, str(exc))


def _not_found(_: Request, exc: DomainError) -> Response[ProblemOut]:
    return problem(404, str(exc))


def _duplicate(_: Request, exc: DuplicateExperimentName) -> Response[ProblemOut]:
    return problem(409, str(exc), [FieldError("name", "is already taken")])


def _conflict(_: Request, exc: DomainError) -> Response[ProblemOut]:
    return problem(409, str(exc))


def _unavailable(request: Request, exc: StoreUnavailable) -> Response[ProblemOut]:
    log.warning("store unavailable: %s", exc, extra={"request_id": request_id(request.scope)})
    return problem(503, "the store cannot be reached; try again shortly")


def _overloaded(request: Request, exc: Overloaded) -> Response[ProblemOut]:
    if isinstance(exc, ReadTimedOut):  # a read that ran away is worth an operator's look
        log.warning("read stopped: %s", exc, extra={"request_id": request_id(request.scope)})
    return problem(503, str(exc), headers={"Retry-After": str(exc.retry_after_seconds)})


def _client_gone(_: Request, exc: ClientGone) -> Response[None]:
    # No one reads this; the request log and the metrics record the status.
    return Response(None, status_code=CLIENT_CLOSED_REQUEST)


def _rate_limited(_: Request, exc: RateLimited) -> Response[ProblemOut]:
    return problem(429, str(exc), headers=refusal_headers(exc.decision))


def _litestar_validation(_: Request, exc: ValidationException) -> Response[ProblemOut]:
    """Query and path parameters that Litestar itself rejects: invalid input, so 422."""
    extra = exc.extra if isinstance(exc.extra, list) else []
    if any(isinstance(item, dict) and item.get("source") == "body" for item in extra):
        # Litestar reports a missing body itself, before any decoding: that is no JSON at all.
        return problem(400, "a JSON body is required")
    errors = [
        FieldError(str(item.get("key", "")), str(item.get("message", "is invalid")))
        for item in extra
        if isinstance(item, dict)
    ]
    # A missing parameter comes with no list, only a sentence (that also holds the path, which
    # is not echoed): the parameter is named like any other fault.
    if not errors and (missing := _MISSING_PARAMETER.match(str(exc.detail))) is not None:
        errors = [FieldError(missing["name"], "is required")]
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors) or "invalid request"
    return problem(422, detail, errors)


def _http(_: Request, exc: HTTPException) -> Response[ProblemOut]:
    status = exc.status_code
    detail = exc.detail if exc.detail and exc.detail != HTTPStatus(status).phrase else ""
    if status == 413:
        detail = "the request body is larger than 32 MiB"
    return problem(status, detail or HTTPStatus(status).phrase, headers=exc.headers)


def _unexpected(request: Request, exc: Exception) -> Response[ProblemOut]:
    # The log has the traceback; the client gets nothing that could leak internals. The route
    # template, not the path: no user id in the log; the request id finds the request's line.
    route = request.scope.get("path_template") or "<unmatched>"
    extra = {"request_id": request_id(request.scope)}
    log.exception("unhandled error on %s %s", request.method, route, extra=extra)
    return problem(500, "an unexpected error occurred")


EXCEPTION_HANDLERS = {
    ValidationFailed: _validation_failed,
    MalformedBody: _malformed,
    UnsupportedMediaType: _unsupported_media_type,
    msgspec.DecodeError: _malformed,
    ExperimentNotFound: _not_found,
    KeyNotFound: _not_found,
    DuplicateExperimentName: _duplicate,
    IllegalMove: _conflict,
    ChangeRefused: _conflict,
    ConcurrentChange: _conflict,
    DuplicateName: _conflict,
    NotFound: _not_found,
    StoreUnavailable: _unavailable,
    Overloaded: _overloaded,
    ClientGone: _client_gone,
    RateLimited: _rate_limited,
    ValidationException: _litestar_validation,
    HTTPException: _http,
    Exception: _unexpected,
}


def problem_for(request: Request, exc: Exception) -> Response[Any]:
    """The answer the table gives ``exc``: its most specific entry's (by the exception's
    classes in method resolution order), as Litestar picks one. For a caller that shows it
    otherwise, as the pages do."""
    handler = next(EXCEPTION_HANDLERS[k] for k in type(exc).__mro__ if k in EXCEPTION_HANDLERS)
    return handler(request, exc)  # type: ignore[operator, no-any-return]
