"""The synchronous client: one method per endpoint of the service, over ``httpx.Client``.

Every method builds its request with ``_http`` (shared with the async client) and sends it
through one loop that retries as ``_http.RetryPolicy`` says. Errors are those of
``experiments_client.errors``: an ApiError subclass per status, or TransportError when no
answer came. Thread safe, as ``httpx.Client`` is: one client may serve a whole process.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import date, datetime
from typing import Any, Self, TypeVar

import httpx

from experiments_client import _http
from experiments_client.definitions import Definitions, Exposure
from experiments_client.errors import ApiError
from experiments_client.models import (
    Assignment,
    AuditPage,
    Experiment,
    ExperimentPage,
    ExposureResult,
    Health,
    Holdout,
    HoldoutResults,
    Key,
    KeyPage,
    Layer,
    PowerResult,
    Results,
    TrackResult,
)

R = TypeVar("R")


class Client:
    """A connection to the service at ``base_url`` with a bearer ``token`` (None: only
    ``health`` can succeed).

    ``timeout`` bounds each attempt (connect, read, write, each), ``deadline`` a whole call
    with its retries and waits; ``max_retries`` counts retries after the first attempt.
    ``transport`` is handed to httpx (``httpx.MockTransport`` in tests); ``sleep`` and
    ``jitter`` (a float in [0, 1)) are the retries' waiting and randomness, for tests to
    replace. Use it as a context manager, or call ``close``.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        timeout: float = 10.0,
        max_retries: int = 3,
        deadline: float | None = 60.0,
        transport: httpx.BaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.base_url = base_url
        self._timeout = timeout
        self._policy = _http.RetryPolicy(
            max_retries=max_retries, deadline_seconds=deadline, random=jitter
        )
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=base_url,
            headers=_http.session_headers(token, headers),
            timeout=timeout,
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"Client({self.base_url!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()

    def _send(self, call: _http.Call[R]) -> R:
        """Send ``call``, retrying as the policy allows; its result, or the last error."""
        attempts = self._policy.attempts(call)
        while True:
            try:
                response = self._http.request(
                    call.method,
                    call.path,
                    params=call.params,
                    content=call.body,
                    headers=call.headers,
                    timeout=attempts.timeout(self._timeout),
                )
                return call.answer(response)
            except (ApiError, httpx.TransportError) as failure:
                self._sleep(attempts.retry_in(failure))

    # -------------------------------------------------------------------------- health

    def health(self) -> Health:
        """``status`` is ``ok``, or ``unavailable`` when the service cannot reach its store."""
        return self._send(_http.health())

    def metrics(self) -> str:
        """The service's metrics in the Prometheus text format (``read`` scope when required)."""
        return self._send(_http.metrics())

    # -------------------------------------------------------------------------- experiments

    def create_experiment(
        self, body: Mapping[str, Any] | None = None, /, **fields: Any
    ) -> Experiment:
        """Create an experiment from ``body`` (as ``POST /experiments`` takes it) and/or
        keyword fields (which win). Never retried once the request may have left: a second
        one would be a ``409`` for the name the first took."""
        return self._send(_http.create_experiment({**(body or {}), **fields}))

    def list_experiments(self, limit: int = 100, offset: int = 0) -> ExperimentPage:
        """A page of experiments, newest first; ``total`` counts them all."""
        return self._send(_http.list_experiments(limit, offset))

    def iter_experiments(self, page_size: int = 100) -> Iterator[Experiment]:
        """Every experiment, newest first, page by page."""
        return self._pages(lambda offset: self.list_experiments(page_size, offset))

    def get_experiment(self, experiment_id: str) -> Experiment:
        return self._send(_http.get_experiment(experiment_id))

    def update_experiment(self, experiment_id: str, /, **changes: Any) -> Experiment:
        """Change the fields given (``status="stopped", winner_variant_id=…``; ``None`` clears
        description or primary_event_type)."""
        return self._send(_http.update_experiment(experiment_id, changes))

    # -------------------------------------------------------------------------- assignments

    def assign(
        self, experiment_id: str, user_id: str, attributes: Mapping[str, Any] | None = None
    ) -> Assignment:
        """The user's variant, assigning it on the first call; with ``attributes``, judged
        on them against the experiment's audience."""
        return self._send(_http.assign(experiment_id, user_id, attributes))

    def force_assignment(self, experiment_id: str, user_id: str, variant_id: str) -> Assignment:
        """Force the user into ``variant_id`` (a QA override, in any state)."""
        return self._send(_http.force_assignment(experiment_id, user_id, variant_id))

    def remove_override(self, experiment_id: str, user_id: str) -> None:
        """Remove the user's QA override, if any."""
        self._send(_http.remove_override(experiment_id, user_id))

    # -------------------------------------------------------------------------- events, exposures

    def track(self, events: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> TrackResult:
        """Record one event (a mapping) or a list of them as one all-or-nothing batch. An event
        without ``event_id`` is sent with a random one, so a retried batch counts once."""
        return self._send(_http.track(events))

    def record_exposures(self, exposures: Sequence[Exposure]) -> ExposureResult:
        """Report users served by local assignment (1 to 10,000, all or nothing)."""
        return self._send(_http.record_exposures(exposures))

    def definitions(self, etag: str | None = None) -> tuple[Definitions | None, str | None]:
        """(every experiment's definition, its ETag), or (None, the ETag) when ``etag`` is
        current. Fits LocalAssigner's ``fetch``."""
        return self._send(_http.definitions(etag))

    # -------------------------------------------------------------------------- results

    def results(
        self,
        experiment_id: str,
        *,
        start_date: str | date | datetime | None = None,
        end_date: str | date | datetime | None = None,
        event_type: str | None = None,
        variant_id: str | None = None,
        primary_event_type: str | None = None,
        method: str | None = None,
        sequential_tuning_users: int | None = None,
        prior_mean: float | None = None,
        prior_sd: float | None = None,
        correction: str | None = None,
        cuped: bool | None = None,
    ) -> Results:
        """The experiment's results; every parameter is optional and for this request alone
        (a bare date is that whole UTC day). A busy service's ``503`` is retried after its
        ``Retry-After``."""
        return self._send(_http.results(experiment_id, {
            "start_date": start_date, "end_date": end_date, "event_type": event_type,
            "variant_id": variant_id, "primary_event_type": primary_event_type, "method": method,
            "sequential_tuning_users": sequential_tuning_users, "prior_mean": prior_mean,
            "prior_sd": prior_sd, "correction": correction, "cuped": cuped,
        }))

    def power(self, body: Mapping[str, Any] | None = None, /, **fields: Any) -> PowerResult:
        """Users per arm to detect ``mde`` (``POST /power``):
        ``power(mde=0.05, baseline_rate=0.1)``."""
        return self._send(_http.power({**(body or {}), **fields}))

    # -------------------------------------------------------------------------- keys, audit

    def create_key(
        self, name: str, scopes: Sequence[str], *, expires_at: str | datetime | None = None
    ) -> Key:
        """A new API key; its secret is ``key`` of this answer, and of no other."""
        return self._send(_http.create_key(name, scopes, expires_at))

    def list_keys(self, limit: int = 100, offset: int = 0) -> KeyPage:
        return self._send(_http.list_keys(limit, offset))

    def iter_keys(self, page_size: int = 100) -> Iterator[Key]:
        """Every key, revoked ones too, newest first."""
        return self._pages(lambda offset: self.list_keys(page_size, offset))

    def get_key(self, key_id: str) -> Key:
        return self._send(_http.get_key(key_id))

    def revoke_key(self, key_id: str) -> Key:
        """Revoke the key; the answer shows ``revoked_at``. Revoking twice changes nothing."""
        return self._send(_http.revoke_key(key_id))

    def audit(
        self,
        limit: int = 100,
        offset: int = 0,
        *,
        action: str | None = None,
        target_id: str | None = None,
    ) -> AuditPage:
        """A page of the admin actions, newest first, optionally of one action or target."""
        return self._send(_http.audit(limit, offset, action, target_id))

    # -------------------------------------------------------------------------- layers, holdouts

    def create_layer(self, name: str) -> Layer:
        return self._send(_http.create_layer(name))

    def list_layers(self) -> list[Layer]:
        return self._send(_http.list_layers())

    def get_layer(self, layer_id: str) -> Layer:
        return self._send(_http.get_layer(layer_id))

    def create_holdout(self, name: str, percentage: float) -> Holdout:
        return self._send(_http.create_holdout(name, percentage))

    def list_holdouts(self) -> list[Holdout]:
        return self._send(_http.list_holdouts())

    def get_holdout(self, holdout_id: str) -> Holdout:
        return self._send(_http.get_holdout(holdout_id))

    def holdout_results(self, holdout_id: str, event_type: str) -> HoldoutResults:
        """The held-out users against everyone exposed, on ``event_type``."""
        return self._send(_http.holdout_results(holdout_id, event_type))

    # --------------------------------------------------------------------------

    @staticmethod
    def _pages(read: Callable[[int], _http.Page[_http.Item]]) -> Iterator[_http.Item]:
        seen: set[str] = set()
        offset: int | None = 0
        while offset is not None:
            page = read(offset)
            yield from _http.unseen(page.items, seen)
            offset = _http.next_offset(offset, page)
