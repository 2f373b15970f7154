"""Holdouts: users kept out of every experiment that opts in, and their results."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from litestar import Controller, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from application.layers import LayersAndHoldouts
from domain.keys import ADMIN, READ
from domain.layers import Holdout
from entrypoints.http import openapi
from entrypoints.http.decoding import StrictDTO
from entrypoints.http.wire import doc


class HoldoutIn(msgspec.Struct):
    name: Annotated[str, doc("Unique among holdouts; 1 to 200 characters.", "global 2027")]
    percentage: Annotated[float, doc("Share of all users held out: 0.01 to 50, in 0.01 steps.", 5)]


class HoldoutOut(msgspec.Struct):
    id: str
    name: str
    seed: str
    percentage: float
    created_at: datetime

    @classmethod
    def of(cls, h: Holdout) -> HoldoutOut:
        return cls(h.id, h.name, h.seed, h.basis_points / 100, h.created_at)


class HoldoutListOut(msgspec.Struct):
    items: list[HoldoutOut]


class HoldoutDTO(StrictDTO[HoldoutIn]):
    closed = True


class HoldoutsController(Controller):
    path = "/holdouts"
    tags = [openapi.LAYERS]
    opt = {"scope": READ}

    @post(
        dto=HoldoutDTO,
        return_dto=None,
        status_code=201,
        response_headers=openapi.location_header(),
        summary="Create a holdout kept out of every experiment that opts in.",
        responses=openapi.error_responses(*openapi.AUTHENTICATED, *openapi.WITH_BODY, 409),
        opt={"scope": ADMIN},
    )
    async def create_holdout(
        self, data: JSONBody[HoldoutIn], layers: NamedDependency[LayersAndHoldouts]
    ) -> Response[HoldoutOut]:
        """`percentage`: 0.01 to 50, in 0.01 steps; users are held out by a hash of the
        holdout's own seed."""
        holdout = await layers.create_holdout(data.name, data.percentage)
        return Response(HoldoutOut.of(holdout), status_code=201, headers={"Location": f"/holdouts/{holdout.id}"})

    @get(
        summary="List holdouts, newest first.",
        responses=openapi.error_responses(*openapi.AUTHENTICATED),
    )
    async def list_holdouts(self, layers: NamedDependency[LayersAndHoldouts]) -> HoldoutListOut:
        """Each with its share and seed."""
        return HoldoutListOut([HoldoutOut.of(h) for h in await layers.holdouts()])

    @get(
        "/{holdout_id:str}",
        summary="Get one holdout.",
        responses=openapi.error_responses(*openapi.AUTHENTICATED, 404),
    )
    async def get_holdout(self, holdout_id: FromPath[str], layers: NamedDependency[LayersAndHoldouts]) -> HoldoutOut:
        """The holdout's name, share and seed; a 404 when no holdout has this id."""
        return HoldoutOut.of(await layers.holdout(holdout_id))
