"""What every abuse test checks after the hostile input: the same processes, still alive, and an
ordinary PgJob that still completes."""

from __future__ import annotations

import time
from typing import Any

import kubernetes

from tests.e2e.operator_helpers import GROUP, PLURAL, VERSION, Json, Services, create, pgjob, wait_phase
from tests.processes import ROOT

#: Worker options of the abuse suite: the sample tasks, the hostile ones, and the metrics page.
TASKS = ("--tasks", "tests.sample_tasks,tests.abuse.hostile_tasks")


class Fleet:
    """An operator and a worker as processes; `check` proves hostile input hurt neither."""

    def __init__(self, services: Services, *worker_args: str) -> None:
        services.env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", PGJOBS_TEST_LEDGER="/dev/null")
        self.services = services
        self.operator = services.operator()
        self.worker = services.worker("worker", *TASKS, *worker_args)
        self.pids = {process.name: process.pid for process in services.processes}
        self._ordinary = 0

    def check(self, kube: Any, namespace: str) -> None:
        """The same processes alive, no traceback logged, and an ordinary PgJob completes."""
        self._ordinary += 1
        name = f"ordinary-{self._ordinary}"
        create(kube, namespace, pgjob(name, "noop"))
        wait_phase(kube, namespace, name, "Completed", timeout=60)
        for process in self.services.processes:
            assert process.alive(), f"{process.name} exited:\n{process.text()[-3000:]}"
            assert process.pid == self.pids[process.name]
            assert "Traceback" not in process.text(), f"{process.name} logged a traceback"


def try_create(kube: Any, namespace: str, body: Json) -> str | None:
    """Create the PgJob: None when created, else the API server's refusal (status and message)."""
    try:
        kube.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    except kubernetes.client.exceptions.ApiException as error:
        assert error.status in (400, 413, 422), f"{error.status} {error.body}"
        return f"{error.status} {error.body}"
    return None


def wait_failed(kube: Any, namespace: str, name: str, *reason: str, timeout: float = 60) -> Json:
    """Wait for Failed; its message must contain every part of `reason`."""
    status = wait_phase(kube, namespace, name, "Failed", timeout=timeout)
    for part in reason:
        assert part in status.get("message", ""), status
    return status


def settle() -> None:
    """Give a crash (if the input caused one) the time to happen before the checks."""
    time.sleep(1)
