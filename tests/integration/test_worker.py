"""Workers as real processes against a real PostgreSQL: claiming, retries, stops, crashes, shutdown."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from pgjobs.states import JobState
from pgjobs.store import connecting
from pgjobs.store import workers as workers_module
from tests.processes import Database, WorkerProcess, pgjobs, wait_for

pytestmark = pytest.mark.integration


def state_of(db: Database, job_id: int) -> JobState:
    return db.job(job_id).state


def test_sixteen_workers_claim_each_job_exactly_once(database, spawn, ledger) -> None:  # type: ignore[no-untyped-def]
    db = Database(database)
    # Without LISTEN: two connections a worker, so that 16 fit a 40-connection session pool.
    workers = [spawn("--log-level", "warning", "--no-listen") for _ in range(16)]
    # Every worker is registered before the jobs come, so that all of them compete for them.
    wait_for(lambda: len(db.call(workers_module.list_workers)) == 16, 120, what="16 workers registered")
    ids = db.enqueue("record", 500)
    wait_for(lambda: len(ledger.count("done")) == 500, 120, interval=0.5, what="500 jobs done")
    for worker in workers:
        worker.stop()
    done = ledger.count("done")
    assert sorted(done) == ids
    assert set(done.values()) == {1}, "some job ran more than once"
    assert len({pid for _, _, pid in ledger.events("done")}) > 1, "only one worker did any work"
    assert {db.job(job_id).state for job_id in ids[::50]} == {JobState.COMPLETED}


def test_failed_attempts_retry_with_backoff_then_succeed(database, spawn, ledger) -> None:  # type: ignore[no-untyped-def]
    db = Database(database)
    [job_id] = db.enqueue("flaky", args={"failures": 2}, max_attempts=3, backoff_seconds=1)
    started = time.monotonic()
    spawn()
    wait_for(lambda: state_of(db, job_id) is JobState.COMPLETED, 30, what="the flaky job to complete")
    assert time.monotonic() - started >= 3.0, "backoff of 1s then 2s was not applied"
    assert [attempt for _, attempt, _ in ledger.events("start")] == [1, 2, 3]
    assert db.job(job_id).attempt == 3


def test_job_fails_after_its_last_attempt_with_the_error(database, spawn) -> None:  # type: ignore[no-untyped-def]
    db = Database(database)
    [job_id] = db.enqueue("flaky", args={"failures": 5}, max_attempts=2, backoff_seconds=0)
    spawn()
    job = wait_for(lambda: (j := db.job(job_id)).state is JobState.FAILED and j, 30, what="the job to fail")
    assert job.attempt == 2
    assert "planned failure on attempt 2" in (job.message or "")


def test_timeout_fails_the_attempt(database, spawn) -> None:  # type: ignore[no-untyped-def]
    db = Database(database)
    [job_id] = db.enqueue("record", args={"seconds": 30}, timeout_seconds=1, max_attempts=1)
    spawn()
    job = wait_for(lambda: (j := db.job(job_id)).state is JobState.FAILED and j, 20, what="the timeout")
    assert "timed out after 1s" in (job.message or "")


def test_a_job_of_a_task_the_worker_does_not_know_is_left_for_another(database, spawn) -> None:  # type: ignore[no-untyped-def]
    """The worker claims only its own tasks: the job waits for a worker that has the task (a worker
    that claims it anyway, one of older code, still fails it at once: test_mixed_fleet)."""
    db = Database(database)
    [job_id] = db.enqueue("no_such_task")
    [known] = db.enqueue("noop")
    spawn()
    wait_for(lambda: state_of(db, known) is JobState.COMPLETED, 20, what="the known task to run")
    time.sleep(1.0)  # two poll intervals
    job = db.job(job_id)
    assert job.state is JobState.PENDING and job.attempt == 0 and job.message is None, job


def test_stop_running_job_then_start_it_again(database, database_env, spawn, ledger) -> None:  # type: ignore[no-untyped-def]
    db = Database(database)
    [job_id] = db.enqueue("record", args={"seconds": 60})
    spawn()
    wait_for(lambda: state_of(db, job_id) is JobState.RUNNING, 20, what="the job to run")
    result = pgjobs(database_env, "stop", str(job_id))
    assert result.returncode == 0, result.stderr
    # The worker hears of it within a heartbeat (0.3 s) or by NOTIFY; the task ignores the stop
    # and is cancelled after the stop grace (1 s). The bound leaves room for a loaded machine.
    job = wait_for(lambda: (j := db.job(job_id)).state is JobState.STOPPED and j, 15, what="Stopped")
    assert job.message and "stop" in job.message
    [follow_up] = db.enqueue("record")
    wait_for(lambda: state_of(db, follow_up) is JobState.COMPLETED, 20, what="the worker to be free again")
    assert pgjobs(database_env, "start", str(job_id)).returncode == 0
    wait_for(lambda: ledger.count("start")[job_id] == 2, 20, what="the started job to run again")


def test_task_ignoring_stop_is_cancelled_after_the_grace(database, database_env, spawn) -> None:  # type: ignore[no-untyped-def]
    db = Database(database)
    [job_id] = db.enqueue("stubborn", args={"seconds": 60})
    spawn()
    wait_for(lambda: state_of(db, job_id) is JobState.RUNNING, 20, what="the job to run")
    assert pgjobs(database_env, "stop", str(job_id)).returncode == 0
    wait_for(lambda: state_of(db, job_id) is JobState.STOPPED, 10, what="hard cancellation")


def test_restart_of_a_failed_job_runs_it_again(database, database_env, spawn, ledger) -> None:  # type: ignore[no-untyped-def]
    db = Database(database)
    [job_id] = db.enqueue("flaky", args={"failures": 1}, max_attempts=1)
    spawn()
    wait_for(lambda: state_of(db, job_id) is JobState.FAILED, 20, what="the first run to fail")
    result = pgjobs(database_env, "restart", str(job_id))
    assert result.returncode == 0, result.stderr
    wait_for(lambda: ledger.count("start")[job_id] == 2, 20, what="the restarted run")
    job = wait_for(
        lambda: (j := db.job(job_id)).state is JobState.FAILED and j, 20, what="the second run's end"
    )
    assert (job.restarts, job.attempt) == (1, 1), "a restart is a new run with fresh attempts"


def test_killed_worker_job_is_rescued_and_completed_once(database, spawn, ledger) -> None:  # type: ignore[no-untyped-def]
    db = Database(database)
    [job_id] = db.enqueue("record", args={"seconds": 3}, backoff_seconds=0)
    first = spawn()
    wait_for(lambda: ledger.count("start")[job_id] == 1, 20, what="the job to start")
    [(_, _, pid)] = ledger.events("start")
    victim = first if pid == first.pid else None
    assert victim is not None
    spawn()
    victim.signal(signal.SIGKILL)
    job = wait_for(lambda: (j := db.job(job_id)).state is JobState.COMPLETED and j, 30, what="the rescue")
    assert job.attempt == 2
    assert ledger.count("start")[job_id] == 2, "executed at most twice"
    assert ledger.count("done")[job_id] == 1, "completed exactly once"


def test_frozen_worker_comes_back_to_refused_writes(database, spawn, ledger) -> None:  # type: ignore[no-untyped-def]
    db = Database(database)
    [job_id] = db.enqueue("record", args={"seconds": 2}, backoff_seconds=0)
    frozen = spawn()
    wait_for(lambda: ledger.count("start")[job_id] == 1, 20, what="the job to start")
    frozen.signal(signal.SIGSTOP)
    spawn()
    wait_for(lambda: state_of(db, job_id) is JobState.COMPLETED, 30, what="the rescue")
    frozen.signal(signal.SIGCONT)
    time.sleep(3)
    assert ledger.count("done")[job_id] <= 1, "the frozen worker's task finished after it was rescued"
    assert db.job(job_id).attempt == 2
    assert "abandon" in frozen.output() or "no longer held" in frozen.output()


def test_sigterm_hands_the_job_back_without_charging_an_attempt(database, spawn, ledger) -> None:  # type: ignore[no-untyped-def]
    db = Database(database)
    [job_id] = db.enqueue("record", args={"seconds": 60})
    worker = spawn()
    wait_for(lambda: state_of(db, job_id) is JobState.RUNNING, 20, what="the job to run")
    worker.signal(signal.SIGTERM)
    assert worker.wait(20) == 0, worker.output()
    job = db.job(job_id)
    assert (job.state, job.attempt) == (JobState.PENDING, 0)
    assert "shutting down" in worker.output()


def test_sigterm_with_on_shutdown_stop_marks_it_stopped(database, spawn) -> None:  # type: ignore[no-untyped-def]
    db = Database(database)
    [job_id] = db.enqueue("record", args={"seconds": 60})
    worker = spawn("--on-shutdown", "stop")
    wait_for(lambda: state_of(db, job_id) is JobState.RUNNING, 20, what="the job to run")
    worker.signal(signal.SIGTERM)
    assert worker.wait(20) == 0
    assert state_of(db, job_id) is JobState.STOPPED


def test_database_restart_mid_run_loses_nothing(postgres_server, database, spawn, ledger) -> None:  # type: ignore[no-untyped-def]
    db = Database(database)
    ids = db.enqueue("record", 30, args={"seconds": 0.3}, backoff_seconds=0)
    spawn("--stall-timeout", "10")
    spawn("--stall-timeout", "10")
    wait_for(lambda: len(ledger.count("done")) >= 3, 30, what="some jobs to finish")
    postgres_server.restart()
    wait_for(
        lambda: all(db.job(job_id).state is JobState.COMPLETED for job_id in ids),
        60,
        interval=0.5,
        what="every job to complete after the restart",
    )
    assert set(ledger.count("done")) == set(ids)


def test_progress_writes_are_throttled(database, spawn) -> None:  # type: ignore[no-untyped-def]
    db = Database(database)
    [job_id] = db.enqueue("progress", args={"updates": 200, "seconds": 2})
    spawn()
    job = wait_for(lambda: (j := db.job(job_id)).state is JobState.COMPLETED and j, 20, what="completion")
    # claim + completion + about one progress write per second of the two seconds run
    assert job.change_count <= 8, f"{job.change_count} writes for 200 progress reports"
    assert job.change_count >= 4, "progress was never written while the job ran"


def test_shell_jobs_wait_for_a_worker_that_enables_shell(database, spawn) -> None:  # type: ignore[no-untyped-def]
    """A worker without --enable-shell neither advertises nor claims `shell`: in a mixed fleet the
    job waits for a worker that runs it instead of failing on one that refuses it."""
    db = Database(database)
    [job_id] = db.enqueue("shell", args={"command": ["true"]})
    [other] = db.enqueue("record")
    spawn()
    wait_for(lambda: state_of(db, other) is JobState.COMPLETED, 20, what="the other job")
    [row] = db.call(workers_module.list_workers)
    assert "shell" not in row.tasks and "record" in row.tasks
    assert state_of(db, job_id) is JobState.PENDING
    spawn("--enable-shell")
    wait_for(
        lambda: state_of(db, job_id) is JobState.COMPLETED, 20, what="the shell job on the enabled worker"
    )


def test_shell_task_runs_commands_when_enabled(database, spawn) -> None:  # type: ignore[no-untyped-def]
    db = Database(database)
    [ok] = db.enqueue("shell", args={"command": ["echo", "hello from shell"]})
    [bad] = db.enqueue("shell", args={"command": ["false"]}, max_attempts=1)
    worker = spawn("--enable-shell")
    wait_for(lambda: state_of(db, ok) is JobState.COMPLETED, 20, what="echo")
    failed = wait_for(lambda: (j := db.job(bad)).state is JobState.FAILED and j, 20, what="false")
    assert "exited with code 1" in (failed.message or "")
    assert "hello from shell" in worker.output()


def test_demo_style_logs(database, spawn) -> None:  # type: ignore[no-untyped-def]
    db = Database(database)
    [job_id] = db.enqueue("sleep", args={"seconds": 1, "steps": 4})
    worker = spawn()
    wait_for(lambda: state_of(db, job_id) is JobState.COMPLETED, 20, what="the sleep job")
    wait_for(lambda: f"Job {job_id} completed in" in worker.output(), 5, what="the completion log line")
    log = worker.output()
    assert f"Job {job_id} progress: 25%" in log
    # One line per job at INFO (the start line is DEBUG: it doubled the logging cost of short jobs).
    assert f"Starting job {job_id}" not in log


def test_wrong_password_names_the_setting(database_env) -> None:  # type: ignore[no-untyped-def]
    env = dict(database_env, DB_PASSWORD="wrong")
    result = pgjobs(env, "jobs")
    assert result.returncode == 1
    assert "DB_PASSWORD" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unreachable_database_is_one_clear_line(database_env) -> None:  # type: ignore[no-untyped-def]
    env = dict(
        database_env, PGJOBS_DATABASE_URL="host=127.0.0.1 port=1 dbname=pgjobs user=x connect_timeout=2"
    )
    result = pgjobs(env, "migrate")
    assert result.returncode == 1
    assert "cannot reach PostgreSQL" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["enqueue", "noop", "--args", "{not json"], "--args is not valid JSON"),
        (["enqueue", "noop", "--args", "[1, 2]"], "--args must be a JSON object"),
        (["enqueue", "noop", "--priority", "Urgent"], "unknown priority 'Urgent'"),
        (["enqueue", "bad task!"], "not a valid task name"),
        (["enqueue", "noop", "--max-attempts", "0"], "max_attempts must be a whole number from 1 to 100"),
        (["enqueue", "noop", "--args", '{"blob": "' + "x" * 70000 + '"}'], "over the limit of 65536 bytes"),
        (["jobs", "--state", "Sleeping"], "unknown state 'Sleeping'"),
        (["stop", "424242"], "no job with id 424242"),
    ],
)
def test_bad_input_is_one_clear_line_and_loses_nothing(database, database_env, args, expected) -> None:  # type: ignore[no-untyped-def]
    db = Database(database)
    [existing] = db.enqueue("noop")
    result = pgjobs(database_env, *args)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert [
        job.id for job in db.call(lambda conn: __import__("pgjobs.store.jobs").store.jobs.list_jobs(conn))
    ] == [existing]


def test_enqueue_count_and_jobs_json(database, database_env) -> None:  # type: ignore[no-untyped-def]
    result = pgjobs(database_env, "enqueue", "sleep", "--count", "3", "--priority", "High")
    assert result.returncode == 0, result.stderr
    ids = [int(line) for line in result.stdout.split()]
    assert len(ids) == 3
    listing = pgjobs(database_env, "jobs", "--json")
    import json

    jobs = json.loads(listing.stdout)
    assert [job["id"] for job in jobs] == sorted(ids, reverse=True)
    assert {job["state"] for job in jobs} == {"Pending"} and {job["priority"] for job in jobs} == {"High"}
    assert {"id", "task", "state", "priority", "progress", "worker", "attempts", "created_at"} <= set(jobs[0])


def test_database_settings_from_libpq_environment(postgres_server, database) -> None:  # type: ignore[no-untyped-def]
    env = {
        "PATH": "/usr/bin:/bin",
        "PGHOST": "127.0.0.1",
        "PGPORT": str(postgres_server.port),
        "PGUSER": "pgjobs",
        "PGDATABASE": database.conninfo().split("dbname=")[1].split()[0],
        "DB_PASSWORD": postgres_server.password,
    }
    result = pgjobs(env, "jobs")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ID")


def test_database_settings_conninfo_uses_db_password() -> None:
    settings = connecting.DatabaseSettings.from_environment("postgresql://u@h/db", {"DB_PASSWORD": "s3cret"})
    assert "password=s3cret" in settings.conninfo()


def test_worker_started_before_the_database_exists_waits_for_it(postgres_server, database_env, spawn) -> None:  # type: ignore[no-untyped-def]
    env = dict(database_env, PGJOBS_DATABASE_URL=postgres_server.url_without_password("created_later"))
    worker = WorkerProcess(env)
    try:
        wait_for(lambda: "Waiting for the database" in worker.output(), 20, what="the worker to wait")
        assert worker.process.poll() is None, "the worker gave up instead of waiting"
        assert pgjobs(env, "migrate").returncode == 0
        enqueued = pgjobs(env, "enqueue", "noop")
        assert enqueued.returncode == 0, enqueued.stderr
        settings = connecting.DatabaseSettings(env["PGJOBS_DATABASE_URL"], env["DB_PASSWORD"])
        job_id = int(enqueued.stdout)
        wait_for(
            lambda: state_of(Database(settings), job_id) is JobState.COMPLETED, 30, what="the job to run"
        )
    finally:
        worker.stop()


def test_worker_with_a_wrong_password_exits_naming_the_setting(database_env) -> None:  # type: ignore[no-untyped-def]
    worker = WorkerProcess(dict(database_env, DB_PASSWORD="wrong"))
    assert worker.wait(30) == 1
    assert "DB_PASSWORD" in worker.output() and "Traceback" not in worker.output()


def test_worker_serves_prometheus_metrics(database, spawn) -> None:  # type: ignore[no-untyped-def]
    import urllib.request

    from pgjobs.devenv.postgres import free_port

    db = Database(database)
    port = free_port()
    spawn("--metrics-port", str(port))
    [job_id] = db.enqueue("noop")
    wait_for(lambda: state_of(db, job_id) is JobState.COMPLETED, 20, what="the job")

    def scrape() -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                return str(response.read().decode())
        except OSError:
            return ""

    text = wait_for(
        lambda: 'pgjobs_worker_jobs_total{result="completed",task="noop"} 1.0' in (t := scrape()) and t,
        10,
        what="the completed job in the metrics",
    )
    assert "pgjobs_worker_slots 1.0" in text
    assert "pgjobs_worker_pickup_latency_seconds_count 1.0" in text


def test_concurrency_runs_several_jobs_in_one_process(database, spawn, ledger) -> None:  # type: ignore[no-untyped-def]
    db = Database(database)
    ids = db.enqueue("record", 3, args={"seconds": 2})
    worker = spawn("--concurrency", "3")
    wait_for(lambda: all(state_of(db, job_id) is JobState.COMPLETED for job_id in ids), 20, what="all three")
    assert {pid for _, _, pid in ledger.events("done")} == {worker.pid}
    jobs_ = [db.job(job_id) for job_id in ids]
    latest_start = max(job.started_at for job in jobs_ if job.started_at)
    earliest_end = min(job.finished_at for job in jobs_ if job.finished_at)
    assert latest_start < earliest_end, "the three jobs did not overlap"


def test_polling_alone_finds_work_without_listen(database, spawn) -> None:  # type: ignore[no-untyped-def]
    db = Database(database)
    spawn("--no-listen", "--poll-interval", "0.3")
    time.sleep(1.0)  # the worker is idle and polling when the job arrives
    [job_id] = db.enqueue("noop")
    wait_for(lambda: state_of(db, job_id) is JobState.COMPLETED, 10, what="the poll to find the job")


def test_a_result_json_cannot_hold_fails_the_job_not_the_worker(database, spawn) -> None:  # type: ignore[no-untyped-def]
    db = Database(database)
    ids = {kind: db.enqueue("bad_result", args={"kind": kind}, max_attempts=1)[0]
           for kind in ("nan", "set", "nul", "nul_error", "surrogate", "surrogate_error")}  # fmt: skip
    expected = {"nul_error": "bad\\0byte", "surrogate_error": "bad\\udcffbyte", "surrogate": "lone surrogate"}
    worker = spawn()
    for kind, job_id in ids.items():
        job = wait_for(lambda j=job_id: (x := db.job(j)).state is JobState.FAILED and x, 20, what=kind)
        assert "cannot be stored as JSON" in (job.message or "") or kind.endswith("_error"), job.message
        assert expected.get(kind, "") in (job.message or ""), (kind, job.message)
    [after] = db.enqueue("noop")
    wait_for(lambda: state_of(db, after) is JobState.COMPLETED, 20, what="the worker to go on")
    assert worker.process.poll() is None


def _worker_id(db: Database) -> str:
    async def read(conn):  # type: ignore[no-untyped-def]
        cursor = await conn.execute("SELECT id::text AS id FROM pgjobs.workers WHERE state = 'alive'")
        return [row["id"] for row in await cursor.fetchall()]

    return wait_for(lambda: (found := db.call(read)) and found[0], 20, what="the worker's registration")


def _claim_as_a_lost_answer(db: Database, job_id: int, worker_id: str) -> None:
    """What a claim leaves when it commits and its answer is lost: the row Running for the worker."""

    async def claim(conn):  # type: ignore[no-untyped-def]
        await conn.execute(
            "UPDATE pgjobs.jobs SET state = 'running', worker_id = %s, attempt = attempt + 1,"
            " lease = nextval('pgjobs.lease_seq'), started_at = now() WHERE id = %s",
            [worker_id, job_id],
        )

    db.call(claim)


def test_a_claim_whose_answer_was_lost_is_handed_back(database, spawn) -> None:  # type: ignore[no-untyped-def]
    """A claim that committed but whose answer never reached the slot (the connection broke after
    the commit, and the slot claimed again) leaves a row Running for a live worker, which no
    rescue touches: the worker itself must notice that none of its slots runs it."""
    db = Database(database)
    worker = spawn()
    worker_id = _worker_id(db)
    [job_id] = db.enqueue("record", queue="elsewhere")  # a queue this worker does not take

    _claim_as_a_lost_answer(db, job_id, worker_id)
    job = wait_for(lambda: (j := db.job(job_id)).state is JobState.PENDING and j, 10, what="the hand-back")
    assert (job.attempt, job.worker_id) == (0, None), "the lost claim charged no attempt"
    assert job.message and "handed back" in job.message
    assert "held by this worker but run by none of its slots" in worker.output()


def test_a_stop_during_a_failing_attempt_wins_over_the_retry(database, database_env, spawn, ledger) -> None:  # type: ignore[no-untyped-def]
    db = Database(database)
    [job_id] = db.enqueue("stubborn", args={"seconds": 30}, timeout_seconds=1, backoff_seconds=0)
    spawn("--stop-grace", "3")
    wait_for(lambda: ledger.count("start")[job_id] == 1, 20, what="the job to start")
    time.sleep(1.5)  # timed out (a failure, attempts left); the task ignores it during the grace
    assert pgjobs(database_env, "stop", str(job_id)).returncode == 0
    job = wait_for(lambda: (j := db.job(job_id)).state.is_finished and j, 15, what="the job to end")
    assert job.state is JobState.STOPPED, (job.state, job.message)
    assert job.message == "stopped on request; attempt 1/3 had failed: timed out after 1s"
    time.sleep(1.0)
    assert ledger.count("start")[job_id] == 1, "the stopped job ran again"


@pytest.mark.parametrize(
    ("task", "args"),
    [("record", {"seconds": 60}), ("progress", {"updates": 600, "seconds": 60})],  # sleeps / reports
)
def test_a_heartbeat_that_hangs_still_lets_the_job_go_at_the_stall_timeout(
    database, spawn, ledger, task, args
) -> None:  # type: ignore[no-untyped-def]
    """A heartbeat blocked for good (here: its worker row locked; in life, a connection whose
    packets vanish) must not keep the worker running a job that others rescue at the stall
    timeout; and a job claimed again during the silence is kept while it is fresh, whether the
    task checks its contact (progress reports) or not."""
    db = Database(database)
    worker = spawn()
    worker_id = _worker_id(db)
    [job_id] = db.enqueue(task, args=args)
    wait_for(lambda: ledger.count("start")[job_id] == 1, 20, what="the job to start")

    async def let_go_while_the_heartbeat_hangs(conn) -> bool:  # type: ignore[no-untyped-def]
        async with conn.transaction():
            # Blocks the heartbeat's FOR UPDATE, not the slots' claims (a foreign key's KEY SHARE).
            await conn.execute("SELECT 1 FROM pgjobs.workers WHERE id = %s FOR NO KEY UPDATE", [worker_id])
            deadline = time.monotonic() + 5.0  # the stall timeout is 2 s
            while "letting it go" not in worker.output():
                if time.monotonic() > deadline:
                    return False
                await asyncio.sleep(0.05)
            # Still silent for a while: the job handed back is claimed again at once, and that
            # fresh claim is not taken away (the sweep spares it for a stall timeout).
            await asyncio.sleep(1.0)
            return True

    assert db.call(let_go_while_the_heartbeat_hangs), worker.output()
    wait_for(lambda: db.job(job_id).state is JobState.RUNNING and ledger.count("start")[job_id] >= 2, 10)
    time.sleep(1.0)
    assert ledger.count("start")[job_id] == 2, worker.output()


def test_a_job_held_but_not_run_is_handed_back_when_the_worker_leaves(database, spawn) -> None:  # type: ignore[no-untyped-def]
    db = Database(database)
    # Heartbeats too slow for the hand-back at the second one: only leaving can do it here.
    worker = spawn("--heartbeat-interval", "5", "--stall-timeout", "30")
    worker_id = _worker_id(db)
    [job_id] = db.enqueue("record", queue="elsewhere")

    _claim_as_a_lost_answer(db, job_id, worker_id)
    worker.signal(signal.SIGTERM)
    assert worker.wait(20) == 0, worker.output()
    job = db.job(job_id)
    assert (job.state, job.attempt) == (JobState.PENDING, 0)
    assert job.message == "handed back by its worker on leaving"
