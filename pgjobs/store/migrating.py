"""Schema migrations: numbered, forward-only SQL files, applied under an advisory lock.

`migrate` creates the database when it does not exist (the system pgjobs replaces did), then
applies what is missing; running it twice changes nothing and many processes may run it at
once. `check` refuses to run newer code before `pgjobs migrate`, and older code against a newer
schema unless every migration it does not know is additive.

A migration that declares `-- transaction: none` (to build an index CONCURRENTLY, which claims
and enqueues do not wait for) runs its statements one at a time outside a transaction; it must be
safe to run again from the start, since a failure can leave it half done. Its statements are
split at each `;` that ends a line, so it holds no function bodies.

The compatibility window: each migration file declares, in its leading comment block, either
`-- compatibility: additive` (code written before it keeps working against the schema it
leaves: new tables, new columns that are nullable or have a default, new indexes, functions that
keep what older code relies on) or `-- compatibility: breaking` (anything else: older code must
stop before it is applied). `pgjobs migrate` records the declaration in `pgjobs.migrations`, so
that code older than the schema can tell, from the database alone, whether it may still run:
during a rolling update, old and new workers drain the same queue side by side.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from collections.abc import Mapping, Sequence
from importlib import resources

import psycopg
from psycopg import errors, sql

from pgjobs.store import connecting, roles

logger = logging.getLogger(__name__)

#: Any constant works; it only has to be the same in every pgjobs process.
_MIGRATION_LOCK_KEY = 0x7067_6A6F_6273  # "pgjobs"
_FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")
_COMPATIBILITY = re.compile(r"^-- compatibility: (?P<kind>additive|breaking)\s*$")
_NO_TRANSACTION = re.compile(r"^-- transaction: none\s*$")
_STATEMENT_END = re.compile(r";[ \t]*$", re.MULTILINE)
#: Where the window and the two kinds are explained to whoever meets a refusal.
#: How often a migration waiting for another one asks for the lock again.
_LOCK_POLL_SECONDS = 0.2
_DOCS = "docs/operations.md#rolling-upgrades-the-compatibility-window"


@dataclasses.dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql_text: str
    #: False for an additive migration (code written before it still runs against its schema).
    breaking: bool
    #: Declared `-- transaction: none`: its statements run one by one, each in autocommit.
    outside_transaction: bool = False

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"

    def statements(self) -> list[str]:
        """The statements of a migration run outside a transaction, in order."""
        if "$$" in self.sql_text:
            raise RuntimeError(
                f"migration {self.label} runs outside a transaction: it cannot hold function bodies"
            )
        parts = (_strip_comments(part) for part in _STATEMENT_END.split(self.sql_text))
        return [part for part in parts if part]


def declared_breaking(file_name: str, sql_text: str) -> bool:
    """The `-- compatibility: additive|breaking` line of a migration's leading comment block."""
    for line in sql_text.splitlines():
        if not line.startswith("--"):
            break
        match = _COMPATIBILITY.match(line)
        if match:
            return match["kind"] == "breaking"
    raise RuntimeError(
        f"migration {file_name} must declare, in its leading comment lines, either "
        "'-- compatibility: additive' (code written before it keeps working against its schema) "
        f"or '-- compatibility: breaking' (see {_DOCS})"
    )


def _strip_comments(text: str) -> str:
    lines = (line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return "\n".join(lines).strip()


def declared_outside_transaction(sql_text: str) -> bool:
    """Whether a migration's leading comment block has the line `-- transaction: none`."""
    for line in sql_text.splitlines():
        if not line.startswith("--"):
            return False
        if _NO_TRANSACTION.match(line):
            return True
    return False


def known_migrations() -> list[Migration]:
    """The migrations shipped with this code, in order; gaps or duplicates are an error."""
    folder = resources.files("pgjobs.store").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            text = entry.read_text("utf-8")
            breaking = declared_breaking(entry.name, text)
            outside = declared_outside_transaction(text)
            found.append(Migration(int(match["version"]), match["name"], text, breaking, outside))
    found.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..n without gaps, found {versions}")
    return found


def latest_version() -> int:
    return known_migrations()[-1].version


async def migrate(
    settings: connecting.DatabaseSettings,
    group_roles: roles.GroupRoles | None = None,
    pools: Mapping[str, Sequence[str]] | None = None,
) -> list[Migration]:
    """Create the database if needed and apply missing migrations; returns those applied.
    Then grant the group roles their privileges (`roles.apply`), and give worker logins their
    pools (`roles.apply_pools`), on every run."""
    # The lock below is a session's: behind a transaction pool, lock and unlock could land on
    # different server connections and leave the lock held.
    settings = settings.for_session()
    await ensure_database(settings)
    conn = await connecting.connect(settings)
    async with conn:
        await _take_migration_lock(conn)
        try:
            applied = await _apply_missing(conn)
            newer = await current_version(conn) > latest_version()
            await roles.apply(conn, group_roles, schema_is_newer=newer)
            if pools:
                await roles.apply_pools(conn, pools)
            return applied
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK_KEY,))


async def _take_migration_lock(conn: psycopg.AsyncConnection[dict[str, object]]) -> None:
    """Wait for the migration lock between statements, not in one: a statement waiting holds a
    snapshot, and CREATE INDEX CONCURRENTLY (run by the holder) waits for every older snapshot,
    so waiting in `pg_advisory_lock` would deadlock with it."""
    while True:
        row = await (
            await conn.execute("SELECT pg_try_advisory_lock(%s) AS taken", (_MIGRATION_LOCK_KEY,))
        ).fetchone()
        if row and row["taken"]:
            return
        await asyncio.sleep(_LOCK_POLL_SECONDS)


async def ensure_database(settings: connecting.DatabaseSettings) -> bool:
    """Create the configured database through the `postgres` maintenance database; True if created."""
    try:
        conn = await connecting.connect(settings)
    except connecting.DatabaseError as error:
        if not isinstance(error.__cause__, psycopg.OperationalError) or "does not exist" not in str(
            error.__cause__
        ):
            raise
    else:
        await conn.close()
        return False
    name = settings.database_name()
    admin = await connecting.connect(settings, dbname="postgres")
    async with admin:
        try:
            await admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except errors.DuplicateDatabase:
            return False  # another process created it a moment ago
        except errors.UniqueViolation:
            return False  # the same race, seen while pg_database is being written
        except psycopg.Error as error:
            raise connecting.DatabaseError(
                f"database {name!r} does not exist and cannot be created: "
                f"{str(error).strip()}. Create it by hand or grant CREATEDB"
            ) from error
    logger.info("Created database %s", name)
    return True


async def current_version(conn: psycopg.AsyncConnection[dict[str, object]]) -> int:
    """The highest applied migration, 0 for a database pgjobs has never touched."""
    row = await (
        await conn.execute("SELECT to_regclass('pgjobs.migrations') IS NOT NULL AS present")
    ).fetchone()
    if not row or not row["present"]:
        return 0
    row = await (
        await conn.execute("SELECT coalesce(max(version), 0) AS version FROM pgjobs.migrations")
    ).fetchone()
    return int(row["version"]) if row else 0  # type: ignore[call-overload]


async def check(conn: psycopg.AsyncConnection[dict[str, object]]) -> None:
    """Raise DatabaseError unless this code can run against the schema: exactly the one it was
    written for, or a newer one whose every migration this code does not know is additive."""
    have, want = await current_version(conn), latest_version()
    if have < want:
        raise connecting.DatabaseError(
            f"the database schema is at version {have}, this pgjobs needs {want}: run `pgjobs migrate`"
        )
    if have > want:
        newer = await _newer_migrations(conn, want)
        blocking = [label for label, breaking in newer if breaking is not False]
        if blocking:
            raise connecting.DatabaseError(
                f"the database schema is at version {have}, newer than this pgjobs knows ({want}), "
                f"and {_breaking_reason(blocking)}: pgjobs at schema version {want} cannot run "
                f"against it. Replace this pgjobs with a release at schema version {have} or later "
                f"(see {_DOCS})",
                retryable=False,
            )
        logger.info(
            "The database schema is at version %d, newer than this pgjobs (%d); the migrations it "
            "does not know (%s) are additive, so it runs against it unchanged",
            have,
            want,
            ", ".join(label for label, _ in newer),
        )


async def _newer_migrations(
    conn: psycopg.AsyncConnection[dict[str, object]], want: int
) -> list[tuple[str, bool | None]]:
    """The applied migrations after version `want`, with what they declared (None: unknown)."""
    # Read through to_jsonb, so that a table without the column (a schema migrated only by code
    # from before the compatibility window) answers None instead of failing.
    cursor = await conn.execute(
        "SELECT version, name, to_jsonb(m) -> 'breaking' AS breaking"
        " FROM pgjobs.migrations AS m WHERE version > %s ORDER BY version",
        (want,),
    )
    newer = []
    for row in await cursor.fetchall():
        declared = row["breaking"]
        breaking = declared if isinstance(declared, bool) else None
        newer.append((f"{row['version']:04d}_{row['name']}", breaking))
    return newer


def _breaking_reason(labels: list[str]) -> str:
    if len(labels) == 1:
        return f"migration {labels[0]} is breaking (or declares no compatibility)"
    return f"migrations {', '.join(labels)} are breaking (or declare no compatibility)"


async def _apply_missing(conn: psycopg.AsyncConnection[dict[str, object]]) -> list[Migration]:
    await conn.execute("CREATE SCHEMA IF NOT EXISTS pgjobs")
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS pgjobs.migrations ("
        " version integer PRIMARY KEY, name text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    await _record_compatibility(conn)
    have = await current_version(conn)
    if have > latest_version():
        # Older code against a newer schema: nothing to apply. Refused when a migration it does
        # not know is breaking; otherwise a no-op, so that an old pod's `pgjobs migrate` (an init
        # container during a rolling update) does not fail and hold the pod back.
        await check(conn)
        return []
    applied = []
    for migration in known_migrations()[have:]:
        try:
            await _apply(conn, migration)
        except errors.LockNotAvailable as error:
            raise connecting.DatabaseError(
                f"migration {migration.version:04d}_{migration.name} gave up waiting for a lock "
                f"({str(error).strip()}): a long transaction holds the table, and waiting would "
                "stall every worker behind it; run `pgjobs migrate` again once it has ended"
            ) from error
        logger.info("Applied migration %s", migration.label)
        applied.append(migration)
    return applied


async def _apply(conn: psycopg.AsyncConnection[dict[str, object]], migration: Migration) -> None:
    record = (
        "INSERT INTO pgjobs.migrations (version, name, breaking) VALUES (%s, %s, %s)",
        (migration.version, migration.name, migration.breaking),
    )
    if migration.outside_transaction:
        for statement in migration.statements():
            await conn.execute(statement.encode())
        await conn.execute(*record)
        return
    async with conn.transaction():
        await conn.execute(migration.sql_text.encode())
        await conn.execute(*record)


async def _record_compatibility(conn: psycopg.AsyncConnection[dict[str, object]]) -> None:
    """Give `pgjobs.migrations` its `breaking` column, and fill it in for the known migrations
    recorded before it existed (NULL stays for versions this code does not know: unknown)."""
    row = await (
        await conn.execute(
            "SELECT count(*) AS present FROM pg_attribute"
            " WHERE attrelid = 'pgjobs.migrations'::regclass AND attname = 'breaking'"
            " AND NOT attisdropped"
        )
    ).fetchone()
    if not row or not row["present"]:
        # Only when missing: ALTER TABLE waits for every reader of the table, even with IF NOT EXISTS.
        await conn.execute("ALTER TABLE pgjobs.migrations ADD COLUMN IF NOT EXISTS breaking boolean")
    known = known_migrations()
    await conn.execute(
        "UPDATE pgjobs.migrations AS m SET breaking = d.breaking"
        " FROM unnest(%s::integer[], %s::boolean[]) AS d (version, breaking)"
        " WHERE m.version = d.version AND m.breaking IS NULL",
        ([m.version for m in known], [m.breaking for m in known]),
    )
