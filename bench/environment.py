"""The server all benchmarks share, fresh databases on it, and worker processes.

One `PostgresServer` (pgjobs.devenv) per run, with its non-durable defaults (fsync,
synchronous_commit and full_page_writes off) or durable (`python -m bench --durable`): every
figure and its baseline run on the same server with the same settings, so the comparison holds;
absolute numbers on a durable server are lower for everyone.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from pgjobs.devenv.postgres import PostgresServer
from pgjobs.store import connecting, jobs, migrating
from pgjobs.store.records import NewJob

REPO = Path(__file__).resolve().parent.parent
_counter = itertools.count(1)


@dataclasses.dataclass
class Database:
    server: PostgresServer
    name: str

    @property
    def url(self) -> str:
        return self.server.url(self.name)

    def connect(self) -> psycopg.Connection[dict[str, Any]]:
        return psycopg.connect(self.url, autocommit=True, row_factory=dict_row)

    def worker_env(self) -> dict[str, str]:
        """Environment of a worker process: URL without the password, which comes from DB_PASSWORD."""
        env = dict(os.environ)
        env["PGJOBS_DATABASE_URL"] = self.server.url_without_password(self.name)
        env["DB_PASSWORD"] = self.server.password
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
        return env


@contextlib.contextmanager
def split_cpus(server: PostgresServer, enabled: bool = True) -> Iterator[dict[str, Any]]:
    """PostgreSQL on the first half of the CPUs, this process and everything it starts on the rest.

    A deployed queue has its database on other cores (other machines) than its workers; on a
    small shared box the workers' CPU would otherwise come straight out of PostgreSQL's, and the
    comparison with pgbench (whose client costs almost nothing) would measure the box, not the
    queue. Every system and baseline in the block runs with the same split. Yields the layout,
    recorded in the results; with fewer than 2 CPUs (or `enabled` False) nothing is pinned.
    """
    every = sorted(os.sched_getaffinity(0))
    if not enabled or len(every) < 2 or server.pid is None:
        yield {"split": False, "cpus": every}
        return
    half = len(every) // 2
    database_cpus, client_cpus = every[:half], every[half:]
    _pin_tree(server.pid, database_cpus)
    os.sched_setaffinity(0, client_cpus)
    try:
        yield {"split": True, "postgres_cpus": database_cpus, "client_cpus": client_cpus}
    finally:
        os.sched_setaffinity(0, every)
        if server.pid is not None:
            _pin_tree(server.pid, every)


def _pin_tree(root: int, cpus: Sequence[int]) -> None:
    """Pin a process and its current children; children forked later inherit the root's mask."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # The command name may hold spaces and parentheses: the ppid follows the last ')'.
            if int(stat.read_text().rpartition(")")[2].split()[1]) == root:
                children.append(int(stat.parent.name))
    for pid in [root, *children]:
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(pid, cpus)


def fresh_database(server: PostgresServer, prefix: str) -> Database:
    name = f"{prefix}_{next(_counter)}"
    server.create_database(name)
    return Database(server, name)


def pgjobs_database(server: PostgresServer, prefix: str) -> Database:
    """A fresh database with the pgjobs schema, migrated as `pgjobs migrate` does it."""
    database = fresh_database(server, prefix)
    asyncio.run(migrating.migrate(connecting.DatabaseSettings(url=database.url)))
    return database


def enqueue(database: Database, job: NewJob, count: int) -> None:
    """Pre-fill with `jobs.enqueue` (one INSERT … generate_series), then VACUUM ANALYZE."""

    async def run() -> None:
        conn = await connecting.connect(connecting.DatabaseSettings(url=database.url))
        async with conn:
            await jobs.enqueue(conn, job, count)

    asyncio.run(run())
    with database.connect() as conn:
        conn.execute("VACUUM ANALYZE pgjobs.jobs")


#: The workers' `--log-level` (`python -m bench --worker-log-level`). Below warning their lines
#: go to /dev/null: formatted and written as in a deployment, without flooding the run's output.
WORKER_LOG_LEVEL = "warning"


def worker_command(*options: str) -> list[str]:
    return [sys.executable, "-m", "pgjobs.cli.main", "worker", "--log-level", WORKER_LOG_LEVEL, *options]


def start_workers(
    database: Database, count: int, options: Sequence[str], *, prefix: Sequence[str] = ()
) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen(
            [*prefix, *worker_command(*options)],
            env=database.worker_env(),
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=None if WORKER_LOG_LEVEL in ("warning", "error") else subprocess.DEVNULL,
            start_new_session=True,
        )
        for _ in range(count)
    ]


def stop_processes(processes: Sequence[subprocess.Popen[bytes]], timeout: float = 10.0) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + timeout
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_with_cpu(processes: Sequence[subprocess.Popen[bytes]]) -> tuple[list[int], float]:
    """Wait for all; returns their distinct exit codes and their CPU seconds (user + system)."""
    codes, cpu = set(), 0.0
    for process in processes:
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        codes.add(process.returncode)
        cpu += usage.ru_utime + usage.ru_stime
    return sorted(codes), cpu


def wait_for_workers(database: Database, count: int, timeout: float = 30.0) -> None:
    """Until `count` workers have registered (their processes have started and connected)."""
    deadline = time.monotonic() + timeout
    with database.connect() as conn:
        while True:
            row = conn.execute("SELECT count(*) AS n FROM pgjobs.workers WHERE state = 'alive'").fetchone()
            if row and row["n"] >= count:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {row and row['n']} of {count} workers registered in {timeout}s")
            time.sleep(0.02)


def progress(message: str) -> None:
    """A line on stderr about where a long benchmark run is."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
