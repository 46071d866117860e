"""`pgjobs logs ID`: what a job's task logged, read from PostgreSQL (`pgjobs.store.job_logs`)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from pgjobs.cli import database, options
from pgjobs.cli.loglines import line_text
from pgjobs.cli.options import UserError
from pgjobs.store import job_logs, jobs, queries

#: Seconds between two looks for new lines while following a running job.
FOLLOW_INTERVAL = 1.0


def add(commands: Any) -> None:
    parser = options.command(commands, "logs", "print what a job's task logged, per attempt", _logs)
    parser.add_argument("job_id", type=int, metavar="ID", help="job id (see `pgjobs jobs`)")
    parser.add_argument("--attempt", type=int, metavar="N", help="only the lines of attempt N")
    parser.add_argument(
        "-f", "--follow", action="store_true", help="keep printing new lines until the job finishes"
    )


def _logs(args: argparse.Namespace) -> int:
    async def show(conn: queries.Connection) -> int:
        if await jobs.get(conn, args.job_id) is None:
            raise UserError(f"no job with id {args.job_id}")
        await _print_lines(conn, args.job_id, args.attempt, args.follow)
        return 0

    return database.run(args, show)


async def _print_lines(conn: queries.Connection, job_id: int, attempt: int | None, follow: bool) -> None:
    """Print every line there is; when following, go on until the job is finished (or gone)."""
    after: job_logs.Position | None = None
    while True:
        # The state before the read: a finished job's lines are all stored before it finishes.
        job = await jobs.get(conn, job_id) if follow else None
        page = await job_logs.read(conn, job_id, attempt, after)
        for line in page:
            print(line_text(line.attempt, line.at, line.level, line.message), flush=follow)
        if page:
            after = page[-1].position
        if len(page) == job_logs.PAGE_LINES:
            continue
        if not follow or job is None or job.state.is_finished:
            return
        await asyncio.sleep(FOLLOW_INTERVAL)
