"""Fixtures of the integration suites: worker processes, the ledger their tasks write, and
PgBouncer in front of the test server (one per pool mode, started on first use)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from pgjobs.devenv import postgres
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
