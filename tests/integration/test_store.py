"""The store against a real PostgreSQL: schema, claim order, fencing, rescue, migrations."""

from __future__ import annotations

import asyncio
import datetime
import subprocess
import sys
import uuid

import psycopg
import pytest

from pgjobs.states import JobState, Priority
from pgjobs.store import connecting, jobs, migrating, queries, resources, workers
from pgjobs.store.records import InvalidJob, NewJob
from tests.processes import Database, pgjobs

pytestmark = pytest.mark.integration


def test_sql_enum_matches_python_states(database: connecting.DatabaseSettings) -> None:
    labels = Database(database).call(jobs.state_labels)
    assert labels == [state.value for state in JobState]


def test_claim_order_is_priority_then_fifo(database: connecting.DatabaseSettings) -> None:
    db = Database(database)
    regular = db.enqueue("noop", 2, priority=Priority.REGULAR)
    low = db.enqueue("noop", 1, priority=Priority.LOW)
    high = db.enqueue("noop", 2, priority=Priority.HIGH)
    worker = uuid.uuid4()

    async def claim_all(conn: queries.Connection) -> list[int]:
        order = []
        while (job := await jobs.claim(conn, worker, ["default"])) is not None:
            order.append(job.id)
        return order

    assert db.call(claim_all) == high + regular + low


def test_claim_respects_queues_and_run_after(database: connecting.DatabaseSettings) -> None:
    db = Database(database)
    [other] = db.enqueue("noop", queue="other")
    worker = uuid.uuid4()
    assert db.call(lambda conn: jobs.claim(conn, worker, ["default"])) is None
    claimed = db.call(lambda conn: jobs.claim(conn, worker, ["default", "other"]))
    assert claimed is not None and claimed.id == other


def test_a_worker_of_several_queues_takes_priority_first_then_the_longest_due(
    database: connecting.DatabaseSettings,
) -> None:
    """Across the queues a worker serves: every High job before any Regular one, and within a
    priority the job due longest first (a retry due an hour ago before a job enqueued now)."""
    db = Database(database)
    now = datetime.datetime.now(datetime.UTC)
    [fresh_a] = db.enqueue("noop", queue="a")
    [due_long_ago_b] = db.enqueue("noop", queue="b", run_at=now - datetime.timedelta(hours=1))
    [high_b] = db.enqueue("noop", queue="b", priority=Priority.HIGH)
    [high_a] = db.enqueue("noop", queue="a", priority=Priority.HIGH)
    db.enqueue("noop", queue="c", priority=Priority.HIGH)  # a queue it does not serve
    worker = uuid.uuid4()

    async def claim_all(conn: queries.Connection) -> list[int]:
        order = []
        while (job := await jobs.claim(conn, worker, ["a", "b"])) is not None:
            order.append(job.id)
        return order

    assert db.call(claim_all) == [high_b, high_a, due_long_ago_b, fresh_a]


def test_jobs_no_worker_can_run_wait_out_of_the_claim_until_one_registers(
    database: connecting.DatabaseSettings,
) -> None:
    """The leader's mark takes a job out of every claim; a worker that can run it takes the mark
    off when it registers, and claims it at once."""
    db = Database(database)
    [job] = db.enqueue("resize", run_at=datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1))
    assert db.call(lambda conn: jobs.mark_no_worker(conn, 120)) == (1, 0)
    worker = uuid.uuid4()
    assert db.call(lambda conn: jobs.claim(conn, worker, ["default"], tasks=None)) is None

    async def register_and_claim(conn: queries.Connection) -> int | None:
        await workers.register(conn, worker, "host", 1, ["default"], 1, tasks=["resize"])
        claimed = await jobs.claim(conn, worker, ["default"], tasks=["resize"])
        return None if claimed is None else claimed.id

    assert db.call(register_and_claim) == job
    assert db.job(job).no_worker_since is None


def test_complete_and_claim_is_one_round_trip_for_two_jobs(database: connecting.DatabaseSettings) -> None:
    db = Database(database)
    first, second = db.enqueue("noop", 2)
    worker = uuid.uuid4()

    async def run(conn: queries.Connection) -> tuple[bool, int | None]:
        job = await jobs.claim(conn, worker, ["default"])
        assert job is not None and job.id == first
        completed, following, _ = await jobs.complete_and_claim(
            conn, job, {"ok": True}, None, worker, ["default"]
        )
        return completed, following.id if following else None

    assert db.call(run) == (True, second)
    done = db.job(first)
    assert (done.state, done.progress, done.result) == (JobState.COMPLETED, 100, {"ok": True})
    assert db.job(second).state is JobState.RUNNING


def test_stale_lease_writes_are_refused_after_rescue(database: connecting.DatabaseSettings) -> None:
    db = Database(database)
    [job_id] = db.enqueue("noop", backoff_seconds=0)
    stale_worker, fresh_worker = uuid.uuid4(), uuid.uuid4()

    async def scenario(conn: queries.Connection) -> None:
        await workers.register(conn, stale_worker, "old", 1, ["default"], 1, stall_timeout=0.01)
        stale = await jobs.claim(conn, stale_worker, ["default"])
        assert stale is not None
        await conn.execute("SELECT pg_sleep(0.05)")
        rescued = await jobs.rescue(conn, stall_seconds=0.01)
        assert [job.id for job in rescued] == [job_id]
        fresh = await jobs.claim(conn, fresh_worker, ["default"])
        assert fresh is not None and fresh.attempt == 2
        assert await jobs.report_progress(conn, stale, 50) is None
        assert not await jobs.complete(conn, stale, "late")
        assert await jobs.fail(conn, stale, "late", retry_in=None, stopped_message="late") is None
        assert await jobs.complete(conn, fresh, "on time")

    db.call(scenario)
    final = db.job(job_id)
    assert (final.state, final.result, final.attempt) == (JobState.COMPLETED, "on time", 2)


def test_rescue_fails_a_job_without_attempts_left(database: connecting.DatabaseSettings) -> None:
    db = Database(database)
    [job_id] = db.enqueue("noop", max_attempts=1)

    async def scenario(conn: queries.Connection) -> list[JobState]:
        await jobs.claim(conn, uuid.uuid4(), ["default"])
        await conn.execute("SELECT pg_sleep(0.05)")
        return [job.state for job in await jobs.rescue(conn, stall_seconds=0.01)]

    assert db.call(scenario) == [JobState.FAILED]
    assert "stopped heartbeating" in (db.job(job_id).message or "")


def test_rescue_spares_jobs_of_live_workers(database: connecting.DatabaseSettings) -> None:
    db = Database(database)
    db.enqueue("noop")
    worker = uuid.uuid4()

    async def scenario(conn: queries.Connection) -> int:
        await workers.register(conn, worker, "live", 1, ["default"], 1)
        await jobs.claim(conn, worker, ["default"])
        return len(await jobs.rescue(conn, stall_seconds=60))

    assert db.call(scenario) == 0


def test_each_worker_is_judged_by_its_own_stall_timeout(database: connecting.DatabaseSettings) -> None:
    """The sweep's own setting does not decide for a worker that registered its stall timeout:
    a process sweeping with a different one must neither rescue early nor hold on too long."""
    db = Database(database)
    [patient_job, hasty_job] = db.enqueue("noop", 2, backoff_seconds=0)
    patient, hasty = uuid.uuid4(), uuid.uuid4()

    async def scenario(conn: queries.Connection) -> tuple[list[int], list[int], int]:
        await workers.register(conn, patient, "patient", 1, ["default"], 1, stall_timeout=60)
        await workers.register(conn, hasty, "hasty", 2, ["default"], 1, stall_timeout=0.2)
        await jobs.claim(conn, patient, ["default"])
        await jobs.claim(conn, hasty, ["default"])
        await conn.execute("SELECT pg_sleep(0.3)")
        alive = await workers.count_alive(conn)
        # a sweeper configured for 0.01 s spares the patient worker; one configured for 60 s
        # (the next call) still rescues the hasty worker's job, but only once
        first = [job.id for job in await jobs.rescue(conn, stall_seconds=0.01)]
        second = [job.id for job in await jobs.rescue(conn, stall_seconds=60)]
        return first, second, alive

    first, second, alive = db.call(scenario)
    assert (first, second, alive) == ([hasty_job], [], 1)
    assert db.job(patient_job).state is JobState.RUNNING


def test_stop_start_restart_delete(database: connecting.DatabaseSettings) -> None:
    db = Database(database)
    [job_id] = db.enqueue("noop")
    assert db.call(lambda conn: jobs.stop(conn, job_id))
    assert db.job(job_id).state is JobState.STOPPED
    assert not db.call(lambda conn: jobs.stop(conn, job_id)), "a stopped job cannot be stopped again"
    assert db.call(lambda conn: jobs.start(conn, job_id))
    assert db.job(job_id).state is JobState.PENDING
    assert not db.call(lambda conn: jobs.restart(conn, job_id)), "a pending job cannot be restarted"
    worker = uuid.uuid4()
    claimed = db.call(lambda conn: jobs.claim(conn, worker, ["default"]))
    assert claimed is not None
    assert not db.call(lambda conn: jobs.delete(conn, job_id)), "a running job is not deleted without force"
    assert db.call(lambda conn: jobs.complete(conn, claimed, None))
    assert db.call(lambda conn: jobs.restart(conn, job_id))
    restarted = db.job(job_id)
    assert (restarted.state, restarted.attempt, restarted.restarts) == (JobState.PENDING, 0, 1)
    assert db.call(lambda conn: jobs.delete(conn, job_id))
    assert db.call(lambda conn: jobs.get(conn, job_id)) is None


def test_stop_of_running_job_is_seen_in_the_heartbeat(database: connecting.DatabaseSettings) -> None:
    db = Database(database)
    [job_id] = db.enqueue("noop")
    worker = uuid.uuid4()

    async def scenario(conn: queries.Connection) -> None:
        await workers.register(conn, worker, "w", 1, ["default"], 1)
        claimed = await jobs.claim(conn, worker, ["default"])
        assert claimed is not None
        assert await jobs.stop(conn, job_id)
        beat = await workers.heartbeat(conn, worker)
        assert beat.stop_requested == {job_id}
        assert beat.held_leases == {claimed.lease}
        assert await jobs.report_progress(conn, claimed, 10) is True
        assert await jobs.acknowledge_stop(conn, claimed, "stopped on request")

    db.call(scenario)
    assert db.job(job_id).state is JobState.STOPPED


def test_release_does_not_charge_an_attempt(database: connecting.DatabaseSettings) -> None:
    db = Database(database)
    [job_id] = db.enqueue("noop")
    worker = uuid.uuid4()
    claimed = db.call(lambda conn: jobs.claim(conn, worker, ["default"]))
    assert claimed is not None and claimed.attempt == 1
    assert db.call(lambda conn: jobs.release(conn, worker, [claimed.lease], "shutdown")) == {
        job_id: JobState.PENDING
    }
    released = db.job(job_id)
    assert (released.state, released.attempt, released.message) == (JobState.PENDING, 0, "shutdown")


def test_release_touches_only_this_workers_leases(database: connecting.DatabaseSettings) -> None:
    db = Database(database)
    db.enqueue("noop", count=2)
    mine, theirs = uuid.uuid4(), uuid.uuid4()
    my_job = db.call(lambda conn: jobs.claim(conn, mine, ["default"]))
    their_job = db.call(lambda conn: jobs.claim(conn, theirs, ["default"]))
    assert my_job is not None and their_job is not None
    leases = [my_job.lease, their_job.lease]
    assert db.call(lambda conn: jobs.release(conn, mine, leases, "x")) == {my_job.id: JobState.PENDING}
    assert db.job(their_job.id).state is JobState.RUNNING
    # No leases named: every job the worker holds (it is leaving).
    assert db.call(lambda conn: jobs.release(conn, theirs, None, "x")) == {their_job.id: JobState.PENDING}


@pytest.mark.parametrize("outcome", ["retry", "release"])
def test_a_stop_requested_meanwhile_ends_the_job_stopped(
    database: connecting.DatabaseSettings, outcome: str
) -> None:
    """A failed attempt with attempts left, or a hand-back, would run the job again: a stop
    requested while it ran wins, as it does in the rescue sweep."""
    db = Database(database)
    [job_id] = db.enqueue("noop")
    worker = uuid.uuid4()

    async def scenario(conn: queries.Connection) -> JobState | None:
        claimed = await jobs.claim(conn, worker, ["default"])
        assert claimed is not None
        assert await jobs.stop(conn, job_id)
        if outcome == "retry":
            return await jobs.fail(conn, claimed, "boom", retry_in=0, stopped_message="stopped, boom")
        return (await jobs.release(conn, worker, [claimed.lease], "shutdown")).get(job_id)

    assert db.call(scenario) is JobState.STOPPED
    job = db.job(job_id)
    assert job.state is JobState.STOPPED and job.finished_at is not None and not job.stop_requested
    assert job.message == ("stopped, boom" if outcome == "retry" else "stopped on request")


@pytest.mark.parametrize("text", ["'; DROP TABLE pgjobs.jobs; --", 'Robert"); --', "\\x00\u2603%s%(x)s"])
def test_sql_metacharacters_are_data(database: connecting.DatabaseSettings, text: str) -> None:
    db = Database(database)
    [job_id] = db.enqueue("noop", args={text: text, "nested": [text]})
    assert db.job(job_id).args == {text: text, "nested": [text]}
    with pytest.raises(InvalidJob, match="task"):
        db.enqueue(text)
    with pytest.raises(InvalidJob, match="queue"):
        db.enqueue("noop", queue=text)
    assert len(db.call(lambda conn: jobs.list_jobs(conn))) == 1


def test_oversized_args_are_refused_with_the_limit(database: connecting.DatabaseSettings) -> None:
    db = Database(database)
    with pytest.raises(InvalidJob, match=r"over the limit of 65536 bytes"):
        db.enqueue("noop", args={"blob": "x" * 10_000_000})
    assert db.call(lambda conn: jobs.list_jobs(conn)) == []


def test_migrate_twice_changes_nothing(database: connecting.DatabaseSettings) -> None:
    assert asyncio.run(migrating.migrate(database)) == []
    version = Database(database).call(migrating.current_version)
    assert version == migrating.latest_version()


def test_migrate_from_four_processes_at_once(postgres_server, database_env) -> None:  # type: ignore[no-untyped-def]
    env = dict(database_env)
    env["PGJOBS_DATABASE_URL"] = postgres_server.url_without_password("concurrent_migrate")
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "pgjobs.cli.main", "migrate"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = [(process.wait(60), process.stderr.read() if process.stderr else "") for process in processes]
    assert all(code == 0 for code, _ in results), results
    settings = connecting.DatabaseSettings(env["PGJOBS_DATABASE_URL"], env["DB_PASSWORD"])
    assert Database(settings).call(migrating.current_version) == migrating.latest_version()


def test_an_upgrade_waits_for_no_long_transaction_and_then_goes_through(postgres_server) -> None:  # type: ignore[no-untyped-def]
    """Migration 0004 takes the jobs table's strongest lock: behind a long reader it gives up with
    what to do, instead of stalling every worker; run again, it upgrades a database in use."""
    settings = connecting.DatabaseSettings(
        postgres_server.url_without_password("upgrade_from_3"), password=postgres_server.password
    )
    asyncio.run(migrating.ensure_database(settings))
    db = Database(settings)

    async def apply_up_to_3(conn: queries.Connection) -> None:
        await conn.execute("CREATE SCHEMA pgjobs")
        await conn.execute(
            "CREATE TABLE pgjobs.migrations (version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for migration in migrating.known_migrations()[:3]:
            await conn.execute(migration.sql_text.encode())
            await conn.execute(
                "INSERT INTO pgjobs.migrations (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )

    db.call(apply_up_to_3)

    async def enqueue_at_version_3(conn: queries.Connection) -> int:
        # This code's job_insert needs the newest schema; a job of the old one is written as such.
        row = await (
            await conn.execute("INSERT INTO pgjobs.jobs (task) VALUES ('noop') RETURNING id")
        ).fetchone()
        return int(row["id"])

    waiting = db.call(enqueue_at_version_3)
    with psycopg.connect(settings.conninfo()) as reader:
        reader.execute("SELECT count(*) FROM pgjobs.jobs")  # a transaction that keeps reading
        with pytest.raises(connecting.DatabaseError, match="run `pgjobs migrate` again"):
            asyncio.run(migrating.migrate(settings))
    applied = [m.version for m in asyncio.run(migrating.migrate(settings))]
    assert applied == list(range(4, migrating.latest_version() + 1))
    worker = uuid.uuid4()
    claimed = db.call(lambda conn: jobs.claim(conn, worker, ["default"]))
    assert claimed is not None and claimed.id == waiting


def test_code_refuses_a_newer_schema(database: connecting.DatabaseSettings) -> None:
    async def scenario(conn: queries.Connection) -> None:
        await conn.execute("INSERT INTO pgjobs.migrations (version, name) VALUES (999, 'future')")
        with pytest.raises(connecting.DatabaseError, match="newer than this pgjobs"):
            await migrating.check(conn)

    Database(database).call(scenario)


def test_upsert_resource_is_idempotent(database: connecting.DatabaseSettings) -> None:
    from pgjobs.store.records import ResourceJob

    resource = ResourceJob(uid="uid-1", namespace="ns", name="job", job=NewJob("noop", priority=Priority.LOW))
    db = Database(database)
    first = db.call(lambda conn: resources.upsert(conn, resource, 1))
    again = db.call(lambda conn: resources.upsert(conn, resource, 1))
    assert first is not None and first[1] is True and again == (first[0], False)
    raised = ResourceJob(uid="uid-1", namespace="ns", name="job", job=NewJob("noop", priority=Priority.HIGH))
    db.call(lambda conn: resources.upsert(conn, raised, 2))
    assert db.job(first[0]).priority is Priority.HIGH


def test_the_oldest_due_pending_job_per_queue(database: connecting.DatabaseSettings) -> None:
    db = Database(database)
    [first] = db.enqueue("noop", queue="reports")
    db.enqueue("noop", queue="reports")
    db.enqueue("noop", queue="mail")
    [later] = db.enqueue("noop", queue="backoff")
    # A job waiting out a backoff is not due: its queue is not starved.
    db.call(
        lambda conn: conn.execute(
            "UPDATE pgjobs.jobs SET run_after = now() + interval '1 hour' WHERE id = %s", [later]
        )
    )
    db.call(
        lambda conn: conn.execute(
            "UPDATE pgjobs.jobs SET run_after = now() - interval '90 seconds' WHERE id = %s", [first]
        )
    )
    ages = db.call(jobs.oldest_due_by_queue)
    assert set(ages) == {"reports", "mail"}
    assert 90 <= ages["reports"] < 120 and 0 <= ages["mail"] < 30, ages


def test_finished_jobs_without_a_pgjob_are_pruned_after_their_retention(
    database: connecting.DatabaseSettings,
) -> None:
    db = Database(database)
    old_done, old_failed, recent, pending, owned = db.enqueue("noop", 5)
    finish = "UPDATE pgjobs.jobs SET state = %s, finished_at = now() - %s::interval WHERE id = %s"
    finished = [
        ("completed", "2 hours", old_done),
        ("failed", "3 hours", old_failed),
        ("completed", "1 minute", recent),
        ("completed", "5 hours", owned),
    ]
    for values in finished:
        db.call(lambda conn, v=values: conn.execute(finish, v))
    db.call(lambda conn: conn.execute("UPDATE pgjobs.jobs SET resource_uid = 'uid-1' WHERE id = %s", [owned]))
    assert db.call(lambda conn: jobs.prune_finished(conn, 3600, 1)) == 1  # a batch at a time, oldest first
    assert db.call(lambda conn: jobs.prune_finished(conn, 3600, 1000)) == 1
    left = {job.id for job in db.call(lambda conn: jobs.list_jobs(conn, None, 100))}
    assert left == {recent, pending, owned}


def test_a_job_with_run_at_is_not_claimed_before_it(database: connecting.DatabaseSettings) -> None:
    db = Database(database)
    now = datetime.datetime.now(datetime.UTC)
    [later] = db.enqueue("noop", run_at=now + datetime.timedelta(hours=1), priority=Priority.HIGH)
    [past] = db.enqueue("noop", run_at=now - datetime.timedelta(hours=1))
    worker = uuid.uuid4()
    first = db.call(lambda conn: jobs.claim(conn, worker, ["default"]))
    assert first is not None and first.id == past  # the High job is not due
    assert db.call(lambda conn: jobs.claim(conn, worker, ["default"])) is None
    assert db.job(later).run_after > now + datetime.timedelta(minutes=59)


def test_pgjobs_enqueue_in_and_run_at(
    database: connecting.DatabaseSettings, database_env: dict[str, str]
) -> None:
    scheduled = pgjobs(database_env, "enqueue", "noop", "--in", "10m")
    fixed = pgjobs(database_env, "enqueue", "noop", "--run-at", "2030-01-01T00:00:00Z")
    assert scheduled.returncode == 0 and fixed.returncode == 0, (scheduled.stderr, fixed.stderr)
    db = Database(database)
    soon = db.job(int(scheduled.stdout)).run_after - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(minutes=9) < soon <= datetime.timedelta(minutes=10)
    assert db.job(int(fixed.stdout)).run_after == datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
    refused = pgjobs(database_env, "enqueue", "noop", "--run-at", "2030-01-01 00:00")
    assert refused.returncode == 2 and "offset" in refused.stderr and "Traceback" not in refused.stderr


def test_a_unique_key_admits_one_unfinished_job_per_queue(database: connecting.DatabaseSettings) -> None:
    db = Database(database)
    [first] = db.enqueue("noop", unique_key="report-42")
    assert db.enqueue("noop", unique_key="report-42") == [first]  # the holder's id
    [other_queue] = db.enqueue("noop", unique_key="report-42", queue="mail")
    assert other_queue != first
    worker = uuid.uuid4()
    claimed = db.call(lambda conn: jobs.claim(conn, worker, ["default"]))
    assert claimed is not None and claimed.id == first
    assert db.enqueue("noop", unique_key="report-42") == [first]  # Running holds it too
    assert db.call(lambda conn: jobs.complete(conn, claimed, {"done": True}))
    [after] = db.enqueue("noop", unique_key="report-42")  # a finished job frees its key
    assert after not in (first, other_queue)
    with pytest.raises(InvalidJob, match="once"):
        db.enqueue("noop", 2, unique_key="twice")


def test_twenty_producers_with_one_key_write_one_job(database: connecting.DatabaseSettings) -> None:
    async def produce() -> list[int]:
        async def one() -> list[int]:
            conn = await connecting.connect(database)
            async with conn:
                return await jobs.enqueue(conn, NewJob("noop", unique_key="once"))

        return [job_id for ids in await asyncio.gather(*(one() for _ in range(20))) for job_id in ids]

    ids = asyncio.run(produce())
    assert len(set(ids)) == 1 and len(ids) == 20


def test_a_copy_from_before_a_failover_does_not_mark_the_older_row_copied(
    database: connecting.DatabaseSettings,
) -> None:
    """A failover that lost commits takes a row back (Completed at change 3 → Pending at 1); the
    sync's record of its copy of the lost state, made on the new primary, must be refused, or
    the row's next changes up to that count would never reach its PgJob."""
    import dataclasses

    from pgjobs.store.records import ResourceJob

    resource = ResourceJob(uid="uid-failover", namespace="ns", name="job", job=NewJob("noop"))

    async def scenario(conn: queries.Connection) -> tuple[int, int]:
        await resources.upsert(conn, resource, 1)
        bump = "UPDATE pgjobs.jobs SET change_count = change_count + 1 WHERE resource_uid = %s"
        await conn.execute(bump, [resource.uid])  # a change to copy, as a claim or a stop makes
        [row] = await resources.list_unsynced(conn, 10)
        lost = dataclasses.replace(row, change_count=row.change_count + 2, state=JobState.COMPLETED)
        await resources.mark_synced(conn, [lost])  # what the row never was here
        [again] = await resources.list_unsynced(conn, 10)
        await resources.mark_synced(conn, [again])  # what it is: recorded
        cursor = await conn.execute(
            "SELECT change_count, synced_count FROM pgjobs.jobs WHERE resource_uid = %s", [resource.uid]
        )
        found = await cursor.fetchone()
        assert found is not None and again.change_count == row.change_count
        return int(found["change_count"]), int(found["synced_count"])

    change_count, synced_count = Database(database).call(scenario)
    assert synced_count == change_count


def test_the_leader_prunes_a_backlog_of_finished_rows_in_one_round(
    database: connecting.DatabaseSettings,
) -> None:
    """Batch after batch while they come back full (one batch a round fell behind ~1,000 jobs/s)."""
    from typing import cast

    from pgjobs.operator import context, kube, maintenance
    from pgjobs.operator.database import Database as Pool
    from pgjobs.operator.settings import OperatorSettings

    db = Database(database)
    backlog = maintenance.PRUNE_BATCH * 2 + 500
    db.enqueue("noop", backlog)
    db.call(
        lambda conn: conn.execute(
            "UPDATE pgjobs.jobs SET state = 'completed', finished_at = now() - interval '2 hours'"
        )
    )

    async def one_round() -> None:
        pool = Pool(database)
        await pool.open()
        try:
            settings = OperatorSettings(finished_retention=3600)
            ctx = context.Context(settings, database, pool, cast(kube.KubeApi, None), pool)
            await maintenance.prune_finished(ctx)
        finally:
            await pool.close()

    asyncio.run(one_round())
    assert db.call(lambda conn: jobs.list_jobs(conn, None, 10)) == []
