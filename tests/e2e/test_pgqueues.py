"""PgQueues end to end: a real kube-apiserver, PostgreSQL, `pgjobs operator` (under the chart's
RBAC) and a worker; `kubectl pgjobs pause/resume` as a user types them.

PgQueues are cluster-scoped and the API server is shared by the session's tests: each test uses
queues named after its namespace and deletes its PgQueues at the end.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pgjobs.cli import kubectl
from pgjobs.cli.kubectl import completion
from pgjobs.store import connecting
from tests.e2e.operator_helpers import (
    GROUP,
    VERSION,
    Services,
    create,
    query,
    sleep_job,
    status,
    wait_phase,
    wait_until,
)

QUEUES = "pgqueues"
Json = dict[str, Any]


@pytest.fixture
def queue(kube: Any, namespace: str) -> Iterator[str]:
    """A queue name of this test alone; its PgQueue is deleted afterwards."""
    name = f"q-{namespace}"[:63]
    yield name
    kube.kubectl("delete", "pgqueue", name, "--ignore-not-found", "--wait=false", check=False)


def get_queue(kube: Any, name: str) -> Json | None:
    found = kube.kubectl("get", "pgqueue", name, "-o", "json", "--ignore-not-found", check=False).stdout
    if not found.strip():
        return None
    return dict(json.loads(found))


def plugin(kube: Any, *args: str) -> str:
    """`kubectl pgjobs ARGS` through the plugin's own entry point; its output."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = kubectl.main(["--kubeconfig", str(kube.kubeconfig), *args])
    assert code == 0, out.getvalue()
    return out.getvalue()


def queue_row(database: connecting.DatabaseSettings, name: str) -> dict[str, Any] | None:
    found = query(
        database, "SELECT paused, max_running, max_per_second FROM pgjobs.queues WHERE name = %s", name
    )
    return found[0] if found else None


def test_a_queue_in_use_gets_a_pgqueue_whose_status_counts_its_jobs(
    kube: Any, namespace: str, services: Services, queue: str
) -> None:
    services.operator()
    services.worker("worker", "--queue", queue)
    create(kube, namespace, sleep_job("counted", seconds=30, steps=30, queue=queue))
    wait_phase(kube, namespace, "counted", "Running", timeout=30)

    def counted() -> Json | None:
        body = get_queue(kube, queue)
        current = (body or {}).get("status") or {}
        return body if current.get("running") == 1 and current.get("workers") == 1 else None

    body = wait_until(counted, timeout=30, what="the operator's PgQueue with the running job counted")
    assert body["metadata"]["labels"] == {"pgjobs.dev/created-by-operator": "true"}
    assert body["spec"] == {"paused": False}  # defaulted by the API server: unpaused, uncapped
    assert body["status"]["pending"] == 0 and "oldestPendingSince" not in body["status"]
    table = kube.kubectl("get", "pgq", queue).stdout.splitlines()
    assert table[0].split() == [
        "NAME",
        "PENDING",
        "RUNNING",
        "WORKERS",
        "PAUSED",
        "MAX",
        "RUNNING",
        "OLDEST",
        "AGE",
    ]
    assert table[1].split()[:5] == [queue, "0", "1", "1", "false"]


def test_pause_holds_new_jobs_and_resume_runs_them_while_running_ones_finish(
    kube: Any, namespace: str, services: Services, database: connecting.DatabaseSettings, queue: str
) -> None:
    services.operator()
    services.worker("worker", "--queue", queue, "--concurrency", "2")
    create(kube, namespace, sleep_job("before", seconds=4, steps=4, queue=queue))
    wait_phase(kube, namespace, "before", "Running", timeout=30)

    assert plugin(kube, "pause", queue) == f"pgqueue.pgjobs.dev/{queue} paused\n"
    wait_until(
        lambda: (queue_row(database, queue) or {}).get("paused"), timeout=10, what="the pause in the database"
    )
    create(kube, namespace, sleep_job("held", seconds=0.5, steps=1, queue=queue))
    wait_phase(kube, namespace, "before", "Completed", timeout=30)  # the running job finished
    time.sleep(2)  # a free slot, polling every 0.5 s: it would have claimed by now
    assert status(kube, namespace, "held")["phase"] == "Pending"

    def paused_with_a_wait() -> Json | None:
        body = get_queue(kube, queue) or {}
        current = body.get("status") or {}
        return body if current.get("pending") == 1 and current.get("oldestPendingSince") else None

    body = wait_until(paused_with_a_wait, timeout=15, what="the PgQueue showing the held job")
    assert body["spec"]["paused"] is True
    since = datetime.datetime.fromisoformat(body["status"]["oldestPendingSince"].replace("Z", "+00:00"))
    assert since <= datetime.datetime.now(datetime.UTC)

    assert plugin(kube, "resume", queue) == f"pgqueue.pgjobs.dev/{queue} resumed\n"
    wait_phase(kube, namespace, "held", "Completed", timeout=20)


def test_the_limits_reach_the_claim_and_deleting_the_pgqueue_lifts_them(
    kube: Any, services: Services, database: connecting.DatabaseSettings, queue: str
) -> None:
    services.operator()
    kube.apply({"apiVersion": f"{GROUP}/{VERSION}", "kind": "PgQueue", "metadata": {"name": queue},
                "spec": {"maxRunning": 2, "paused": True, "maxPerSecond": 2.5}})  # fmt: skip
    expected = {"paused": True, "max_running": 2, "max_per_second": 2.5}
    wait_until(lambda: queue_row(database, queue) == expected, timeout=15, what="the row")
    listed = kube.kubectl("get", "pgqueue", queue, "-o", "wide").stdout
    assert "MAX PER SECOND" in listed.splitlines()[0] and "2.5" in listed.splitlines()[1], listed
    kube.kubectl("delete", "pgqueue", queue)
    wait_until(lambda: queue_row(database, queue) is None, timeout=15, what="the row gone with its PgQueue")
    # Resuming a queue that has no PgQueue changes nothing, and says so.
    assert plugin(kube, "resume", queue) == f"pgqueue.pgjobs.dev/{queue} not paused (it has no PgQueue)\n"


@pytest.mark.parametrize(
    ("spec", "name", "refusal"),
    [
        ({"maxRunning": -1}, None, "spec.maxRunning"),
        ({"maxPerSecond": 0}, None, "spec.maxPerSecond"),
        ({"maxPerSecond": "fast"}, None, "spec.maxPerSecond"),
        ({"paused": "yes"}, None, "spec.paused"),
        ({"pause": True}, None, 'unknown field "spec.pause"'),
        ({}, "Not_A_Queue", "metadata.name"),
    ],
    ids=["negative cap", "zero rate", "not a number", "not a boolean", "unknown field", "not a queue name"],
)
def test_a_bad_pgqueue_is_refused_by_the_api_server_naming_the_field(
    kube: Any, queue: str, spec: Json, name: str | None, refusal: str
) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "PgQueue",
        "metadata": {"name": name or queue},
        "spec": spec,
    }
    done = kube.apply(body, check=False)
    assert done.returncode != 0 and refusal in done.stderr, done.stderr
    assert get_queue(kube, name or queue) is None


def test_completion_offers_the_names_each_verb_takes(
    kube: Any, crd: None, namespace: str, queue: str
) -> None:
    """`kubectl pgjobs pause <TAB>` offers PgQueues, `trigger <TAB>` PgCronJobs of the namespace,
    `stop <TAB>` its PgJobs, as the API server lists them."""
    kube.apply(
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "PgQueue", "metadata": {"name": queue}, "spec": {}}
    )
    create(kube, namespace, sleep_job("to-complete", queue=queue))
    cronjob = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "PgCronJob", "metadata": {"name": "nightly"},
               "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"task": "noop"}}}}  # fmt: skip
    kube.apply(cronjob, namespace)
    where = ["--kubeconfig", str(kube.kubeconfig), "-n", namespace]
    assert queue in completion.candidates([*where, "pause", ""])
    assert completion.candidates([*where, "resume", queue[:-1]]) == [queue]
    assert completion.candidates([*where, "trigger", ""]) == ["nightly"]
    assert completion.candidates([*where, "stop", "to-"]) == ["to-complete"]
