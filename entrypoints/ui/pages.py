"""The results pages for people under /ui: sign-in, the list of experiments, each one's results.

Server-rendered HTML with no script at all, so the strict Content-Security-Policy below holds;
the intervals are inline SVG drawn here, text a test and a screen reader can read. A page acts
as the API key the person signed in with (entrypoints/ui/session.py): the same scopes, rate
limits and audit trail as the bearer API, which stays as it is.
"""

from __future__ import annotations

import hashlib
import urllib.parse
from http import HTTPStatus
from pathlib import Path
from typing import Any

import jinja2
import msgspec
from litestar import Controller, Request, Response, Router, get, post
from litestar.datastructures import CacheControlHeader, Cookie, ResponseHeader
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect
from litestar.static_files import create_static_files_router

from application.experiments import ChangeExperiment, GetExperiment, ListExperiments
from application.ports import Clock
from application.results import ComputeBreakdown, ComputeResults, ComputeTimeSeries
from domain.analysis import AnalysisOverrides, Method
from domain.breakdown import Breakdown
from domain.errors import FieldError, Overloaded, ValidationFailed
from domain.experiment import Experiment
from domain.keys import ADMIN, READ, Principal
from domain.lifecycle import MOVES, Status
from domain.results import ExperimentResults
from entrypoints.http.disconnects import CLIENT_CLOSED_REQUEST, while_connected
from entrypoints.http.problems import EXCEPTION_HANDLERS, problem_for
from entrypoints.http.resources.results import ResultsOut, read_results
from entrypoints.http.security.bearer import PRINCIPAL, PUBLIC, BearerAuth
from entrypoints.ui import views
from entrypoints.ui.session import (
    COOKIE_PATH,
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    Sealer,
    Session,
    same_token,
)

HTML = "text/html"  # Litestar adds "; charset=utf-8" to every text/ type
SESSION = "ui_session"
"""Where the pages' hook leaves the session, in ``request.scope["state"]``."""

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
PAGE_HEADERS = [
    ResponseHeader(name="Content-Security-Policy", value=CONTENT_SECURITY_POLICY),
    ResponseHeader(name="X-Content-Type-Options", value="nosniff"),
    ResponseHeader(name="Referrer-Policy", value="no-referrer"),
    ResponseHeader(name="Cache-Control", value="no-store"),
]
LIST_PAGE_SIZE = 20
_STATIC = Path(__file__).parent / "static"
_TEMPLATES = Path(__file__).parent / "templates"
_A_YEAR = 365 * 24 * 3600

ACTIONS = {
    Status.RUNNING: ("Resume", "New users are assigned again and assigned users get their variant back."),
    Status.PAUSED: (
        "Pause",
        "Everyone gets the control while it is paused; assignments are kept and come back on resume.",
    ),
    Status.STOPPED: (
        "Stop",
        "Everyone gets the variant chosen below from now on; results end at this moment. This cannot be undone.",
    ),
}


class Pages:
    """What every page shares: the templates, the session's seals, the clock and the bearer
    check the API uses."""

    def __init__(self, auth: BearerAuth, sealer: Sealer, clock: Clock) -> None:
        self.auth, self.sealer, self.clock = auth, sealer, clock
        digest = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(_STATIC.iterdir()))).hexdigest()[:12]
        # The files' digest is part of their path: a new stylesheet is a new URL, cached for good.
        self.assets = f"/ui/assets/{digest}"
        self._templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(_TEMPLATES),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._templates.filters.update(
            percent=views.percent,
            signed_percent=views.signed_percent,
            signed_points=views.signed_points,
            number=views.number,
            p_value=views.p_value,
            raw=lambda v: "" if v is None else repr(v),
        )

    def __deepcopy__(self, memo: dict[int, object]) -> Pages:
        return self  # Litestar copies a router's hooks; the templates are built once

    def render(self, request: Request, template: str, status_code: int = 200, **context: Any) -> Response[str]:
        state = request.scope["state"]
        session: Session | None = state.get(SESSION)
        # The session's token on its pages; the sign-in form brings its own.
        csrf = session.csrf if session is not None else context.pop("csrf", "")
        principal = state.get(PRINCIPAL) if session is not None else None
        body = self._templates.get_template(template).render(
            assets=self.assets, principal=principal, csrf=csrf, **context
        )
        return Response(body, status_code=status_code, media_type=HTML)

    async def before_request(self, request: Request) -> Response[Any] | None:
        """The signed-in person's key checked as the bearer API checks it, for the scope the
        page needs; no session, or a key no longer valid, goes to the sign-in form."""
        session = self.sealer.open_session(request.cookies.get(SESSION_COOKIE), self.clock.now())
        if session is None:
            return _to_sign_in()
        needed = request.route_handler.opt.get("scope")
        try:
            principal = await self.auth.authenticate(b"Bearer " + session.key.encode(), needed, request)
        except NotAuthorizedException:
            return _to_sign_in()
        request.scope["state"][PRINCIPAL] = principal
        request.scope["state"][SESSION] = session
        return None

    async def checked_form(self, request: Request) -> dict[str, str]:
        """A posted form whose CSRF token is the session's; a 403 otherwise."""
        form = await _form(request)
        session: Session = request.scope["state"][SESSION]
        if not same_token(form.get("csrf"), session.csrf):
            raise PermissionDeniedException(detail=_STALE_FORM)
        return form

    def error_page(self, request: Request, exc: Exception) -> Response[Any]:
        """Any error a page meets, as the API's table maps it, shown as a page."""
        answer = problem_for(request, exc)
        if answer.status_code == CLIENT_CLOSED_REQUEST:
            return answer
        problem, status = answer.content, answer.status_code or HTTPStatus.INTERNAL_SERVER_ERROR
        page = self.render(
            request,
            "error.html",
            status,
            status=status,
            title=HTTPStatus(status).phrase,
            detail=problem.detail,
            errors=problem.errors or [],
        )
        page.headers.update({k: v for k, v in answer.headers.items() if k.lower() == "retry-after"})
        return page


_STALE_FORM = "this form is out of date or did not come from this service: reload the page and try again"


def _to_sign_in() -> Response[Any]:
    redirect: Response[Any] = Redirect("/ui/sign-in", status_code=303)
    redirect.set_cookie(Cookie(key=SESSION_COOKIE, value="", path=COOKIE_PATH, max_age=0, httponly=True))
    return redirect


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _cookie(request: Request, key: str, value: str, max_age: int) -> Cookie:
    return Cookie(
        key=key,
        value=value,
        path=COOKIE_PATH,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


class SignIn(Controller):
    """The form that takes an API key, open to anyone."""

    path = "/ui"
    opt = {"scope": PUBLIC, "rate_limited": False}
    include_in_schema = False

    @get("/")
    async def home(self) -> Redirect:
        return Redirect("/ui/experiments", status_code=303)

    @get("/sign-in")
    async def sign_in_form(self, request: Request, pages: NamedDependency[Pages]) -> Response[str]:
        return _sign_in_page(request, pages)

    @post("/sign-in", status_code=303)
    async def sign_in(self, request: Request, pages: NamedDependency[Pages]) -> Response[Any]:
        """A key with the read scope starts a session; anything else shows the form again,
        saying why, without the key."""
        form = await _form(request)
        now = pages.clock.now()
        expected = pages.sealer.sign_in_csrf(request.cookies.get(SIGN_IN_COOKIE), now)
        if expected is None or not same_token(form.get("csrf"), expected):
            return _sign_in_page(request, pages, _STALE_FORM, 403)
        key = form.get("api_key", "").strip()
        try:
            if not key or len(key) > 4096 or not key.isascii():
                raise NotAuthorizedException()
            await pages.auth.authenticate(b"Bearer " + key.encode(), READ, request)
        except NotAuthorizedException:
            return _sign_in_page(request, pages, "That key is not valid: it is unknown, revoked or expired.", 401)
        except PermissionDeniedException:
            return _sign_in_page(request, pages, "That key lacks the read scope these pages need.", 403)
        cookie, _ = pages.sealer.session(key, now)
        answer: Response[Any] = Redirect("/ui/experiments", status_code=303)
        answer.set_cookie(_cookie(request, SESSION_COOKIE, cookie, int(pages.sealer.lifetime.total_seconds())))
        answer.set_cookie(Cookie(key=SIGN_IN_COOKIE, value="", path=COOKIE_PATH, max_age=0, httponly=True))
        return answer


def _sign_in_page(request: Request, pages: Pages, message: str = "", status: int = 200) -> Response[str]:
    cookie, csrf = pages.sealer.sign_in_token(pages.clock.now())
    page = pages.render(request, "sign_in.html", status, message=message, csrf=csrf)
    page.set_cookie(_cookie(request, SIGN_IN_COOKIE, cookie, 3600))
    return page


def _filters(
    start_date: FromQuery[str | None] = None, end_date: FromQuery[str | None] = None, method: FromQuery[str | None] = None
) -> dict[str, str]:
    """The filters of an experiment's page and its downloads; an empty field of the form is
    no filter."""
    given = {"start_date": start_date, "end_date": end_date, "method": method}
    return {k: v for k, v in given.items() if v}


class ResultsPages(Controller):
    """The pages behind a session: what the read scope may see, and the admin's actions."""

    path = "/ui"
    opt = {"scope": READ}
    include_in_schema = False
    dependencies = {"filters": Provide(_filters, sync_to_thread=False)}

    @post("/sign-out", status_code=303)
    async def sign_out(self, request: Request, pages: NamedDependency[Pages]) -> Response[Any]:
        await pages.checked_form(request)
        return _to_sign_in()

    @get("/experiments")
    async def experiments(
        self,
        request: Request,
        pages: NamedDependency[Pages],
        list_experiments: NamedDependency[ListExperiments],
        compute_results: NamedDependency[ComputeResults],
        offset: FromQuery[int] = 0,
    ) -> Response[str]:
        """A page of experiments, newest first, each with its users, primary lifts and health
        read from its results (one read each, as the API would)."""
        page = await list_experiments(limit=LIST_PAGE_SIZE, offset=offset)
        rows = [await _list_row(e, compute_results) for e in page.items]
        return pages.render(
            request, "experiments.html", rows=rows, total=page.total, offset=offset, limit=LIST_PAGE_SIZE
        )

    @get("/experiments/{experiment_id:str}")
    async def experiment(
        self,
        request: Request,
        experiment_id: FromPath[str],
        pages: NamedDependency[Pages],
        compute_results: NamedDependency[ComputeResults],
        filters: NamedDependency[dict[str, str]],
    ) -> Response[str]:
        results = await _results(request, compute_results, experiment_id, filters)
        principal: Principal = request.scope["state"][PRINCIPAL]
        experiment = results.experiment
        actions = (
            [(s.value, _action_words(experiment, s)) for s in ACTIONS if s in MOVES[experiment.status]]
            if principal.allows(ADMIN)
            else []
        )
        return pages.render(
            request,
            "experiment.html",
            experiment=experiment,
            results=results,
            view=views.results_view(results),
            query=filters,
            query_string=_query_string(filters),
            actions=actions,
            width=views.AXIS_WIDTH,
        )

    @get("/experiments/{experiment_id:str}/over-time")
    async def over_time(
        self,
        request: Request,
        experiment_id: FromPath[str],
        pages: NamedDependency[Pages],
        compute_time_series: NamedDependency[ComputeTimeSeries],
        period: FromQuery[str] = "day",
        method: FromQuery[str] = "fixed",
    ) -> Response[str]:
        """The cumulative rate and the difference from the control with its band, per day or
        hour, from ``GET /experiments/{id}/results/timeseries``; and the same as a table."""
        if method not in ("fixed", "sequential"):
            raise ValidationFailed([FieldError("method", "must be fixed or sequential")])
        series = await while_connected(request.receive, compute_time_series(experiment_id, period or "day"))
        return pages.render(
            request,
            "over_time.html",
            experiment=series.experiment,
            series=series,
            method=method,
            charts=views.over_time_charts(series, Method(method)),
        )

    @get("/experiments/{experiment_id:str}/breakdown/{dimension:str}")
    async def breakdown(
        self,
        request: Request,
        experiment_id: FromPath[str],
        dimension: FromPath[str],
        pages: NamedDependency[Pages],
        compute_breakdown: NamedDependency[ComputeBreakdown],
        method: FromQuery[str | None] = None,
    ) -> Response[str]:
        """The results split by one of the experiment's dimensions, from
        ``GET /experiments/{id}/results/breakdown``: a table per slice, one axis for all."""
        found = await _breakdown(request, compute_breakdown, experiment_id, dimension, method)
        query = {"method": method} if method else {}
        return pages.render(
            request,
            "breakdown.html",
            experiment=found.experiment,
            view=views.breakdown_view(found),
            query_string=_query_string(query),
            width=views.AXIS_WIDTH,
        )

    @get("/experiments/{experiment_id:str}/breakdown/{dimension:str}/breakdown.csv")
    async def breakdown_csv(
        self,
        request: Request,
        experiment_id: FromPath[str],
        dimension: FromPath[str],
        compute_breakdown: NamedDependency[ComputeBreakdown],
        method: FromQuery[str | None] = None,
    ) -> Response[str]:
        """Every slice's table as the page shows it."""
        found = await _breakdown(request, compute_breakdown, experiment_id, dimension, method)
        return Response(
            views.breakdown_csv(views.breakdown_view(found)),
            media_type="text/csv",
            headers={"Content-Disposition": _attachment(found.experiment, "csv", f"by-{dimension}")},
        )

    @get("/experiments/{experiment_id:str}/results.csv")
    async def results_csv(
        self,
        request: Request,
        experiment_id: FromPath[str],
        compute_results: NamedDependency[ComputeResults],
        filters: NamedDependency[dict[str, str]],
    ) -> Response[str]:
        """The variant table as the page shows it."""
        results = await _results(request, compute_results, experiment_id, filters)
        return Response(
            views.results_csv(views.results_view(results)),
            media_type="text/csv",
            headers={"Content-Disposition": _attachment(results.experiment, "csv")},
        )

    @get("/experiments/{experiment_id:str}/results.json")
    async def results_json(
        self,
        request: Request,
        experiment_id: FromPath[str],
        compute_results: NamedDependency[ComputeResults],
        filters: NamedDependency[dict[str, str]],
    ) -> Response[bytes]:
        """The results the page shows, as the API's results call answers them."""
        results = await _results(request, compute_results, experiment_id, filters)
        return Response(
            msgspec.json.encode(ResultsOut.of(results)),
            media_type="application/json",
            headers={"Content-Disposition": _attachment(results.experiment, "json")},
        )

    @post("/experiments/{experiment_id:str}/status", status_code=303, opt={"scope": ADMIN})
    async def change_status(
        self,
        request: Request,
        experiment_id: FromPath[str],
        pages: NamedDependency[Pages],
        get_experiment: NamedDependency[GetExperiment],
        change_experiment: NamedDependency[ChangeExperiment],
        actor: NamedDependency[str],
    ) -> Response[Any]:
        """Pause, resume or stop: first a page that asks to confirm, then the change, made and
        audited as ``PATCH /experiments/{id}`` makes it, by the signed-in key's name."""
        form = await pages.checked_form(request)
        try:
            status = Status(form.get("status", ""))
        except ValueError:
            status = None
        if status not in ACTIONS:
            raise ValidationFailed([FieldError("status", "must be running, paused or stopped")])
        experiment = await get_experiment(experiment_id)
        if form.get("confirm") != "yes":
            words = _action_words(experiment, status)
            return pages.render(
                request,
                "confirm.html",
                experiment=experiment,
                status=status.value,
                words=words,
                consequence=ACTIONS[status][1],
            )
        changes: dict[str, Any] = {"status": status.value}
        if status is Status.STOPPED and form.get("winner_variant_id"):
            changes["winner_variant_id"] = form["winner_variant_id"]
        await change_experiment(experiment_id, actor, **changes)
        return Redirect(f"/ui/experiments/{urllib.parse.quote(experiment_id, safe='')}", status_code=303)


def _action_words(experiment: Experiment, status: Status) -> str:
    if status is Status.RUNNING and experiment.status is Status.DRAFT:
        return "Start"
    return ACTIONS[status][0]


def _query_string(filters: dict[str, str]) -> str:
    return "?" + urllib.parse.urlencode(filters) if filters else ""


async def _results(
    request: Request, compute_results: ComputeResults, experiment_id: str, filters: dict[str, str]
) -> ExperimentResults:
    return await read_results(
        request,
        compute_results,
        experiment_id,
        start_date=filters.get("start_date"),
        end_date=filters.get("end_date"),
        overrides=AnalysisOverrides(method=filters.get("method")),
    )


async def _breakdown(
    request: Request, compute_breakdown: ComputeBreakdown, experiment_id: str, dimension: str, method: str | None
) -> Breakdown:
    return await while_connected(
        request.receive, compute_breakdown(experiment_id, dimension, overrides=AnalysisOverrides(method=method))
    )


async def _list_row(experiment: Experiment, compute_results: ComputeResults) -> views.ListRow:
    if experiment.status is Status.DRAFT:
        return views.list_row(experiment, None)
    try:
        results = await compute_results(experiment.id)
    except Overloaded:
        return views.list_row(experiment, None, busy=True)
    return views.list_row(experiment, results)


def _attachment(experiment: Experiment, extension: str, what: str = "results") -> str:
    """A file name of the experiment's name (and a dimension's, free text both): ASCII in
    ``filename``, since a header is Latin-1 at most; with any other letter, the name as written
    in ``filename*`` too (RFC 6266), which browsers prefer."""

    def kept(ascii_only: bool) -> str:
        return "".join(
            c if (c.isalnum() and (c.isascii() or not ascii_only)) or c in "-_" else "-"
            for c in f"{experiment.name}-{what}"
        )[:120]

    plain, written = kept(ascii_only=True), kept(ascii_only=False)
    header = f'attachment; filename="{plain}.{extension}"'
    if written != plain:
        header += f"; filename*=UTF-8''{urllib.parse.quote(f'{written}.{extension}', safe='')}"
    return header


def pages_router(auth: BearerAuth, sealer: Sealer, clock: Clock) -> Router:
    """The pages, their stylesheet and their error pages, under /ui."""
    pages = Pages(auth, sealer, clock)
    assets = create_static_files_router(
        path=pages.assets,
        directories=[_STATIC],
        name="ui-assets",
        cache_control=CacheControlHeader(max_age=_A_YEAR, public=True, immutable=True),
        include_in_schema=False,
        opt={"scope": PUBLIC},
    )
    guarded = Router(
        path="/", route_handlers=[ResultsPages], before_request=pages.before_request, response_headers=PAGE_HEADERS
    )
    open_pages = Router(path="/", route_handlers=[SignIn], response_headers=PAGE_HEADERS)
    return Router(
        path="/",
        route_handlers=[open_pages, guarded, assets],
        dependencies={"pages": Provide(lambda: pages, sync_to_thread=False)},
        # Every type the API's table names, or its own, more precise, entry would answer JSON.
        exception_handlers=dict.fromkeys(EXCEPTION_HANDLERS, pages.error_page),
        include_in_schema=False,
    )


PAGE_CONTROLLERS = (SignIn, ResultsPages)
"""Their handlers name use cases the container provides (the app's dependency table)."""

