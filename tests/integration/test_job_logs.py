"""Per-job logs with real workers and PostgreSQL: capture per attempt, the cap, redaction,
`pgjobs logs` (and `-f`), deletion with the job, and the worker's JSON log format."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pgjobs.states import JobState
from pgjobs.store import job_logs
from pgjobs.worker import capture
from tests.processes import ROOT, Database, pgjobs, wait_for

pytestmark = pytest.mark.integration


def lines_of(db: Database, job_id: int, attempt: int | None = None) -> list[job_logs.LogLine]:
    return db.call(lambda conn: job_logs.read(conn, job_id, attempt, limit=100_000))


def finished(db: Database, job_id: int) -> bool:
    return db.job(job_id).state.is_finished


def test_a_retried_jobs_lines_are_stored_per_attempt_in_order(database, spawn) -> None:  # type: ignore[no-untyped-def]
    db = Database(database)
    [job_id] = db.enqueue("chatty", args={"lines": 3, "failures": 1}, max_attempts=2, backoff_seconds=0)
    spawn()
    wait_for(lambda: db.job(job_id).state is JobState.COMPLETED, 30, what="the chatty job")
    stored = lines_of(db, job_id)
    logged = [
        (attempt, seq, message)
        for attempt in (1, 2)
        for seq, message in enumerate(
            [*(f"line {n} of attempt {attempt}" for n in (1, 2, 3)), "from a library, in a thread"], 1
        )
    ]
    assert [(line.attempt, line.seq, line.message) for line in stored if line.level != "ERROR"] == logged
    assert stored[3].level == "WARNING" and stored[0].level == "INFO"
    # The failed attempt's log ends with why, and the task's traceback.
    failure = stored[4]
    assert (failure.attempt, failure.seq, failure.level) == (1, 5, "ERROR")
    assert failure.message.startswith("the attempt failed: RuntimeError: planned failure on attempt 1\n")
    assert "Traceback (most recent call last)" in failure.message and "in chatty" in failure.message
    assert lines_of(db, job_id, attempt=2)[0].message == "line 1 of attempt 2"
    after = db.call(lambda conn: job_logs.read(conn, job_id, after=job_logs.Position(1, 5)))
    assert [line.position for line in after] == [job_logs.Position(2, n) for n in (1, 2, 3, 4)]


def test_pgjobs_logs_prints_the_lines_and_one_attempt(database, database_env, spawn) -> None:  # type: ignore[no-untyped-def]
    db = Database(database)
    [job_id] = db.enqueue("chatty", args={"lines": 2, "failures": 1}, max_attempts=2, backoff_seconds=0)
    spawn()
    wait_for(lambda: finished(db, job_id), 30, what="the chatty job")
    everything = pgjobs(database_env, "logs", str(job_id))
    assert everything.returncode == 0, everything.stderr
    printed = everything.stdout.splitlines()
    second = pgjobs(database_env, "logs", str(job_id), "--attempt", "2").stdout.splitlines()
    assert [line.split(" ", 1)[1] for line in second] == [
        "[2] INFO line 1 of attempt 2",
        "[2] INFO line 2 of attempt 2",
        "[2] WARNING from a library, in a thread",
    ]
    assert printed[-3:] == second
    assert [line.split(" ", 1)[1] for line in printed[:4]] == [
        "[1] INFO line 1 of attempt 1",
        "[1] INFO line 2 of attempt 1",
        "[1] WARNING from a library, in a thread",
        "[1] ERROR the attempt failed: RuntimeError: planned failure on attempt 1",
    ]
    assert printed[4] == "Traceback (most recent call last):"  # the line's message goes on
    missing = pgjobs(database_env, "logs", "999999")
    assert missing.returncode == 2 and "no job with id 999999" in missing.stderr


def test_the_cap_truncates_an_attempts_log_with_a_marker(database, spawn) -> None:  # type: ignore[no-untyped-def]
    db = Database(database)
    [job_id] = db.enqueue("chatty", args={"lines": 5000}, max_attempts=1)
    spawn()
    wait_for(lambda: db.job(job_id).state is JobState.COMPLETED, 30, what="the chatty job")
    stored = lines_of(db, job_id)
    assert stored[-1].message == capture.TRUNCATED
    assert 3000 < len(stored) < 5000
    assert sum(len(line.message.encode()) for line in stored[:-1]) <= capture.MAX_ATTEMPT_BYTES
    assert [line.message for line in stored[:2]] == ["line 1 of attempt 1", "line 2 of attempt 1"]


def test_the_database_password_is_redacted(database, spawn) -> None:  # type: ignore[no-untyped-def]
    db = Database(database)
    assert database.password
    [job_id] = db.enqueue("chatty", args={"lines": 0, "secrets": True}, max_attempts=1)
    spawn()
    wait_for(lambda: db.job(job_id).state is JobState.COMPLETED, 30, what="the chatty job")
    messages = [line.message for line in lines_of(db, job_id)]
    assert "password=[redacted] url=postgresql://pgjobs:[redacted]@db:5432/pgjobs" in messages
    assert not any(database.password in message for message in messages)


def test_the_sleep_and_shell_tasks_log_their_steps_and_output(database, spawn) -> None:  # type: ignore[no-untyped-def]
    db = Database(database)
    [sleeping] = db.enqueue("sleep", args={"seconds": 0.3, "steps": 3})
    [shell] = db.enqueue("shell", args={"command": ["sh", "-c", "echo hello; echo world >&2"]})
    spawn("--enable-shell", "--concurrency", "2")
    wait_for(lambda: finished(db, sleeping) and finished(db, shell), 30, what="both jobs")
    assert [line.message for line in lines_of(db, sleeping)] == ["step 1/3", "step 2/3", "step 3/3"]
    assert [line.message for line in lines_of(db, shell)] == ["hello", "world"]


def test_a_noop_job_writes_no_lines(database, spawn) -> None:  # type: ignore[no-untyped-def]
    db = Database(database)
    ids = db.enqueue("noop", 20)
    spawn()
    wait_for(lambda: all(finished(db, job_id) for job_id in ids), 30, what="the noop jobs")
    assert all(lines_of(db, job_id) == [] for job_id in ids)


def test_follow_prints_a_running_jobs_lines_until_it_ends(database, database_env, spawn) -> None:  # type: ignore[no-untyped-def]
    db = Database(database)
    [job_id] = db.enqueue("chatty", args={"lines": 4, "seconds": 0.7}, max_attempts=1)
    follower = subprocess.Popen(
        [sys.executable, "-m", "pgjobs.cli.main", "logs", str(job_id), "-f"],
        env=database_env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        spawn()
        assert follower.stdout is not None
        first = follower.stdout.readline()
        assert first.endswith("[1] INFO line 1 of attempt 1\n")
        assert not finished(db, job_id), "the first line came only after the job had finished"
        follower.wait(timeout=30)
        rest = follower.stdout.read().splitlines()
    finally:
        follower.kill()
    assert follower.returncode == 0
    assert finished(db, job_id)
    assert [line.split(" ", 2)[2] for line in rest] == [
        "INFO line 2 of attempt 1",
        "INFO line 3 of attempt 1",
        "INFO line 4 of attempt 1",
        "WARNING from a library, in a thread",
    ]


def test_deleting_a_job_deletes_its_lines(database, database_env, spawn) -> None:  # type: ignore[no-untyped-def]
    db = Database(database)
    [job_id] = db.enqueue("chatty", args={"lines": 2}, max_attempts=1)
    spawn()
    wait_for(lambda: finished(db, job_id), 30, what="the chatty job")
    assert len(lines_of(db, job_id)) == 3
    deleted = pgjobs(database_env, "delete", str(job_id))
    assert deleted.returncode == 0, deleted.stderr
    assert lines_of(db, job_id) == []


def test_the_workers_json_log_carries_the_job_id_and_attempt(database, spawn) -> None:  # type: ignore[no-untyped-def]
    db = Database(database)
    [job_id] = db.enqueue("chatty", args={"lines": 1, "failures": 1}, max_attempts=2, backoff_seconds=0)
    worker = spawn("--log-format", "json")
    wait_for(lambda: db.job(job_id).state is JobState.COMPLETED, 30, what="the chatty job")
    worker.stop()
    entries = [json.loads(line) for line in worker.output().splitlines() if line.startswith("{")]
    assert entries and len(entries) == len(worker.output().splitlines()), worker.output()
    tasks = [entry for entry in entries if entry["logger"] == "pgjobs.task"]
    assert [(entry["message"], entry["job_id"], entry["attempt"]) for entry in tasks] == [
        ("line 1 of attempt 1", job_id, 1),
        ("line 1 of attempt 2", job_id, 2),
    ]
    assert all("job_id" not in entry for entry in entries if entry["logger"] == "pgjobs.worker")
