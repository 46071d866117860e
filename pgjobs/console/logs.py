"""A job's log lines for its page. Per-job log storage is not part of pgjobs yet: until it is, a
job has no lines, and its page says so where they will show."""

from __future__ import annotations

from pgjobs.store.queries import Connection


async def job_log_lines(conn: Connection, job_id: int) -> list[str]:
    """The job's log lines, oldest first (none until per-job log storage exists)."""
    del conn, job_id  # read once log storage lands
    return []
