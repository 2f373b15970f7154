"""Bearer-token authentication, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import TYPE_CHECKING

from litestar import Request
from litestar.exceptions import NotAuthorizedException

if TYPE_CHECKING:
    from entrypoints.rate_limits import RequestLimits


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


class BearerTokens:
    """Compares digests of equal length with hmac.compare_digest, against every token, so
    neither a token's content nor its length nor its position in the list shows in the timing."""

    def __init__(self, tokens: Iterable[str], limits: RequestLimits | None = None) -> None:
        """``limits``: the rate limits a token's requests count against, None when tokens are
        not limited; each token is counted by its SHA-256 digest, never by the token."""
        self._digests = tuple(_digest(t.encode()) for t in tokens)
        if not self._digests:
            raise ValueError("at least one API token is required")
        self._limits = limits

    def __deepcopy__(self, memo: dict[int, object]) -> BearerTokens:
        # Litestar deep-copies a Router, hooks included, as the app registers it: a copy would
        # take from a copy of the rate limiter, with its own buckets and its own Redis pool.
        return self

    def authenticate(self, header: bytes | None) -> bytes | None:
        """The SHA-256 digest of the token when ``header`` (the raw Authorization value, as the
        ASGI scope carries it) holds a valid one, else None."""
        if not header:
            return None
        scheme, _, token = header.partition(b" ")
        token = token.strip()
        if scheme.lower() != b"bearer" or not token:
            return None
        offered = _digest(token)
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(offered, digest)
        return offered if matched else None

    async def before_request(self, request: Request) -> None:
        """A router's before-request hook rather than a guard or a middleware: a guard costs
        Litestar a copy of the route handler and a parsed header map per request (a third of
        a cached assignment), a middleware an extra exception-handling layer; this reads the
        raw ASGI header list, once."""
        header = next((v for k, v in request.scope["headers"] if k == b"authorization"), None)
        digest = self.authenticate(header)
        if digest is None:
            raise NotAuthorizedException(
                detail="a valid bearer token is required in the Authorization header",
                headers={"WWW-Authenticate": "Bearer"},
            )
        # Unlimited tokens (the default) pay for this test alone.
        if self._limits is not None:
            await self._limits.check(digest.hex(), request)
