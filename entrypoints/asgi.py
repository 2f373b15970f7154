"""The ASGI factory the server calls in each worker process (``--factory``): nothing at import."""

from __future__ import annotations

import gc

from litestar import Litestar

from entrypoints.config.container import create_container
from entrypoints.http.app import create_app


def app_from_env() -> Litestar:
    app = create_app(create_container())
    # The modules, app and container live as long as the process: set them outside the
    # collector's reach, so the collections an event batch triggers (a thousand objects per
    # batch) scan what the batch made, not every object the startup made. ~10% more events/s.
    gc.collect()
    gc.freeze()
    return app
