"""Fixtures shared by every suite: a real PostgreSQL server per session, a fresh database per test."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Iterator

import pytest

from pgjobs.devenv import postgres
from pgjobs.store import connecting, migrating

#: Registered here, once, so every suite shares one control plane per session.
pytest_plugins = ["tests.cluster_fixtures", "tests.e2e.chart_helpers", "tests.e2e.operator_helpers"]

_database_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[postgres.PostgresServer]:
    """One throwaway server for the whole session (initdb into a temporary directory, free port)."""
    try:
        server = postgres.PostgresServer()
    except postgres.PostgresNotFound as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(error))
    with server:
        yield server


@pytest.fixture
def database(postgres_server: postgres.PostgresServer) -> connecting.DatabaseSettings:
    """Settings of a fresh, migrated database; the password comes the DB_PASSWORD way."""
    name = f"test_{next(_database_numbers)}"
    settings = connecting.DatabaseSettings(
        url=postgres_server.url_without_password(name), password=postgres_server.password
    )
    asyncio.run(migrating.migrate(settings))
    return settings


@pytest.fixture
def database_env(database: connecting.DatabaseSettings) -> dict[str, str]:
    """Environment for pgjobs processes pointed at the test database."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PGJOBS_", "PG"))}
    env |= {"PGJOBS_DATABASE_URL": database.url, "DB_PASSWORD": database.password or ""}
    return env
