"""Bad input at volume: random `pgjobs enqueue` arguments. Valid ones run, invalid ones get one
clear line, and the worker that runs whatever got in never crashes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pgjobs.cli import main
from pgjobs.states import FINISHED_STATES
from pgjobs.store import connecting, jobs
from tests.processes import ROOT, Database

pytestmark = pytest.mark.integration

SOAK = os.environ.get("PGJOBS_SOAK") == "1"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)
args_text = st.one_of(
    json_values.map(json.dumps),
    st.text(max_size=40),
    st.dictionaries(st.text(max_size=8), json_values, max_size=4).map(json.dumps),
)
task_names = st.one_of(st.sampled_from(["noop", "sleep", "shell", "unknown_task"]), st.text(max_size=20))
priorities = st.one_of(st.sampled_from(["High", "Regular", "Low", "high"]), st.text(max_size=10))


def as_numbers(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, list):
        return [as_numbers(item) for item in value]
    return {key: as_numbers(item) for key, item in value.items()}


queues = st.one_of(st.just("default"), st.text(max_size=12))


@settings(
    max_examples=300 if SOAK else 60,
    deadline=None,
    derandomize=not SOAK,  # the same examples in CI; fresh random ones in the soak
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(task=task_names, args=args_text, priority=priorities, queue=queues)
# Found by earlier random runs: Python's json takes Infinity, jsonb does not; big floats come back as ints.
@example(task="noop", args='{"": Infinity}', priority="High", queue="default")
@example(task="noop", args='{"": NaN}', priority="High", queue="default")
@example(task="noop", args='{"": 3.798346318413854e+16}', priority="High", queue="default")
def test_random_enqueue_arguments(
    database: connecting.DatabaseSettings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    task: str,
    args: str,
    priority: str,
    queue: str,
) -> None:
    monkeypatch.setenv("PGJOBS_DATABASE_URL", database.url)
    monkeypatch.setenv("DB_PASSWORD", database.password or "")
    before = len(Database(database).call(lambda conn: jobs.list_jobs(conn, limit=100_000)))
    # The `--option=value` form and `--` let values that start with "-" through, as a user would.
    code = main.main(["enqueue", f"--args={args}", f"--priority={priority}", f"--queue={queue}", "--", task])
    out, err = capsys.readouterr()
    after = len(Database(database).call(lambda conn: jobs.list_jobs(conn, limit=100_000)))
    if code == 0:
        [job_id] = [int(line) for line in out.split()]
        job = Database(database).job(job_id)
        # JSON numbers are decimals: compare them as numbers, whatever int/float they come back as.
        assert (job.task, job.queue) == (task, queue)
        assert as_numbers(job.args) == as_numbers(json.loads(args))
        assert after == before + 1
    else:
        assert code == 2, err
        assert err.startswith("pgjobs: error: ") and err.count("\n") == 1, err
        assert after == before, "a refused job was stored anyway"


def test_worker_survives_whatever_got_in(
    database: connecting.DatabaseSettings, database_env: dict[str, str]
) -> None:
    db = Database(database)
    odd_args = [
        {},
        {"seconds": "ten"},
        {"seconds": -1},
        {"steps": 0},
        {"unexpected": [1, {"x": None}]},
        {"command": "not a list"},
        {"seconds": 0.01, "steps": 1},
    ]
    for task in ("noop", "sleep", "shell", "unknown_task"):
        for args in odd_args:
            db.enqueue(task, args=args, max_attempts=1)
    result = subprocess.run(
        [sys.executable, "-m", "pgjobs.cli.main", "worker", "--burst", "--enable-shell"],
        env=dict(database_env, PYTHONPATH=str(ROOT)),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    found = db.call(lambda conn: jobs.list_jobs(conn, limit=1000))
    # A task the worker does not know is left for a worker that has it, not failed.
    known = [job for job in found if job.task != "unknown_task"]
    assert all(job.state in FINISHED_STATES for job in known), [(j.task, j.args, j.state) for j in known]
    assert {(job.state.phase, job.attempt) for job in found if job.task == "unknown_task"} == {("Pending", 0)}
    failed = {(job.task, json.dumps(job.args)): job.message for job in found if job.state.phase == "Failed"}
    assert "args do not fit task 'sleep'" in (
        failed[("sleep", json.dumps({"unexpected": [1, {"x": None}]}))] or ""
    )
    assert os.path.exists(ROOT / "pgjobs")
