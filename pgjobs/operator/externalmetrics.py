"""The worker HPA's metric, served by the operator as the Kubernetes external metrics API.

An HPA scales the worker Deployment on `pgjobs_backlog`: per queue, the jobs that want a worker
now (Pending and due, or Running), counted in PostgreSQL when asked (cached for a second). The
kube-apiserver's aggregation layer proxies `external.metrics.k8s.io/v1beta1` to this server
(an APIService the chart creates), after it has authenticated and authorised the caller; this
server accepts only connections that present the aggregator's front-proxy client certificate,
checked against the CA the API server publishes in kube-system's
`extension-apiserver-authentication` ConfigMap. No Prometheus or adapter is needed, and the
number the HPA sees is the queue's, not a scrape's from up to a minute ago.

The same server serves the PgJob logs API (`pgjobs.operator.logsapi`), behind its own APIService.

Namespaces in the request path are ignored: a queue is shared by every namespace's PgJobs (and
jobs enqueued without Kubernetes). The label selector picks queues: `queue=NAME`,
`queue in (A,B)`, or none for all queues summed.
"""

from __future__ import annotations

import datetime
import logging
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from pgjobs.operator import aggregation, kube, logsapi
from pgjobs.operator.database import Database
from pgjobs.store import jobs

logger = logging.getLogger(__name__)

GROUP = "external.metrics.k8s.io"
VERSION = "v1beta1"
METRIC = "pgjobs_backlog"
#: The HPA controller asks every 15 s per HPA; several HPAs or replicas share one count.
CACHE_SECONDS = 1.0
AUTHENTICATION_CONFIGMAP = "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication"
_SELECTOR_EQUALS = re.compile(r"^\s*queue\s*==?\s*([A-Za-z0-9_.-]+)\s*$")
_SELECTOR_IN = re.compile(r"^\s*queue\s+in\s+\(([A-Za-z0-9_.,\s-]*)\)\s*$")


class SelectorError(ValueError):
    """A label selector this metric cannot answer."""


def queues_selected(selector: str) -> set[str] | None:
    """The queues a label selector picks; None for all."""
    if not selector.strip():
        return None
    if match := _SELECTOR_EQUALS.match(selector):
        return {match[1]}
    if match := _SELECTOR_IN.match(selector):
        return {q.strip() for q in match[1].split(",") if q.strip()}
    raise SelectorError(f"unsupported label selector {selector!r}: use queue=NAME or queue in (A,B)")


class Backlog:
    """The per-queue counts, read from PostgreSQL at most once per CACHE_SECONDS."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._counts: dict[str, int] = {}
        self._read_at = -CACHE_SECONDS

    async def counts(self) -> dict[str, int]:
        if time.monotonic() - self._read_at >= CACHE_SECONDS:
            async with self._database.connection() as conn:
                self._counts = await jobs.count_backlog(conn)
            self._read_at = time.monotonic()
        return self._counts


def discovery() -> kube.Json:
    return aggregation.discovery(GROUP, VERSION, METRIC, "ExternalMetricValueList")


def metric_list(counts: dict[str, int], selected: set[str] | None) -> kube.Json:
    queues = sorted(counts) if selected is None else sorted(selected)
    value = sum(counts.get(queue, 0) for queue in queues)
    labels = {"queue": ",".join(queues)} if selected is not None else {}
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "kind": "ExternalMetricValueList",
        "apiVersion": f"{GROUP}/{VERSION}",
        "metadata": {},
        "items": [{"metricName": METRIC, "metricLabels": labels, "timestamp": now, "value": str(value)}],
    }


def application(backlog: Backlog) -> web.Application:
    base = f"/apis/{GROUP}/{VERSION}"

    async def get_discovery(request: web.Request) -> web.Response:
        return web.json_response(discovery())

    async def get_metric(request: web.Request) -> web.Response:
        if request.match_info["metric"] != METRIC:
            return aggregation.status(
                404, f"no external metric {request.match_info['metric']!r}; this server has {METRIC}"
            )
        try:
            selected = queues_selected(request.query.get("labelSelector", ""))
        except SelectorError as error:
            return aggregation.status(400, str(error))
        return web.json_response(metric_list(await backlog.counts(), selected))

    app = web.Application()
    app.router.add_get(base, get_discovery)
    app.router.add_get(f"{base}/namespaces/{{namespace}}/{{metric}}", get_metric)
    return app


def tls_context(cert_dir: Path, client_ca: str) -> ssl.SSLContext:
    """Serve with the chart's certificate; accept only clients signed by the front-proxy CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert_dir / "tls.crt"), str(cert_dir / "tls.key"))
    context.load_verify_locations(cadata=client_ca)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


async def front_proxy_ca(api: kube.KubeApi) -> str:
    configmap = await api.request("GET", AUTHENTICATION_CONFIGMAP)
    ca = (configmap.get("data") or {}).get("requestheader-client-ca-file", "")
    if not ca:
        raise RuntimeError(
            "the API server publishes no front-proxy CA (requestheader-client-ca-file): "
            "its aggregation layer is off, so it cannot call the external metrics API"
        )
    return str(ca)


async def serve(
    api: kube.KubeApi, database: Database, port: int, cert_dir: Path
) -> Callable[[], Awaitable[None]]:
    """Start serving (the logs API too); the coroutine function that stops it."""
    app = application(Backlog(database))
    logsapi.add_routes(app, api, database)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "0.0.0.0", port, ssl_context=tls_context(cert_dir, await front_proxy_ca(api)))  # noqa: S104
    await site.start()
    logger.info("serving the external metric %s and the PgJob logs API on port %d", METRIC, port)
    return runner.cleanup
