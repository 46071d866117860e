"""Database roles against a real PostgreSQL: `pgjobs migrate` creates the group roles and grants
each what its statements need and nothing else; a worker and the operator run as logins in
them; a `shell` job's process sees none of the worker's secrets."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg import errors, sql

from pgjobs.devenv import postgres
from pgjobs.states import JobState
from pgjobs.store import connecting, jobs, queries, resources, roles, workers
from pgjobs.store.records import NewJob, ResourceJob
from pgjobs.tasks import environment
from tests.integration.conftest import admin_sql, run_as
from tests.processes import ROOT, Database, WorkerProcess, pgjobs, wait_for

pytestmark = pytest.mark.integration


def env_for(settings: connecting.DatabaseSettings) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PGJOBS_", "PG"))}
    return env | {"PGJOBS_DATABASE_URL": settings.url, "DB_PASSWORD": settings.password or ""}


# The worker's login


def test_a_worker_login_drains_jobs(database, login, ledger) -> None:  # type: ignore[no-untyped-def]
    worker_login = login(roles.GroupRoles.worker)
    db = Database(database)
    ids = db.enqueue("record", 20)
    [failing] = db.enqueue("flaky", args={"failures": 1}, max_attempts=2, backoff_seconds=0)
    worker = WorkerProcess(env_for(worker_login), ledger, ["--burst", "--log-level", "warning"])
    assert worker.wait(60) == 0, worker.output()
    assert sorted(ledger.count("done")) == [*ids, failing]
    assert {db.job(job_id).state for job_id in [*ids, failing]} == {JobState.COMPLETED}
    assert "permission denied" not in worker.output()


FORBIDDEN_TO_WORKERS = [
    "DELETE FROM pgjobs.jobs",
    "INSERT INTO pgjobs.jobs (task) VALUES ('shell')",
    "UPDATE pgjobs.jobs SET task = 'shell'",
    "UPDATE pgjobs.jobs SET args = '{}'",
    "UPDATE pgjobs.jobs SET queue = 'powerful'",
    "UPDATE pgjobs.jobs SET resource_namespace = 'other'",
    "TRUNCATE pgjobs.jobs",
    "DELETE FROM pgjobs.workers",
    "INSERT INTO pgjobs.migrations (version, name) VALUES (999, 'evil')",
    "ALTER TABLE pgjobs.jobs ADD COLUMN evil integer",
    "ALTER TABLE pgjobs.jobs DISABLE TRIGGER ALL",
    "DROP TABLE pgjobs.workers",
    "CREATE TABLE pgjobs.evil (x integer)",
    "CREATE FUNCTION pgjobs.evil() RETURNS integer LANGUAGE sql AS 'SELECT 1'",
    "SELECT * FROM public.other_application",
    "SELECT * FROM other_schema.secrets",
]


@pytest.mark.parametrize("statement", FORBIDDEN_TO_WORKERS)
def test_a_worker_login_is_refused_what_workers_never_do(database, login, statement: str) -> None:  # type: ignore[no-untyped-def]
    admin_sql(database, "CREATE TABLE IF NOT EXISTS public.other_application (secret text)")
    admin_sql(database, "CREATE SCHEMA IF NOT EXISTS other_schema")
    admin_sql(database, "CREATE TABLE IF NOT EXISTS other_schema.secrets (secret text)")
    Database(database).enqueue("record")
    worker_login = login(roles.GroupRoles.worker)
    with pytest.raises(errors.InsufficientPrivilege):
        run_as(worker_login, _executing(statement))


def test_an_operator_login_may_not_change_the_schema(database, login) -> None:  # type: ignore[no-untyped-def]
    operator_login = login(roles.GroupRoles.operator)
    for statement in (
        "ALTER TABLE pgjobs.jobs ADD COLUMN evil integer",
        "TRUNCATE pgjobs.jobs",
        "CREATE TABLE pgjobs.evil (x integer)",
        "UPDATE pgjobs.workers SET queues = '{x}'",
    ):
        with pytest.raises(errors.InsufficientPrivilege):
            run_as(operator_login, _executing(statement))


def _executing(statement: str) -> Callable[[queries.Connection], Any]:
    async def execute(conn: queries.Connection) -> None:
        await conn.execute(statement)

    return execute


# Every statement, as the group that runs it


def _parameters(statement: str) -> dict[str, None]:
    return dict.fromkeys(re.findall(r"%\((\w+)\)s", statement))


@pytest.mark.parametrize(
    ("group", "statements"),
    [(roles.WORKER, roles.WORKER_STATEMENTS), (roles.OPERATOR, roles.OPERATOR_STATEMENTS)],
)
def test_each_group_may_run_every_statement_declared_for_it(database, login, group, statements) -> None:  # type: ignore[no-untyped-def]
    """EXPLAIN checks every privilege a statement needs (tables, columns, sequences) without
    running it: a column a new migration adds to a statement fails here until GRANTS has it."""
    member = login(getattr(roles.GroupRoles, group))

    async def explain_all(conn: queries.Connection) -> dict[str, str]:
        refused = {}
        for name in sorted(statements & set(queries.STATEMENTS)):
            text = queries.STATEMENTS[name]
            try:
                async with conn.transaction():
                    await conn.execute(sql.SQL("EXPLAIN ") + queries.QUERIES[name], _parameters(text))
            except errors.InsufficientPrivilege as error:
                refused[name] = str(error).strip()
        return refused

    assert run_as(member, explain_all) == {}, f"grant these in pgjobs/store/roles.py GRANTS[{group!r}]"


def test_an_operator_login_runs_the_operators_statements(database, login) -> None:  # type: ignore[no-untyped-def]
    operator_login = login(roles.GroupRoles.operator)
    worker_login = login(roles.GroupRoles.worker)
    wanted = ResourceJob(job=NewJob(task="record"), uid=str(uuid.uuid4()), namespace="team-a", name="one")

    async def operator_round(conn: queries.Connection) -> None:
        job_id, created = await resources.upsert(conn, wanted, 1)  # the insert trigger reads workers
        assert created
        assert await resources.observe_generation(conn, wanted.uid, 2)
        rows = await resources.list_unsynced(conn, 10, [])
        assert [row.id for row in rows] == [job_id]
        await resources.mark_synced(conn, rows)
        assert await jobs.stop(conn, job_id)
        assert await jobs.start(conn, job_id)
        await jobs.rescue(conn, 15)
        await workers.prune(conn, 0)
        await jobs.list_expired(conn, 10)
        await jobs.count_by_state(conn)
        await jobs.count_backlog(conn)
        assert await jobs.delete_resource(conn, wanted.uid)

    async def worker_round(conn: queries.Connection) -> None:
        worker_id = uuid.uuid4()
        await workers.register(conn, worker_id, "host", 1, ["default"], 1)
        await workers.heartbeat(conn, worker_id, 1)
        await jobs.rescue(conn, 15)
        await workers.deregister(conn, worker_id)

    run_as(worker_login, worker_round)
    run_as(operator_login, operator_round)


# pgjobs migrate


def test_migrate_twice_and_concurrently_sets_the_same_grants(postgres_server, database) -> None:  # type: ignore[no-untyped-def]
    """Eight `pgjobs migrate` at once, on two databases of one cluster, with group roles that do
    not exist yet (roles are the cluster's: the databases' migrate race to create them)."""
    suffix = uuid.uuid4().hex[:8]
    names = ["--worker-role", f"w_{suffix}", "--operator-role", f"o_{suffix}"]
    other = connecting.DatabaseSettings(
        url=postgres_server.url_without_password(f"roles_{suffix}"), password=postgres_server.password
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "pgjobs.cli.main", "migrate", *names],
            env=env_for(settings),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for settings in [database, other] * 4
    ]
    for process in processes:
        output, _ = process.communicate(timeout=120)
        assert process.returncode == 0, output
    first = [privileges(settings, f"w_{suffix}", f"o_{suffix}") for settings in (database, other)]
    again = pgjobs(env_for(database), "migrate", *names)
    assert again.returncode == 0, again.stderr
    assert privileges(database, f"w_{suffix}", f"o_{suffix}") == first[0] == first[1]
    assert ("w", "jobs", "UPDATE", "args") not in first[0]
    assert ("w", "jobs", "UPDATE", "state") in first[0]
    assert ("o", "jobs", "DELETE", "*") in first[0]
    for name in (f"w_{suffix}", f"o_{suffix}"):
        for settings in (database, other):
            admin_sql(settings, sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        admin_sql(database, sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def privileges(settings: connecting.DatabaseSettings, worker: str, operator: str) -> set[tuple[str, ...]]:
    """(w|o, table, privilege, column or *) for every privilege the two roles hold in schema pgjobs."""

    async def read(conn: queries.Connection) -> set[tuple[str, ...]]:
        found: set[tuple[str, ...]] = set()
        for short, role in (("w", worker), ("o", operator)):
            cursor = await conn.execute(
                "SELECT table_name, privilege_type, '*' AS col FROM information_schema.role_table_grants"
                " WHERE grantee = %(role)s AND table_schema = 'pgjobs'"
                " UNION SELECT table_name, privilege_type, column_name FROM"
                " information_schema.column_privileges WHERE grantee = %(role)s"
                " AND table_schema = 'pgjobs'"
                " AND NOT has_table_privilege(%(role)s,"
                " format('%%I.%%I', table_schema, table_name), privilege_type)",
                {"role": role},
            )
            found |= {
                (short, row["table_name"], row["privilege_type"], row["col"])
                for row in await cursor.fetchall()
            }
        return found

    return run_as(settings, read)  # type: ignore[no-any-return]


def test_a_dropped_grant_is_revoked_by_the_next_migrate(database, login, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from pgjobs.store import migrating

    reduced = dict(roles.GRANTS)
    reduced[roles.WORKER] = tuple(g for g in roles.GRANTS[roles.WORKER] if g.name != "workers")
    monkeypatch.setattr(roles, "GRANTS", reduced)
    asyncio.run(migrating.migrate(database))
    worker_login = login(roles.GroupRoles.worker)
    with pytest.raises(errors.InsufficientPrivilege):
        run_as(worker_login, _executing("SELECT * FROM pgjobs.workers"))


# What a shell job's process sees


def test_a_shell_jobs_process_sees_no_secret_of_the_worker(database, database_env) -> None:  # type: ignore[no-untyped-def]
    token = f"token-{uuid.uuid4().hex}"
    secrets = {database.password or "", token}
    db = Database(database)
    script = "env; echo END-OF-ENV"
    [job_id] = db.enqueue("shell", args={"command": ["sh", "-c", script], "env": {"GREETING": "hello"}})
    worker_env = database_env | {
        "PGPASSWORD": database.password or "",
        "MY_API_TOKEN": token,
        "AWS_SECRET_ACCESS_KEY": token,
        "KUBECONFIG": f"/secret/{token}",
        "LANG": "C.UTF-8",
    }
    worker = WorkerProcess(worker_env, None, ["--enable-shell"])
    try:
        wait_for(lambda: db.job(job_id).state is JobState.COMPLETED, 30, what="the shell job")
    finally:
        worker.stop()
    output = worker.output()
    assert "GREETING=hello" in output and "PATH=" in output and "LANG=C.UTF-8" in output
    assert "END-OF-ENV" in output
    assert [secret for secret in secrets if secret in output] == [], output
    for name in ("DB_PASSWORD", "PGJOBS_DATABASE_URL", "PGPASSWORD", "KUBECONFIG", "MY_API_TOKEN", "AWS_"):
        assert f"{name}" not in output, output


def test_a_started_process_cannot_read_the_workers_environment_from_proc() -> None:
    """A child of the same (non-root) user could read /proc/<worker>/environ, and with it the
    password the scrubbed environment leaves out, unless the worker is non-dumpable."""
    secret = f"secret-{uuid.uuid4().hex}"
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the "worker": a non-root user, as in a pod
        try:
            os.close(read_end)
            if os.geteuid() == 0:
                nobody = postgres._unprivileged_user()
                assert nobody is not None
                os.setgroups([])
                os.setgid(nobody.pw_gid)
                os.setuid(nobody.pw_uid)
            os.environ["DB_PASSWORD"] = secret
            os.putenv("DB_PASSWORD", secret)
            environment.protect_process()
            seen = subprocess.run(
                ["sh", "-c", "cat /proc/$PPID/environ 2>&1 | tr '\\0' '\\n'; cat /proc/$PPID/cmdline"],
                env=environment.scrubbed(),
                capture_output=True,
                check=False,
            )
            os.write(write_end, seen.stdout + seen.stderr)
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        seen_by_child = pipe.read().decode(errors="replace")
    os.waitpid(pid, 0)
    assert "Permission denied" in seen_by_child, seen_by_child
    assert secret not in seen_by_child


def test_every_table_and_sequence_of_the_schema_is_declared(database) -> None:  # type: ignore[no-untyped-def]
    """A migration's new table or sequence needs its grants declared (or declared withheld)."""
    declared = {grant.name for grants in roles.GRANTS.values() for grant in grants} | roles.NOT_GRANTED
    present = run_as(database, roles.existing_relations)
    assert present - declared == set(), "declare them in pgjobs/store/roles.py, GRANTS or NOT_GRANTED"


def test_a_single_login_without_createrole_still_migrates(postgres_server) -> None:  # type: ignore[no-untyped-def]
    """An install whose one login owns the schema but may not create roles keeps working: the
    groups that do not exist are skipped with a warning, and that login runs everything."""
    suffix = uuid.uuid4().hex[:8]
    owner, password = f"owner_{suffix}", uuid.uuid4().hex
    admin = connecting.DatabaseSettings(
        url=postgres_server.url_without_password("postgres"), password=postgres_server.password
    )
    admin_sql(
        admin,
        sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD {}").format(
            sql.Identifier(owner), sql.Literal(password)
        ),
    )
    url = psycopg.conninfo.make_conninfo(postgres_server.url_without_password(f"single_{suffix}"), user=owner)
    single = connecting.DatabaseSettings(url=url, password=password)
    names = ["--worker-role", f"missing_w_{suffix}", "--operator-role", f"missing_o_{suffix}"]
    migrated = pgjobs(env_for(single), "migrate", *names)
    assert migrated.returncode == 0, migrated.stderr
    assert f"Role missing_w_{suffix} does not exist" in migrated.stderr
    assert Database(single).enqueue("noop") == [1]
    admin_sql(admin, sql.SQL("DROP DATABASE {}").format(sql.Identifier(f"single_{suffix}")))
    admin_sql(admin, sql.SQL("DROP ROLE {}").format(sql.Identifier(owner)))
