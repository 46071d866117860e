"""Why `--no-prepared-statements` exists: PgBouncer 1.18 in transaction mode hands the next
transaction of any client to the server connection the last one used, named statements and all."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from psycopg import errors

from pgjobs.store import connecting, jobs
from pgjobs.store.records import NewJob
from tests.integration import pooler

pytestmark = pytest.mark.integration


def _claim_on_two_connections(settings: connecting.DatabaseSettings) -> list[int]:
    """Two clients claim one after the other, each on its own connection through the pool."""

    async def run() -> list[int]:
        first, second = await connecting.connect(settings), await connecting.connect(settings)
        async with first, second:
            await jobs.enqueue(first, NewJob("noop"), 2)
            claimed = [await jobs.claim(conn, uuid.uuid4(), ["default"]) for conn in (first, second)]
        return [job.id for job in claimed if job is not None]

    return asyncio.run(run())


def _through(
    database: connecting.DatabaseSettings, bouncer: pooler.PgBouncer, *, prepared: bool
) -> connecting.DatabaseSettings:
    return connecting.DatabaseSettings(
        url=bouncer.url_without_password(database.database_name()),
        password=database.password,
        prepared_statements=prepared,
    )


def test_named_statements_collide_in_a_transaction_pool(
    database: connecting.DatabaseSettings, transaction_pool: pooler.PgBouncer
) -> None:
    with pytest.raises(errors.DuplicatePreparedStatement, match="pgjobs_job_complete_and_claim"):
        _claim_on_two_connections(_through(database, transaction_pool, prepared=True))


def test_without_named_statements_both_clients_claim(
    database: connecting.DatabaseSettings, transaction_pool: pooler.PgBouncer
) -> None:
    assert len(set(_claim_on_two_connections(_through(database, transaction_pool, prepared=False)))) == 2
