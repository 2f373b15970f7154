"""The Litestar app factory: routes, auth, error table and docs, built from a container."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from litestar import Litestar, Response, Router, get, post
from litestar.di import NamedDependency, Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.params import FromPath, FromQuery, JSONBody

from application.use_cases import (
    AssignUser,
    CheckHealth,
    ComputeResults,
    CreateExperiment,
    GetExperiment,
    ListExperiments,
    RecordEvents,
)
from domain.errors import FieldError, UnknownExperiments, ValidationFailed
from entrypoints import metrics
from entrypoints.auth import BearerTokens
from entrypoints.container import Container
from entrypoints.decoding import (
    DecodedEvents,
    EventsDTO,
    ExperimentDTO,
    InvalidBatch,
    variant_drafts,
)
from entrypoints.logs import RequestLog
from entrypoints.problems import EXCEPTION_HANDLERS
from entrypoints.schemas import (
    AssignmentOut,
    EventBatchIn,
    EventsAcceptedOut,
    ExperimentIn,
    ExperimentListOut,
    ExperimentOut,
    HealthOut,
    ResultsOut,
)

MAX_BODY_BYTES = 32 * 1024 * 1024


@get("/health", summary="Whether the service can reach its store")
async def health(check_health: NamedDependency[CheckHealth]) -> Response[HealthOut]:
    if await check_health():
        return Response(HealthOut("ok"))
    return Response(HealthOut("unavailable"), status_code=503)


@post("/experiments", dto=ExperimentDTO, return_dto=None, status_code=201)
async def create_experiment(
    data: JSONBody[ExperimentIn], create_experiment: NamedDependency[CreateExperiment]
) -> Response[ExperimentOut]:
    experiment = await create_experiment(
        name=data.name,
        description=data.description,
        primary_event_type=data.primary_event_type,
        variants=variant_drafts(data),
    )
    return Response(
        ExperimentOut.of(experiment),
        status_code=201,
        headers={"Location": f"/experiments/{experiment.id}"},
    )


@get("/experiments")
async def list_experiments(
    list_experiments: NamedDependency[ListExperiments],
    limit: FromQuery[int] = 100,
    offset: FromQuery[int] = 0,
) -> ExperimentListOut:
    return ExperimentListOut.of(await list_experiments(limit=limit, offset=offset))


@get("/experiments/{experiment_id:str}")
async def get_experiment(
    experiment_id: FromPath[str], get_experiment: NamedDependency[GetExperiment]
) -> ExperimentOut:
    return ExperimentOut.of(await get_experiment(experiment_id))


@get("/experiments/{experiment_id:str}/assignment/{user_id:str}")
async def assign(
    experiment_id: FromPath[str], user_id: FromPath[str], assign_user: NamedDependency[AssignUser]
) -> AssignmentOut:
    return AssignmentOut.of(await assign_user(experiment_id, user_id))


@post("/events", dto=EventsDTO, return_dto=None, status_code=202)
async def record_events(
    data: JSONBody[EventBatchIn], record_events: NamedDependency[RecordEvents]
) -> EventsAcceptedOut:
    body: DecodedEvents = data  # type: ignore[assignment]  # EventsDTO decodes either shape
    if isinstance(body, InvalidBatch):
        metrics.count_rejected(body.size)
        raise body.failure(await record_events.unknown_experiments(body.experiment_ids.values()))
    try:
        outcome = await record_events(body.events)
    except UnknownExperiments as exc:
        metrics.count_rejected(len(body.events))
        raise body.unknown(exc) from None
    except ValidationFailed:
        metrics.count_rejected(len(body.events))
        raise
    metrics.count_events(outcome.accepted, outcome.duplicates)
    return EventsAcceptedOut(accepted=outcome.accepted, duplicates=outcome.duplicates)


@get("/experiments/{experiment_id:str}/results")
async def results(
    experiment_id: FromPath[str],
    compute_results: NamedDependency[ComputeResults],
    start_date: FromQuery[str | None] = None,
    end_date: FromQuery[str | None] = None,
    event_type: FromQuery[str | None] = None,
    variant_id: FromQuery[str | None] = None,
    primary_event_type: FromQuery[str | None] = None,
) -> ResultsOut:
    errors: list[FieldError] = []
    start = _moment(start_date, "start_date", errors)
    end = _moment(end_date, "end_date", errors)
    if errors:
        raise ValidationFailed(errors)
    computed = await compute_results(
        experiment_id,
        start=start,
        end=end,
        event_type=event_type,
        variant_id=variant_id,
        primary_event_type=primary_event_type,
    )
    return ResultsOut.of(computed)


def _moment(value: str | None, name: str, errors: list[FieldError]) -> date | datetime | None:
    """An ISO 8601 date (that whole UTC day) or datetime (without an offset: UTC)."""
    if value is None:
        return None
    try:
        if not any(c in value for c in "T t:"):  # 2026-11-28 or 20261128: a whole day
            return date.fromisoformat(value)
        return datetime.fromisoformat(value)
    except ValueError:
        errors.append(FieldError(name, "must be an ISO 8601 date or datetime"))
        return None


def _metrics_route(container: Container, tokens: BearerTokens, requests: metrics.RequestMetrics) -> Any:
    store = container.store

    @get(
        "/metrics",
        summary="Prometheus metrics (README.md, Metrics)",
        include_in_schema=False,
        before_request=tokens.before_request if container.settings().metrics_token_required else None,
    )
    async def metrics_text() -> Response[bytes]:
        body, content_type = await metrics.exposition(store(), requests)
        return Response(body, media_type=content_type)

    return metrics_text


def create_app(container: Container) -> Litestar:
    settings = container.settings()
    tokens = BearerTokens(settings.api_tokens)

    def provide(provider: Any) -> Provide:
        return Provide(lambda: provider(), sync_to_thread=False, use_cache=True)

    async def start_adapters() -> None:
        await container.store().start()

    async def close_adapters() -> None:
        await container.store().close()
        await container.cache().close()

    requests = metrics.RequestMetrics(None, RequestLog(settings.log_format, settings.log_level))
    api = Router(
        path="/",
        route_handlers=[create_experiment, list_experiments, get_experiment, assign, record_events, results],
        before_request=tokens.before_request,
        security=[{"bearer": []}],
    )
    app = Litestar(
        route_handlers=[health, _metrics_route(container, tokens, requests), api],
        dependencies={
            "check_health": provide(container.check_health),
            "create_experiment": provide(container.create_experiment),
            "list_experiments": provide(container.list_experiments),
            "get_experiment": provide(container.get_experiment),
            "assign_user": provide(container.assign_user),
            "record_events": provide(container.record_events),
            "compute_results": provide(container.compute_results),
        },
        exception_handlers=metrics.counting_store_errors(EXCEPTION_HANDLERS),
        request_max_body_size=MAX_BODY_BYTES,
        on_startup=[start_adapters, requests.start],
        on_shutdown=[close_adapters, requests.stop, metrics.process_ended],
        openapi_config=OpenAPIConfig(
            title="Experimentation service",
            version="1.0.0",
            description="Experiments, sticky assignments, events and results. See README.md.",
            components=Components(
                security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer")}
            ),
        ),
        debug=False,
        # Logging is the server's (entrypoints/logs.py, through uvicorn's log_config): Litestar's
        # own default would take over the root logger with a second format and a thread.
        logging_config=None,
    )
    requests.wrap(app.asgi_handler)
    app.asgi_handler = requests
    return app


