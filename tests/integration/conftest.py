"""Fixtures of the integration suites: worker processes and the ledger their tasks write."""

from __future__ import annotations

import pytest

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
