"""Rate limits at the HTTP edge: a route's class from its scope, the limiter's call, the headers."""

from __future__ import annotations

from litestar import Request

from application.ports import RateLimiter
from domain.errors import RateLimited
from domain.rate_limit import Decision
from entrypoints.telemetry.metrics import RESPONSE_HEADERS

# A handler names the scope it needs in its opt (``opt={"scope": "assign"}``), for the key's
# scope check and for the limits alike; each scope is limited as one route class.
ROUTE_CLASSES = {"assign": "assignment", "ingest": "ingestion", "admin": "admin", "read": "read"}



def rate_limit_headers(decision: Decision) -> dict[str, str]:
    """The fields of draft-ietf-httpapi-ratelimit-headers-06: the bucket's size, what is left of
    it, seconds until it is full again, and the configured rate (``burst`` when it differs)."""
    rate = decision.rate
    policy = f"{rate.requests};w={rate.per_seconds}"
    if rate.burst != rate.requests:
        policy += f";burst={rate.burst}"
    return {
        "RateLimit-Limit": str(decision.limit),
        "RateLimit-Remaining": str(decision.remaining),
        "RateLimit-Reset": str(decision.reset_seconds),
        "RateLimit-Policy": policy,
    }


def refusal_headers(decision: Decision) -> dict[str, str]:
    return {**rate_limit_headers(decision), "Retry-After": str(decision.retry_after_seconds)}


class RequestLimits:
    """Takes a token for each request to a route whose class has a rate, after authentication
    has named the caller; refuses with RateLimited, or leaves the response its headers (added by
    the request metrics' wrapper of ``send``)."""

    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter
        self._classes = {s: c for s, c in ROUTE_CLASSES.items() if limiter.limits(c)}

    def __deepcopy__(self, memo: dict[int, object]) -> RequestLimits:
        return self  # one limiter per app, whichever Router's hook holds it (see BearerAuth)

    async def check(self, identity: str, request: Request) -> None:
        """``identity``: who is counted (a token's digest, a key's id), never a secret."""
        opt = request.route_handler.opt
        route_class = self._classes.get(opt.get("scope")) if opt.get("rate_limited", True) else None
        if route_class is None:
            return
        decision = await self._limiter.take(identity, route_class)
        if not decision.allowed:
            raise RateLimited(route_class, decision)
        if decision.counted:
            request.scope["state"][RESPONSE_HEADERS] = [
                (name.lower().encode(), value.encode())
                for name, value in rate_limit_headers(decision).items()
            ]
