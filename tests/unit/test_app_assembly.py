"""The app is assembled from its resources: scopes checked at start, use cases wired by name."""

from __future__ import annotations

import pytest
from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.testing import TestClient

from application.access import GetKey
from domain.keys import READ
from entrypoints.config.container import create_container
from entrypoints.config.settings import Settings
from entrypoints.http.app import create_app
from entrypoints.http.resources import RESOURCES
from entrypoints.http.security.bearer import PUBLIC


def _settings() -> Settings:
    return Settings(database_url="memory://", cache_url="memory://", api_tokens=("t",))


def test_a_route_that_declares_no_scope_stops_the_app_at_start() -> None:
    class Bare(Controller):
        path = "/bare"

        @get()
        async def bare(self) -> str:
            return "open to anyone with a token"

    with pytest.raises(ValueError, match="/bare"):
        create_app(create_container(_settings()), (*RESOURCES, Bare))


def test_a_route_behind_the_bearer_hook_cannot_call_itself_public() -> None:
    class Confused(Controller):
        path = "/confused"
        opt = {"scope": READ}

        @get(opt={"scope": PUBLIC})
        async def confused(self) -> str:
            return "public but guarded"

    with pytest.raises(ValueError, match="/confused"):
        create_app(create_container(_settings()), (*RESOURCES, Confused))


def test_a_new_resource_gets_its_use_case_by_naming_it_and_its_scope_from_the_controller() -> None:
    class KeyNames(Controller):
        path = "/key-names"
        opt = {"scope": READ}

        @get("/{key_id:str}")
        async def key_name(self, key_id: FromPath[str], get_key: NamedDependency[GetKey]) -> str:
            return (await get_key(key_id)).name

    app = create_app(create_container(_settings()), (*RESOURCES, KeyNames))
    with TestClient(app) as client:
        created = client.post(
            "/keys", json={"name": "ci", "scopes": ["ingest"]}, headers={"Authorization": "Bearer t"}
        )
        key_id, ingest_only = created.json()["id"], created.json()["key"]
        assert client.get(f"/key-names/{key_id}", headers={"Authorization": "Bearer t"}).text == "ci"
        assert client.get(f"/key-names/{key_id}").status_code == 401
        refused = client.get(f"/key-names/{key_id}", headers={"Authorization": f"Bearer {ingest_only}"})
        assert refused.status_code == 403


def test_every_route_of_the_service_declares_its_scope() -> None:
    app = create_app(create_container(_settings()))
    declared = {
        (route.path, method): handler.opt.get("scope")
        for route in app.routes
        for handler in route.route_handlers
        for method in handler.http_methods
        if not handler.fn.__module__.startswith("litestar.")
    }
    assert declared[("/health", "GET")] == PUBLIC
    assert declared[("/experiments", "POST")] == "admin"
    assert declared[("/experiments", "GET")] == "read"
    assert declared[("/experiments/{experiment_id:str}/assignment/{user_id:str}", "PUT")] == "admin"
    assert declared[("/experiments/{experiment_id:str}/assignment/{user_id:str}", "GET")] == "assign"
    assert declared[("/events", "POST")] == "ingest"
    assert declared[("/holdouts/{holdout_id:str}/results", "GET")] == "read"
    assert all(scope is not None for scope in declared.values())


def test_every_route_that_takes_a_body_decodes_it_strictly() -> None:
    """The media type and the strict decoding live in StrictDTO.decode_bytes, which no DTO
    overrides: a route with a body and another DTO would skip the 415."""
    from entrypoints.http.decoding import StrictDTO

    app = create_app(create_container(_settings()))
    with_body = [
        handler
        for route in app.routes
        for handler in route.route_handlers
        if "data" in handler.parsed_fn_signature.parameters
    ]
    assert len(with_body) >= 8
    for handler in with_body:
        dto = handler.resolve_data_dto()
        assert dto is not None and issubclass(dto, StrictDTO), handler
        assert type(dto).__dict__.get("decode_bytes") is None
        assert all("decode_bytes" not in vars(k) for k in dto.__mro__ if k is not StrictDTO and issubclass(k, StrictDTO))
