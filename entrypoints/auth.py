"""Bearer-token authentication, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class BearerTokens:
    """Compares digests of equal length with hmac.compare_digest, against every token, so
    neither a token's content nor its length nor its position in the list shows in the timing."""

    def __init__(self, tokens: Iterable[str]) -> None:
        self._digests = tuple(_digest(t) for t in tokens)
        if not self._digests:
            raise ValueError("at least one API token is required")

    def accepts(self, header: str | None) -> bool:
        if not header:
            return False
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        offered = _digest(token.strip())
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(offered, digest)
        return matched

    def guard(self, connection: ASGIConnection, _: BaseRouteHandler) -> None:
        if not self.accepts(connection.headers.get("authorization")):
            raise NotAuthorizedException(
                detail="a valid bearer token is required in the Authorization header",
                headers={"WWW-Authenticate": "Bearer"},
            )
