"""Per-job logs: what a task logged, per attempt, kept in `pgjobs.job_logs` (migration 0011).

Workers write lines in batches (`write`, from `pgjobs.worker.capture`); everything else reads
them with `read`, the one read API (the `pgjobs logs` command, the operator's logs API behind
`kubectl pgjobs logs`, the web console):

    page = await job_logs.read(conn, job_id, attempt=None, after=None, limit=job_logs.PAGE_LINES)

returns at most `limit` `LogLine`s of the job in order (attempt, then seq within it), only those
of `attempt` when given, and only those after the `Position` `after` (a line's `position`): to
follow a running job, read again with `after` set to the last line's position. Lines go with
their job's row (ON DELETE CASCADE), so retention and TTL deletion remove them.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Sequence

from pgjobs.states import JobState
from pgjobs.store.queries import QUERIES, Connection, fetch_all, fetch_one

#: Lines one `read` returns unless asked for fewer.
PAGE_LINES = 1000


@dataclasses.dataclass(frozen=True, order=True)
class Position:
    """Where a line stands in its job's log: `Position(0, 0)` is before the first line."""

    attempt: int
    seq: int

    def __str__(self) -> str:
        return f"{self.attempt}.{self.seq}"

    @classmethod
    def parse(cls, text: str) -> Position:
        """`ATTEMPT.SEQ` (as `str` writes it), e.g. "2.17"; a ValueError otherwise."""
        attempt, dot, seq = text.partition(".")
        if not dot or not attempt.isdigit() or not seq.isdigit():
            raise ValueError(f"a log position is ATTEMPT.SEQ, e.g. 2.17, not {text!r}")
        return cls(int(attempt), int(seq))


START = Position(0, 0)


@dataclasses.dataclass(frozen=True)
class LogLine:
    attempt: int
    seq: int
    at: datetime.datetime
    level: str
    message: str

    @property
    def position(self) -> Position:
        return Position(self.attempt, self.seq)


@dataclasses.dataclass(frozen=True)
class JobRef:
    """A job found by its PgJob's name: its id and whether it may still log."""

    id: int
    state: JobState


@dataclasses.dataclass(frozen=True)
class NewLine:
    """A line to store; `write` numbers it."""

    at: datetime.datetime
    level: str
    message: str


async def write(conn: Connection, job_id: int, attempt: int, lines: Sequence[NewLine]) -> None:
    """Append lines to one attempt's log, numbered on from its last (a deleted job stores none)."""
    await conn.execute(
        QUERIES["job_log_write"],
        {
            "job_id": job_id,
            "attempt": attempt,
            "ats": [line.at for line in lines],
            "levels": [line.level for line in lines],
            "messages": [line.message for line in lines],
        },
    )


async def read(
    conn: Connection,
    job_id: int,
    attempt: int | None = None,
    after: Position | None = None,
    limit: int = PAGE_LINES,
) -> list[LogLine]:
    """The job's lines in order: of `attempt` only when given, after `after`, at most `limit`."""
    start = after or START
    rows = await fetch_all(
        conn,
        "job_log_read",
        {
            "job_id": job_id,
            "attempt": attempt,
            "after_attempt": start.attempt,
            "after_seq": start.seq,
            "limit": limit,
        },
    )
    return [
        LogLine(int(row["attempt"]), int(row["seq"]), row["at"], str(row["level"]), str(row["message"]))
        for row in rows
    ]


async def find_resource(conn: Connection, namespace: str, name: str) -> JobRef | None:
    """The job of the PgJob `name` in `namespace`, None when it has no row (yet, or any more)."""
    row = await fetch_one(conn, "job_find_resource", {"namespace": namespace, "name": name})
    return None if row is None else JobRef(int(row["id"]), JobState(row["state"]))
