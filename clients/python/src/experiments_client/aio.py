"""The asynchronous client: ``Client``'s methods, awaited, over ``httpx.AsyncClient``.

Each method sends the same ``_http`` Call as its ``Client`` twin (see client.py for what each
does); only the sending loop is this module's own, and it awaits where that one blocks: the
request, and the sleep between attempts. One client may serve every task of its event loop.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
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


class AsyncClient:
    """As ``Client``, with ``sleep`` a coroutine function (``asyncio.sleep`` by default) and
    ``transport`` an ``httpx.AsyncBaseTransport``. Use it with ``async with``, or ``aclose``."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        timeout: float = 10.0,
        max_retries: int = 3,
        deadline: float | None = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.base_url = base_url
        self._timeout = timeout
        self._policy = _http.RetryPolicy(
            max_retries=max_retries, deadline_seconds=deadline, random=jitter
        )
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers=_http.session_headers(token, headers),
            timeout=timeout,
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"AsyncClient({self.base_url!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._http.aclose()

    async def _send(self, call: _http.Call[R]) -> R:
        """Send ``call``, retrying as the policy allows; its result, or the last error."""
        attempts = self._policy.attempts(call)
        while True:
            try:
                response = await self._http.request(
                    call.method,
                    call.path,
                    params=call.params,
                    content=call.body,
                    headers=call.headers,
                    timeout=attempts.timeout(self._timeout),
                )
                return call.answer(response)
            except (ApiError, httpx.TransportError) as failure:
                await self._sleep(attempts.retry_in(failure))

    async def health(self) -> Health:
        return await self._send(_http.health())

    async def metrics(self) -> str:
        return await self._send(_http.metrics())

    async def create_experiment(
        self, body: Mapping[str, Any] | None = None, /, **fields: Any
    ) -> Experiment:
        return await self._send(_http.create_experiment({**(body or {}), **fields}))

    async def list_experiments(self, limit: int = 100, offset: int = 0) -> ExperimentPage:
        return await self._send(_http.list_experiments(limit, offset))

    def iter_experiments(self, page_size: int = 100) -> AsyncIterator[Experiment]:
        return self._pages(lambda offset: self.list_experiments(page_size, offset))

    async def get_experiment(self, experiment_id: str) -> Experiment:
        return await self._send(_http.get_experiment(experiment_id))

    async def update_experiment(self, experiment_id: str, /, **changes: Any) -> Experiment:
        return await self._send(_http.update_experiment(experiment_id, changes))

    async def assign(
        self, experiment_id: str, user_id: str, attributes: Mapping[str, Any] | None = None
    ) -> Assignment:
        return await self._send(_http.assign(experiment_id, user_id, attributes))

    async def force_assignment(
        self, experiment_id: str, user_id: str, variant_id: str
    ) -> Assignment:
        return await self._send(_http.force_assignment(experiment_id, user_id, variant_id))

    async def remove_override(self, experiment_id: str, user_id: str) -> None:
        await self._send(_http.remove_override(experiment_id, user_id))

    async def track(self, events: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> TrackResult:
        return await self._send(_http.track(events))

    async def record_exposures(self, exposures: Sequence[Exposure]) -> ExposureResult:
        return await self._send(_http.record_exposures(exposures))

    async def definitions(self, etag: str | None = None) -> tuple[Definitions | None, str | None]:
        return await self._send(_http.definitions(etag))

    async def results(
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
        return await self._send(_http.results(experiment_id, {
            "start_date": start_date, "end_date": end_date, "event_type": event_type,
            "variant_id": variant_id, "primary_event_type": primary_event_type, "method": method,
            "sequential_tuning_users": sequential_tuning_users, "prior_mean": prior_mean,
            "prior_sd": prior_sd, "correction": correction, "cuped": cuped,
        }))

    async def power(self, body: Mapping[str, Any] | None = None, /, **fields: Any) -> PowerResult:
        return await self._send(_http.power({**(body or {}), **fields}))

    async def create_key(
        self, name: str, scopes: Sequence[str], *, expires_at: str | datetime | None = None
    ) -> Key:
        return await self._send(_http.create_key(name, scopes, expires_at))

    async def list_keys(self, limit: int = 100, offset: int = 0) -> KeyPage:
        return await self._send(_http.list_keys(limit, offset))

    def iter_keys(self, page_size: int = 100) -> AsyncIterator[Key]:
        return self._pages(lambda offset: self.list_keys(page_size, offset))

    async def get_key(self, key_id: str) -> Key:
        return await self._send(_http.get_key(key_id))

    async def revoke_key(self, key_id: str) -> Key:
        return await self._send(_http.revoke_key(key_id))

    async def audit(
        self,
        limit: int = 100,
        offset: int = 0,
        *,
        action: str | None = None,
        target_id: str | None = None,
    ) -> AuditPage:
        return await self._send(_http.audit(limit, offset, action, target_id))

    async def create_layer(self, name: str) -> Layer:
        return await self._send(_http.create_layer(name))

    async def list_layers(self) -> list[Layer]:
        return await self._send(_http.list_layers())

    async def get_layer(self, layer_id: str) -> Layer:
        return await self._send(_http.get_layer(layer_id))

    async def create_holdout(self, name: str, percentage: float) -> Holdout:
        return await self._send(_http.create_holdout(name, percentage))

    async def list_holdouts(self) -> list[Holdout]:
        return await self._send(_http.list_holdouts())

    async def get_holdout(self, holdout_id: str) -> Holdout:
        return await self._send(_http.get_holdout(holdout_id))

    async def holdout_results(self, holdout_id: str, event_type: str) -> HoldoutResults:
        return await self._send(_http.holdout_results(holdout_id, event_type))

    @staticmethod
    async def _pages(
        read: Callable[[int], Awaitable[_http.Page[_http.Item]]],
    ) -> AsyncIterator[_http.Item]:
        seen: set[str] = set()
        offset: int | None = 0
        while offset is not None:
            page = await read(offset)
            for item in _http.unseen(page.items, seen):
                yield item
            offset = _http.next_offset(offset, page)
