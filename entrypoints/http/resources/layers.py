"""Layers: groups of experiments that never share a user."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from litestar import Controller, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from application.layers import LayersAndHoldouts, LayerView
from domain.keys import ADMIN, READ
from entrypoints.http import openapi
from entrypoints.http.decoding import StrictDTO
from entrypoints.http.wire import doc


class LayerIn(msgspec.Struct):
    name: Annotated[str, doc("Unique among layers; 1 to 200 characters.", "checkout page")]


class LayerExperimentOut(msgspec.Struct):
    experiment_id: str
    start: int
    end: int


class LayerOut(msgspec.Struct):
    id: str
    name: str
    seed: str
    created_at: datetime
    experiments: list[LayerExperimentOut]
    free_percentage: float

    @classmethod
    def of(cls, view: LayerView) -> LayerOut:
        layer = view.layer
        return cls(layer.id, layer.name, layer.seed, layer.created_at,
                   [LayerExperimentOut(x, s.start, s.end) for x, s in view.slices], view.free_basis_points / 100)


class LayerListOut(msgspec.Struct):
    items: list[LayerOut]


class LayerDTO(StrictDTO[LayerIn]):
    closed = True


class LayersController(Controller):
    path = "/layers"
    tags = [openapi.LAYERS]
    opt = {"scope": READ}

    @post(
        dto=LayerDTO,
        return_dto=None,
        status_code=201,
        response_headers=openapi.location_header(),
        summary="Create a layer whose experiments never share a user.",
        responses=openapi.error_responses(*openapi.AUTHENTICATED, *openapi.WITH_BODY, 409),
        opt={"scope": ADMIN},
    )
    async def create_layer(
        self, data: JSONBody[LayerIn], layers: NamedDependency[LayersAndHoldouts]
    ) -> Response[LayerOut]:
        """Experiments created in the layer each take a free slice of its 10,000 buckets,
        hashed on the layer's own seed."""
        view = await layers.create_layer(data.name)
        return Response(LayerOut.of(view), status_code=201, headers={"Location": f"/layers/{view.layer.id}"})

    @get(
        summary="List layers, newest first.",
        responses=openapi.error_responses(*openapi.AUTHENTICATED),
    )
    async def list_layers(self, layers: NamedDependency[LayersAndHoldouts]) -> LayerListOut:
        """Each with the slices its live experiments own and the share still free."""
        return LayerListOut([LayerOut.of(v) for v in await layers.layers()])

    @get(
        "/{layer_id:str}",
        summary="Get one layer and the slices of its experiments.",
        responses=openapi.error_responses(*openapi.AUTHENTICATED, 404),
    )
    async def get_layer(self, layer_id: FromPath[str], layers: NamedDependency[LayersAndHoldouts]) -> LayerOut:
        """The layer, the slices its live experiments own and the share still free; a 404 when
        no layer has this id."""
        return LayerOut.of(await layers.layer(layer_id))
