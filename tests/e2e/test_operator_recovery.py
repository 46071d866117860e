"""Crashes and restarts: workers, the operator, PostgreSQL, and a second operator replica.

Nothing is lost, nothing runs twice, statuses catch up, and one replica leads at a time.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest

from pgjobs.devenv import postgres
from pgjobs.operator import maintenance
from pgjobs.store import connecting
from tests.e2e.operator_helpers import (
    Recorder,
    Services,
    create,
    events,
    exists,
    get,
    patch_spec,
    query,
    rows,
    running_worker,
    sleep_job,
    status,
    wait_phase,
    wait_until,
    worker_pid,
)


def test_killed_worker_job_is_rescued_on_the_other_worker(
    kube: Any, namespace: str, services: Services, database: connecting.DatabaseSettings
) -> None:
    services.operator()
    workers = [services.worker("worker-1"), services.worker("worker-2")]
    create(kube, namespace, sleep_job("survivor", seconds=4, steps=8, backoffSeconds=1))
    wait_phase(kube, namespace, "survivor", "Running")
    uid = get(kube, namespace, "survivor")["metadata"]["uid"]
    victim = next(w for w in workers if w.pid == worker_pid(database, running_worker(database, uid)))
    victim.kill()
    done = wait_phase(kube, namespace, "survivor", "Completed", timeout=30)
    assert done["attempts"] == 2
    wait_until(lambda: "Completed" in [e["reason"] for e in events(kube, namespace, uid)], timeout=5)
    reasons = [e["reason"] for e in events(kube, namespace, uid)]
    assert reasons.count("Rescued") == 1 and reasons.count("Started") == 2, reasons
    survivor = next(w for w in workers if w is not victim)
    assert "Job 1 completed" in survivor.text() and done["worker"] == survivor.name


def test_operator_killed_and_restarted_loses_and_duplicates_nothing(
    kube: Any, namespace: str, services: Services, database: connecting.DatabaseSettings
) -> None:
    operator = services.operator("operator-1")
    services.worker("worker-1")
    services.worker("worker-2")
    create(kube, namespace, *(sleep_job(f"before-{i}", seconds=2, steps=4) for i in range(4)))
    wait_phase(kube, namespace, "before-0", "Running")
    operator.kill()
    # While the operator is down: new jobs, a deletion (held by the finalizer), a deletion
    # whose finalizer is removed by hand (the row is orphaned), and a stop.
    create(kube, namespace, *(sleep_job(f"during-{i}", seconds=1, steps=2) for i in range(3)))
    kube.kubectl("delete", "pgjob", "before-3", "-n", namespace, "--wait=false")
    kube.kubectl("delete", "pgjob", "before-2", "-n", namespace, "--wait=false")
    kube.kubectl("patch", "pgjob", "before-2", "-n", namespace, "--type=merge", "-p",
                 '{"metadata":{"finalizers":null}}')  # fmt: skip
    time.sleep(2)
    services.operator("operator-2")
    expected = ["before-0", "before-1", "during-0", "during-1", "during-2"]
    for name in expected:
        wait_phase(kube, namespace, name, "Completed", timeout=40)
    wait_until(lambda: not exists(kube, namespace, "before-3"), timeout=15, what="before-3 deleted")
    left = rows(database)
    assert sorted(row["resource_name"] for row in left) == expected  # no orphan, no duplicate
    for name in expected:
        assert status(kube, namespace, name)["attempts"] == 1


def test_postgres_restart_mid_run_recovers(
    kube: Any,
    namespace: str,
    services: Services,
    database: connecting.DatabaseSettings,
    postgres_server: postgres.PostgresServer,
) -> None:
    services.operator()
    services.worker("worker-1")
    services.worker("worker-2")
    create(kube, namespace, *(sleep_job(f"job-{i}", seconds=3, steps=6) for i in range(4)))
    wait_phase(kube, namespace, "job-0", "Running")
    postgres_server.restart()
    create(kube, namespace, sleep_job("after-restart", seconds=1, steps=2))
    for name in ["job-0", "job-1", "job-2", "job-3", "after-restart"]:
        final = wait_phase(kube, namespace, name, "Completed", timeout=60)
        assert final["progress"] == 100
    assert len(rows(database)) == 5


def leads(log: str) -> int:
    return log.count("now leads")


def test_two_operators_one_leads_and_the_other_takes_over(
    kube: Any, namespace: str, services: Services, database: connecting.DatabaseSettings
) -> None:
    first = services.operator("operator-a")
    second = services.operator("operator-b")
    services.worker()
    wait_until(lambda: leads(first.text()) + leads(second.text()) >= 1, timeout=15, what="a leader")
    time.sleep(2)  # the follower keeps trying meanwhile, and must not succeed
    assert leads(first.text()) + leads(second.text()) == 1
    leader, follower = (first, second) if leads(first.text()) else (second, first)
    create(kube, namespace, sleep_job("while-a-leads", seconds=1, steps=2))
    wait_phase(kube, namespace, "while-a-leads", "Completed", timeout=15)
    # One session holds the leadership lock; the follower's attempts do not.
    locks = query(
        database,
        "SELECT count(*) AS held FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    assert locks[0]["held"] == 1
    leader.kill()
    killed_at = time.monotonic()
    wait_until(lambda: leads(follower.text()) == 1, timeout=10, what="takeover")
    takeover = time.monotonic() - killed_at
    assert takeover < 5, takeover
    create(kube, namespace, sleep_job("after-takeover", seconds=1, steps=2))
    done = wait_phase(kube, namespace, "after-takeover", "Completed", timeout=15)
    assert done["attempts"] == 1
    # Stop and delete still work through the surviving replica's handlers.
    patch_spec(kube, namespace, "while-a-leads", restarts=1)
    wait_until(
        lambda: (
            status(kube, namespace, "while-a-leads").get("restarts") == 1
            and status(kube, namespace, "while-a-leads").get("phase") == "Completed"
        ),
        timeout=15,
        what="restart through the new leader",
    )


def test_a_frozen_leader_is_replaced_within_its_lease_and_writes_nothing_stale(
    kube: Any, namespace: str, services: Services, recorder: Recorder
) -> None:
    """The leader stops (SIGSTOP) but keeps its database session and its lock: a standby takes
    over once the lease (6 s by default) has run out, and statuses flow again well within 10 s.
    Woken, the old leader steps down and no status goes back in time."""
    first = services.operator("operator-a")
    second = services.operator("operator-b")
    services.worker("worker-1")
    services.worker("worker-2")
    wait_until(lambda: leads(first.text()) + leads(second.text()) >= 1, timeout=15, what="a leader")
    leader, follower = (first, second) if leads(first.text()) else (second, first)
    create(kube, namespace, sleep_job("ticking", seconds=12, steps=60))
    wait_until(lambda: status(kube, namespace, "ticking").get("progress", 0) > 0, timeout=15, what="progress")
    os.kill(leader.pid, signal.SIGSTOP)
    try:
        frozen_at = time.monotonic()
        create(kube, namespace, sleep_job("while-frozen", seconds=0.2, steps=1))
        wait_phase(kube, namespace, "while-frozen", "Completed", timeout=10)
        resumed = time.monotonic() - frozen_at
        assert leads(follower.text()) == 1
        wait_phase(kube, namespace, "ticking", "Completed", timeout=20)
    finally:
        os.kill(leader.pid, signal.SIGCONT)
    wait_until(lambda: "stops leading" in leader.text(), timeout=10, what="the old leader to step down")
    time.sleep(2)  # what the old leader might still write, it would have written by now
    assert leader.alive() and follower.alive()
    progress = recorder.progress("ticking")
    assert progress == sorted(progress), f"a status went back in time: {progress}"
    phases = [(v.get("status") or {}).get("phase") for v in recorder.versions("ticking")]
    assert set(phases[phases.index("Completed") :]) == {"Completed"}, phases
    print(f"status sync resumed {resumed:.1f}s after the leader froze")


#: What the operator needs cluster-wide even when it watches named namespaces: kopf watches CRDs
#: (to notice the PgJob CRD coming and going) and namespaces; PgQueues are cluster-scoped (watched,
#: created for queues in use, their status written).
KOPF_CLUSTER_RULES = [
    {
        "apiGroups": ["apiextensions.k8s.io"],
        "resources": ["customresourcedefinitions"],
        "verbs": ["list", "watch"],
    },
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
    {"apiGroups": ["pgjobs.dev"], "resources": ["pgqueues"], "verbs": ["list", "watch", "create"]},
    {"apiGroups": ["pgjobs.dev"], "resources": ["pgqueues/status"], "verbs": ["patch"]},
]
#: The least the operator needs in the namespaces it serves (a ClusterRole when it serves all).
OPERATOR_RULES = [
    {
        "apiGroups": ["pgjobs.dev"],
        "resources": ["pgjobs"],
        "verbs": ["get", "list", "watch", "create", "patch", "delete"],
    },
    {"apiGroups": ["pgjobs.dev"], "resources": ["pgjobs/status"], "verbs": ["patch"]},
    {"apiGroups": ["pgjobs.dev"], "resources": ["pgcronjobs"], "verbs": ["get", "list", "watch", "patch"]},
    {"apiGroups": ["pgjobs.dev"], "resources": ["pgcronjobs/status"], "verbs": ["patch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create"]},
]


def test_operator_runs_with_least_privilege(
    kube: Any, namespace: str, services: Services, database: connecting.DatabaseSettings
) -> None:
    """As a ServiceAccount with only these rules: the full job life cycle, without a 403."""
    subject = {"kind": "ServiceAccount", "name": "pgjobs-operator", "namespace": namespace}
    cluster_role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": f"{namespace}-kopf"},
        "rules": KOPF_CLUSTER_RULES,
    }
    cluster_binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": f"{namespace}-kopf"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": f"{namespace}-kopf",
        },
        "subjects": [subject],
    }
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "pgjobs-operator", "namespace": namespace},
        "rules": OPERATOR_RULES,
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "pgjobs-operator", "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pgjobs-operator"},
        "subjects": [subject],
    }
    kube.apply([cluster_role, cluster_binding, role, binding])
    kubeconfig = kube.kubeconfig_for_serviceaccount(namespace, "pgjobs-operator")
    operator = services.operator("operator", "--kubeconfig", str(kubeconfig))
    services.worker()
    create(kube, namespace, sleep_job("limited", seconds=1, steps=2))
    done = wait_phase(kube, namespace, "limited", "Completed", timeout=20)
    assert done["progress"] == 100
    wait_until(lambda: {e["reason"] for e in events(kube, namespace)} >= {"Started", "Completed"}, timeout=5)
    kube.kubectl("delete", "pgjob", "limited", "-n", namespace, "--timeout=15s")
    assert rows(database) == []
    assert "Forbidden" not in operator.text() and "403" not in operator.text()
    kube.kubectl("delete", "clusterrolebinding,clusterrole", f"{namespace}-kopf", check=False)


def test_api_server_restart_mid_run_statuses_catch_up(
    kube: Any, namespace: str, services: Services, controlplane: Any
) -> None:
    if not hasattr(controlplane, "restart_apiserver"):
        pytest.skip("an existing cluster's API server cannot be restarted by the tests")
    services.operator()
    services.worker("worker-1")
    services.worker("worker-2")
    create(kube, namespace, *(sleep_job(f"job-{i}", seconds=2, steps=4) for i in range(3)))
    wait_phase(kube, namespace, "job-0", "Running")
    controlplane.stop_apiserver()
    time.sleep(3)  # the jobs finish in PostgreSQL while nobody can write their status
    controlplane.restart_apiserver()
    create(kube, namespace, sleep_job("after", seconds=1, steps=2))
    for name in ["job-0", "job-1", "job-2", "after"]:
        assert wait_phase(kube, namespace, name, "Completed", timeout=60)["progress"] == 100


def test_a_pgjob_left_without_a_row_gets_one_from_the_leader(
    kube: Any, namespace: str, services: Services, database: connecting.DatabaseSettings
) -> None:
    """The safety net behind kopf's watch events: a PgJob whose row is missing (a create event
    never handled) gets one from the leader's sweep and runs, and a row whose PgJob is gone (a
    create that committed after another replica's delete) is removed by the same sweep."""
    operator = services.operator()
    services.worker()
    create(kube, namespace, sleep_job("rowless", seconds=0.5, steps=1, stopped=True))
    create(kube, namespace, sleep_job("ghost", seconds=0.5, steps=1, stopped=True))
    wait_phase(kube, namespace, "rowless", "Stopped")
    wait_phase(kube, namespace, "ghost", "Stopped")
    ghost = get(kube, namespace, "ghost")["metadata"]["uid"]
    kube.kubectl("patch", "pgjob", "ghost", "-n", namespace, "--type=merge", "-p",
                 '{"metadata":{"finalizers":null}}')  # fmt: skip
    kube.kubectl("delete", "pgjob", "ghost", "-n", namespace)  # its row stays: an orphan
    uid = get(kube, namespace, "rowless")["metadata"]["uid"]
    query(database, "DELETE FROM pgjobs.jobs WHERE resource_uid = %s RETURNING id", uid)
    timeout = maintenance.ADOPT_EVERY * 2 + maintenance.ADOPT_AFTER
    wait_until(
        lambda: query(database, "SELECT id FROM pgjobs.jobs WHERE resource_uid = %s", uid),
        timeout=timeout,
        what="a new row for the PgJob",
    )
    assert "rowless had no row" in operator.text()
    wait_until(
        lambda: not query(database, "SELECT id FROM pgjobs.jobs WHERE resource_uid = %s", ghost),
        timeout=maintenance.ADOPT_EVERY + 10,
        what="the orphan row removed",
    )
    patch_spec(kube, namespace, "rowless", stopped=False)
    wait_phase(kube, namespace, "rowless", "Completed")


def test_a_finished_pgjob_whose_row_is_lost_does_not_run_again(
    kube: Any, namespace: str, services: Services, database: connecting.DatabaseSettings
) -> None:
    """A restored backup or a lost dev database takes the row of a Completed PgJob: after an
    operator restart (resume) it must stay Completed, with no second run; a restart runs it anew."""
    operator = services.operator("operator-1")
    services.worker("worker-1")
    create(kube, namespace, sleep_job("once", seconds=0.5, steps=1))
    first = wait_phase(kube, namespace, "once", "Completed")
    query(database, "DELETE FROM pgjobs.jobs WHERE resource_name = 'once' RETURNING id")
    operator.kill()
    second = services.operator("operator-2")

    def row_missing() -> Any:
        conditions = status(kube, namespace, "once").get("conditions") or []
        return next((c for c in conditions if c["type"] == "RowMissing"), None)

    condition = wait_until(row_missing, timeout=30, what="the RowMissing condition")
    assert f"job {first['jobId']}'s row is gone" in condition["message"]
    assert "kubectl pgjobs restart once" in condition["message"]
    assert "RowMissing" in [e["reason"] for e in events(kube, namespace)]
    assert rows(database) == [] and "row is gone from the database" in second.text()
    assert status(kube, namespace, "once")["phase"] == "Completed"
    patch_spec(kube, namespace, "once", restarts=1)
    wait_until(lambda: len(rows(database)) == 1, timeout=30, what="a restart to give it a new row")
    wait_until(lambda: row_missing() is None, timeout=30, what="the status sync to replace the conditions")
    wait_phase(kube, namespace, "once", "Completed")
