"""The console's web application: pages, the live fragments htmx polls, actions, error pages.

Every page is rendered on the server. A page's live part is re-fetched by htmx every
`refresh_seconds` (the same URL with the HX-Request header answers only that part), so a wall
screen stays current without reloading. Every POST carries the CSRF token (pgjobs.console.csrf).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from pgjobs import build
from pgjobs.console import actions, csrf, filters, formatting, kube, logs
from pgjobs.console.settings import ConsoleSettings
from pgjobs.states import JobState
from pgjobs.store import connecting, jobs, queues, workers
from pgjobs.store.records import Job

logger = logging.getLogger(__name__)

#: Security headers of every answer: no framing (clickjacking), scripts and styles only from the
#: console itself, no referrer leaving it.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def _package_dir(name: str) -> str:
    return str(resources.files("pgjobs.console").joinpath(name))


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=_package_dir("templates"))
    env = templates.env
    env.filters |= {
        "duration": formatting.duration,
        "stamp": formatting.stamp,
        "pretty_json": formatting.pretty_json,
        "priority": formatting.priority,
    }
    env.globals |= {"ago": formatting.ago, "between": formatting.between, "version": build.VERSION}
    return templates


class Console:
    """The application's state: settings, the database pool, Kubernetes access, templates."""

    def __init__(self, settings: ConsoleSettings, database: connecting.DatabaseSettings) -> None:
        self.settings = settings
        self.pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            database.conninfo(),
            kwargs={"autocommit": True, "row_factory": dict_row, "application_name": "pgjobs-console"},
            min_size=1,
            max_size=4,
            check=AsyncConnectionPool.check_connection,
            open=False,
        )
        self.kube: kube.Kubernetes | None = None
        self.templates = _templates()

    def render(self, request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
        """A page, or only its live part (`_name`) when htmx asks for it."""
        if request.headers.get("HX-Request") and not name.startswith("error"):
            name = f"_{name}"
        context |= {
            "now": datetime.datetime.now(datetime.UTC),
            "csrf_token": request.state.csrf_token,
            "refresh": self.settings.refresh_seconds,
            "notice": request.query_params.get("notice", "")[: filters.MAX_VALUE],
        }
        return self.templates.TemplateResponse(request, name, context, status_code=status_code)


def console_of(request: Request) -> Console:
    found: Console = request.app.state.console
    return found


# -- pages ------------------------------------------------------------------------------


async def queues_page(request: Request) -> Response:
    console = console_of(request)
    async with console.pool.connection() as conn:
        stats = await queues.list_stats(conn)
    return console.render(request, "queues.html", queues=stats, page="queues")


async def jobs_page(request: Request) -> Response:
    console = console_of(request)
    try:
        job_filter, cursor = filters.parse(request.query_params)
    except filters.BadFilter as error:
        raise HTTPException(400, str(error)) from None
    params = job_filter.parameters(datetime.datetime.now(datetime.UTC))
    params |= {"cursor": cursor.before, "limit": filters.PAGE_SIZE + 1}
    async with console.pool.connection() as conn:
        rows = await jobs.page(conn, params)
    more = len(rows) > filters.PAGE_SIZE
    rows = rows[: filters.PAGE_SIZE]
    return console.render(
        request,
        "jobs.html",
        page="jobs",
        jobs=rows,
        filter=job_filter,
        phases=[state.phase for state in JobState],
        within=list(filters.WITHIN),
        older=filters.link(job_filter, filters.Cursor(before=rows[-1]["id"])) if more else "",
        first=filters.link(job_filter),
        self_link=filters.link(job_filter, cursor),
    )


async def _job_or_404(conn: Any, text: str) -> Job:
    job_id = filters.job_id(text)
    job = await jobs.get(conn, job_id) if job_id is not None else None
    if job is None:
        raise HTTPException(404, f"there is no job {text[:40]!r}")
    return job


async def job_page(request: Request) -> Response:
    console = console_of(request)
    async with console.pool.connection() as conn:
        job = await _job_or_404(conn, request.path_params["job_id"])
        log_lines = await logs.job_log_lines(conn, job.id, job.attempt)
    return console.render(
        request, "job.html", page="jobs", job=job, log_lines=log_lines, shown_lines=logs.SHOWN_LINES
    )


async def workers_page(request: Request) -> Response:
    console = console_of(request)
    async with console.pool.connection() as conn:
        alive = await workers.list_workers(conn)
        running = await jobs.list_running(conn)
    by_worker: dict[Any, list[Any]] = {}
    for row in running:
        by_worker.setdefault(row["worker_id"], []).append(row)
    return console.render(request, "workers.html", page="workers", workers=alive, running=by_worker)


async def health(request: Request) -> Response:
    return Response("ok\n", media_type="text/plain")


# -- actions ------------------------------------------------------------------------------


async def _checked_form(request: Request) -> Any:
    """The POST's form, once its Origin and CSRF token have been checked (403 otherwise)."""
    hosts = {request.headers.get("host", ""), request.headers.get("x-forwarded-host", "")}
    if not csrf.origin_allowed(request.headers.get("origin"), hosts):
        raise HTTPException(403, "this form was sent from another site")
    form = await request.form(max_files=0, max_fields=32, max_part_size=4096)
    field = form.get(csrf.FIELD)
    if not csrf.token_matches(request.cookies.get(csrf.COOKIE), field if isinstance(field, str) else None):
        raise HTTPException(403, "the form's CSRF token is missing or stale: reload the page and try again")
    return form


def _back(path: str, notice: str) -> Response:
    separator = "&" if "?" in path else "?"
    return RedirectResponse(f"{path}{separator}notice={_quote(notice)}", status_code=303)


def _quote(text: str) -> str:
    return urllib.parse.quote(text[: filters.MAX_VALUE], safe="")


async def job_action(request: Request) -> Response:
    console = console_of(request)
    verb = request.path_params["verb"]
    if verb not in actions.VERBS:
        raise HTTPException(404, f"there is no action {verb[:40]!r}")
    await _checked_form(request)
    async with console.pool.connection() as conn:
        job = await _job_or_404(conn, request.path_params["job_id"])
        target = actions.Target(
            job.id, job.state, job.resource_namespace, job.resource_name, job.resource_uid
        )
        try:
            notice = await actions.run(verb, target, conn, console.kube)
        except actions.ActionError as error:
            notice = f"error: {error}"
    return _back(
        "/jobs" if verb == "delete" and not notice.startswith("error") else f"/jobs/{job.id}", notice
    )


async def restart_failed(request: Request) -> Response:
    console = console_of(request)
    form = await _checked_form(request)
    try:
        job_filter, _ = filters.parse({key: str(form.get(key) or "") for key in filters.KEYS})
    except filters.BadFilter as error:
        raise HTTPException(400, str(error)) from None
    params = job_filter.parameters(datetime.datetime.now(datetime.UTC))
    async with console.pool.connection() as conn:
        restarted, problems = await actions.restart_failed(conn, console.kube, params)
    notice = f"restarted {restarted} Failed job(s)"
    if problems:
        notice += f"; {len(problems)} not: {problems[0]}"
    return _back(filters.link(job_filter), notice)


# -- the application ----------------------------------------------------------------------


class SessionAndHeaders(BaseHTTPMiddleware):
    """Give every browser session its CSRF token cookie, and every answer the security headers."""

    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        token = request.cookies.get(csrf.COOKIE) or ""
        fresh = not token or len(token) > 128
        request.state.csrf_token = csrf.new_token() if fresh else token
        response = await call_next(request)
        if fresh:
            response.set_cookie(
                csrf.COOKIE, request.state.csrf_token, httponly=True, samesite="strict", path="/"
            )
        response.headers.update(SECURITY_HEADERS)
        return response


async def error_page(request: Request, exc: Exception) -> Response:
    """Every refusal as a page: 400, 403, 404, 405; 503 when PostgreSQL is away."""
    console = console_of(request)
    if isinstance(exc, HTTPException):
        status, reason = exc.status_code, str(exc.detail)
    elif isinstance(exc, psycopg.OperationalError | psycopg.errors.QueryCanceled):
        logger.warning("Database unavailable: %s", exc)
        status, reason = 503, "PostgreSQL cannot be reached right now; the page retries"
    else:
        raise exc
    if not hasattr(request.state, "csrf_token"):
        request.state.csrf_token = ""
    return console.render(request, "error.html", status_code=status, status=status, reason=reason, page="")


def create_app(settings: ConsoleSettings, database: connecting.DatabaseSettings) -> Starlette:
    console = Console(settings, database)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        console.kube = kube.connect(settings)
        await console.pool.open(wait=False)
        try:
            yield
        finally:
            await console.pool.close()

    routes = [
        Route("/", queues_page),
        Route("/queues", queues_page),
        Route("/jobs", jobs_page),
        Route("/jobs/restart-failed", restart_failed, methods=["POST"]),
        Route("/jobs/{job_id}", job_page),
        Route("/jobs/{job_id}/{verb}", job_action, methods=["POST"]),
        Route("/workers", workers_page),
        Route("/healthz", health),
        Mount("/static", StaticFiles(directory=_package_dir("static")), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(SessionAndHeaders)],
        exception_handlers={
            HTTPException: error_page,
            psycopg.OperationalError: error_page,
            psycopg.errors.QueryCanceled: error_page,
        },
        lifespan=lifespan,
    )
    app.state.console = console
    return app
