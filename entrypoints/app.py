"""The Litestar app factory: routes, auth, error table and docs, built from a container."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from litestar import Litestar, Response, Router, delete, get, patch, post, put
from litestar.di import NamedDependency, Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.params import FromPath, FromQuery, JSONBody

from application.use_cases import (
    AssignUser,
    ChangeExperiment,
    CheckHealth,
    LayersAndHoldouts,
    ComputeResults,
    CreateExperiment,
    GetExperiment,
    ListExperiments,
    RecordEvents,
)
from domain.errors import EventsAhead, FieldError, UnknownExperiments, ValidationFailed
from entrypoints import metrics
from entrypoints.auth import BearerTokens
from entrypoints.container import Container
from entrypoints.decoding import (
    AssignmentDTO,
    DecodedEvents,
    EventsDTO,
    ExperimentDTO,
    ExperimentPatchDTO,
    HoldoutDTO,
    LayerDTO,
    OverrideDTO,
    InvalidBatch,
    variant_drafts,
)
from entrypoints.problems import EXCEPTION_HANDLERS
from entrypoints.schemas import (
    AssignmentIn,
    AssignmentOut,
    EventBatchIn,
    EventsAcceptedOut,
    ExperimentIn,
    ExperimentListOut,
    ExperimentOut,
    ExperimentPatchIn,
    HealthOut,
    HoldoutIn,
    HoldoutListOut,
    HoldoutOut,
    HoldoutResultsOut,
    LayerIn,
    LayerListOut,
    LayerOut,
    OverrideIn,
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
        variants=variant_drafts(data.variants),
        status=data.status,
        coverage=data.coverage,
        audience=data.audience,
        layer_id=None if data.layer is None else data.layer.id,
        layer_percentage=None if data.layer is None else data.layer.percentage,
        holdout_id=data.holdout_id,
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


@patch("/experiments/{experiment_id:str}", dto=ExperimentPatchDTO, return_dto=None)
async def change_experiment(
    experiment_id: FromPath[str],
    data: JSONBody[ExperimentPatchIn],
    change_experiment: NamedDependency[ChangeExperiment],
) -> ExperimentOut:
    changes = data.changes()
    if "variants" in changes:
        changes["variants"] = variant_drafts(changes["variants"])
    experiment, _ = await change_experiment(experiment_id, **changes)
    return ExperimentOut.of(experiment)


@get("/experiments/{experiment_id:str}/assignment/{user_id:str}")
async def assign(
    experiment_id: FromPath[str], user_id: FromPath[str], assign_user: NamedDependency[AssignUser]
) -> AssignmentOut:
    return AssignmentOut.of(await assign_user(experiment_id, user_id))


@post("/experiments/{experiment_id:str}/assignment/{user_id:str}", dto=AssignmentDTO, return_dto=None, status_code=200)
async def assign_with_attributes(
    experiment_id: FromPath[str],
    user_id: FromPath[str],
    data: JSONBody[AssignmentIn],
    assign_user: NamedDependency[AssignUser],
) -> AssignmentOut:
    return AssignmentOut.of(await assign_user(experiment_id, user_id, data.attributes))


@put("/experiments/{experiment_id:str}/assignment/{user_id:str}", dto=OverrideDTO, return_dto=None)
async def force_assignment(
    experiment_id: FromPath[str],
    user_id: FromPath[str],
    data: JSONBody[OverrideIn],
    change_experiment: NamedDependency[ChangeExperiment],
    assign_user: NamedDependency[AssignUser],
) -> AssignmentOut:
    await change_experiment.force(experiment_id, user_id, data.variant_id)
    return AssignmentOut.of(await assign_user(experiment_id, user_id))


@delete("/experiments/{experiment_id:str}/assignment/{user_id:str}", status_code=204)
async def remove_override(
    experiment_id: FromPath[str], user_id: FromPath[str], change_experiment: NamedDependency[ChangeExperiment]
) -> None:
    await change_experiment.unforce(experiment_id, user_id)


@post("/events", dto=EventsDTO, return_dto=None, status_code=202)
async def record_events(
    data: JSONBody[EventBatchIn], record_events: NamedDependency[RecordEvents]
) -> EventsAcceptedOut:
    body: DecodedEvents = data  # type: ignore[assignment]  # EventsDTO decodes either shape
    if isinstance(body, InvalidBatch):
        metrics.count_rejected(body.size)
        unknown = await record_events.unknown_experiments(body.experiment_ids.values())
        ahead = record_events.too_far_ahead(body.timestamps.values())
        raise body.failure(unknown, ahead, record_events.future_skew)
    try:
        outcome = await record_events(body.events)
    except UnknownExperiments as exc:
        metrics.count_rejected(len(body.events))
        raise body.unknown(exc) from None
    except EventsAhead as exc:
        metrics.count_rejected(len(body.events))
        raise body.ahead(exc) from None
    except ValidationFailed:
        metrics.count_rejected(len(body.events))
        raise
    metrics.count_events(outcome.accepted, outcome.duplicates)
    return EventsAcceptedOut(accepted=outcome.accepted, duplicates=outcome.duplicates)


@post("/layers", dto=LayerDTO, return_dto=None, status_code=201)
async def create_layer(data: JSONBody[LayerIn], layers: NamedDependency[LayersAndHoldouts]) -> Response[LayerOut]:
    view = await layers.create_layer(data.name)
    return Response(LayerOut.of(view), status_code=201, headers={"Location": f"/layers/{view.layer.id}"})


@get("/layers")
async def list_layers(layers: NamedDependency[LayersAndHoldouts]) -> LayerListOut:
    return LayerListOut([LayerOut.of(v) for v in await layers.layers()])


@get("/layers/{layer_id:str}")
async def get_layer(layer_id: FromPath[str], layers: NamedDependency[LayersAndHoldouts]) -> LayerOut:
    return LayerOut.of(await layers.layer(layer_id))


@post("/holdouts", dto=HoldoutDTO, return_dto=None, status_code=201)
async def create_holdout(data: JSONBody[HoldoutIn], layers: NamedDependency[LayersAndHoldouts]) -> Response[HoldoutOut]:
    holdout = await layers.create_holdout(data.name, data.percentage)
    return Response(HoldoutOut.of(holdout), status_code=201, headers={"Location": f"/holdouts/{holdout.id}"})


@get("/holdouts")
async def list_holdouts(layers: NamedDependency[LayersAndHoldouts]) -> HoldoutListOut:
    return HoldoutListOut([HoldoutOut.of(h) for h in await layers.holdouts()])


@get("/holdouts/{holdout_id:str}")
async def get_holdout(holdout_id: FromPath[str], layers: NamedDependency[LayersAndHoldouts]) -> HoldoutOut:
    return HoldoutOut.of(await layers.holdout(holdout_id))


@get("/holdouts/{holdout_id:str}/results")
async def holdout_results(
    holdout_id: FromPath[str], event_type: FromQuery[str], layers: NamedDependency[LayersAndHoldouts]
) -> HoldoutResultsOut:
    return HoldoutResultsOut.of(await layers.holdout_results(holdout_id, event_type))


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

    requests = metrics.RequestMetrics(None)
    api = Router(
        path="/",
        route_handlers=[
            create_experiment, list_experiments, get_experiment, change_experiment, assign,
            assign_with_attributes, force_assignment, remove_override, record_events, results,
            create_layer, list_layers, get_layer, create_holdout, list_holdouts, get_holdout, holdout_results,
        ],
        before_request=tokens.before_request,
        security=[{"bearer": []}],
    )
    app = Litestar(
        route_handlers=[health, _metrics_route(container, tokens, requests), api],
        dependencies={
            "check_health": provide(container.check_health),
            "create_experiment": provide(container.create_experiment),
            "change_experiment": provide(container.change_experiment),
            "layers": provide(container.layers),
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
    )
    requests.wrap(app.asgi_handler)
    app.asgi_handler = requests
    return app


