"""The floors for HTTP figures, served like the service: a trivial Litestar JSON endpoint, and
one of the assignment route's shape (two path parameters, a Struct back, the same bearer check)
that does no work, to tell the framework's share from the service's."""

import msgspec
from litestar import Litestar, Router, get
from litestar.params import FromPath

from adapters.memory.store import MemoryStore
from adapters.system import SystemClock
from application.access import KeyRing
from entrypoints.http.security.bearer import BearerAuth

TOKEN = "bench-token"


class Assigned(msgspec.Struct):
    experiment_id: str
    user_id: str
    variant_id: str
    variant_name: str
    assigned_at: str


@get("/ping")
async def ping() -> dict[str, bool]:
    return {"ok": True}


@get("/experiments/{experiment_id:str}/assignment/{user_id:str}", opt={"scope": "assign"})
async def same_shape(experiment_id: FromPath[str], user_id: FromPath[str]) -> Assigned:
    return Assigned(experiment_id, user_id, "0" * 32, "control", "2026-11-29T00:00:00.000000Z")


def create() -> Litestar:
    auth = BearerAuth([TOKEN], KeyRing(MemoryStore(), SystemClock(), ttl_seconds=5))
    shaped = Router("/shape", route_handlers=[same_shape], before_request=auth.before_request)
    return Litestar([ping, shaped])
