"""The Litestar app factory: routes, auth, error table and docs, built from a container."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from litestar import Litestar, Request, Response, Router, delete, get, patch, post, put
from litestar.di import NamedDependency, Provide
from litestar.openapi import OpenAPIConfig
from litestar.routes import HTTPRoute
from litestar.openapi.spec import Components, SecurityScheme
from litestar.params import FromPath, FromQuery, JSONBody

from application.use_cases import (
    AssignUser,
    ChangeExperiment,
    CheckHealth,
    LayersAndHoldouts,
    ComputeResults,
    CreateExperiment,
    CreateKey,
    GetExperiment,
    GetKey,
    ListAudit,
    ListExperiments,
    ListKeys,
    RecordEvents,
    RevokeKey,
)
from domain.errors import EventsAhead, FieldError, UnknownExperiments, ValidationFailed
from domain.keys import ADMIN, ASSIGN, INGEST, READ
from entrypoints.http import openapi
from entrypoints.telemetry import metrics
from entrypoints.http.security.bearer import BearerAuth, actor, required_scope
from entrypoints.config.container import Container
from entrypoints.http.decoding import (
    AssignmentDTO,
    ClosedBody,
    DecodedEvents,
    EventsDTO,
    ExperimentDTO,
    ExperimentPatchDTO,
    HoldoutDTO,
    LayerDTO,
    OverrideDTO,
    InvalidBatch,
    KeyDTO,
    variant_drafts,
)
from entrypoints.http.disconnects import while_connected
from entrypoints.http.docs_assets import docs_assets_router, docs_render_plugins
from entrypoints.server.edge import PathCheck
from entrypoints.http.security.jwt_bearer import JwtVerifier
from entrypoints.telemetry.logs import RequestLog
from entrypoints.http.problems import EXCEPTION_HANDLERS
from entrypoints.http.security.rate_limits import RequestLimits
from entrypoints.http.schemas import (
    AssignmentIn,
    AssignmentOut,
    AuditListOut,
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
    KeyCreatedOut,
    KeyIn,
    KeyListOut,
    KeyOut,
    ResultsOut,
)

MAX_BODY_BYTES = 32 * 1024 * 1024


@get(
    "/health",
    tags=[openapi.HEALTH],
    summary="Whether the service can reach its store.",
    description="`200 {\"status\": \"ok\"}` when the store answers, `503` with "
    "`\"status\": \"unavailable\"` when it does not. No authentication.",
    responses=openapi.health_unavailable(),
    operation_class=openapi.ProblemOperation,
)
async def health(check_health: NamedDependency[CheckHealth]) -> Response[HealthOut]:
    if await check_health():
        return Response(HealthOut("ok"))
    return Response(HealthOut("unavailable"), status_code=503)


# Every route behind the bearer hook names the scope it needs in ``opt["scope"]`` (auth.py);
# other route-level policies (rate limits) class routes by the same key.


@post(
    "/experiments",
    dto=ExperimentDTO,
    return_dto=None,
    status_code=201,
    tags=[openapi.EXPERIMENTS],
    summary="Create an experiment with its variants and traffic split.",
    description="2 to 20 variants with unique names, whose traffic percentages (at most two "
    "decimals) sum to exactly 100. At most one variant is the control; if none is, the first "
    "is. Every broken rule is named in the 422. The `Location` header is the new experiment's path.",
    response_description="The experiment, as stored.",
    response_headers=openapi.location_header(),
    responses=openapi.error_responses(*openapi.AUTHENTICATED, *openapi.WITH_BODY, 409),
    operation_class=openapi.ProblemOperation,
    opt={"scope": ADMIN},
)
async def create_experiment(
    data: JSONBody[ExperimentIn],
    create_experiment: NamedDependency[CreateExperiment],
    actor: NamedDependency[str],
) -> Response[ExperimentOut]:
    experiment = await create_experiment(
        actor=actor,
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


@get(
    "/experiments",
    tags=[openapi.EXPERIMENTS],
    summary="List experiments, newest first.",
    description="A page of experiments: `limit` 1 to 500 (default 100), `offset` 0 or more; "
    "`total` counts them all. A limit or offset out of range is a 422.",
    responses=openapi.error_responses(*openapi.AUTHENTICATED, 422),
    operation_class=openapi.ProblemOperation,
    opt={"scope": READ},
)
async def list_experiments(
    list_experiments: NamedDependency[ListExperiments],
    limit: FromQuery[int] = 100,
    offset: FromQuery[int] = 0,
) -> ExperimentListOut:
    return ExperimentListOut.of(await list_experiments(limit=limit, offset=offset))


@get(
    "/experiments/{experiment_id:str}",
    tags=[openapi.EXPERIMENTS],
    summary="Get one experiment and its variants.",
    description="The experiment as created; a 404 when no experiment has this id.",
    responses=openapi.error_responses(*openapi.AUTHENTICATED, 404),
    operation_class=openapi.ProblemOperation,
    opt={"scope": READ},
)
async def get_experiment(
    experiment_id: FromPath[str], get_experiment: NamedDependency[GetExperiment]
) -> ExperimentOut:
    return ExperimentOut.of(await get_experiment(experiment_id))


@patch(
    "/experiments/{experiment_id:str}",
    dto=ExperimentPatchDTO,
    return_dto=None,
    tags=[openapi.EXPERIMENTS],
    summary="Change an experiment: its name, description, primary metric, coverage or state.",
    description="Only the fields sent change (docs/experiments-that-live.md). An illegal state move, lowering the coverage of a started experiment, or changing its split or audience once started is a 409 naming the current state; so is a change made meanwhile by another request.",
    responses=openapi.error_responses(*openapi.AUTHENTICATED, *openapi.WITH_BODY, 404, 409),
    operation_class=openapi.ProblemOperation,
    opt={"scope": ADMIN},
)
async def change_experiment(
    experiment_id: FromPath[str],
    data: JSONBody[ExperimentPatchIn],
    change_experiment: NamedDependency[ChangeExperiment],
    actor: NamedDependency[str],
) -> ExperimentOut:
    changes = data.changes()
    if "variants" in changes:
        changes["variants"] = variant_drafts(changes["variants"])
    experiment, _ = await change_experiment(experiment_id, actor, **changes)
    return ExperimentOut.of(experiment)


@get(
    "/experiments/{experiment_id:str}/assignment/{user_id:str}",
    tags=[openapi.ASSIGNMENTS],
    summary="Get the user's variant, assigning it on the first call.",
    description="The variant is a pure function of SHA-256 of `experiment_id:user_id` over "
    "10,000 buckets (README.md, The assignment hash). Once stored it never changes, and "
    "`assigned_at` stays that of the first call. `user_id`: 1 to 256 characters, no NUL (else 422).",
    responses=openapi.error_responses(*openapi.AUTHENTICATED, 404, 422),
    operation_class=openapi.ProblemOperation,
    opt={"scope": ASSIGN},
)
async def assign(
    experiment_id: FromPath[str], user_id: FromPath[str], assign_user: NamedDependency[AssignUser]
) -> AssignmentOut:
    return AssignmentOut.of(await assign_user(experiment_id, user_id))


@post(
    "/experiments/{experiment_id:str}/assignment/{user_id:str}",
    dto=AssignmentDTO,
    return_dto=None,
    status_code=200,
    tags=[openapi.ASSIGNMENTS],
    summary="Get the user's variant, judged on the attributes sent, assigning it on the first call.",
    description="As the GET, with the user's `attributes` for the experiment's audience rules (docs/experiments-that-live.md): up to 100, each a string, number, boolean or null.",
    responses=openapi.error_responses(*openapi.AUTHENTICATED, *openapi.WITH_BODY, 404),
    operation_class=openapi.ProblemOperation,
    opt={"scope": ASSIGN},
)
async def assign_with_attributes(
    experiment_id: FromPath[str],
    user_id: FromPath[str],
    data: JSONBody[AssignmentIn],
    assign_user: NamedDependency[AssignUser],
) -> AssignmentOut:
    return AssignmentOut.of(await assign_user(experiment_id, user_id, data.attributes))


@put(
    "/experiments/{experiment_id:str}/assignment/{user_id:str}",
    dto=OverrideDTO,
    return_dto=None,
    tags=[openapi.ASSIGNMENTS],
    summary="Force the user into a variant, for QA.",
    description="In any state; answered before every rule with reason `forced`, never stored as an assignment, so never counted in results. Answers the forced assignment.",
    responses=openapi.error_responses(*openapi.AUTHENTICATED, *openapi.WITH_BODY, 404),
    operation_class=openapi.ProblemOperation,
    opt={"scope": ADMIN},
)
async def force_assignment(
    experiment_id: FromPath[str],
    user_id: FromPath[str],
    data: JSONBody[OverrideIn],
    change_experiment: NamedDependency[ChangeExperiment],
    assign_user: NamedDependency[AssignUser],
    actor: NamedDependency[str],
) -> AssignmentOut:
    await change_experiment.force(experiment_id, user_id, data.variant_id, actor)
    return AssignmentOut.of(await assign_user(experiment_id, user_id))


@delete(
    "/experiments/{experiment_id:str}/assignment/{user_id:str}",
    status_code=204,
    tags=[openapi.ASSIGNMENTS],
    summary="Remove the user's QA override.",
    description="A 204 whether or not the user was forced; the user is then served by the rules again.",
    responses=openapi.error_responses(*openapi.AUTHENTICATED, 404),
    operation_class=openapi.ProblemOperation,
    opt={"scope": ADMIN},
)
async def remove_override(
    experiment_id: FromPath[str],
    user_id: FromPath[str],
    change_experiment: NamedDependency[ChangeExperiment],
    actor: NamedDependency[str],
) -> None:
    await change_experiment.unforce(experiment_id, user_id, actor)


@post(
    "/events",
    dto=EventsDTO,
    return_dto=None,
    status_code=202,
    tags=[openapi.EVENTS],
    summary="Record one event, or a batch of 1 to 10,000 stored all or nothing.",
    description="The 202 comes once the events are durably committed. An event whose "
    "`event_id` is already stored is skipped and counted in `duplicates`. A single event of an "
    "unknown experiment is a 404; in a batch every bad event, unknown experiments included, is "
    "named by its index in one 422 and nothing is stored.",
    response_description="The events are stored.",
    responses=openapi.error_responses(*openapi.AUTHENTICATED, *openapi.WITH_BODY, 404),
    operation_class=openapi.ProblemOperation,
    opt={"scope": INGEST},
)
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


@post(
    "/layers",
    dto=LayerDTO,
    return_dto=None,
    status_code=201,
    response_headers=openapi.location_header(),
    tags=[openapi.LAYERS],
    summary="Create a layer whose experiments never share a user.",
    description="Experiments created in the layer each take a free slice of its 10,000 buckets, hashed on the layer's own seed.",
    responses=openapi.error_responses(*openapi.AUTHENTICATED, *openapi.WITH_BODY, 409),
    operation_class=openapi.ProblemOperation,
    opt={"scope": ADMIN},
)
async def create_layer(data: JSONBody[LayerIn], layers: NamedDependency[LayersAndHoldouts]) -> Response[LayerOut]:
    view = await layers.create_layer(data.name)
    return Response(LayerOut.of(view), status_code=201, headers={"Location": f"/layers/{view.layer.id}"})


@get(
    "/layers",
    tags=[openapi.LAYERS],
    summary="List layers, newest first.",
    description="Each with the slices its live experiments own and the share still free.",
    responses=openapi.error_responses(*openapi.AUTHENTICATED),
    operation_class=openapi.ProblemOperation,
    opt={"scope": READ},
)
async def list_layers(layers: NamedDependency[LayersAndHoldouts]) -> LayerListOut:
    return LayerListOut([LayerOut.of(v) for v in await layers.layers()])


@get(
    "/layers/{layer_id:str}",
    tags=[openapi.LAYERS],
    summary="Get one layer and the slices of its experiments.",
    description="The layer, the slices its live experiments own and the share still free; a 404 when no layer has this id.",
    responses=openapi.error_responses(*openapi.AUTHENTICATED, 404),
    operation_class=openapi.ProblemOperation,
    opt={"scope": READ},
)
async def get_layer(layer_id: FromPath[str], layers: NamedDependency[LayersAndHoldouts]) -> LayerOut:
    return LayerOut.of(await layers.layer(layer_id))


@post(
    "/holdouts",
    dto=HoldoutDTO,
    return_dto=None,
    status_code=201,
    response_headers=openapi.location_header(),
    tags=[openapi.LAYERS],
    summary="Create a holdout kept out of every experiment that opts in.",
    description="`percentage`: 0.01 to 50, in 0.01 steps; users are held out by a hash of the holdout's own seed.",
    responses=openapi.error_responses(*openapi.AUTHENTICATED, *openapi.WITH_BODY, 409),
    operation_class=openapi.ProblemOperation,
    opt={"scope": ADMIN},
)
async def create_holdout(data: JSONBody[HoldoutIn], layers: NamedDependency[LayersAndHoldouts]) -> Response[HoldoutOut]:
    holdout = await layers.create_holdout(data.name, data.percentage)
    return Response(HoldoutOut.of(holdout), status_code=201, headers={"Location": f"/holdouts/{holdout.id}"})


@get(
    "/holdouts",
    tags=[openapi.LAYERS],
    summary="List holdouts, newest first.",
    description="Each with its share and seed.",
    responses=openapi.error_responses(*openapi.AUTHENTICATED),
    operation_class=openapi.ProblemOperation,
    opt={"scope": READ},
)
async def list_holdouts(layers: NamedDependency[LayersAndHoldouts]) -> HoldoutListOut:
    return HoldoutListOut([HoldoutOut.of(h) for h in await layers.holdouts()])


@get(
    "/holdouts/{holdout_id:str}",
    tags=[openapi.LAYERS],
    summary="Get one holdout.",
    description="The holdout's name, share and seed; a 404 when no holdout has this id.",
    responses=openapi.error_responses(*openapi.AUTHENTICATED, 404),
    operation_class=openapi.ProblemOperation,
    opt={"scope": READ},
)
async def get_holdout(holdout_id: FromPath[str], layers: NamedDependency[LayersAndHoldouts]) -> HoldoutOut:
    return HoldoutOut.of(await layers.holdout(holdout_id))


@get(
    "/holdouts/{holdout_id:str}/results",
    tags=[openapi.RESULTS],
    summary="Compare the held-out users with everyone exposed, on one event type.",
    description="Conversion of each group on `event_type` (required), the lift, a two-proportion z-test and a Newcombe interval; counted from raw rows. "
    "Busy or slow results are a 503 with `Retry-After`, as for experiment results.",
    responses=openapi.results_error_responses(*openapi.AUTHENTICATED, 404, 422),
    operation_class=openapi.ProblemOperation,
    opt={"scope": READ},
)
async def holdout_results(
    request: Request,
    holdout_id: FromPath[str],
    event_type: FromQuery[str],
    layers: NamedDependency[LayersAndHoldouts],
) -> HoldoutResultsOut:
    computed = await while_connected(request.receive, layers.holdout_results(holdout_id, event_type))
    return HoldoutResultsOut.of(computed)


@get(
    "/experiments/{experiment_id:str}/results",
    tags=[openapi.RESULTS],
    summary="Compute the experiment's results: counts, conversion and statistical comparisons.",
    description="`start_date` and `end_date` are ISO 8601 dates or datetimes, inclusive (a bare "
    "date is that whole UTC day; anything else is a 422). Each non-control variant is compared "
    "with the control: two-proportion z-test, Newcombe interval, Holm-adjusted p-values, and a "
    "Welch t-test of the value per user. Undefined numbers are null (README.md, The statistics). "
    "Results never pile up on the database: past `RESULTS_MAX_CONCURRENT` being computed on "
    "this server (after a wait of up to `RESULTS_QUEUE_SECONDS`), or when the read runs past "
    "`RESULTS_TIMEOUT_SECONDS`, the answer is a 503 with `Retry-After`; a client that "
    "disconnects cancels its read.",
    responses=openapi.results_error_responses(*openapi.AUTHENTICATED, 404, 422),
    operation_class=openapi.ProblemOperation,
    opt={"scope": READ},
)
async def results(
    request: Request,
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
    computed = await while_connected(
        request.receive,
        compute_results(
            experiment_id,
            start=start,
            end=end,
            event_type=event_type,
            variant_id=variant_id,
            primary_event_type=primary_event_type,
        ),
    )
    return ResultsOut.of(computed)


@post(
    "/keys",
    dto=KeyDTO,
    return_dto=None,
    status_code=201,
    opt={"scope": ADMIN},
    tags=[openapi.KEYS],
    summary="Create an API key with a name, scopes and an optional expiry.",
    description="Scopes: `admin` (everything), `assign` (assignments only: safe in a client "
    "app), `ingest` (events only), `read` (experiments and results). The secret (`key`) is in "
    "this answer only; the service keeps its SHA-256 digest. Unknown fields are a 422.",
    response_headers=openapi.location_header(),
    responses=openapi.error_responses(*openapi.AUTHENTICATED, *openapi.WITH_BODY),
    operation_class=openapi.ProblemOperation,
)
async def create_key(
    data: JSONBody[KeyIn], create_key: NamedDependency[CreateKey], actor: NamedDependency[str]
) -> Response[KeyCreatedOut]:
    body: ClosedBody = data  # type: ignore[assignment]  # KeyDTO decodes into one
    key: KeyIn = body.value
    if body.unknown:
        raise ValidationFailed(body.unknown + create_key.errors(key.name, key.scopes, key.expires_at))
    new = await create_key(name=key.name, scopes=key.scopes, expires_at=key.expires_at, actor=actor)
    return Response(
        KeyCreatedOut.created(new), status_code=201, headers={"Location": f"/keys/{new.key.id}"}
    )


@get(
    "/keys",
    opt={"scope": ADMIN},
    tags=[openapi.KEYS],
    summary="List API keys, newest first.",
    description="A page of keys, revoked ones included, never with their secrets: `limit` 1 to "
    "500 (default 100), `offset` 0 or more.",
    responses=openapi.error_responses(*openapi.AUTHENTICATED, 422),
    operation_class=openapi.ProblemOperation,
)
async def list_keys(
    list_keys: NamedDependency[ListKeys],
    limit: FromQuery[int] = 100,
    offset: FromQuery[int] = 0,
) -> KeyListOut:
    return KeyListOut.of(await list_keys(limit=limit, offset=offset))


@get(
    "/keys/{key_id:str}",
    opt={"scope": ADMIN},
    tags=[openapi.KEYS],
    summary="Get one API key.",
    description="The key as created, with `revoked_at` once revoked; never its secret.",
    responses=openapi.error_responses(*openapi.AUTHENTICATED, 404),
    operation_class=openapi.ProblemOperation,
)
async def get_key(key_id: FromPath[str], get_key: NamedDependency[GetKey]) -> KeyOut:
    return KeyOut.of(await get_key(key_id))


@delete(
    "/keys/{key_id:str}",
    status_code=200,
    opt={"scope": ADMIN},
    tags=[openapi.KEYS],
    summary="Revoke an API key.",
    description="At once on this instance, within `KEY_CACHE_TTL_SECONDS` on every other. "
    "Revoking twice answers the same revoked key.",
    responses=openapi.error_responses(*openapi.AUTHENTICATED, 404),
    operation_class=openapi.ProblemOperation,
)
async def revoke_key(
    key_id: FromPath[str], revoke_key: NamedDependency[RevokeKey], actor: NamedDependency[str]
) -> KeyOut:
    return KeyOut.of(await revoke_key(key_id, actor=actor))


@get(
    "/audit",
    opt={"scope": ADMIN},
    tags=[openapi.AUDIT],
    summary="Read the audit trail of admin actions, newest first.",
    description="Each entry: when, who (the key's name, `API_TOKENS`, or `jwt:<sub>`), the "
    "action (`key.created`, `key.revoked`, `experiment.created`, `experiment.changed`), its "
    "target and what changed. Filters: `action`, `target_id`; `limit` and `offset` as for lists.",
    responses=openapi.error_responses(*openapi.AUTHENTICATED, 422),
    operation_class=openapi.ProblemOperation,
)
async def list_audit(
    list_audit: NamedDependency[ListAudit],
    limit: FromQuery[int] = 100,
    offset: FromQuery[int] = 0,
    action: FromQuery[str | None] = None,
    target_id: FromQuery[str | None] = None,
) -> AuditListOut:
    return AuditListOut.of(
        await list_audit(limit=limit, offset=offset, action=action, target_id=target_id)
    )


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


def create_app(container: Container) -> Litestar:
    settings = container.settings()
    # Only when something is limited are the limiter and the response hook built: with no
    # rates a request pays nothing for limits. Keys and JWTs are limited by default, API_TOKENS
    # only with RATE_LIMIT_API_TOKENS.
    limiter = container.rate_limiter() if settings.rates() else None
    limits = RequestLimits(limiter) if limiter is not None else None
    auth = BearerAuth(
        settings.api_tokens,
        container.key_ring(),
        JwtVerifier.from_settings(settings),
        limits,
        settings.rate_limit_api_tokens,
    )

    def provide(provider: Any) -> Provide:
        return Provide(lambda: provider(), sync_to_thread=False, use_cache=True)

    async def start_adapters() -> None:
        await container.store().start()

    async def close_adapters() -> None:
        await container.store().close()
        await container.cache().close()
        if limiter is not None:
            await limiter.close()

    requests = metrics.RequestMetrics(None, RequestLog(settings.log_format, settings.log_level))
    guarded = [
        create_experiment,
        list_experiments,
        get_experiment,
        change_experiment,
        assign,
        assign_with_attributes,
        force_assignment,
        remove_override,
        record_events,
        results,
        create_layer,
        list_layers,
        get_layer,
        create_holdout,
        list_holdouts,
        get_holdout,
        holdout_results,
        create_key,
        list_keys,
        get_key,
        revoke_key,
        list_audit,
    ]
    for handler in guarded:
        required_scope(handler)
    api = with_complete_options(
        Router(
            path="/",
            route_handlers=guarded,
            before_request=auth.before_request,
            security=[{"bearer": []}],
        )
    )
    app = Litestar(
        route_handlers=[
            health, _metrics_route(container, auth, requests), api, docs_assets_router()
        ],
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
            "create_key": provide(container.create_key),
            "get_key": provide(container.get_key),
            "list_keys": provide(container.list_keys),
            "revoke_key": provide(container.revoke_key),
            "list_audit": provide(container.list_audit),
            "actor": Provide(actor, sync_to_thread=False),
        },
        exception_handlers=metrics.counting_store_errors(EXCEPTION_HANDLERS),
        before_send=[limits.before_send] if limits is not None else [],
        request_max_body_size=MAX_BODY_BYTES,
        on_startup=[start_adapters, requests.start],
        on_shutdown=[close_adapters, requests.stop, metrics.process_ended],
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
        ),
        debug=False,
        # Logging is the server's (entrypoints/telemetry/logs.py, through uvicorn's log_config): Litestar's
        # own default would take over the root logger with a second format and a thread.
        logging_config=None,
    )
    requests.wrap(PathCheck(app.asgi_handler))
    app.asgi_handler = requests
    return app


