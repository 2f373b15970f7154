"""Health: whether the service can reach its store; no credential needed."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import Example

from application.health import CheckHealth
from entrypoints.http import openapi
from entrypoints.http.security.bearer import PUBLIC
from entrypoints.http.wire import doc


class HealthOut(msgspec.Struct):
    status: Annotated[
        Literal["ok", "unavailable"],
        doc("`ok` when the service can reach its store, else `unavailable` (a 503).", "ok"),
    ]


def health_unavailable() -> dict[int, ResponseSpec]:
    """``GET /health``'s 503: the health body itself, not a problem."""
    return {
        503: ResponseSpec(
            data_container=HealthOut,
            description="The store cannot be reached.",
            generate_examples=False,
            examples=[Example(summary="Unavailable", value={"status": "unavailable"})],
        )
    }


class HealthController(Controller):
    path = "/health"
    tags = [openapi.HEALTH]
    opt = {"scope": PUBLIC}

    @get(
        summary="Whether the service can reach its store.",
        responses=health_unavailable(),
    )
    async def health(self, check_health: NamedDependency[CheckHealth]) -> Response[HealthOut]:
        """`200 {"status": "ok"}` when the store answers, `503` with `"status": "unavailable"`
        when it does not. No authentication."""
        if await check_health():
            return Response(HealthOut("ok"))
        return Response(HealthOut("unavailable"), status_code=503)
