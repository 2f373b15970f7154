"""The API reference at /schema, served from the Swagger UI files this package ships, offline."""

from __future__ import annotations

from pathlib import Path

from litestar import Router
from litestar.datastructures import CacheControlHeader
from litestar.openapi.plugins import OpenAPIRenderPlugin, SwaggerRenderPlugin, YamlRenderPlugin
from litestar.static_files import create_static_files_router

from entrypoints.http.security.bearer import PUBLIC

SWAGGER_UI_VERSION = "5.35.0"
"""The version of the files in ``static/swagger-ui`` (their README.md says where they came from)."""

ASSETS_DIRECTORY = Path(__file__).parent / "static" / "swagger-ui"

# The version is part of the path, so a new one is a new URL and the files can be cached for good.
ASSETS_PATH = f"/schema/assets/swagger-ui-{SWAGGER_UI_VERSION}"

DOCS_PAGE_PATHS = ("/schema", "/schema/swagger")
"""Where the API reference is; every other viewer Litestar would serve under /schema is a 404."""

_A_YEAR = 365 * 24 * 3600


class OfflineSwaggerRenderPlugin(SwaggerRenderPlugin):
    """Litestar's Swagger UI page with every script, style and icon from ``ASSETS_PATH``."""

    def __init__(self) -> None:
        super().__init__(
            js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            css_url=f"{ASSETS_PATH}/swagger-ui.css",
            standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui-standalone-preset.js",
            favicon=f"<link rel='icon' type='image/png' href='{ASSETS_PATH}/favicon-32x32.png'>",
            path=[path.removeprefix("/schema") or "/" for path in DOCS_PAGE_PATHS],
        )

    def receive_router(self, router: Router) -> None:
        # The parent adds /schema/oauth2-redirect.html, a blank page that only an OAuth2 login
        # flow needs; the service's bearer tokens have none, so the path stays a 404.
        return None


def docs_render_plugins() -> list[OpenAPIRenderPlugin]:
    """Swagger UI at /schema and /schema/swagger; the document as JSON (Litestar adds
    /schema/openapi.json itself) and as YAML, as before."""
    return [
        OfflineSwaggerRenderPlugin(),
        YamlRenderPlugin(),
    ]


def docs_assets_router() -> Router:
    """The Swagger UI files: open like /health (they hold no data), cached for a year."""
    return create_static_files_router(
        path=ASSETS_PATH,
        directories=[ASSETS_DIRECTORY],
        name="docs-assets",
        cache_control=CacheControlHeader(max_age=_A_YEAR, public=True, immutable=True),
        include_in_schema=False,
        opt={"scope": PUBLIC},
    )
