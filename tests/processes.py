"""Helpers for tests that run pgjobs as real processes: workers, the ledger of task runs, waiting."""

from __future__ import annotations

import asyncio
import atexit
import collections
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pgjobs.store import connecting, jobs, queries
from pgjobs.store.records import Job

#: Ledgers and worker logs of this test run, removed when it ends (a failure's report shows them).
_FILES = Path(tempfile.mkdtemp(prefix="pgjobs-test-files-"))
atexit.register(shutil.rmtree, _FILES, ignore_errors=True)

ROOT = Path(__file__).resolve().parent.parent
FAST = [
    "--heartbeat-interval",
    "0.3",
    "--stall-timeout",
    "2",
    "--poll-interval",
    "0.5",
    "--stop-grace",
    "1",
    "--shutdown-grace",
    "1",
]
T = TypeVar("T")


def wait_for(
    condition: Callable[[], T], timeout: float = 30.0, interval: float = 0.1, what: str = "condition"
) -> T:
    """Poll until `condition()` is truthy; returns its value or fails the test with `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def pgjobs(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The `pgjobs` command line, run to its end with `env`; output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "pgjobs.cli.main", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


class Ledger:
    """The file sample tasks append their runs to: `event job_id attempt pid` lines."""

    def __init__(self) -> None:
        handle, name = tempfile.mkstemp(prefix="ledger-", dir=_FILES)
        os.close(handle)
        self.path = Path(name)

    def events(self, event: str) -> list[tuple[int, int, int]]:
        lines = self.path.read_text().splitlines()
        return [
            (int(job), int(attempt), int(pid))
            for kind, job, attempt, pid in (line.split() for line in lines)
            if kind == event
        ]

    def count(self, event: str) -> collections.Counter[int]:
        return collections.Counter(job for job, _, _ in self.events(event))


class WorkerProcess:
    """`pgjobs worker` as a child process with fast heartbeats; its log is kept for failures."""

    def __init__(self, env: dict[str, str], ledger: Ledger | None = None, extra: Sequence[str] = ()) -> None:
        self.log = Path(tempfile.mkstemp(prefix="worker-", suffix=".log", dir=_FILES)[1])
        full_env = dict(env, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        if ledger:
            full_env["PGJOBS_TEST_LEDGER"] = str(ledger.path)
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "pgjobs.cli.main",
                    "worker",
                    "--tasks",
                    "tests.sample_tasks",
                    *FAST,
                    *extra,
                ],
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        return self.process.wait(timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Database:
    """Synchronous access to the store for assertions in tests."""

    def __init__(self, settings: connecting.DatabaseSettings) -> None:
        self.settings = settings

    def call(self, action: Callable[[queries.Connection], Awaitable[T]]) -> T:
        async def run() -> T:
            conn = await connecting.connect(self.settings)
            async with conn:
                return await action(conn)

        return asyncio.run(run())

    def job(self, job_id: int) -> Job:
        found = self.call(lambda conn: jobs.get(conn, job_id))
        assert found is not None, f"job {job_id} does not exist"
        return found

    def enqueue(self, task: str, count: int = 1, **fields: Any) -> list[int]:
        from pgjobs.store.records import NewJob

        return self.call(lambda conn: jobs.enqueue(conn, NewJob(task=task, **fields), count))


def set_read_only(database: connecting.DatabaseSettings, read_only: bool) -> None:
    """Turn the database read-only (or writable) for new sessions and cut the existing ones."""

    async def run() -> None:
        admin = await connecting.connect(database, dbname="postgres")
        async with admin:
            name = database.database_name()
            setting = (
                "SET default_transaction_read_only = on"
                if read_only
                else "RESET default_transaction_read_only"
            )
            await admin.execute(f'ALTER DATABASE "{name}" {setting}')
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                [name],
            )

    asyncio.run(run())
