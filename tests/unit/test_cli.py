"""The `pgjobs` command line: parsing, environment defaults, formatting, errors."""

from __future__ import annotations

import datetime
import uuid

import pytest

from pgjobs.cli import listings, main, options, queue
from pgjobs.states import JobState, Priority
from pgjobs.store.records import Job


def test_every_worker_option_reads_its_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGJOBS_CONCURRENCY", "4")
    monkeypatch.setenv("PGJOBS_QUEUE", "a,b")
    monkeypatch.setenv("PGJOBS_ENABLE_SHELL", "true")
    args = main.build_parser().parse_args(["worker"])
    assert args.concurrency == 4 and args.enable_shell is True
    assert options.resolved_list(args, "--queue") == ["a", "b"]


def test_command_line_beats_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGJOBS_QUEUE", "a")
    args = main.build_parser().parse_args(["worker", "--queue", "c", "--queue", "d,e"])
    assert options.resolved_list(args, "--queue") == ["c", "d", "e"]


def test_global_options_work_after_the_command() -> None:
    args = main.build_parser().parse_args(["jobs", "--log-level", "warning", "--database-url", "host=x"])
    assert (args.log_level, args.database_url) == ("warning", "host=x")


def test_help_mentions_environment_variables(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main.build_parser().parse_args(["worker", "--help"])
    assert "[env PGJOBS_SHUTDOWN_GRACE]" in capsys.readouterr().out


@pytest.mark.parametrize(("text", "message"), [("{", "not valid JSON"), ("3", "must be a JSON object")])
def test_args_json_errors(text: str, message: str) -> None:
    with pytest.raises(options.UserError, match=message):
        queue.parse_args_json(text)


def test_user_errors_are_one_line_with_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main.main(["enqueue", "noop", "--priority", "Urgent"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pgjobs: error: unknown priority 'Urgent'") and err.count("\n") == 1


def test_jobs_table() -> None:
    now = datetime.datetime(2026, 1, 1, 12, tzinfo=datetime.UTC)
    job = Job(
        id=7,
        task="sleep",
        args={},
        priority=Priority.HIGH,
        queue="default",
        state=JobState.RUNNING,
        attempt=1,
        max_attempts=3,
        progress=40,
        message=None,
        result=None,
        worker_id=uuid.uuid4(),
        worker_name="worker-a",
        stop_requested=False,
        restarts=0,
        run_after=now,
        created_at=now - datetime.timedelta(minutes=5),
        started_at=now,
        finished_at=None,
        resource_uid=None,
        resource_namespace=None,
        resource_name=None,
        ttl_seconds_after_finished=None,
        change_count=1,
    )
    lines = listings.format_jobs([job], now=now).splitlines()
    assert lines[0].split() == ["ID", "TASK", "STATE", "PRIORITY", "PROGRESS", "WORKER", "ATTEMPTS", "AGE"]
    assert lines[1].split() == ["7", "sleep", "Running", "High", "40%", "worker-a", "1/3", "5m"]
    assert job.as_json()["state"] == "Running"


@pytest.mark.parametrize(("seconds", "text"), [(5, "5s"), (90, "1m"), (7200, "2h"), (200000, "2d")])
def test_age_format(seconds: int, text: str) -> None:
    assert listings.format_age(datetime.timedelta(seconds=seconds)) == text
