"""The ASGI factory the server calls in each worker process (``--factory``): nothing at import."""

from __future__ import annotations

from litestar import Litestar

from entrypoints.app import create_app
from entrypoints.container import create_container


def app_from_env() -> Litestar:
    return create_app(create_container())
