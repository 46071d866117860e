"""A job's log lines for its page: the last ones its latest attempt stored (`pgjobs.store.job_logs`).

One attempt's log is bounded by the worker's cap, so a page that polls every few seconds reads
at most that much; `pgjobs logs ID` prints every attempt's.
"""

from __future__ import annotations

from pgjobs.store import job_logs
from pgjobs.store.queries import Connection

#: Lines a job's page shows: the newest ones of its latest attempt.
SHOWN_LINES = 200


async def job_log_lines(conn: Connection, job_id: int, attempt: int) -> list[str]:
    """The last `SHOWN_LINES` lines of the job's attempt `attempt`, oldest first, with time and level."""
    lines: list[job_logs.LogLine] = []
    after: job_logs.Position | None = None
    while page := await job_logs.read(conn, job_id, attempt=attempt, after=after):
        lines = (lines + page)[-SHOWN_LINES:]
        after = page[-1].position
        if len(page) < job_logs.PAGE_LINES:
            break
    return [f"{line.at:%H:%M:%S} {line.level:<7} {line.message}" for line in lines]
