"""The Litestar app, assembled from the container by one plugin: resources, security, telemetry, docs."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Iterator
from typing import Any

from litestar import Controller, Litestar, Response, Router, get
from litestar.config.app import AppConfig
from litestar.di import Provide
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins import InitPluginProtocol
from litestar.routes import HTTPRoute

from domain.keys import READ
from entrypoints.config.container import Container
from entrypoints.http import openapi
from entrypoints.http.docs_assets import docs_assets_router, docs_render_plugins
from entrypoints.http.problems import EXCEPTION_HANDLERS
from entrypoints.http.resources import RESOURCES
from entrypoints.http.resources.assignments import AssignmentLane
from entrypoints.http.security.bearer import PUBLIC, BearerAuth, actor, check_scopes
from entrypoints.http.security.jwt_bearer import JwtVerifier
from entrypoints.http.security.rate_limits import RequestLimits
from entrypoints.server.edge import PathCheck
from entrypoints.telemetry import metrics
from entrypoints.telemetry.logs import RequestLog
from entrypoints.ui.pages import PAGE_CONTROLLERS, pages_router

MAX_BODY_BYTES = 32 * 1024 * 1024


class ServicePlugin(InitPluginProtocol):
    """Everything the service adds to a Litestar app, built from the container: the resources
    (public ones open, the rest behind the bearer hook), the use cases each handler names as a
    dependency, the error table, rate limits, metrics and the request log, and the docs."""

    def __init__(self, container: Container, resources: Iterable[type[Controller]] = RESOURCES) -> None:
        self._container = container
        self._resources = tuple(resources)
        settings = container.settings()
        self.requests = metrics.RequestMetrics(None, RequestLog(settings.log_format, settings.log_level))
        self.auth: BearerAuth  # made with the app (on_app_init); the assignment lane shares it

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        container, settings = self._container, self._container.settings()
        # Only when something is limited are the limiter and the response hook built: with no
        # rates a request pays nothing for limits. Keys and JWTs are limited by default,
        # API_TOKENS only with RATE_LIMIT_API_TOKENS.
        limiter = container.rate_limiter() if settings.rates() else None
        limits = RequestLimits(limiter) if limiter is not None else None
        auth = self.auth = BearerAuth(
            settings.api_tokens,
            container.key_ring(),
            JwtVerifier.from_settings(settings),
            limits,
            settings.rate_limit_api_tokens,
        )
        for handler in _handlers(self._resources):
            # Every route's errors are documented as the problems they are (openapi.py).
            handler.operation_class = openapi.ProblemOperation
        public = [r for r in self._resources if _scope_of(r) == PUBLIC]
        guarded = [r for r in self._resources if r not in public]
        api = with_complete_options(
            Router(path="/", route_handlers=guarded, before_request=auth.before_request, security=[{"bearer": []}])
        )
        app_config.route_handlers.extend(
            [
                *public,
                _metrics_route(container, auth, self.requests),
                api,
                docs_assets_router(),
                pages_router(auth, container.ui_sealer(), container.clock()),
            ]
        )
        app_config.dependencies.update(self._dependencies())

        async def start_adapters() -> None:
            await container.store().start()

        async def close_adapters() -> None:
            await container.store().close()
            await container.cache().close()
            if limiter is not None:
                await limiter.close()

        app_config.on_startup.extend([start_adapters, self.requests.start])
        app_config.on_shutdown.extend([close_adapters, self.requests.stop, metrics.process_ended])
        app_config.exception_handlers.update(metrics.counting_store_errors(EXCEPTION_HANDLERS))
        return app_config

    def _dependencies(self) -> dict[str, Provide]:
        """Each use case a handler names (``create_key: NamedDependency[CreateKey]``), from the
        container's provider of that name, and the acting principal's name as ``actor``."""
        providers = self._container.providers
        handlers = _handlers((*self._resources, *PAGE_CONTROLLERS))
        named = {name for handler in handlers for name in _parameters(handler)}
        dependencies = {
            name: Provide(_call(providers[name]), sync_to_thread=False, use_cache=True)
            for name in sorted(named & providers.keys())
        }
        dependencies["actor"] = Provide(actor, sync_to_thread=False)
        return dependencies


def _scope_of(resource: type[Controller]) -> str | None:
    """The scope a Controller class sets for its routes (``opt`` is a slot until it is set)."""
    for klass in resource.__mro__:
        opt = vars(klass).get("opt")
        if isinstance(opt, dict):
            return opt.get("scope")
    return None


def _call(provider: Any) -> Any:
    return lambda: provider()


def _handlers(resources: Iterable[type[Controller]]) -> Iterator[HTTPRouteHandler]:
    for resource in resources:
        for value in vars(resource).values():
            if isinstance(value, HTTPRouteHandler):
                yield value


def _parameters(handler: HTTPRouteHandler) -> list[str]:
    return list(inspect.signature(handler.fn).parameters)


def _metrics_route(container: Container, auth: BearerAuth, requests: metrics.RequestMetrics) -> Any:
    store = container.store

    @get(
        "/metrics",
        summary="Prometheus metrics (README.md, Metrics)",
        include_in_schema=False,
        before_request=auth.before_request if container.settings().metrics_token_required else None,
        # Scrapes come at the scraper's pace: the read scope, but no rate limit.
        opt={"scope": READ, "rate_limited": False},
    )
    async def metrics_text() -> Response[bytes]:
        body, content_type = await metrics.exposition(store(), requests)
        return Response(body, media_type=content_type)

    return metrics_text


def with_complete_options(router: Router) -> Router:
    """Litestar 2 answers OPTIONS with the methods of the first handler registered on a path
    (its issue #4169): ``OPTIONS /experiments`` said ``Allow: OPTIONS, POST``, without GET. Each
    path's route is built again here with all its handlers at once, so that the OPTIONS handler
    Litestar makes for it knows every method."""
    for index, route in enumerate(router.routes):
        if isinstance(route, HTTPRoute):
            handlers = [h for h in route.route_handlers if not _litestars_options(h)]
            router.routes[index] = HTTPRoute(path=route.path, route_handlers=handlers)
    return router


def _litestars_options(handler: Any) -> bool:
    return handler.http_methods == {"OPTIONS"} and "create_options_handler" in handler.fn.__qualname__


def _options_for_any_scope(app: Litestar) -> None:
    """Litestar's own OPTIONS answer tells the methods a path allows, to any valid credential:
    it would inherit its Controller's scope, so it is given none (nor a rate-limit class)."""
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            if _litestars_options(handler):
                handler.opt.pop("scope", None)


def create_app(container: Container, resources: Iterable[type[Controller]] = RESOURCES) -> Litestar:
    plugin = ServicePlugin(container, resources)
    app = Litestar(
        plugins=[plugin],
        request_max_body_size=MAX_BODY_BYTES,
        openapi_config=OpenAPIConfig(
            title="Experimentation service",
            version="1.0.0",
            description="Experiments, sticky assignments, events and results. Every error is "
            "RFC 9457 problem details (`application/problem+json`). See README.md.",
            tags=openapi.TAGS,
            components=Components(
                security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer")}
            ),
            render_plugins=docs_render_plugins(),
            use_handler_docstrings=True,
        ),
        debug=False,
        # Logging is the server's (entrypoints/telemetry/logs.py, through uvicorn's log_config):
        # Litestar's own default would take over the root logger with a second format and a thread.
        logging_config=None,
    )
    check_scopes(app)
    _options_for_any_scope(app)
    plugin.requests.wrap(PathCheck(AssignmentLane(app.asgi_handler, plugin.auth, container.assign_user())))
    app.asgi_handler = plugin.requests
    return app
