"""Rolling upgrades: code older than the schema keeps running while every migration it does not
know is additive, and refuses with a clear message after a breaking one.

The main test runs the real code from before the newest migration: a `git worktree` of the
parent of the commit that added it, whose worker drains jobs next to the current code's worker
against the schema the current code migrated.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pgjobs.store import connecting, migrating, queries, workers
from tests.processes import FAST, ROOT, Database, Ledger, WorkerProcess, pgjobs, wait_for

#: A string only migrating.py from the compatibility window on contains (it adds the column that
#: records each migration's declaration); code without it refuses every newer schema.
_WINDOW_MARKER = "ADD COLUMN IF NOT EXISTS breaking"
_JOBS_BY_CURRENT, _JOBS_BY_OLD = 24, 8
_OLD_WORKER_OPTIONS = ["--tasks", "tests.sample_tasks", *FAST, "--concurrency", "2"]


def _git(*args: str, cwd: Path = ROOT) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr.strip()}"
    return done.stdout.strip()


def _commit_before_newest_migration() -> str:
    """The parent of the commit that added the newest migration; fails the test (never skips) when
    that code predates the compatibility window, as nothing older could then run."""
    newest = migrating.known_migrations()[-1]
    path = f"pgjobs/store/migrations/{newest.label}.sql"
    added = _git("log", "--diff-filter=A", "--format=%H", "--", path).splitlines()
    if not added:
        pytest.fail(f"{path} is not committed, so the code from before it cannot be checked out")
    commit = added[0]
    parent = _git("rev-parse", f"{commit}^")
    if _WINDOW_MARKER not in _git("show", f"{parent}:pgjobs/store/migrating.py"):
        pytest.fail(
            f"the newest migration, {newest.label}, was added by commit {commit[:12]}, whose parent "
            f"{parent[:12]} predates the compatibility window: that code refuses every newer schema, "
            "so no older code can run against this one yet. This test needs an additive migration "
            "committed after the window (docs/operations.md#rolling-upgrades-the-compatibility-window)"
        )
    return parent


@contextlib.contextmanager
def _checkout(commit: str) -> Iterator[Path]:
    """A detached `git worktree` of `commit` in a temporary directory, removed afterwards."""
    checkout = Path(tempfile.mkdtemp(prefix="pgjobs-old-code-")) / "checkout"
    _git("worktree", "add", "--detach", str(checkout), commit)
    try:
        yield checkout
    finally:
        _git("worktree", "remove", "--force", str(checkout))
        checkout.parent.rmdir()


class OldProcess:
    """The old checkout's `pgjobs`, run with its own sources ahead of the installed ones."""

    def __init__(self, checkout: Path, env: dict[str, str]) -> None:
        self.checkout = checkout
        self.env = dict(env, PYTHONPATH=str(checkout), PYTHONUNBUFFERED="1")

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`python ARGS` with the old sources; `run("-m", "pgjobs.cli.main", …)` is its `pgjobs`."""
        return subprocess.run(
            [sys.executable, *args],
            env=self.env,
            cwd=self.checkout,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def pgjobs(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run("-m", "pgjobs.cli.main", *args)

    def worker(self, ledger: Ledger, log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "pgjobs.cli.main", "worker", *_OLD_WORKER_OPTIONS],
                env=dict(self.env, PGJOBS_TEST_LEDGER=str(ledger.path)),
                cwd=self.checkout,
                stdout=out,
                stderr=subprocess.STDOUT,
            )


def test_code_from_before_the_newest_migration_drains_jobs_beside_the_current_code(
    database: connecting.DatabaseSettings,
    database_env: dict[str, str],
    ledger: Ledger,
    spawn: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    with _checkout(_commit_before_newest_migration()) as checkout:
        old = OldProcess(checkout, database_env)
        _drain_beside_current_code(old, Database(database), ledger, spawn, tmp_path)


def _drain_beside_current_code(
    old: OldProcess, db: Database, ledger: Ledger, spawn: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    have = db.call(migrating.current_version)
    assert have == migrating.latest_version()
    where = old.run("-c", "import pgjobs.store.migrating as m; print(m.__file__, m.latest_version())")
    assert where.returncode == 0, where.stderr
    module, old_version = where.stdout.split()
    assert Path(module).is_relative_to(old.checkout), f"the old code was not the one imported: {module}"
    assert int(old_version) < have, "the old checkout already knows the newest migration"

    # An old pod's init container: `pgjobs migrate` of the old code changes nothing and succeeds.
    migrated = old.pgjobs("migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert db.call(migrating.current_version) == have

    old_log = tmp_path / "old-worker.log"
    old_worker = old.worker(ledger, old_log)
    try:
        current = spawn("--concurrency", "2")

        async def alive_pids(conn: queries.Connection) -> set[int]:
            return {worker.pid for worker in await workers.list_workers(conn)}

        def both_registered() -> bool:
            exited = old_worker.poll()
            assert exited is None, f"the old worker exited ({exited}): {old_log.read_text(errors='replace')}"
            return db.call(alive_pids) >= {old_worker.pid, current.pid}

        wait_for(both_registered, timeout=60, what="both workers registered")
        ids = db.enqueue("record", _JOBS_BY_CURRENT, args={"seconds": 0.2})
        enqueued = old.pgjobs(
            "enqueue", "record", "--args", json.dumps({"seconds": 0.2}), "--count", str(_JOBS_BY_OLD)
        )
        assert enqueued.returncode == 0, enqueued.stderr
        ids += [int(line) for line in enqueued.stdout.split()]
        assert len(set(ids)) == _JOBS_BY_CURRENT + _JOBS_BY_OLD

        async def completed(conn: queries.Connection) -> int:
            cursor = await conn.execute(
                "SELECT count(*) AS n FROM pgjobs.jobs WHERE id = ANY(%s) AND state = 'completed'", (ids,)
            )
            row = await cursor.fetchone()
            return int(row["n"]) if row else 0

        wait_for(lambda: db.call(completed) == len(ids), timeout=90, what="every job Completed")
        assert old_worker.poll() is None, f"the old worker exited: {old_log.read_text(errors='replace')}"
    finally:
        old_worker.send_signal(signal.SIGTERM)
        try:
            old_worker.wait(15)
        except subprocess.TimeoutExpired:
            old_worker.kill()
            old_worker.wait()

    assert ledger.count("start") == {job: 1 for job in ids}, "a job started more than once, or never"
    assert ledger.count("done") == {job: 1 for job in ids}, "a job ran to its end more than once, or never"
    ran_by = {pid for _, _, pid in ledger.events("done")}
    assert ran_by <= {old_worker.pid, current.pid}
    assert old_worker.pid in ran_by, "the old code's worker ran none of the jobs"
    assert current.pid in ran_by, "the current code's worker ran none of the jobs"
    old_output = old_log.read_text(errors="replace")
    assert "are additive, so it runs against it unchanged" in old_output, old_output
    assert "Traceback" not in old_output, old_output


# The same window in-process: the current code plays the older one, a scratch migration after
# its newest plays the newer code's.


def _scratch_migration(monkeypatch: pytest.MonkeyPatch, *, breaking: bool) -> migrating.Migration:
    """Make this code one migration newer (a scratch table), for as long as `monkeypatch` holds."""
    shipped = migrating.known_migrations()
    kind = "breaking" if breaking else "additive"
    scratch = migrating.Migration(
        version=shipped[-1].version + 1,
        name="compatibility_probe",
        sql_text=f"-- compatibility: {kind}\nCREATE TABLE pgjobs.compatibility_probe (id integer);\n",
        breaking=breaking,
    )
    monkeypatch.setattr(migrating, "known_migrations", lambda: [*shipped, scratch])
    return scratch


def _migrate_as_newer_code(
    monkeypatch: pytest.MonkeyPatch, database: connecting.DatabaseSettings, *, breaking: bool
) -> migrating.Migration:
    scratch = _scratch_migration(monkeypatch, breaking=breaking)
    assert asyncio.run(migrating.migrate(database)) == [scratch]
    monkeypatch.undo()
    assert migrating.latest_version() == scratch.version - 1
    return scratch


def test_older_code_runs_against_an_additive_newer_schema_and_its_migrate_is_a_no_op(
    monkeypatch: pytest.MonkeyPatch, database: connecting.DatabaseSettings, database_env: dict[str, str]
) -> None:
    scratch = _migrate_as_newer_code(monkeypatch, database, breaking=False)
    db = Database(database)
    db.call(migrating.check)  # no error
    assert asyncio.run(migrating.migrate(database)) == []
    migrated = pgjobs(database_env, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    listed = pgjobs(database_env, "jobs")
    assert listed.returncode == 0, listed.stderr
    assert db.call(migrating.current_version) == scratch.version


def test_a_breaking_migration_makes_older_code_refuse_naming_both_versions(
    monkeypatch: pytest.MonkeyPatch,
    database: connecting.DatabaseSettings,
    database_env: dict[str, str],
) -> None:
    scratch = _migrate_as_newer_code(monkeypatch, database, breaking=True)
    want, have = scratch.version - 1, scratch.version
    expected = (
        f"the database schema is at version {have}, newer than this pgjobs knows ({want}), "
        f"and migration {scratch.label} is breaking"
    )
    pattern = re.escape(expected)
    with pytest.raises(connecting.DatabaseError, match=pattern) as refused:
        Database(database).call(migrating.check)
    assert not refused.value.retryable
    assert f"Replace this pgjobs with a release at schema version {have} or later" in str(refused.value)
    with pytest.raises(connecting.DatabaseError, match=pattern):
        asyncio.run(migrating.migrate(database))

    for command in ("migrate", "jobs"):
        done = pgjobs(database_env, command)
        assert done.returncode == 1, (command, done.stdout, done.stderr)
        assert expected in done.stderr and "Traceback" not in done.stderr, (command, done.stderr)
    worker = WorkerProcess(database_env)
    try:
        assert worker.wait(30) != 0
    finally:
        worker.stop()
    assert expected in worker.output(), worker.output()


def test_a_newer_migration_without_a_declaration_is_taken_as_breaking(
    database: connecting.DatabaseSettings,
) -> None:
    want = migrating.latest_version()

    async def scenario(conn: queries.Connection) -> None:
        await conn.execute(
            "INSERT INTO pgjobs.migrations (version, name) VALUES (%s, 'undeclared')", (want + 1,)
        )
        with pytest.raises(connecting.DatabaseError, match="declares no compatibility"):
            await migrating.check(conn)

    Database(database).call(scenario)


def test_migrate_records_each_declaration_also_for_migrations_applied_before_the_window(
    database: connecting.DatabaseSettings,
) -> None:
    async def forget(conn: queries.Connection) -> None:
        await conn.execute("ALTER TABLE pgjobs.migrations DROP COLUMN breaking")

    async def recorded(conn: queries.Connection) -> dict[int, object]:
        cursor = await conn.execute("SELECT version, breaking FROM pgjobs.migrations")
        return {int(row["version"]): row["breaking"] for row in await cursor.fetchall()}

    db = Database(database)
    declared = {m.version: m.breaking for m in migrating.known_migrations()}
    assert db.call(recorded) == declared
    db.call(forget)
    assert asyncio.run(migrating.migrate(database)) == []
    assert db.call(recorded) == declared
