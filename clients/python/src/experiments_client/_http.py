"""The clients' shared core, free of I/O: each endpoint as a ``Call``, the decoding of answers,
and the retry policy. ``Client`` and ``AsyncClient`` only send Calls and sleep between
attempts, so an endpoint's path, parameters and decoding are written once, here.

Retries (``RetryPolicy``): a ``503`` or ``429`` is retried after its ``Retry-After`` (capped)
or a backoff; a connection that never opened (connect error or timeout, no pooled connection
free) is retried for every call, since the request never left; a connection lost after the
request may have left (a read or write error or timeout) is retried only for calls that are
safe to repeat: reads, ``PUT``, ``DELETE``, and the ``POST``s the service makes idempotent
(events by ``event_id``, exposures by the user's first assignment, assignment itself, power).
The backoff is exponential with full jitter, and a call gives up at its deadline, whatever
retries are left, with the last error.
"""

from __future__ import annotations

import math
import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from experiments_client.definitions import Definitions, Exposure
from experiments_client.errors import (
    BY_STATUS,
    ApiError,
    FieldError,
    TransportError,
    UnexpectedResponse,
)
from experiments_client.models import (
    Assignment,
    AuditPage,
    Experiment,
    ExperimentPage,
    ExposureResult,
    Health,
    Holdout,
    HoldoutList,
    HoldoutResults,
    Key,
    KeyPage,
    Layer,
    LayerList,
    PowerResult,
    Results,
    TrackResult,
)

R = TypeVar("R")
T = TypeVar("T")
QueryValue = str | int | float | bool | date | datetime | None
"""A query parameter as callers give it; dates and datetimes are sent as ISO 8601."""

USER_AGENT = "experiments-client/0.1.0"


# ------------------------------------------------------------------------------ calls


@dataclass(frozen=True, slots=True)
class Call(Generic[R]):
    """One request to the service and how to read its answer.

    ``decode`` turns an answer whose status is in ``expected`` into the result; any other
    status becomes the ApiError of its problem+json. ``repeatable`` says whether sending the
    request twice does what sending it once does, so that a connection lost after it left may
    be retried. The body is encoded once, here: every attempt sends the same bytes (and so
    the same event ids).
    """

    method: str
    path: str  # relative to the base URL, every id already quoted
    decode: Callable[[httpx.Response], R]
    params: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    expected: frozenset[int] = frozenset({200})
    repeatable: bool = False

    def answer(self, response: httpx.Response) -> R:
        """The result of ``response``, or the ApiError it stands for."""
        if response.status_code not in self.expected:
            raise api_error(response)
        try:
            return self.decode(response)
        except msgspec.MsgspecError as exc:
            raise UnexpectedResponse(
                response.status_code,
                response.reason_phrase or "Unexpected response",
                f"{self.method} {self.path} answered a body this client cannot read: {exc}",
                body=response.content,
            ) from exc


def segment(value: str) -> str:
    """An id as one path segment: user ids may hold ``/``, ``?``, ``#``, ``%``, spaces and any
    Unicode, and each must reach the service as it is, not as a path or a query."""
    if value in (".", ".."):  # dot segments: a URL library would resolve them away
        return value.replace(".", "%2E")
    return quote(value, safe="")


def _builtin(value: Any) -> Any:
    """What msgspec cannot encode itself: any other mapping (a read-only view, say) as a dict."""
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"cannot send a {type(value).__name__} as JSON")


_encoder = msgspec.json.Encoder(enc_hook=_builtin)


def _body(document: Any) -> bytes:
    return _encoder.encode(document)


_JSON = {"Content-Type": "application/json"}
_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


def _into(kind: type[T]) -> Callable[[httpx.Response], T]:
    """Decode the answer's JSON body into ``kind`` (one decoder per type, built once)."""
    decoder = _decoders.get(kind)
    if decoder is None:
        decoder = _decoders[kind] = msgspec.json.Decoder(kind)

    def decode(response: httpx.Response) -> T:
        result: T = decoder.decode(response.content)
        return result

    return decode


def _nothing(_: httpx.Response) -> None:
    return None


def _query(**values: QueryValue) -> dict[str, str]:
    """The parameters that are set, as the text the service reads."""
    query: dict[str, str] = {}
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            query[name] = "true" if value else "false"
        elif isinstance(value, date):  # datetime too
            query[name] = value.isoformat()
        else:
            query[name] = str(value)
    return query


# ------------------------------------------------------------------------------ the endpoints


def health() -> Call[Health]:
    """``503`` is an answer here, not a failure: the service says it cannot reach its store."""
    return Call("GET", "/health", _into(Health), expected=frozenset({200, 503}), repeatable=True)


def _text(response: httpx.Response) -> str:
    return response.text


def metrics() -> Call[str]:
    """The Prometheus text exposition (the service's README, Metrics), as it is."""
    return Call("GET", "/metrics", _text, repeatable=True)


def create_experiment(fields: Mapping[str, Any]) -> Call[Experiment]:
    return Call("POST", "/experiments", _into(Experiment), body=_body(fields), headers=_JSON,
                expected=frozenset({201}))


def list_experiments(limit: int, offset: int) -> Call[ExperimentPage]:
    return Call("GET", "/experiments", _into(ExperimentPage),
                params=_query(limit=limit, offset=offset), repeatable=True)


def get_experiment(experiment_id: str) -> Call[Experiment]:
    return Call("GET", f"/experiments/{segment(experiment_id)}", _into(Experiment), repeatable=True)


def update_experiment(experiment_id: str, changes: Mapping[str, Any]) -> Call[Experiment]:
    """Not repeatable: a change that went through and is sent again may meet a ``409``
    (another state, a change "made meanwhile")."""
    return Call("PATCH", f"/experiments/{segment(experiment_id)}", _into(Experiment),
                body=_body(changes), headers=_JSON)


def _assignment_path(experiment_id: str, user_id: str) -> str:
    """The assignment route's path. A ``/`` in a user id splits the service's path even when
    percent-encoded (the service's README, "Paths"), so such a user is refused here, by name,
    rather than answered 404: local assignment and exposures take any user id."""
    if "/" in user_id:
        raise ValueError(
            f"user id {user_id!r} holds '/', which the assignment path cannot carry; "
            "decide it with LocalAssigner and report it with record_exposures"
        )
    return f"/experiments/{segment(experiment_id)}/assignment/{segment(user_id)}"


def assign(
    experiment_id: str, user_id: str, attributes: Mapping[str, Any] | None
) -> Call[Assignment]:
    """A ``GET`` without attributes, a ``POST`` with them; both are sticky, so repeatable."""
    path = _assignment_path(experiment_id, user_id)
    if attributes is None:
        return Call("GET", path, _into(Assignment), repeatable=True)
    return Call("POST", path, _into(Assignment), body=_body({"attributes": attributes}),
                headers=_JSON, repeatable=True)


def force_assignment(experiment_id: str, user_id: str, variant_id: str) -> Call[Assignment]:
    return Call("PUT", _assignment_path(experiment_id, user_id), _into(Assignment),
                body=_body({"variant_id": variant_id}), headers=_JSON, repeatable=True)


def remove_override(experiment_id: str, user_id: str) -> Call[None]:
    return Call("DELETE", _assignment_path(experiment_id, user_id), _nothing,
                expected=frozenset({204}), repeatable=True)


def with_event_id(event: Mapping[str, Any]) -> Mapping[str, Any]:
    """The event with an ``event_id`` (a new random one when it has none), which makes
    sending it again harmless: the service counts a known id as a duplicate. An event that
    has one is sent as it is, uncopied (an import sends millions)."""
    if event.get("event_id"):
        return event
    return {**event, "event_id": uuid.uuid4().hex}


def track(events: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> Call[TrackResult]:
    """One event, or a list sent as one batch (all or nothing: a ``422`` names each bad event
    as ``events[i]``). Repeatable, since every event carries an id."""
    if isinstance(events, Mapping):
        document: Any = with_event_id(events)
    else:
        document = {"events": [with_event_id(e) for e in events]}
    return Call("POST", "/events", _into(TrackResult), body=_body(document), headers=_JSON,
                expected=frozenset({202}), repeatable=True)


def record_exposures(exposures: Sequence[Exposure]) -> Call[ExposureResult]:
    """Repeatable: a user's first assignment stays, so a report sent twice stores nothing new."""
    return Call("POST", "/exposures", _into(ExposureResult),
                body=_body({"exposures": list(exposures)}), headers=_JSON,
                expected=frozenset({202}), repeatable=True)


def definitions(etag: str | None) -> Call[tuple[Definitions | None, str | None]]:
    """(definitions, their ETag), or (None, the ETag) when those of ``etag`` are current."""
    read = _into(Definitions)

    def decode(response: httpx.Response) -> tuple[Definitions | None, str | None]:
        tag = response.headers.get("ETag")
        if response.status_code == 304:
            return None, tag or etag
        return read(response), tag

    headers = {} if etag is None else {"If-None-Match": etag}
    return Call("GET", "/definitions", decode, headers=headers, expected=frozenset({200, 304}),
                repeatable=True)


def results(experiment_id: str, query: Mapping[str, QueryValue]) -> Call[Results]:
    return Call("GET", f"/experiments/{segment(experiment_id)}/results", _into(Results),
                params=_query(**query), repeatable=True)


def power(fields: Mapping[str, Any]) -> Call[PowerResult]:
    return Call("POST", "/power", _into(PowerResult), body=_body(fields), headers=_JSON,
                repeatable=True)


def create_key(name: str, scopes: Sequence[str], expires_at: str | datetime | None) -> Call[Key]:
    """Not repeatable: a second key would be made, its secret never seen."""
    fields: dict[str, Any] = {"name": name, "scopes": list(scopes)}
    if expires_at is not None:
        fields["expires_at"] = expires_at
    return Call("POST", "/keys", _into(Key), body=_body(fields), headers=_JSON,
                expected=frozenset({201}))


def list_keys(limit: int, offset: int) -> Call[KeyPage]:
    return Call("GET", "/keys", _into(KeyPage), params=_query(limit=limit, offset=offset),
                repeatable=True)


def get_key(key_id: str) -> Call[Key]:
    return Call("GET", f"/keys/{segment(key_id)}", _into(Key), repeatable=True)


def revoke_key(key_id: str) -> Call[Key]:
    """Idempotent on the service: revoking twice answers the same record."""
    return Call("DELETE", f"/keys/{segment(key_id)}", _into(Key), repeatable=True)


def audit(limit: int, offset: int, action: str | None, target_id: str | None) -> Call[AuditPage]:
    return Call("GET", "/audit", _into(AuditPage),
                params=_query(limit=limit, offset=offset, action=action, target_id=target_id),
                repeatable=True)


def create_layer(name: str) -> Call[Layer]:
    return Call("POST", "/layers", _into(Layer), body=_body({"name": name}), headers=_JSON,
                expected=frozenset({201}))


def _items(kind: type[LayerList] | type[HoldoutList]) -> Callable[[httpx.Response], list[Any]]:
    read = _into(kind)
    return lambda response: read(response).items


def list_layers() -> Call[list[Layer]]:
    return Call("GET", "/layers", _items(LayerList), repeatable=True)


def get_layer(layer_id: str) -> Call[Layer]:
    return Call("GET", f"/layers/{segment(layer_id)}", _into(Layer), repeatable=True)


def create_holdout(name: str, percentage: float) -> Call[Holdout]:
    return Call("POST", "/holdouts", _into(Holdout),
                body=_body({"name": name, "percentage": percentage}), headers=_JSON,
                expected=frozenset({201}))


def list_holdouts() -> Call[list[Holdout]]:
    return Call("GET", "/holdouts", _items(HoldoutList), repeatable=True)


def get_holdout(holdout_id: str) -> Call[Holdout]:
    return Call("GET", f"/holdouts/{segment(holdout_id)}", _into(Holdout), repeatable=True)


def holdout_results(holdout_id: str, event_type: str) -> Call[HoldoutResults]:
    return Call("GET", f"/holdouts/{segment(holdout_id)}/results", _into(HoldoutResults),
                params=_query(event_type=event_type), repeatable=True)


# ------------------------------------------------------------------------------ paging


class Identified(Protocol):
    @property
    def id(self) -> str: ...


Item = TypeVar("Item", bound=Identified)
_Listed = TypeVar("_Listed", bound=Identified, covariant=True)


class Page(Protocol[_Listed]):
    """A page of a list: ``GET /experiments``, ``/keys``, ``/audit``."""

    @property
    def items(self) -> Sequence[_Listed]: ...

    @property
    def total(self) -> int: ...


def next_offset(offset: int, page: Page[Any]) -> int | None:
    """Where the page after ``page`` (read at ``offset``) starts; None after the last."""
    end = offset + len(page.items)
    return end if page.items and end < page.total else None


def unseen(items: Iterable[Item], seen: set[str]) -> Iterator[Item]:
    """Items whose ``id`` no earlier page gave: lists are newest first, so an item created
    while paging pushes the older ones one place on, and the next page repeats one."""
    for item in items:
        if item.id not in seen:
            seen.add(item.id)
            yield item


# ------------------------------------------------------------------------------ errors


class _FieldErrorIn(msgspec.Struct, forbid_unknown_fields=False):
    field: str = ""
    message: str = ""


class _Problem(msgspec.Struct, forbid_unknown_fields=False):
    title: str | None = None
    detail: str | None = None
    errors: list[_FieldErrorIn] = []


_problem = msgspec.json.Decoder(_Problem)
_SNIPPET = 200  # characters of a body that is not problem+json shown as the detail


def api_error(response: httpx.Response) -> ApiError:
    """The ApiError of an answer's status, from its problem+json (or what the body holds)."""
    try:
        problem = _problem.decode(response.content)
    except msgspec.MsgspecError:
        problem = _Problem(detail=response.text[:_SNIPPET].strip() or None)
    status = response.status_code
    kind = BY_STATUS.get(status, ApiError)
    return kind(
        status,
        problem.title or response.reason_phrase or "Error",
        problem.detail or "",
        [FieldError(e.field, e.message) for e in problem.errors],
        retry_after=retry_after(response.headers.get("Retry-After")),
        body=response.content,
    )


def retry_after(header: str | None) -> float | None:
    """``Retry-After`` in seconds, as the service sends it; None when absent or unreadable
    (then the backoff decides)."""
    if header is None:
        return None
    try:
        seconds = float(header.strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


# ------------------------------------------------------------------------------ retrying

NEVER_SENT: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)
"""Failures before the request left: retrying cannot do anything twice."""
MAYBE_SENT: tuple[type[httpx.TransportError], ...] = (
    httpx.ReadError,
    httpx.ReadTimeout,
    httpx.WriteError,
    httpx.WriteTimeout,
    httpx.RemoteProtocolError,
)
"""Failures after the request may have reached the service: retried for repeatable calls only.
Any other transport error (a bad URL, an unsupported scheme) would fail again: never retried."""
RETRIED_STATUSES = frozenset({429, 503})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a call is retried. ``random`` (in [0, 1)) and ``clock`` are injectable so that tests
    decide the jitter and the time; the sleep is the client's (one is sync, one async)."""

    max_retries: int = 3
    base_seconds: float = 0.1
    cap_seconds: float = 5.0
    max_retry_after_seconds: float = 30.0
    """The longest ``Retry-After`` obeyed: a longer one is waited this long."""
    deadline_seconds: float | None = 60.0
    """Of a whole call, attempts and waits together; None: no deadline."""
    random: Callable[[], float] = random.random
    clock: Callable[[], float] = time.monotonic

    def attempts(self, call: Call[Any]) -> Attempts:
        return Attempts(self, call)

    def backoff(self, retry: int) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**retry))."""
        return self.random() * min(self.cap_seconds, self.base_seconds * 2.0**retry)


class Attempts:
    """The attempts of one call: the timeout of the next, and whether to retry after a
    failure. The clients' loops are::

        attempts = policy.attempts(call)
        while True:
            try:
                return call.answer(send(call, timeout=attempts.timeout(timeout)))
            except (ApiError, httpx.TransportError) as failure:
                sleep(attempts.retry_in(failure))
    """

    def __init__(self, policy: RetryPolicy, call: Call[Any]) -> None:
        self._policy, self._call = policy, call
        self._retries = 0
        limit = policy.deadline_seconds
        self._deadline = None if limit is None else policy.clock() + limit

    def timeout(self, per_attempt: float) -> float:
        """The attempt's timeout: ``per_attempt``, cut to what is left of the deadline."""
        if self._deadline is None:
            return per_attempt
        return max(0.0, min(per_attempt, self._deadline - self._policy.clock()))

    def retry_in(self, failure: ApiError | httpx.TransportError) -> float:
        """Seconds to wait before the next attempt; raises the caller's error (the ApiError, or
        a TransportError wrapping the httpx one) when the call is over."""
        delay = self._delay(failure)
        if delay is None or self._retries >= self._policy.max_retries or (
            self._deadline is not None and self._policy.clock() + delay >= self._deadline
        ):
            if isinstance(failure, ApiError):
                raise failure
            raise TransportError(self._call.method, self._call.path, failure) from failure
        self._retries += 1
        return delay

    def _delay(self, failure: ApiError | httpx.TransportError) -> float | None:
        """The wait before retrying after ``failure``; None when it is not worth retrying."""
        if isinstance(failure, ApiError):
            if failure.status not in RETRIED_STATUSES:
                return None
            if failure.retry_after is not None:
                return min(failure.retry_after, self._policy.max_retry_after_seconds)
        elif not isinstance(failure, NEVER_SENT) and not (
            self._call.repeatable and isinstance(failure, MAYBE_SENT)
        ):
            return None
        return self._policy.backoff(self._retries)


def session_headers(token: str | None, extra: Mapping[str, str] | None) -> dict[str, str]:
    """The headers of every request. httpx hides ``Authorization`` in its reprs, and no error
    of this package shows request headers, so the token appears in no message."""
    headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    headers.update(extra or {})
    return headers
