"""Database roles: what the workers and the operator may do, granted by every `pgjobs migrate`.

The login that runs `pgjobs migrate` owns the schema. At the end of every migrate, under the
migration lock, it creates two NOLOGIN group roles when they are missing (`pgjobs_worker`,
`pgjobs_operator`; `--worker-role` / `--operator-role` rename them, "" leaves a group out) and
grants each exactly the privileges declared in `GRANTS`, after revoking whatever else it held
in the schema: the declaration is the whole truth, and a change to it reaches the database with
the next migrate. Logins for the workers and the operator are members of one group each
(docs/operations.md, "Database roles"); a single login that owns the schema keeps working too.

A migration that adds a table, a sequence, or a column that a worker's or the operator's
statement writes, declares its grants here as well. tests/integration/test_roles.py runs
every statement named in `WORKER_STATEMENTS` / `OPERATOR_STATEMENTS` as a member of that group
and fails until the grants cover it; tests/unit/test_roles.py fails on a statement in
queries.sql that no group is declared for.

Roles belong to the whole PostgreSQL cluster, not to one database: two installs that share a
cluster but must not reach each other's database use different group names.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence

import psycopg
from psycopg import errors, sql

logger = logging.getLogger(__name__)

WORKER = "worker"
OPERATOR = "operator"


@dataclasses.dataclass(frozen=True)
class GroupRoles:
    """The names of the group roles; "" leaves that group out (nothing created or granted)."""

    worker: str = "pgjobs_worker"
    operator: str = "pgjobs_operator"

    def by_group(self) -> dict[str, str]:
        return {group: name for group, name in ((WORKER, self.worker), (OPERATOR, self.operator)) if name}


@dataclasses.dataclass(frozen=True)
class Grant:
    """One privilege on one object of the schema, optionally limited to some columns."""

    privilege: str  # SELECT, INSERT, UPDATE, DELETE (tables); USAGE (sequences)
    kind: str  # TABLE or SEQUENCE
    name: str  # in schema pgjobs
    columns: tuple[str, ...] = ()

    def statement(self, role: str) -> sql.Composed:
        columns = (
            sql.SQL(" ({})").format(sql.SQL(", ").join(map(sql.Identifier, self.columns)))
            if self.columns
            else sql.SQL("")
        )
        return sql.SQL("GRANT {privilege}{columns} ON {kind} {name} TO {role}").format(
            privilege=sql.SQL(self.privilege),
            columns=columns,
            kind=sql.SQL(self.kind),
            name=sql.Identifier("pgjobs", self.name),
            role=sql.Identifier(role),
        )

    def needs(self) -> set[str]:
        """The relation, and its columns as `table.column`, that must exist to grant it."""
        return {self.name, *(f"{self.name}.{column}" for column in self.columns)}


def _table(privilege: str, name: str, *columns: str) -> Grant:
    return Grant(privilege, "TABLE", name, tuple(columns))


#: The statements of queries.sql each group runs (besides `migrating.check`, which reads
#: pgjobs.migrations). The workers': the hot statement and the rest of a job's life, their own
#: row, and the rescue sweep. The operator's: everything that turns PgJobs into rows and back,
#: the maintenance, the `pgjobs` administration commands (enqueue, list, stop, …) and the
#: web console (`pgjobs console`), which needs no more than those.
WORKER_STATEMENTS = frozenset(
    {
        "job_complete_and_claim",
        "job_announce",
        "job_complete",
        "job_fail",
        "job_stop_acknowledge",
        "job_release",
        "job_progress",
        "job_get",
        "job_rescue_many",
        "job_log_write",
        "worker_register",
        "worker_heartbeat",
        "worker_deregister",
    }
)
OPERATOR_STATEMENTS = frozenset(
    {
        "job_insert",
        "job_announce",
        "job_stop",
        "job_start",
        "job_unstop",
        "job_restart",
        "job_record_restarts",
        "job_delete",
        "job_delete_resource",
        "job_delete_resources",
        "job_get",
        "job_list",
        "job_list_expired",
        "job_count_by_state",
        "job_count_backlog",
        "job_oldest_due_by_queue",
        "job_prune_finished",
        "job_holding_key",
        "job_rescue_many",
        "worker_list",
        "worker_prune",
        "worker_count_alive",
        "schema_state_labels",
        "resource_upsert",
        "resource_observe_generation",
        "resource_list_unsynced",
        "resource_mark_synced",
        "resource_list_keys",
        "resource_get_state",
        "resource_count_unsynced",
        "resource_lock_namespace",
        "resource_count_unfinished",
        "resource_forget_deleted",
        "job_mark_no_worker",
        "leader_try_lock",
        "leader_ping",
        "leader_acquire",
        "leader_renew",
        "leader_release",
        "leader_show",
        "oldest_snapshot",
        "queue_apply",
        "queue_remove",
        "queue_remove_others",
        "queue_list_stats",
        # `pgjobs console` runs as the operator's group: it reads what the admin commands read
        # and acts (stop, start, restart, delete) on rows without a PgJob as they do.
        "job_page_older",
        "job_list_running",
        "job_log_read",
        "job_find_resource",
    }
)

#: Every privilege each group holds in schema pgjobs (USAGE on the schema comes with any).
#: A worker reads jobs (it runs them) but writes only a job's execution columns, never what a
#: job is (task, args, queue, priority, attempts allowed, its PgJob): a worker cannot turn a
#: job into another, nor move it to another pool. It never inserts or deletes jobs, and never
#: touches the leadership. The operator may not change the schema or the migrations.
GRANTS: dict[str, tuple[Grant, ...]] = {
    WORKER: (
        _table("SELECT", "migrations"),
        _table("SELECT", "jobs"),
        _table(
            "UPDATE",
            "jobs",
            "state",
            "attempt",
            "lease",
            "worker_id",
            "run_after",
            "started_at",
            "finished_at",
            "progress",
            "message",
            "result",
            "stop_requested",
            "change_count",
            # Registration takes the leader's mark off the jobs the worker can run.
            "no_worker_since",
        ),
        Grant("USAGE", "SEQUENCE", "lease_seq"),
        # The claim reads which queues are paused or capped (migration 0010_queues), and takes
        # starts from a rate-limited queue's bucket (migration 0014_queue_start_rate).
        _table("SELECT", "queues"),
        _table("UPDATE", "queues", "start_tokens", "tokens_at"),
        # The workers' own registry: a row per worker process, which it writes itself.
        _table("SELECT", "workers"),
        _table("INSERT", "workers"),
        _table("UPDATE", "workers"),
        # What tasks log (migration 0011_job_logs): appended, never changed or read back.
        _table("INSERT", "job_logs"),
        _table("SELECT", "job_logs", "job_id", "attempt", "seq"),
        # Row scoping reads the login's pool (migration 0013_worker_pools).
        _table("SELECT", "worker_pools"),
    ),
    OPERATOR: (
        _table("SELECT", "migrations"),
        _table("SELECT", "jobs"),
        _table("INSERT", "jobs"),
        _table("UPDATE", "jobs"),
        _table("DELETE", "jobs"),
        _table("SELECT", "workers"),
        _table("UPDATE", "workers", "state"),
        _table("DELETE", "workers"),
        # The leadership lease (migration 0005_leadership_lease).
        _table("SELECT", "leadership"),
        _table("INSERT", "leadership"),
        _table("UPDATE", "leadership"),
        _table("DELETE", "leadership"),
        # PgQueue specs, copied in by the operator (migration 0010_queues).
        _table("SELECT", "queues"),
        _table("INSERT", "queues"),
        _table("UPDATE", "queues"),
        _table("DELETE", "queues"),
        # Job logs (migration 0011_job_logs): read by `pgjobs logs` and the logs API, cleared by
        # a restart (deleting a job removes them through the foreign key, as the table's owner).
        _table("SELECT", "job_logs"),
        _table("DELETE", "job_logs"),
        # Deleted PgJobs (migration 0012_deleted_resources): recorded at deletion, read by the
        # create, forgotten after a day.
        _table("SELECT", "deleted_resources"),
        _table("INSERT", "deleted_resources"),
        _table("DELETE", "deleted_resources"),
        # Row scoping reads the login's pool (migration 0013_worker_pools): none, every row.
        _table("SELECT", "worker_pools"),
    ),
}
#: Relations of the schema no group may touch (tests/integration/test_roles.py checks that
#: every table and sequence is named in GRANTS or here).
NOT_GRANTED: frozenset[str] = frozenset()


async def _existing_columns(conn: psycopg.AsyncConnection[dict[str, object]]) -> set[str]:
    """The columns of schema pgjobs's tables, as `table.column`."""
    cursor = await conn.execute(
        "SELECT table_name || '.' || column_name AS name FROM information_schema.columns"
        " WHERE table_schema = 'pgjobs'"
    )
    return {str(row["name"]) for row in await cursor.fetchall()}


async def existing_relations(conn: psycopg.AsyncConnection[dict[str, object]]) -> set[str]:
    """The tables and sequences of schema pgjobs, except identity columns' own sequences."""
    cursor = await conn.execute(
        "SELECT c.relname AS name FROM pg_class c"
        " WHERE c.relnamespace = 'pgjobs'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S')"
        " AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass"
        "                 AND d.objid = c.oid AND d.deptype = 'i')"
    )
    return {str(row["name"]) for row in await cursor.fetchall()}


async def apply(
    conn: psycopg.AsyncConnection[dict[str, object]],
    names: GroupRoles | None = None,
    *,
    schema_is_newer: bool = False,
) -> list[str]:
    """Create the missing group roles and set their privileges to `GRANTS`; the groups granted.

    Run under the migration lock by `migrating.migrate`, which says whether the schema is newer
    than this code. A login that may not create roles skips the groups that do not exist (with
    a warning): a single-login install needs none.
    """
    if schema_is_newer:
        # Older code during a rolling update: the newer code's migrate owns the grants, and
        # this declaration would take away what its new columns need.
        logger.info("The schema is newer than this pgjobs: its grants are left as they are")
        return []
    present = await existing_relations(conn) | await _existing_columns(conn)
    granted = []
    for group, role in (names or GroupRoles()).by_group().items():
        if not await _ensure_role(conn, role):
            continue
        try:
            async with conn.transaction():
                await _revoke_all(conn, role)
                await conn.execute(sql.SQL("GRANT USAGE ON SCHEMA pgjobs TO {}").format(sql.Identifier(role)))
                for grant in GRANTS[group]:
                    if grant.needs() <= present:  # of a migration not applied yet: none
                        await conn.execute(grant.statement(role))
        except errors.InsufficientPrivilege as error:
            logger.warning(
                "Could not grant the %s privileges to role %s (%s): run `pgjobs migrate` as the "
                "schema's owner",
                group,
                role,
                str(error).strip(),
            )
            continue
        await _grant_connect(conn, role)
        granted.append(role)
    return granted


async def _ensure_role(conn: psycopg.AsyncConnection[dict[str, object]], role: str) -> bool:
    """True when the role exists, created NOLOGIN here if needed."""
    if await _role_exists(conn, role):
        return True
    try:
        async with conn.transaction():
            await conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
    except (errors.DuplicateObject, errors.UniqueViolation):
        return True  # a migrate of another database of the same cluster created it a moment ago
    except errors.InsufficientPrivilege:
        logger.warning(
            "Role %s does not exist and this login may not create roles: its privileges are not "
            "granted (create it, or run `pgjobs migrate` with a login that has CREATEROLE)",
            role,
        )
        return False
    logger.info("Created group role %s", role)
    return True


async def _role_exists(conn: psycopg.AsyncConnection[dict[str, object]], role: str) -> bool:
    cursor = await conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
    return await cursor.fetchone() is not None


async def _revoke_all(conn: psycopg.AsyncConnection[dict[str, object]], role: str) -> None:
    """Drop every privilege the role holds in the schema (column privileges go with the table's)."""
    role_name = sql.Identifier(role)
    for kind in ("TABLES", "SEQUENCES", "FUNCTIONS"):
        await conn.execute(
            sql.SQL("REVOKE ALL ON ALL {} IN SCHEMA pgjobs FROM {}").format(sql.SQL(kind), role_name)
        )
    await conn.execute(sql.SQL("REVOKE ALL ON SCHEMA pgjobs FROM {}").format(role_name))


async def _grant_connect(conn: psycopg.AsyncConnection[dict[str, object]], role: str) -> None:
    """CONNECT on this database, for clusters that revoked it from PUBLIC; best effort."""
    statement = sql.SQL("GRANT CONNECT ON DATABASE {} TO {}")
    cursor = await conn.execute("SELECT current_database() AS name")
    row = await cursor.fetchone()
    assert row is not None
    try:
        async with conn.transaction():
            await conn.execute(statement.format(sql.Identifier(str(row["name"])), sql.Identifier(role)))
    except errors.InsufficientPrivilege:
        logger.info("Could not grant CONNECT on this database to %s: not its owner", role)


async def apply_pools(
    conn: psycopg.AsyncConnection[dict[str, object]], pools: Mapping[str, Sequence[str]]
) -> None:
    """Give each login its pool of queues (row scoping, migration 0013_worker_pools); an empty
    list of queues takes the login's pool away. Logins not named keep theirs: each worker pool's
    installation names its own login."""
    async with conn.transaction():
        for login, queues in pools.items():
            if queues:
                await conn.execute(
                    "INSERT INTO pgjobs.worker_pools (login, queues) VALUES (%s, %s)"
                    " ON CONFLICT (login) DO UPDATE SET queues = excluded.queues",
                    (login, list(queues)),
                )
            else:
                await conn.execute("DELETE FROM pgjobs.worker_pools WHERE login = %s", (login,))
    for login, queues in pools.items():
        logger.info("Worker login %s: %s", login, f"queues {', '.join(queues)}" if queues else "every queue")
