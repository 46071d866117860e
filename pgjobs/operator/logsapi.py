"""PgJob logs for `kubectl pgjobs logs`, served by the operator as an aggregated API.

    GET /apis/logs.pgjobs.dev/v1alpha1/namespaces/NS/pgjoblogs/NAME[?attempt=N][&after=A.S]

answers a `PgJobLogs` object: the lines the PgJob's task logged (`pgjobs.store.job_logs`), in
order, at most `job_logs.PAGE_LINES` of them after the position `after`, with `next` (the
position to ask after next time), `more` (a full page: ask again at once) and `finished` (the
job is finished and this is its last page). A PgJob whose row the operator has not written yet
has no lines and is not finished; one that does not exist is a 404. It is served by the
same HTTPS server as the external metrics API (`externalmetrics.serve`): the API server's
aggregation layer proxies it there (an APIService the chart creates) after it has authenticated
the caller and authorised `get` on `pgjoblogs`; this server accepts only the aggregator's
front-proxy client certificate, so the caller's name and groups in X-Remote-User and
X-Remote-Group are the API server's word. Before answering, it asks the API server whether that
caller may `get` the PgJob itself (a SubjectAccessReview): whoever may read a PgJob may read its
logs, and nobody else, so no database credentials leave the operator.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from aiohttp import web

from pgjobs.operator import aggregation, kube
from pgjobs.operator.database import Database
from pgjobs.states import JobState
from pgjobs.store import job_logs

logger = logging.getLogger(__name__)

GROUP = "logs.pgjobs.dev"
VERSION = "v1alpha1"
RESOURCE = "pgjoblogs"
KIND = "PgJobLogs"
#: What a caller must be allowed to do on the PgJob to read its logs.
GATE = {"verb": "get", "group": "pgjobs.dev", "resource": "pgjobs"}
_EXTRA_PREFIX = "X-Remote-Extra-"
REVIEWS_PATH = "/apis/authorization.k8s.io/v1/subjectaccessreviews"


def review(headers: Any, namespace: str, name: str) -> kube.Json:
    """The SubjectAccessReview asking whether the forwarded caller may get the PgJob."""
    extra: dict[str, list[str]] = {}
    for header, value in headers.items():
        if header.lower().startswith(_EXTRA_PREFIX.lower()):
            extra.setdefault(header[len(_EXTRA_PREFIX) :].lower(), []).append(value)
    return {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": headers.get("X-Remote-User", ""),
            "groups": headers.getall("X-Remote-Group", []),
            "extra": extra,
            "resourceAttributes": {"namespace": namespace, "name": name, **GATE},
        },
    }


def page(
    namespace: str, name: str, job: job_logs.JobRef | None, lines: list[job_logs.LogLine], after: str
) -> kube.Json:
    """The PgJobLogs answer: `next` is the position to read after next time. A PgJob whose row
    the operator has not written yet (`job` None) is Pending, with no lines."""
    return {
        "kind": KIND,
        "apiVersion": f"{GROUP}/{VERSION}",
        "metadata": {"namespace": namespace, "name": name},
        "jobId": job and job.id,
        "phase": job.state.phase if job else JobState.PENDING.phase,
        # A full page: more lines may follow at once (ask again after `next`).
        "more": len(lines) == job_logs.PAGE_LINES,
        "finished": job is not None and job.state.is_finished and len(lines) < job_logs.PAGE_LINES,
        "next": str(lines[-1].position) if lines else after,
        "lines": [
            {
                "attempt": line.attempt,
                "seq": line.seq,
                "time": line.at.isoformat(),
                "level": line.level,
                "message": line.message,
            }
            for line in lines
        ],
    }


def add_routes(app: web.Application, api: kube.KubeApi, database: Database) -> None:
    base = f"/apis/{GROUP}/{VERSION}"

    async def get_discovery(request: web.Request) -> web.Response:
        return web.json_response(aggregation.discovery(GROUP, VERSION, RESOURCE, KIND))

    async def get_logs(request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        try:
            attempt = int(request.query["attempt"]) if "attempt" in request.query else None
            after = job_logs.Position.parse(request.query.get("after", str(job_logs.START)))
        except ValueError as error:
            message = f"attempt is a number and after is ATTEMPT.SEQ: {error}"
            return aggregation.status(400, message, "BadRequest")
        refusal = await _refusal(api, request, namespace, name)
        if refusal is not None:
            return refusal
        try:
            job, lines = await _read(database, namespace, name, attempt, after)
        except psycopg.Error as error:  # a pool timeout is one too
            logger.warning("could not read the logs of %s/%s: %s", namespace, name, error)
            return aggregation.status(503, "the operator cannot reach its database", "ServiceUnavailable")
        if job is None and await api.get_pgjob(namespace, name) is None:
            return aggregation.status(404, f'pgjobs.pgjobs.dev "{name}" not found', "NotFound")
        return web.json_response(page(namespace, name, job, lines, str(after)))

    app.router.add_get(base, get_discovery)
    app.router.add_get(f"{base}/namespaces/{{namespace}}/{RESOURCE}/{{name}}", get_logs)


async def _read(
    database: Database, namespace: str, name: str, attempt: int | None, after: job_logs.Position
) -> tuple[job_logs.JobRef | None, list[job_logs.LogLine]]:
    """The PgJob's job (None: no row) and its lines after `after`."""
    async with database.connection() as conn:
        job = await job_logs.find_resource(conn, namespace, name)
        lines = [] if job is None else await job_logs.read(conn, job.id, attempt, after)
    return job, lines


async def _refusal(api: kube.KubeApi, request: web.Request, namespace: str, name: str) -> web.Response | None:
    """A 403 unless the forwarded caller may get the PgJob (a 503 when the API server cannot say)."""
    user = request.headers.get("X-Remote-User", "")
    try:
        answer = await api.request(
            "POST",
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            review(request.headers, namespace, name),
        )
    except kube.KubeError as error:
        logger.warning(
            "could not check whether %r may read the logs of %s/%s: %s", user, namespace, name, error
        )
        message = "the operator could not check the caller's access to the PgJob"
        return aggregation.status(503, message, "ServiceUnavailable")
    if (answer.get("status") or {}).get("allowed"):
        return None
    message = f'user "{user}" cannot get pgjobs "{name}" in namespace "{namespace}", so may not read its logs'
    return aggregation.status(403, message, "Forbidden")
