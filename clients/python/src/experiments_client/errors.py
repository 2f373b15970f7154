"""The errors the clients raise: one class per status the service answers, so that callers
catch what they can act on (``except NotFound``) rather than compare numbers.

Every 4xx/5xx answer of the service is problem+json (RFC 9457) with ``status``, ``title`` and
``detail``; a ``422`` adds ``errors``, each naming a field (``events[3].timestamp``). An answer
that is not problem+json (a proxy's page, say) still becomes an ApiError of its status, with
the reason phrase as its title.

No message or repr ever holds the credential: errors are built from the answer alone, and the
request they keep is httpx's, whose headers hide ``Authorization``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import httpx


@dataclass(frozen=True, slots=True)
class FieldError:
    """One broken rule of a request: the field (``variants[1].traffic_percentage``) and why."""

    field: str
    message: str


class ApiError(Exception):
    """The service answered with an error status; subclasses name the statuses worth telling
    apart. ``body`` is the answer's raw bytes, for whatever the fields above do not carry."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str = "",
        errors: Sequence[FieldError] = (),
        *,
        retry_after: float | None = None,
        body: bytes = b"",
    ) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        self.errors: list[FieldError] = list(errors)
        self.retry_after = retry_after
        """Seconds the service asked to wait before trying again (``Retry-After``), if any."""
        self.body = body
        super().__init__(status, title, detail)

    def __str__(self) -> str:
        head = f"{self.status} {self.title}"
        if self.detail:
            head += f": {self.detail}"
        return "\n".join([head, *(f"  {e.field}: {e.message}" for e in self.errors)])

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(status={self.status}, title={self.title!r}, detail={self.detail!r})"


class BadRequest(ApiError):
    """400: the body was not JSON at all."""


class Unauthorized(ApiError):
    """401: the credential is missing, unknown, expired or revoked."""


class Forbidden(ApiError):
    """403: the credential lacks the scope the route needs."""


class NotFound(ApiError):
    """404: no experiment (key, layer, holdout) has this id."""


class Conflict(ApiError):
    """409: a duplicate name, an illegal state move, or a change made meanwhile by another
    request (read it again and retry)."""


class PayloadTooLarge(ApiError):
    """413: the body is over the service's limit (32 MiB)."""


class ValidationError(ApiError):
    """422: well-formed but invalid input; ``errors`` names every broken rule at once."""

    def by_index(self, collection: str) -> dict[int, str]:
        """The reasons of each bad item of a batch, by its index: ``events[3].timestamp: …``
        gives ``{3: "timestamp: …"}``. Empty when any error is about something else than one
        item of ``collection`` (the batch as a whole, say): then no item can be blamed alone."""
        prefix = collection + "["
        rejected: dict[int, str] = {}
        for error in self.errors:
            head, bracket, rest = error.field.partition("]")
            index = head[len(prefix):] if head.startswith(prefix) and bracket else ""
            if not index.isdigit():
                return {}
            reason = f"{rest.lstrip('.')}: {error.message}" if rest else error.message
            i = int(index)
            rejected[i] = f"{rejected[i]}; {reason}" if i in rejected else reason
        return rejected


class RateLimited(ApiError):
    """429: this credential's rate for the route is spent; ``retry_after`` says for how long."""


class ServiceUnavailable(ApiError):
    """503: the store cannot be reached, or results are busy (then with ``retry_after``)."""


class UnexpectedResponse(ApiError):
    """A success status whose body is not what the endpoint answers: a proxy's page, or a
    service this client does not understand. ``detail`` says what did not decode."""


BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: ValidationError,
    429: RateLimited,
    503: ServiceUnavailable,
}


class TransportError(Exception):
    """No answer: the connection failed or timed out, after the retries allowed. The httpx
    error is ``cause`` (and ``__cause__``). Not an ApiError, since the service said nothing;
    whether the request took effect is unknown unless it never left (a connect error)."""

    def __init__(self, method: str, path: str, cause: httpx.TransportError) -> None:
        self.method = method
        self.path = path
        self.cause = cause
        super().__init__(method, path, cause)

    def __str__(self) -> str:
        reason = str(self.cause) or type(self.cause).__name__
        return f"{self.method} {self.path}: {type(self.cause).__name__}: {reason}"

    def __repr__(self) -> str:
        return f"TransportError({self.method!r}, {self.path!r}, {type(self.cause).__name__})"
