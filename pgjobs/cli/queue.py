"""The `pgjobs` commands that work on the queue in PostgreSQL directly, without Kubernetes:
enqueue, jobs, stop / start / restart / delete, workers, rescue."""

from __future__ import annotations

import argparse
import json
from typing import Any

from pgjobs.cli import database, listings, options, times
from pgjobs.cli.options import UserError
from pgjobs.states import JobState, Priority
from pgjobs.store import jobs, queries, records, workers
from pgjobs.store.records import Job, NewJob


def add(commands: Any) -> None:
    _add_enqueue(commands)
    _add_jobs(commands)
    _add_admin(commands)
    _add_workers(commands)
    _add_rescue(commands)


# enqueue


def _add_enqueue(commands: Any) -> None:
    parser = options.command(
        commands, "enqueue", "add jobs to a queue (without a PgJob); prints their ids", _enqueue
    )
    parser.add_argument("task", help="name of a registered task, e.g. sleep")
    parser.add_argument("--args", default="{}", metavar="JSON", help="task arguments as a JSON object")
    priority = NewJob.priority.label
    parser.add_argument("--priority", default=priority, help=f"High, Regular or Low (default {priority})")
    parser.add_argument("--queue", default=NewJob.queue, help=f"queue name (default: {NewJob.queue})")
    parser.add_argument(
        "--max-attempts",
        type=int,
        default=NewJob.max_attempts,
        help=f"attempts before the job fails (default {NewJob.max_attempts})",
    )
    parser.add_argument(
        "--backoff",
        type=int,
        default=NewJob.backoff_seconds,
        help=f"seconds before the first retry, doubling each time (default {NewJob.backoff_seconds})",
    )
    parser.add_argument("--timeout", type=int, default=None, help="seconds one attempt may run")
    parser.add_argument("--count", type=int, default=1, help="enqueue this many copies in one transaction")
    parser.add_argument(
        "--unique-key",
        metavar="KEY",
        help="no second job while an unfinished one of the queue has this key (its id is printed)",
    )
    when = parser.add_mutually_exclusive_group()
    when.add_argument(
        "--run-at", metavar="TIME", help="not claimed before TIME (RFC 3339, e.g. 2026-12-24T18:00:00Z)"
    )
    when.add_argument(
        "--in", dest="run_in", metavar="DURATION", help="not claimed before this from now (10m, 1h)"
    )


def _enqueue(args: argparse.Namespace) -> int:
    job = NewJob(
        task=args.task,
        args=parse_args_json(args.args),
        priority=Priority.parse(args.priority),
        queue=args.queue,
        max_attempts=args.max_attempts,
        backoff_seconds=args.backoff,
        timeout_seconds=args.timeout,
        run_at=times.run_at(args.run_at, args.run_in),
        unique_key=args.unique_key,
    )

    async def enqueue(conn: queries.Connection) -> int:
        ids = await jobs.enqueue(conn, job, args.count)
        print("\n".join(map(str, ids)))
        return 0

    return database.run(args, enqueue)


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity; JSON (and PostgreSQL's jsonb) does not.
    raise UserError(f"--args is not valid JSON: {name} is not a JSON number")


def parse_args_json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        raise UserError(
            f"--args is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None
    except RecursionError:  # far deeper than the store takes anyway (records.MAX_JSON_DEPTH)
        raise UserError(f"--args is nested deeper than {records.MAX_JSON_DEPTH} levels") from None
    if not isinstance(value, dict):
        raise UserError(f"--args must be a JSON object like '{{\"seconds\": 5}}', got {type(value).__name__}")
    return value


# jobs


def _add_jobs(commands: Any) -> None:
    parser = options.command(commands, "jobs", "list jobs, newest first", _jobs)
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
            print(listings.format_jobs(found))
        return 0

    return database.run(args, show)


# stop / start / restart / delete

_ADMIN = {
    "stop": (
        "stop a Pending job at once, or ask the worker of a Running one to stop it",
        "Pending or Running",
    ),
    "start": ("start a Stopped job again", "Stopped"),
    "restart": ("run a Completed, Failed or Stopped job again, as a new run", "Completed, Failed or Stopped"),
    "delete": (
        "delete a job that is not running (--force: also a running one; never a PgJob's)",
        "not Running",
    ),
}
#: The command that changes a PgJob's intent, for a job that belongs to one.
_KUBECTL = {
    "stop": "kubectl pgjobs stop {name} -n {namespace}",
    "start": "kubectl pgjobs start {name} -n {namespace}",
    "restart": "kubectl pgjobs restart {name} -n {namespace}",
    "delete": "kubectl delete pgjob {name} -n {namespace}",
}
_FORCE_HELP = "act even on a job of a PgJob (whose spec then disagrees with its row)"


def _add_admin(commands: Any) -> None:
    for name, (help, _) in _ADMIN.items():
        parser = options.command(commands, name, help, _admin)
        parser.add_argument("job_id", type=int, metavar="ID", help="job id (see `pgjobs jobs`)")
        force_help = "delete even a running job (never a PgJob's)" if name == "delete" else _FORCE_HELP
        parser.add_argument("--force", action="store_true", help=force_help)


def _refuse_pgjob_rows(job: Job | None, args: argparse.Namespace) -> None:
    """Kubernetes owns the intent of a PgJob's job: a change here would be undone by the
    operator, or leave the row and the PgJob disagreeing, so it is made through kubectl. A
    deletion is refused even with --force: the PgJob would be left with no row behind it."""
    if job is None or job.resource_name is None:
        return
    forcible = args.command != "delete"
    if forcible and args.force:
        return
    command = _KUBECTL[args.command].format(name=job.resource_name, namespace=job.resource_namespace)
    raise UserError(
        f"job {job.id} belongs to PgJob {job.resource_namespace}/{job.resource_name}, whose spec "
        f"decides what it does: run `{command}`"
        + (" (or --force to change the row anyway)" if forcible else "")
    )


def _admin(args: argparse.Namespace) -> int:
    async def act(conn: queries.Connection) -> int:
        _refuse_pgjob_rows(await jobs.get(conn, args.job_id), args)
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

    return database.run(args, act)


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
    parser = options.command(
        commands, "workers", "list workers (live ones; --all also stopped and dead)", _workers
    )
    parser.add_argument("--all", action="store_true", help="include stopped and dead workers")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _workers(args: argparse.Namespace) -> int:
    async def show(conn: queries.Connection) -> int:
        found = await workers.list_workers(conn, include_gone=args.all)
        if args.json:
            print(json.dumps([listings.worker_json(worker) for worker in found], indent=2))
        else:
            print(listings.format_workers(found))
        return 0

    return database.run(args, show)


# rescue


def _add_rescue(commands: Any) -> None:
    parser = options.command(
        commands, "rescue", "run the stalled-job sweep once (workers and the operator run it too)", _rescue
    )
    options.add_stall_timeout(parser, "rescue")


def _rescue(args: argparse.Namespace) -> int:
    async def sweep(conn: queries.Connection) -> int:
        rescued = await jobs.rescue(conn, args.stall_timeout)
        for job in rescued:
            print(f"job {job.id}: rescued, now {job.state.phase} (attempt {job.attempt}/{job.max_attempts})")
        if not rescued:
            print("no stalled jobs")
        return 0

    return database.run(args, sweep)
