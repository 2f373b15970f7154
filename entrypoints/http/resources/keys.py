"""API keys: create, list, read and revoke them; a secret is shown once."""

from __future__ import annotations

from datetime import datetime

import msgspec
from litestar import Controller, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody

from application.access import CreateKey, GetKey, KeyPage, ListKeys, NewKey, RevokeKey
from domain.errors import ValidationFailed
from domain.keys import ADMIN, ApiKey
from entrypoints.http import openapi
from entrypoints.http.decoding import ClosedBody, ClosedDTO


class KeyIn(msgspec.Struct):
    """``expires_at``: RFC 3339; without an offset, UTC."""

    name: str
    scopes: list[str]
    expires_at: datetime | None = None


class KeyOut(msgspec.Struct):
    """A key as listed: never its secret, nor its digest."""

    id: str
    name: str
    scopes: list[str]
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> KeyOut:
        return cls(key.id, key.name, list(key.scopes), key.created_at, key.created_by, key.expires_at, key.revoked_at)


class KeyCreatedOut(KeyOut):
    """A new key, with its secret: shown this once, stored nowhere but as a digest."""

    key: str

    @classmethod
    def created(cls, new: NewKey) -> KeyCreatedOut:
        k = new.key
        return cls(k.id, k.name, list(k.scopes), k.created_at, k.created_by, k.expires_at, k.revoked_at, new.secret)


class KeyListOut(msgspec.Struct):
    items: list[KeyOut]
    total: int

    @classmethod
    def of(cls, page: KeyPage) -> KeyListOut:
        return cls([KeyOut.of(k) for k in page.items], page.total)


KeyDTO = ClosedDTO[KeyIn]


class KeysController(Controller):
    path = "/keys"
    tags = [openapi.KEYS]
    opt = {"scope": ADMIN}

    @post(
        dto=KeyDTO,
        return_dto=None,
        status_code=201,
        summary="Create an API key with a name, scopes and an optional expiry.",
        response_headers=openapi.location_header(),
        responses=openapi.error_responses(*openapi.AUTHENTICATED, *openapi.WITH_BODY),
    )
    async def create_key(
        self, data: JSONBody[KeyIn], create_key: NamedDependency[CreateKey], actor: NamedDependency[str]
    ) -> Response[KeyCreatedOut]:
        """Scopes: `admin` (everything), `assign` (assignments only: safe in a client app),
        `ingest` (events only), `read` (experiments and results). The secret (`key`) is in this
        answer only; the service keeps its SHA-256 digest. Unknown fields are a 422."""
        body: ClosedBody = data  # type: ignore[assignment]  # KeyDTO decodes into one
        key: KeyIn = body.value
        if body.unknown:
            raise ValidationFailed(body.unknown + create_key.errors(key.name, key.scopes, key.expires_at))
        new = await create_key(name=key.name, scopes=key.scopes, expires_at=key.expires_at, actor=actor)
        return Response(
            KeyCreatedOut.created(new), status_code=201, headers={"Location": f"/keys/{new.key.id}"}
        )

    @get(
        summary="List API keys, newest first.",
        responses=openapi.error_responses(*openapi.AUTHENTICATED, 422),
    )
    async def list_keys(
        self,
        list_keys: NamedDependency[ListKeys],
        limit: FromQuery[int] = 100,
        offset: FromQuery[int] = 0,
    ) -> KeyListOut:
        """A page of keys, revoked ones included, never with their secrets: `limit` 1 to 500
        (default 100), `offset` 0 or more."""
        return KeyListOut.of(await list_keys(limit=limit, offset=offset))

    @get(
        "/{key_id:str}",
        summary="Get one API key.",
        responses=openapi.error_responses(*openapi.AUTHENTICATED, 404),
    )
    async def get_key(self, key_id: FromPath[str], get_key: NamedDependency[GetKey]) -> KeyOut:
        """The key as created, with `revoked_at` once revoked; never its secret."""
        return KeyOut.of(await get_key(key_id))

    @delete(
        "/{key_id:str}",
        status_code=200,
        summary="Revoke an API key.",
        responses=openapi.error_responses(*openapi.AUTHENTICATED, 404),
    )
    async def revoke_key(
        self, key_id: FromPath[str], revoke_key: NamedDependency[RevokeKey], actor: NamedDependency[str]
    ) -> KeyOut:
        """At once on this instance, within `KEY_CACHE_TTL_SECONDS` on every other. Revoking
        twice answers the same revoked key."""
        return KeyOut.of(await revoke_key(key_id, actor=actor))
