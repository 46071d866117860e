"""The operator's leadership in the database: an advisory lock and a lease with a term.

The statements (leader_* in queries.sql) and migration 0005 say how the two work together;
`pgjobs.operator.leadership` runs them. Every function takes the leader's own session: the lock
is that session's, and a standby tells a dead leader by its session being gone.
"""

from __future__ import annotations

import dataclasses
import datetime

from pgjobs.store.queries import QUERIES, Connection, fetch_all, fetch_one

#: The advisory lock key: "pgjobs:L" in ASCII, recognisable in pg_locks. It must differ from the
#: migration lock's ("pgjobs"): with the same key, an operator pod's migrate init container
#: waited for ever behind the leading replica (seen on the first real two-replica install).
LOCK_KEY = int.from_bytes(b"pgjobs:L", "big")


@dataclasses.dataclass(frozen=True)
class Leadership:
    """Who leads, as the database says."""

    term: int
    holder: str
    remaining: datetime.timedelta


async def try_lock(conn: Connection) -> bool:
    """Take the session advisory lock if free; it lasts until the session ends. Call it once per
    session: a session's advisory locks stack, and each would need its own unlock."""
    rows = await fetch_all(conn, "leader_try_lock", {"key": LOCK_KEY})
    return bool(rows and rows[0]["acquired"])


async def acquire(conn: Connection, holder: str, lease_seconds: float) -> int | None:
    """The new term when this session now holds the lease, else None."""
    row = await fetch_one(
        conn, "leader_acquire", {"key": LOCK_KEY, "holder": holder, "lease_seconds": lease_seconds}
    )
    return int(row["term"]) if row else None


async def renew(conn: Connection, term: int, lease_seconds: float) -> bool:
    """Extend the lease; False when another replica has taken it (a later term)."""
    rows = await fetch_all(conn, "leader_renew", {"term": term, "lease_seconds": lease_seconds})
    return bool(rows)


async def release(conn: Connection, term: int) -> None:
    await conn.execute(QUERIES["leader_release"], {"term": term})


async def show(conn: Connection) -> Leadership | None:
    row = await fetch_one(conn, "leader_show", {})
    if row is None:
        return None
    return Leadership(int(row["term"]), str(row["holder"]), row["remaining"])
