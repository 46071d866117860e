"""The `pgjobs` commands that run pgjobs itself: migrate, worker, operator, release-pgjobs.

Each parses its options into the settings object of the package it starts (`WorkerSettings`,
`OperatorSettings`) and hands it over; the defaults come from those objects.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import socket
import sys
import time
from typing import Any

from pgjobs import crd
from pgjobs.cli import database, options
from pgjobs.operator.settings import OperatorSettings
from pgjobs.store import connecting, migrating, roles
from pgjobs.worker.settings import LOG_FORMATS, OnShutdown, WorkerSettings

#: Seconds between attempts of `pgjobs migrate --wait`.
MIGRATE_RETRY_INTERVAL = 2.0


def add(commands: Any) -> None:
    _add_migrate(commands)
    _add_worker(commands)
    _add_operator(commands)
    _add_release_pgjobs(commands)


# migrate


def _add_migrate(commands: Any) -> None:
    parser = options.command(
        commands, "migrate", "create the database if needed and bring its schema up to date", _migrate
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="keep trying this long while the server is unreachable or still starting"
        " (e.g. in an init container next to a PostgreSQL pod); a wrong password fails at once",
    )
    parser.add_argument(
        "--pool",
        dest="pools",
        action="append",
        type=pool_arg,
        metavar="LOGIN=QUEUE[,QUEUE]",
        help="scope a worker login to these queues' rows (row-level security; repeatable;"
        " LOGIN= lifts it; docs/operations.md, Database roles)",
    )
    for group in (roles.WORKER, roles.OPERATOR):
        options.add(
            parser,
            f"--{group}-role",
            default=getattr(roles.GroupRoles, group),
            metavar="ROLE",
            help=f"group role granted what the {group}s need, created NOLOGIN when missing"
            " ('' for none; docs/operations.md, Database roles)",
        )


def pool_arg(text: str) -> tuple[str, tuple[str, ...]]:
    """LOGIN=QUEUE[,QUEUE] (LOGIN= for none)."""
    login, sign, queues = text.partition("=")
    names = tuple(q.strip() for q in queues.split(",") if q.strip())
    if not sign or not login.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: expected LOGIN=QUEUE[,QUEUE], e.g. reports=reports")
    return login.strip(), names


def _migrate(args: argparse.Namespace) -> int:
    settings = database.settings(args)
    group_roles = roles.GroupRoles(worker=args.worker_role, operator=args.operator_role)
    pools = dict(args.pools or ())
    applied = asyncio.run(_migrate_when_reachable(settings, args.wait, group_roles, pools))
    where = settings.describe()
    if applied:
        print(f"{where}: applied {', '.join(f'{m.version:04d}_{m.name}' for m in applied)}")
    else:
        print(f"{where}: schema is up to date (version {migrating.latest_version()})")
    return 0


async def _migrate_when_reachable(
    settings: connecting.DatabaseSettings,
    wait: float,
    group_roles: roles.GroupRoles | None = None,
    pools: dict[str, tuple[str, ...]] | None = None,
) -> list[migrating.Migration]:
    deadline = time.monotonic() + wait
    while True:
        try:
            return await migrating.migrate(settings, group_roles, pools)
        except connecting.DatabaseError as error:
            if not error.retryable or time.monotonic() >= deadline:
                raise
            print(f"{settings.describe()}: not ready ({error}); retrying", file=sys.stderr, flush=True)
            await asyncio.sleep(MIGRATE_RETRY_INTERVAL)


# worker


def _add_worker(commands: Any) -> None:
    parser = options.command(commands, "worker", "claim and run jobs, one at a time per slot", _worker)
    defaults = WorkerSettings
    options.add_list(
        parser, "--queue", default=list(defaults.queues), metavar="QUEUE", help="queue to take jobs from"
    )
    options.add_list(
        parser,
        "--tasks",
        default=[],
        metavar="MODULE",
        help="Python module that registers tasks (entry points of group pgjobs.tasks load too)",
    )
    options.add(
        parser, "--concurrency", default=defaults.concurrency, type=int, help="jobs run at the same time"
    )
    options.add(
        parser,
        "--heartbeat-interval",
        default=defaults.heartbeat_interval,
        type=float,
        help="seconds between heartbeats",
    )
    options.add_stall_timeout(parser, "worker")
    options.add(
        parser,
        "--poll-interval",
        default=defaults.poll_interval,
        type=float,
        help="seconds between looks for work when no notification arrives",
    )
    options.add(
        parser,
        "--stop-grace",
        default=defaults.stop_grace,
        type=float,
        help="seconds a stopped or timed-out task gets to end before it is cancelled",
    )
    options.add(
        parser,
        "--shutdown-grace",
        default=defaults.shutdown_grace,
        type=float,
        help="on SIGTERM, seconds running jobs get to finish before they are handed back",
    )
    options.add(
        parser,
        "--on-shutdown",
        default=defaults.on_shutdown.value,
        choices=[choice.value for choice in OnShutdown],
        help="what happens to jobs still running when the shutdown grace is over",
    )
    options.add(
        parser,
        "--metrics-port",
        default=defaults.metrics_port,
        type=int,
        help="serve Prometheus metrics on this port",
    )
    options.add(
        parser,
        "--health-port",
        default=defaults.health_port,
        type=int,
        help="serve /healthz (event loop alive) and /readyz (in contact with PostgreSQL) for probes",
    )
    options.add(
        parser,
        "--health-address",
        default=defaults.health_address,
        metavar="ADDRESS",
        help="address the --health-port endpoints listen on (default: every interface in a pod,"
        " where the kubelet probes the pod's IP; 127.0.0.1 elsewhere)",
    )
    options.add(
        parser,
        "--name",
        default=socket.gethostname(),
        help="name shown for this worker in listings (default: the host name; in Kubernetes, the pod name)",
    )
    options.add(
        parser,
        "--log-format",
        default=defaults.log_format,
        choices=LOG_FORMATS,
        help="the worker's own log: text lines, or JSON lines (with job_id and attempt while a task runs)",
    )
    options.add_flag(parser, "--burst", help="drain the queues, then exit")
    options.add_flag(parser, "--enable-shell", help="allow the `shell` task (runs commands from job args)")
    options.add_flag(parser, "--no-listen", help="poll only, no LISTEN/NOTIFY (e.g. behind PgBouncer)")


def worker_settings(args: argparse.Namespace) -> WorkerSettings:
    return WorkerSettings(
        queues=tuple(options.resolved_list(args, "--queue")),
        concurrency=args.concurrency,
        heartbeat_interval=args.heartbeat_interval,
        stall_timeout=args.stall_timeout,
        poll_interval=args.poll_interval,
        stop_grace=args.stop_grace,
        shutdown_grace=args.shutdown_grace,
        on_shutdown=OnShutdown(args.on_shutdown),
        burst=args.burst,
        hostname=args.name,
        enable_shell=args.enable_shell,
        metrics_port=args.metrics_port,
        health_port=args.health_port,
        health_address=args.health_address,
        log_format=args.log_format,
    )


def _worker(args: argparse.Namespace) -> int:
    from pgjobs.tasks import registry
    from pgjobs.worker import running

    registry.load(options.resolved_list(args, "--tasks"))
    settings = worker_settings(args)
    # Every module and task is loaded and lives as long as the process: out of the cyclic
    # collector's sight, its passes no longer walk them. Eight single-slot workers on two CPUs
    # shared with PostgreSQL spent 11% less CPU per noop job (one worker: no difference).
    gc.collect()
    gc.freeze()
    return asyncio.run(running.run_worker(database.settings(args), settings, listen=not args.no_listen))


# operator


def _add_operator(commands: Any) -> None:
    parser = options.command(
        commands,
        "operator",
        "run the Kubernetes operator (PgJob → PostgreSQL, status sync, rescue)",
        _operator,
    )
    defaults = OperatorSettings
    options.add_list(
        parser,
        "--namespace",
        default=list(defaults.namespaces),
        metavar="NS",
        help="namespace to watch (default: all)",
    )
    options.add_stall_timeout(parser, "operator")
    options.add(
        parser,
        "--status-writes-per-second",
        default=defaults.status_writes_per_second,
        type=float,
        help="PgJob status writes per second towards the API server (Events: a budget of the same size)",
    )
    options.add(
        parser,
        "--status-write-burst",
        default=defaults.status_write_burst,
        type=int,
        help="status writes allowed at once above that rate, so a burst of new PgJobs shows at once"
        " (the rate refills it)",
    )
    options.add(
        parser,
        "--sync-interval",
        default=defaults.sync_interval,
        type=float,
        help="seconds between looks for rows whose status must be copied to Kubernetes",
    )
    options.add(
        parser,
        "--maintenance-interval",
        default=defaults.maintenance_interval,
        type=float,
        help="seconds between rescue sweeps, TTL cleanups, worker pruning and PgCronJob rounds (leader only)",
    )
    options.add(
        parser,
        "--no-worker-after",
        default=defaults.no_worker_after,
        type=float,
        help="seconds a pending job waits with no live worker able to run it (none serves its queue"
        " with its task) before its PgJob gets the condition Runnable=False, reason NoWorkerForTask",
    )
    options.add(
        parser,
        "--finished-retention",
        default=defaults.finished_retention,
        type=float,
        help="seconds a finished job without a PgJob is kept before the leader deletes it",
    )
    options.add(
        parser,
        "--leader-lease",
        default=defaults.leader_lease,
        type=float,
        help="seconds a leader that stops renewing its lease (frozen, starved of CPU) keeps the"
        " leadership; a standby then takes over (one whose leader died takes over within a second)",
    )
    options.add(
        parser,
        "--duty-stall-timeout",
        default=defaults.duty_stall_timeout,
        type=float,
        help="seconds after which /healthz fails when the leader's status sync or maintenance loop"
        " has not gone round (stuck): the kubelet then restarts the operator",
    )
    options.add(
        parser,
        "--liveness-port",
        default=defaults.liveness_port,
        type=int,
        help="port of the /healthz liveness endpoint",
    )
    options.add(
        parser,
        "--liveness-address",
        default=defaults.liveness_address,
        metavar="ADDRESS",
        help="address the liveness endpoint listens on (default: every interface in a pod,"
        " where the kubelet probes the pod's IP; 127.0.0.1 elsewhere)",
    )
    options.add(
        parser,
        "--metrics-port",
        default=defaults.metrics_port,
        type=int,
        help="port of the Prometheus metrics",
    )
    options.add(
        parser,
        "--external-metrics-port",
        default=defaults.external_metrics_port,
        type=int,
        help="serve the worker HPA's metric pgjobs_backlog as the external metrics API, and PgJob logs"
        " as logs.pgjobs.dev, on this port (HTTPS, for the API server's aggregation layer; 0: off)",
    )
    options.add(
        parser,
        "--serving-cert-dir",
        default=defaults.serving_cert_dir,
        help="directory with tls.crt and tls.key for --external-metrics-port",
    )
    options.add(
        parser,
        "--kubeconfig",
        default=defaults.kubeconfig,
        help="kubeconfig file (default: in-cluster, then ~/.kube/config)",
    )
    options.add(
        parser,
        "--policy-file",
        default=defaults.policy_file,
        metavar="PATH",
        help="YAML file of the queues and tasks each namespace may use and its limits (default: none,"
        " every namespace may use everything); the operator does not start when it is malformed",
    )


def operator_settings(args: argparse.Namespace) -> OperatorSettings:
    return OperatorSettings(
        namespaces=tuple(options.resolved_list(args, "--namespace")),
        stall_timeout=float(args.stall_timeout),
        status_writes_per_second=float(args.status_writes_per_second),
        status_write_burst=int(args.status_write_burst),
        sync_interval=float(args.sync_interval),
        maintenance_interval=float(args.maintenance_interval),
        no_worker_after=float(args.no_worker_after),
        finished_retention=float(args.finished_retention),
        leader_lease=float(args.leader_lease),
        duty_stall_timeout=float(args.duty_stall_timeout),
        liveness_port=int(args.liveness_port),
        liveness_address=args.liveness_address,
        metrics_port=int(args.metrics_port),
        external_metrics_port=int(args.external_metrics_port),
        serving_cert_dir=args.serving_cert_dir,
        kubeconfig=args.kubeconfig or None,
        policy_file=args.policy_file or None,
    )


def _operator_modules() -> None:
    """The operator's libraries come with the `operator` extra; without them, one line."""
    try:
        import aiohttp  # noqa: F401
        import kopf  # noqa: F401
        import kubernetes  # noqa: F401
    except ModuleNotFoundError as missing:
        text = options.missing_extra_text("the operator", "operator", missing.name)
        raise options.UserError(text) from None


def _operator(args: argparse.Namespace) -> int:
    _operator_modules()
    from pgjobs.operator import running

    return running.main(database.settings(args), operator_settings(args))


# release-pgjobs


def _add_release_pgjobs(commands: Any) -> None:
    parser = options.command(
        commands,
        "release-pgjobs",
        "stop the operator's Deployment and remove its finalizer from every PgJob it watched"
        " (the chart's pre-delete hook, so that no PgJob is left undeletable after helm uninstall)",
        _release_pgjobs,
    )
    parser.add_argument("--operator-namespace", required=True, help="namespace of the operator's Deployment")
    parser.add_argument("--operator-deployment", required=True, help="name of the operator's Deployment")
    options.add_list(
        parser, "--namespace", default=[], metavar="NS", help="namespace the operator watched (default: all)"
    )
    parser.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: in-cluster)")


def _release_pgjobs(args: argparse.Namespace) -> int:
    _operator_modules()
    from pgjobs.operator import kube, uninstalling

    target = uninstalling.Target(
        namespace=args.operator_namespace,
        deployment=args.operator_deployment,
        watched=tuple(options.resolved_list(args, "--namespace")),
        finalizer=crd.FINALIZER,
    )

    async def run() -> int:
        api = kube.KubeApi.load(args.kubeconfig)
        try:
            return await uninstalling.release_pgjobs(api, target)
        finally:
            await api.close()

    released = asyncio.run(run())
    print(f"released {released} PgJob(s); the operator is stopped")
    return 0
