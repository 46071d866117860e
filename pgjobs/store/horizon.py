"""What holds back the clean-up of finished jobs: the oldest open transaction in the database.

PostgreSQL cannot VACUUM a row version that an open snapshot might still read. A transaction
left open for hours (a report, `pg_dump`, a session `idle in transaction`) therefore keeps every
job finished since then in the jobs table and its pending index, and each claim steps over all of
them: 1M drained jobs under an old snapshot made claims 100x slower (bench/README.md).
"""

from __future__ import annotations

import dataclasses

from pgjobs.store.queries import Connection, fetch_one


@dataclasses.dataclass(frozen=True)
class OldestSnapshot:
    #: Seconds since the oldest such transaction began (0 when there is none).
    age_seconds: float
    #: The database role asking.
    role: str
    #: False when the role sees only its own sessions' transactions (no pg_read_all_stats).
    sees_all_sessions: bool


async def oldest_snapshot(conn: Connection) -> OldestSnapshot:
    row = await fetch_one(conn, "oldest_snapshot", {})
    assert row is not None  # an aggregate always answers one row
    return OldestSnapshot(
        age_seconds=float(row["age_seconds"]),
        role=str(row["role"]),
        sees_all_sessions=bool(row["sees_all_sessions"]),
    )
