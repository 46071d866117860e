"""A mixed worker fleet end to end: a PgJob whose task no live worker can run stays Pending, gets
the condition Runnable=False (NoWorkerForTask) after the operator's delay, and loses it when a
worker that knows the task starts (and runs it)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.e2e.operator_helpers import ROOT, Json, Services, create, pgjob, status, wait_phase

#: The operator's delay in this test (the default, OperatorSettings.no_worker_after, is 120 s).
DELAY = 2.0


def runnable(current: Json) -> Json | None:
    found = [c for c in current.get("conditions") or [] if c.get("type") == "Runnable"]
    return found[0] if found else None


def test_a_pgjob_no_worker_can_run_gets_the_condition_then_loses_it(
    kube: Any, namespace: str, services: Services, tmp_path: Path
) -> None:
    # The workers import tests.fleet_tasks, whose runs go to a ledger.
    services.env = dict(services.env, PYTHONPATH=str(ROOT), PGJOBS_TEST_LEDGER=str(tmp_path / "ledger"))
    services.operator("operator", "--no-worker-after", str(DELAY))
    services.worker("pool-a", "--tasks", "tests.fleet_tasks.pool_a")  # serves the queue, not the task
    create(kube, namespace, pgjob("runs-on-a", "only_a"))
    wait_phase(kube, namespace, "runs-on-a", "Completed", timeout=60)  # the operator is up
    create(kube, namespace, pgjob("needs-c", "only_c"))
    created = time.monotonic()
    before = wait_phase(kube, namespace, "needs-c", "Pending")
    assert runnable(before) is None, before
    assert time.monotonic() - created < DELAY, "too slow to see the job before its delay"

    marked = kube.wait_for(
        lambda: runnable(current := status(kube, namespace, "needs-c")) and current,
        timeout=30,
        interval=0.2,
        what="the Runnable condition",
    )
    condition = runnable(marked)
    assert condition is not None
    assert (condition["status"], condition["reason"]) == ("False", "NoWorkerForTask"), condition
    assert "'only_c'" in condition["message"] and "'default'" in condition["message"], condition
    assert marked["phase"] == "Pending" and marked["attempts"] == 0, marked
    assert "no live worker runs task 'only_c'" in marked["message"], marked

    services.worker("pool-c", "--tasks", "tests.fleet_tasks.pool_c")
    done = wait_phase(kube, namespace, "needs-c", "Completed")
    assert runnable(done) is None and done["worker"] == "pool-c", done
