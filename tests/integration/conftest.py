"""Fixtures of the integration suites: worker processes, the ledger their tasks write,
PgBouncer in front of the test server (one per pool mode, started on first use), and logins
that are members of a group role."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgjobs.devenv import postgres
from pgjobs.store import connecting, queries
from tests.integration import pooler
from tests.processes import Ledger, WorkerProcess


@pytest.fixture
def ledger() -> Ledger:
    return Ledger()


@pytest.fixture
def spawn(database_env: dict[str, str], ledger: Ledger):  # type: ignore[no-untyped-def]
    """Start `pgjobs worker` processes (fast heartbeats, the sample tasks); stopped at the end."""
    started: list[WorkerProcess] = []

    def start(*extra: str) -> WorkerProcess:
        worker = WorkerProcess(database_env, ledger, extra)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture(scope="session")
def transaction_pool(postgres_server: postgres.PostgresServer) -> Iterator[pooler.PgBouncer]:
    with _pgbouncer(postgres_server, "transaction") as bouncer:
        yield bouncer


@pytest.fixture(scope="session")
def session_pool(postgres_server: postgres.PostgresServer) -> Iterator[pooler.PgBouncer]:
    with _pgbouncer(postgres_server, "session") as bouncer:
        yield bouncer


def _pgbouncer(server: postgres.PostgresServer, mode: str) -> pooler.PgBouncer:
    try:
        return pooler.PgBouncer(server, mode)
    except pooler.PgBouncerNotFound as error:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI must run the pooled tests: {error} (make setup installs it)", pytrace=False)
        pytest.skip(str(error))


LoginFactory = Callable[[str], connecting.DatabaseSettings]


@pytest.fixture
def login(
    postgres_server: postgres.PostgresServer, database: connecting.DatabaseSettings
) -> Iterator[LoginFactory]:
    """Make a LOGIN role, a member of the given group role, for the test database; dropped after."""
    made: list[str] = []

    def make(group: str) -> connecting.DatabaseSettings:
        name = f"login_{group}_{uuid.uuid4().hex[:8]}"
        password = uuid.uuid4().hex
        admin_sql(
            database,
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE {}").format(
                sql.Identifier(name), sql.Literal(password), sql.Identifier(group)
            ),
        )
        made.append(name)
        url = psycopg.conninfo.make_conninfo(database.url, user=name)
        return connecting.DatabaseSettings(url=url, password=password)

    yield make
    for name in made:
        admin_sql(database, sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def admin_sql(settings: connecting.DatabaseSettings, statement: sql.Composed | str) -> None:
    async def run() -> None:
        conn = await connecting.connect(settings)
        async with conn:
            await conn.execute(statement)

    asyncio.run(run())


def run_as(settings: connecting.DatabaseSettings, action: Callable[[queries.Connection], Any]) -> Any:
    async def run() -> Any:
        conn = await connecting.connect(settings)
        async with conn:
            return await action(conn)

    return asyncio.run(run())
