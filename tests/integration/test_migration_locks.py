"""Upgrades that do not stall claims: each migration since the claim index was rebuilt (0009),
applied to a jobs table of 1,000,000 rows while claims go on, holds no lock that makes a claim
wait a second.

A migration's build of an index without CONCURRENTLY (0005 to 0007 did) holds writes for as long
as it reads the table, seconds at this size; `ALTER TABLE` waits behind a long transaction and
queues every claim behind itself. The claims here are claim-shaped writes (lock the first
pending row of the queue and update it, then roll back: the schema they run against is the one
before the migration, so the code's own claim statement, written for the newest, cannot be used).
"""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest

from pgjobs.devenv import postgres
from pgjobs.store import connecting, migrating

pytestmark = pytest.mark.integration

#: The first migration whose locks this test holds to the bound; older ones ran long ago.
FIRST_CHECKED = 9
ROWS = 1_000_000
PENDING = 1_000
#: The longest a claim may wait on a migration's locks.
BOUND = 1.0
CLAIM = """
UPDATE pgjobs.jobs SET state = 'running', started_at = now()
WHERE id = (SELECT id FROM pgjobs.jobs WHERE state = 'pending' AND queue = 'default'
            ORDER BY priority DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING id
"""
FILL = """
INSERT INTO pgjobs.jobs (task, queue, state, finished_at)
SELECT 'noop', 'default', CASE WHEN n <= %(pending)s THEN 'pending' ELSE 'completed' END::pgjobs.job_state,
       CASE WHEN n <= %(pending)s THEN NULL ELSE now() END
FROM generate_series(1, %(rows)s) AS n
"""


def _migrate_to(settings: connecting.DatabaseSettings, version: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Apply the migrations up to `version` only, as code of that version would."""
    known = migrating.known_migrations()[:version]
    with monkeypatch.context() as patch:
        patch.setattr(migrating, "known_migrations", lambda: known)
        asyncio.run(migrating.migrate(settings))


async def _claims_during(
    settings: connecting.DatabaseSettings, migration: asyncio.Task[object]
) -> list[float]:
    """How long each claim took while the migration ran."""
    taken = []
    async with await psycopg.AsyncConnection.connect(settings.conninfo()) as conn:
        while not migration.done():
            started = time.monotonic()
            async with conn.transaction(force_rollback=True):
                await conn.execute(CLAIM)
            taken.append(time.monotonic() - started)
            await asyncio.sleep(0.01)
    await migration
    return taken


@pytest.mark.parametrize("version", range(FIRST_CHECKED, migrating.latest_version() + 1))
def test_a_migration_never_holds_claims_for_a_second(
    version: int, postgres_server: postgres.PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = postgres_server.create_database(f"locks_{version}")
    settings = connecting.DatabaseSettings(
        url=postgres_server.url_without_password(name), password=postgres_server.password
    )
    _migrate_to(settings, version - 1, monkeypatch)
    with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
        conn.execute(FILL, {"rows": ROWS, "pending": PENDING})
        conn.execute("VACUUM ANALYZE pgjobs.jobs")

    async def run() -> list[float]:
        migration = asyncio.create_task(migrating.migrate(settings))
        await asyncio.sleep(0)  # the migration's first statement is on its way
        return await _claims_during(settings, migration)

    taken = asyncio.run(run())
    label = migrating.known_migrations()[version - 1].label
    print(f"\n{label}: {len(taken)} claims during it, the longest {max(taken, default=0) * 1000:.0f} ms")
    assert taken, f"{label} ran too fast to claim meanwhile"
    assert max(taken) < BOUND, f"{label} held a claim for {max(taken):.2f}s"
