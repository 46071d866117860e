"""The operator's side of the store: status-sync reads and writes, generations, clean-up.

Like `jobs`, every function takes an autocommit connection and runs one named query.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from pgjobs.states import JobState, Priority
from pgjobs.store import validation
from pgjobs.store.queries import QUERIES, Connection, fetch_all, fetch_one
from pgjobs.store.records import ResourceJob, Row


@dataclasses.dataclass(frozen=True)
class SyncRow:
    """A row whose status must be copied to its PgJob, with what was copied last time."""

    id: int
    task: str
    priority: Priority
    queue: str
    state: JobState
    attempt: int
    max_attempts: int
    progress: int
    message: str | None
    result: Any
    restarts: int
    run_after: datetime.datetime
    created_at: datetime.datetime
    started_at: datetime.datetime | None
    finished_at: datetime.datetime | None
    resource_uid: str
    resource_namespace: str
    resource_name: str
    change_count: int
    observed_generation: int | None
    synced_state: JobState | None
    synced_attempt: int
    worker_name: str | None
    #: Since when no live worker can run the pending job (`jobs.mark_no_worker`); None otherwise.
    no_worker_since: datetime.datetime | None = None

    @classmethod
    def from_row(cls, row: Row) -> SyncRow:
        values = {field.name: row[field.name] for field in dataclasses.fields(cls)}
        values["priority"] = Priority(row["priority"])
        values["state"] = JobState(row["state"])
        values["synced_state"] = JobState(row["synced_state"]) if row["synced_state"] else None
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class RowState:
    id: int
    state: JobState
    stop_requested: bool


async def upsert(conn: Connection, resource: ResourceJob, generation: int) -> tuple[int, bool] | None:
    """Create or update the row of a PgJob (keyed by its uid); returns (id, created), or None when
    the PgJob's deletion has removed its row already (a late create makes no orphan).

    A created row has `generation` recorded as observed already; an updated one does not
    (`observe_generation`, after the rest of the spec is applied).
    """
    validation.check_resource_job(resource)
    params = {
        **resource.job.parameters(),
        "resource_uid": resource.uid,
        "resource_namespace": resource.namespace,
        "resource_name": resource.name,
        "stopped": resource.stopped,
        "restarts": resource.restarts,
        "ttl_seconds_after_finished": resource.ttl_seconds_after_finished,
        "generation": generation,
    }
    row = await fetch_one(conn, "resource_upsert", params)
    return (int(row["id"]), bool(row["inserted"])) if row else None


async def observe_generation(conn: Connection, resource_uid: str, generation: int) -> bool:
    """Record the PgJob generation applied to the row; True when it changed (a status write follows)."""
    params = {"resource_uid": resource_uid, "generation": generation}
    return bool(await fetch_all(conn, "resource_observe_generation", params))


async def list_unsynced(
    conn: Connection,
    limit: int,
    busy: Sequence[int] = (),
    after_namespace: str = "",
    cursors: Mapping[str, int] | None = None,
) -> list[SyncRow]:
    """Rows to copy, in fair turns, except `busy` ones (their copy is in flight).

    Namespaces take turns from the one after `after_namespace`; within one, state changes come
    first, then progress-only changes from the row after `cursors[namespace]` (the id of the
    progress-only row copied last there), wrapping around (`resource_list_unsynced`).
    """
    cursors = cursors or {}
    params = {
        "limit": limit,
        "busy": list(busy),
        "after_namespace": after_namespace,
        "cursor_namespaces": list(cursors),
        "cursor_ids": list(cursors.values()),
    }
    return [SyncRow.from_row(row) for row in await fetch_all(conn, "resource_list_unsynced", params)]


async def mark_synced(conn: Connection, copied: Sequence[SyncRow]) -> None:
    """Record the change counts, states and attempts copied to Kubernetes."""
    await conn.execute(
        QUERIES["resource_mark_synced"],
        {
            "job_ids": [row.id for row in copied],
            "change_counts": [row.change_count for row in copied],
            "states": [row.state.value for row in copied],
            "attempts": [row.attempt for row in copied],
        },
    )


async def list_keys(conn: Connection) -> list[tuple[str, str]]:
    """(uid, namespace) of every row that belongs to a PgJob."""
    rows = await fetch_all(conn, "resource_list_keys", {})
    return [(str(row["resource_uid"]), str(row["resource_namespace"])) for row in rows]


async def get_state(conn: Connection, resource_uid: str) -> RowState | None:
    rows = await fetch_all(conn, "resource_get_state", {"resource_uid": resource_uid})
    if not rows:
        return None
    return RowState(int(rows[0]["id"]), JobState(rows[0]["state"]), bool(rows[0]["stop_requested"]))


async def count_unsynced(conn: Connection) -> int:
    rows = await fetch_all(conn, "resource_count_unsynced", {})
    return int(rows[0]["unsynced"]) if rows else 0


#: The first key of the per-namespace admission lock (`resource_lock_namespace`).
NAMESPACE_LOCK_KEY = 0x706A6E73  # "pjns"


async def count_unfinished_locked(conn: Connection, namespace: str, limit: int) -> int:
    """The namespace's Pending and Running rows (at most `limit`), under its admission lock.

    Call it in a transaction that then adds the row: the lock is held until it ends.
    """
    await fetch_all(conn, "resource_lock_namespace", {"key": NAMESPACE_LOCK_KEY, "namespace": namespace})
    rows = await fetch_all(conn, "resource_count_unfinished", {"namespace": namespace, "limit": limit})
    return int(rows[0]["unfinished"])


async def forget_deleted(conn: Connection) -> int:
    """Drop the records of PgJobs deleted more than a day ago; the number dropped."""
    row = await fetch_one(conn, "resource_forget_deleted", {})
    return int(row["forgotten"]) if row else 0
