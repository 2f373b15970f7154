"""The floor for HTTP figures: a trivial Litestar JSON endpoint, served like the service."""

from litestar import Litestar, get


@get("/ping")
async def ping() -> dict[str, bool]:
    return {"ok": True}


def create() -> Litestar:
    return Litestar([ping])
