"""The oldest-snapshot figure behind `pgjobs_oldest_snapshot_age_seconds`, on a real server."""

from __future__ import annotations

import asyncio
import secrets
import time

import psycopg
import pytest
from psycopg import conninfo

from pgjobs.store import connecting, horizon

pytestmark = pytest.mark.integration


async def _oldest(settings: connecting.DatabaseSettings) -> horizon.OldestSnapshot:
    async with await connecting.connect(settings) as conn:
        return await horizon.oldest_snapshot(conn)


def _url(settings: connecting.DatabaseSettings) -> str:
    return conninfo.make_conninfo(settings.url, password=settings.password)


def test_an_open_snapshot_is_aged_until_it_ends(database: connecting.DatabaseSettings) -> None:
    quiet = asyncio.run(_oldest(database))
    assert quiet.age_seconds == 0.0 and quiet.sees_all_sessions  # the test role is a superuser
    with psycopg.connect(_url(database)) as report:
        report.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        report.execute("SELECT count(*) FROM pgjobs.jobs")  # takes the snapshot
        time.sleep(1.2)
        held = asyncio.run(_oldest(database))
        assert 1.0 <= held.age_seconds < 60
        report.execute("COMMIT")
    assert asyncio.run(_oldest(database)).age_seconds == 0.0


def test_a_transaction_without_a_snapshot_holds_nothing_back(database: connecting.DatabaseSettings) -> None:
    with psycopg.connect(_url(database)) as idle:
        idle.execute("BEGIN")  # no statement yet: no snapshot, no transaction id
        time.sleep(0.2)
        assert asyncio.run(_oldest(database)).age_seconds == 0.0
        idle.execute("ROLLBACK")


def test_a_role_without_pg_read_all_stats_is_told_its_view_is_partial(
    database: connecting.DatabaseSettings,
) -> None:
    role, password = f"plain_{secrets.token_hex(4)}", secrets.token_hex(8)
    with psycopg.connect(_url(database), autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        try:
            plain = connecting.DatabaseSettings(
                url=conninfo.make_conninfo(database.url, user=role), password=password
            )
            seen = asyncio.run(_oldest(plain))
            assert (seen.role, seen.sees_all_sessions) == (role, False)
            admin.execute(f"GRANT pg_read_all_stats TO {role}")
            assert asyncio.run(_oldest(plain)).sees_all_sessions
        finally:
            admin.execute(f"DROP ROLE {role}")
