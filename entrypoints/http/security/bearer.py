"""Bearer-token authentication and scopes: API_TOKENS (compared in constant time), API keys,
and optionally JWTs; the principal a request acts as, for the handlers and the audit trail."""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import TYPE_CHECKING

from litestar import Litestar, Request
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException

from application.access import KeyRing
from domain.keys import LEGACY, SCOPES, Principal, digest_of
from entrypoints.http.security.jwt_bearer import JwtVerifier

PRINCIPAL = "principal"
"""Where the hook leaves the principal, in ``request.scope["state"]``."""

if TYPE_CHECKING:
    from entrypoints.http.security.rate_limits import RequestLimits


def _unauthorized() -> NotAuthorizedException:
    return NotAuthorizedException(
        detail="a valid bearer token is required in the Authorization header",
        headers={"WWW-Authenticate": "Bearer"},
    )


PUBLIC = "public"
"""The scope of a route open to anyone (health, the docs' files): it declares so, rather than
leaving the scope out."""


def check_scopes(app: Litestar) -> None:
    """Every route declares the scope it needs, ``opt={"scope": ...}`` on its handler or its
    Controller: a route that declares none, or an unknown one, fails the app's start rather
    than serving unguarded, and a route behind the bearer hook cannot be public. Litestar's
    own routes (the OpenAPI document, the OPTIONS answers) are its to guard."""
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            if handler.fn.__module__.startswith("litestar."):
                continue
            scope = handler.opt.get("scope")
            guarded = bool(handler.resolve_before_request())
            if scope not in SCOPES | {PUBLIC} or (guarded and scope == PUBLIC):
                raise ValueError(
                    f"route {route.path} ({handler}) must declare opt={{'scope': one of "
                    f"{sorted(SCOPES)}}}, or {PUBLIC!r} outside the bearer hook"
                )


def authorization(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The raw Authorization value of an ASGI header list, without building a header map."""
    return next((v for k, v in headers if k == b"authorization"), None)


class BearerAuth:
    """API_TOKENS are compared as digests of equal length with hmac.compare_digest, against
    every token, so neither a token's content nor its length nor its position in the list shows
    in the timing. Other tokens are JWTs (when configured) or API keys, looked up by digest."""

    def __init__(
        self,
        tokens: Iterable[str],
        keys: KeyRing,
        jwt: JwtVerifier | None = None,
        limits: RequestLimits | None = None,
        limit_api_tokens: bool = False,
    ) -> None:
        """``limits``: the rate limits requests count against (None: nothing is limited), for
        keys and JWTs by their identity, for API_TOKENS (when ``limit_api_tokens``) by each
        token's SHA-256 digest, never by a secret."""
        self._digests = tuple(digest_of(t.encode()) for t in tokens)
        if not self._digests:
            raise ValueError("at least one API token is required")
        self._keys, self._jwt = keys, jwt
        self._limits, self._limit_api_tokens = limits, limit_api_tokens

    def __deepcopy__(self, memo: dict) -> BearerAuth:  # type: ignore[type-arg]
        # Litestar deep-copies a router's hooks as it registers the router; the key ring, its
        # store and the rate limiter are the process's one copy, to be shared, not cloned: a
        # copy of the limiter would count in buckets of its own.
        return self

    def resolve(self, header: bytes | None) -> Principal | bytes | None:
        """``header``: the raw Authorization value, as the ASGI scope carries it. The principal,
        or None when refused, without waiting; or the token's digest when only the store can
        tell (a key this process has not looked up within its TTL)."""
        if not header:
            return None
        scheme, _, token = header.partition(b" ")
        token = token.strip()
        if scheme.lower() != b"bearer" or not token:
            return None
        offered = digest_of(token)
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(offered, digest)
        if matched:
            return LEGACY
        if self._jwt is not None and token.count(b".") == 2:  # a key's secret has no dots
            return self._jwt.principal(token)
        found = self._keys.cached(offered)
        return offered if found is False else found

    def settled(self, header: bytes | None, needed: str) -> Principal | None:
        """The principal, when the Authorization header alone settles a request to a route that
        needs the ``needed`` scope: a credential known to this process, with that scope, that no
        rate limit counts. None: ``before_request`` decides (a refusal, a key to look up in the
        store, a request to count)."""
        principal = self.resolve(header)
        if not isinstance(principal, Principal) or not principal.allows(needed):
            return None
        if self._limits is not None and (principal.identity or self._limit_api_tokens):
            return None
        return principal

    async def before_request(self, request: Request) -> None:
        """A router's before-request hook rather than a guard or a middleware: a guard costs
        Litestar a copy of the route handler and a parsed header map per request (a third of
        a cached assignment), a middleware an extra exception-handling layer; this reads the
        raw ASGI header list, once. An API_TOKENS token or a cached key costs a digest, the
        comparisons and a dict lookup, with no await."""
        scope = request.scope
        # Litestar's own OPTIONS answer declares no scope: it tells the methods a path allows,
        # to any valid credential.
        needed = scope["route_handler"].opt.get("scope")
        scope["state"][PRINCIPAL] = await self.authenticate(authorization(scope["headers"]), needed, request)

    async def authenticate(self, header: bytes | None, needed: str | None, request: Request) -> Principal:
        """The principal of an Authorization value (``Bearer <token>``), allowed the ``needed``
        scope and counted by the rate limits; a 401 or a 403 otherwise. The pages call it too,
        with the key their session holds."""
        principal = self.resolve(header)
        if isinstance(principal, bytes):
            principal = await self._keys.look_up(principal)
        if principal is None:
            raise _unauthorized()
        if needed is not None and not principal.allows(needed):
            raise PermissionDeniedException(
                detail=f"this credential lacks the {needed!r} scope this route needs"
            )
        # Unlimited requests (API_TOKENS, by default) pay for this test alone.
        if self._limits is not None:
            if principal.identity:
                await self._limits.check(principal.identity, request)
            elif self._limit_api_tokens and header is not None:
                token = header.partition(b" ")[2].strip()
                await self._limits.check(f"token:{digest_of(token).hex()}", request)
        return principal


def actor(request: Request) -> str:
    """The name of who is acting, for the use cases that write the audit trail."""
    principal: Principal = request.scope["state"][PRINCIPAL]
    return principal.name
