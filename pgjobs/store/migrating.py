"""Schema migrations: numbered, forward-only SQL files, applied under an advisory lock.

`migrate` creates the database when it does not exist (the system pgjobs replaces did), then
applies what is missing; running it twice changes nothing and many processes may run it at
once. `check` refuses to run code against a schema it does not know: older code must not write
to a newer schema, and newer code must not run before `pgjobs migrate`.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from importlib import resources

import psycopg
from psycopg import errors, sql

from pgjobs.store import connecting

logger = logging.getLogger(__name__)

#: Any constant works; it only has to be the same in every pgjobs process.
_MIGRATION_LOCK_KEY = 0x7067_6A6F_6273  # "pgjobs"
_FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")


@dataclasses.dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql_text: str


def known_migrations() -> list[Migration]:
    """The migrations shipped with this code, in order; gaps or duplicates are an error."""
    folder = resources.files("pgjobs.store").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match["version"]), match["name"], entry.read_text("utf-8")))
    found.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..n without gaps, found {versions}")
    return found


def latest_version() -> int:
    return known_migrations()[-1].version


async def migrate(settings: connecting.DatabaseSettings) -> list[Migration]:
    """Create the database if needed and apply missing migrations; returns those applied."""
    # The lock below is a session's: behind a transaction pool, lock and unlock could land on
    # different server connections and leave the lock held.
    settings = settings.for_session()
    await ensure_database(settings)
    conn = await connecting.connect(settings)
    async with conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK_KEY,))
        try:
            return await _apply_missing(conn)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK_KEY,))


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
    """Raise DatabaseError unless the schema is exactly the one this code was written for."""
    have, want = await current_version(conn), latest_version()
    if have < want:
        raise connecting.DatabaseError(
            f"the database schema is at version {have}, this pgjobs needs {want}: run `pgjobs migrate`"
        )
    if have > want:
        raise connecting.DatabaseError(
            f"the database schema is at version {have}, newer than this pgjobs knows ({want}): "
            "upgrade pgjobs before running it against this database",
            retryable=False,
        )


async def _apply_missing(conn: psycopg.AsyncConnection[dict[str, object]]) -> list[Migration]:
    await conn.execute("CREATE SCHEMA IF NOT EXISTS pgjobs")
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS pgjobs.migrations ("
        " version integer PRIMARY KEY, name text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    have = await current_version(conn)
    if have > latest_version():
        await check(conn)
    applied = []
    for migration in known_migrations()[have:]:
        try:
            async with conn.transaction():
                await conn.execute(migration.sql_text.encode())
                await conn.execute(
                    "INSERT INTO pgjobs.migrations (version, name) VALUES (%s, %s)",
                    (migration.version, migration.name),
                )
        except errors.LockNotAvailable as error:
            raise connecting.DatabaseError(
                f"migration {migration.version:04d}_{migration.name} gave up waiting for a lock "
                f"({str(error).strip()}): a long transaction holds the table, and waiting would "
                "stall every worker behind it; run `pgjobs migrate` again once it has ended"
            ) from error
        logger.info("Applied migration %04d_%s", migration.version, migration.name)
        applied.append(migration)
    return applied
