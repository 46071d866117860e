"""The `pgjobs` command: migrate the database, run a worker or the operator, and administer jobs.

Queue-level commands (`enqueue`, `jobs`, `stop`, …) work on PostgreSQL directly, for producers
and operators without Kubernetes; with Kubernetes, use PgJob objects and `kubectl pgjobs`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import logging
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pgjobs.cli import options
from pgjobs.states import JobState, Priority
from pgjobs.store import connecting, jobs, migrating, queries, workers
from pgjobs.store.records import InvalidJob, Job, NewJob, Worker

EPILOG = """\
Database settings: --database-url / PGJOBS_DATABASE_URL (a libpq URL or key=value string),
else the libpq environment (PGHOST, PGPORT, PGUSER, PGDATABASE, …). DB_PASSWORD fills in a
password the URL lacks. The database defaults to 'pgjobs'; `pgjobs migrate` creates it.

Examples:
  pgjobs migrate
  pgjobs worker --queue default --concurrency 2
  pgjobs enqueue sleep --args '{"seconds": 5}' --priority High
  pgjobs jobs --state Running,Pending
"""


class UserError(Exception):
    """A mistake in what the user asked for: printed as one line, exit status 2."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args) or 0)
    except (UserError, InvalidJob, ValueError) as error:
        print(f"pgjobs: error: {error}", file=sys.stderr)
        return 2
    except connecting.DatabaseError as error:
        print(f"pgjobs: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pgjobs",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    options.add(parser, "--database-url", default="", metavar="URL", help="PostgreSQL connection URL")
    options.add(
        parser, "--log-level", default="info", choices=["debug", "info", "warning", "error"], help="log level"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_migrate(commands)
    _add_worker(commands)
    _add_operator(commands)
    _add_release_pgjobs(commands)
    _add_enqueue(commands)
    _add_jobs(commands)
    _add_admin(commands)
    _add_workers(commands)
    _add_rescue(commands)
    return parser


def _command(
    commands: Any, name: str, help: str, handler: Callable[[argparse.Namespace], int]
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(name, help=help, description=help)
    parser.set_defaults(handler=handler)
    # The global options are accepted after the command too; SUPPRESS keeps the global value
    # unless they are given here.
    parser.add_argument(
        "--database-url",
        default=argparse.SUPPRESS,
        metavar="URL",
        help="PostgreSQL connection URL [env PGJOBS_DATABASE_URL]",
    )
    parser.add_argument(
        "--log-level",
        default=argparse.SUPPRESS,
        choices=["debug", "info", "warning", "error"],
        help="log level [env PGJOBS_LOG_LEVEL]",
    )
    return parser


def _add_stall_timeout(parser: argparse.ArgumentParser) -> None:
    options.add(
        parser,
        "--stall-timeout",
        default=15.0,
        type=float,
        help="seconds without heartbeat after which a worker is presumed dead and its jobs rescued",
    )


def _settings(args: argparse.Namespace) -> connecting.DatabaseSettings:
    return connecting.DatabaseSettings.from_environment(args.database_url or None)


def _run(args: argparse.Namespace, action: Callable[[queries.Connection], Awaitable[int]]) -> int:
    async def with_connection() -> int:
        conn = await connecting.connect(_settings(args))
        async with conn:
            await migrating.check(conn)
            return await action(conn)

    return asyncio.run(with_connection())


# migrate


def _add_migrate(commands: Any) -> None:
    _command(commands, "migrate", "create the database if needed and bring its schema up to date", _migrate)


def _migrate(args: argparse.Namespace) -> int:
    settings = _settings(args)
    applied = asyncio.run(migrating.migrate(settings))
    where = settings.describe()
    if applied:
        print(f"{where}: applied {', '.join(f'{m.version:04d}_{m.name}' for m in applied)}")
    else:
        print(f"{where}: schema is up to date (version {migrating.latest_version()})")
    return 0


# worker


def _add_worker(commands: Any) -> None:
    parser = _command(commands, "worker", "claim and run jobs, one at a time per slot", _worker)
    options.add_list(parser, "--queue", default=["default"], metavar="QUEUE", help="queue to take jobs from")
    options.add_list(
        parser,
        "--tasks",
        default=[],
        metavar="MODULE",
        help="Python module that registers tasks (entry points of group pgjobs.tasks load too)",
    )
    options.add(parser, "--concurrency", default=1, type=int, help="jobs run at the same time")
    options.add(parser, "--heartbeat-interval", default=2.0, type=float, help="seconds between heartbeats")
    _add_stall_timeout(parser)
    options.add(
        parser,
        "--poll-interval",
        default=2.0,
        type=float,
        help="seconds between looks for work when no notification arrives",
    )
    options.add(
        parser,
        "--stop-grace",
        default=5.0,
        type=float,
        help="seconds a stopped or timed-out task gets to end before it is cancelled",
    )
    options.add(
        parser,
        "--shutdown-grace",
        default=25.0,
        type=float,
        help="on SIGTERM, seconds running jobs get to finish before they are handed back",
    )
    options.add(
        parser,
        "--on-shutdown",
        default="requeue",
        choices=["requeue", "stop"],
        help="what happens to jobs still running when the shutdown grace is over",
    )
    options.add(
        parser, "--metrics-port", default=None, type=int, help="serve Prometheus metrics on this port"
    )
    options.add(
        parser,
        "--health-port",
        default=None,
        type=int,
        help="serve /healthz (event loop alive) and /readyz (in contact with PostgreSQL) for probes",
    )
    options.add(
        parser,
        "--name",
        default=socket.gethostname(),
        help="name shown for this worker in listings (default: the host name; in Kubernetes, the pod name)",
    )
    options.add_flag(parser, "--burst", help="drain the queues, then exit")
    options.add_flag(parser, "--enable-shell", help="allow the `shell` task (runs commands from job args)")
    options.add_flag(parser, "--no-listen", help="poll only, no LISTEN/NOTIFY (e.g. behind PgBouncer)")


def _worker(args: argparse.Namespace) -> int:
    from pgjobs.tasks import registry
    from pgjobs.worker import running
    from pgjobs.worker.settings import OnShutdown, WorkerSettings

    registry.load(options.resolved_list(args, "--tasks"))
    settings = WorkerSettings(
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
    )
    asyncio.run(running.run_worker(_settings(args), settings, listen=not args.no_listen))
    return 0


# operator


def _add_operator(commands: Any) -> None:
    parser = _command(
        commands,
        "operator",
        "run the Kubernetes operator (PgJob → PostgreSQL, status sync, rescue)",
        _operator,
    )
    options.add_list(
        parser, "--namespace", default=[], metavar="NS", help="namespace to watch (default: all)"
    )
    _add_stall_timeout(parser)
    options.add(
        parser,
        "--status-writes-per-second",
        default=50.0,
        type=float,
        help="PgJob status writes per second towards the API server (Events: a budget of the same size)",
    )
    options.add(
        parser,
        "--status-write-burst",
        default=500,
        type=int,
        help="status writes allowed at once above that rate, so a burst of new PgJobs shows at once"
        " (the rate refills it)",
    )
    options.add(
        parser,
        "--sync-interval",
        default=0.2,
        type=float,
        help="seconds between looks for rows whose status must be copied to Kubernetes",
    )
    options.add(
        parser,
        "--maintenance-interval",
        default=5.0,
        type=float,
        help="seconds between rescue sweeps, TTL cleanups and worker pruning (leader only)",
    )
    options.add(
        parser, "--liveness-port", default=8080, type=int, help="port of the /healthz liveness endpoint"
    )
    options.add(parser, "--metrics-port", default=9090, type=int, help="port of the Prometheus metrics")
    options.add(
        parser,
        "--kubeconfig",
        default=None,
        help="kubeconfig file (default: in-cluster, then ~/.kube/config)",
    )


def _operator(args: argparse.Namespace) -> int:
    from pgjobs.operator import running

    return running.main(_settings(args), args)


def _add_release_pgjobs(commands: Any) -> None:
    parser = _command(
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
    from pgjobs.operator import kube, running, uninstalling

    target = uninstalling.Target(
        namespace=args.operator_namespace,
        deployment=args.operator_deployment,
        watched=tuple(options.resolved_list(args, "--namespace")),
        finalizer=running.FINALIZER,
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


# enqueue


def _add_enqueue(commands: Any) -> None:
    parser = _command(
        commands, "enqueue", "add jobs to a queue (without a PgJob); prints their ids", _enqueue
    )
    parser.add_argument("task", help="name of a registered task, e.g. sleep")
    parser.add_argument("--args", default="{}", metavar="JSON", help="task arguments as a JSON object")
    parser.add_argument("--priority", default="Regular", help="High, Regular or Low (default Regular)")
    parser.add_argument("--queue", default="default", help="queue name (default: default)")
    parser.add_argument(
        "--max-attempts", type=int, default=3, help="attempts before the job fails (default 3)"
    )
    parser.add_argument(
        "--backoff",
        type=int,
        default=10,
        help="seconds before the first retry, doubling each time (default 10)",
    )
    parser.add_argument("--timeout", type=int, default=None, help="seconds one attempt may run")
    parser.add_argument("--count", type=int, default=1, help="enqueue this many copies in one transaction")


def _enqueue(args: argparse.Namespace) -> int:
    job = NewJob(
        task=args.task,
        args=_parse_args_json(args.args),
        priority=Priority.parse(args.priority),
        queue=args.queue,
        max_attempts=args.max_attempts,
        backoff_seconds=args.backoff,
        timeout_seconds=args.timeout,
    )

    async def enqueue(conn: queries.Connection) -> int:
        ids = await jobs.enqueue(conn, job, args.count)
        print("\n".join(map(str, ids)))
        return 0

    return _run(args, enqueue)


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity; JSON (and PostgreSQL's jsonb) does not.
    raise UserError(f"--args is not valid JSON: {name} is not a JSON number")


def _parse_args_json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        raise UserError(
            f"--args is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None
    if not isinstance(value, dict):
        raise UserError(f"--args must be a JSON object like '{{\"seconds\": 5}}', got {type(value).__name__}")
    return value


# jobs


def _add_jobs(commands: Any) -> None:
    parser = _command(commands, "jobs", "list jobs, newest first", _jobs)
    parser.add_argument("--state", default="", help="comma-separated states, e.g. Pending,Running")
    parser.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")


def _jobs(args: argparse.Namespace) -> int:
    states = [JobState.from_phase(name) for name in args.state.split(",") if name.strip()]

    async def show(conn: queries.Connection) -> int:
        found = await jobs.list_jobs(conn, states or None, args.limit)
        if args.json:
            print(json.dumps([job.as_json() for job in found], indent=2))
        else:
            print(format_jobs(found))
        return 0

    return _run(args, show)


def format_jobs(found: Sequence[Job], now: datetime.datetime | None = None) -> str:
    now = now or datetime.datetime.now(datetime.UTC)
    rows = [["ID", "TASK", "STATE", "PRIORITY", "PROGRESS", "WORKER", "ATTEMPTS", "AGE"]]
    for job in found:
        rows.append(
            [
                str(job.id),
                job.task,
                job.state.phase,
                job.priority.label,
                f"{job.progress}%",
                job.worker_name or "-",
                f"{job.attempt}/{job.max_attempts}",
                format_age(now - job.created_at),
            ]
        )
    return format_table(rows)


def format_table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def format_age(age: datetime.timedelta) -> str:
    seconds = max(0, int(age.total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


# stop / start / restart / delete

_ADMIN = {
    "stop": (
        "stop a Pending job at once, or ask the worker of a Running one to stop it",
        "Pending or Running",
    ),
    "start": ("start a Stopped job again", "Stopped"),
    "restart": ("run a Completed, Failed or Stopped job again, as a new run", "Completed, Failed or Stopped"),
    "delete": ("delete a job that is not running (--force: also a running one)", "not Running"),
}


def _add_admin(commands: Any) -> None:
    for name, (help, _) in _ADMIN.items():
        parser = _command(commands, name, help, _admin)
        parser.add_argument("job_id", type=int, metavar="ID", help="job id (see `pgjobs jobs`)")
        if name == "delete":
            parser.add_argument("--force", action="store_true", help="delete even a running job")


def _admin(args: argparse.Namespace) -> int:
    async def act(conn: queries.Connection) -> int:
        changed = await _apply_admin(conn, args)
        job = await jobs.get(conn, args.job_id)
        if changed:
            print(f"job {args.job_id}: {args.command} done" + (f", now {job.state.phase}" if job else ""))
            return 0
        if job is None:
            raise UserError(f"no job with id {args.job_id}")
        raise UserError(
            f"job {args.job_id} is {job.state.phase}: {args.command} needs a job that is "
            f"{_ADMIN[args.command][1]}"
        )

    return _run(args, act)


async def _apply_admin(conn: queries.Connection, args: argparse.Namespace) -> bool:
    if args.command == "stop":
        return await jobs.stop(conn, args.job_id)
    if args.command == "start":
        return await jobs.start(conn, args.job_id)
    if args.command == "restart":
        return await jobs.restart(conn, args.job_id)
    return await jobs.delete(conn, args.job_id, force=args.force)


# workers


def _add_workers(commands: Any) -> None:
    parser = _command(commands, "workers", "list workers (live ones; --all also stopped and dead)", _workers)
    parser.add_argument("--all", action="store_true", help="include stopped and dead workers")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _workers(args: argparse.Namespace) -> int:
    async def show(conn: queries.Connection) -> int:
        found = await workers.list_workers(conn, include_gone=args.all)
        if args.json:
            print(json.dumps([_worker_json(worker) for worker in found], indent=2))
        else:
            print(format_workers(found))
        return 0

    return _run(args, show)


def _worker_json(worker: Worker) -> dict[str, Any]:
    return {
        "id": str(worker.id),
        "hostname": worker.hostname,
        "pid": worker.pid,
        "queues": worker.queues,
        "concurrency": worker.concurrency,
        "state": worker.state,
        "running_jobs": worker.running_jobs,
        "idle_slots": worker.idle_slots,
        "started_at": worker.started_at.isoformat(),
        "heartbeat_at": worker.heartbeat_at.isoformat(),
    }


def format_workers(found: Sequence[Worker], now: datetime.datetime | None = None) -> str:
    now = now or datetime.datetime.now(datetime.UTC)
    rows = [["ID", "HOST", "PID", "STATE", "QUEUES", "RUNNING", "IDLE", "LAST HEARTBEAT", "AGE"]]
    for worker in found:
        rows.append(
            [
                str(worker.id),
                worker.hostname,
                str(worker.pid),
                worker.state,
                ",".join(worker.queues),
                f"{worker.running_jobs}/{worker.concurrency}",
                str(worker.idle_slots),
                format_age(now - worker.heartbeat_at) + " ago",
                format_age(now - worker.started_at),
            ]
        )
    return format_table(rows)


# rescue


def _add_rescue(commands: Any) -> None:
    parser = _command(
        commands, "rescue", "run the stalled-job sweep once (workers and the operator run it too)", _rescue
    )
    _add_stall_timeout(parser)


def _rescue(args: argparse.Namespace) -> int:
    async def sweep(conn: queries.Connection) -> int:
        rescued = await jobs.rescue(conn, args.stall_timeout)
        for job in rescued:
            print(f"job {job.id}: rescued, now {job.state.phase} (attempt {job.attempt}/{job.max_attempts})")
        if not rescued:
            print("no stalled jobs")
        return 0

    return _run(args, sweep)


if __name__ == "__main__":
    sys.exit(main())
