"""Tenants held to the cluster admin's policy, at the real API server with real processes: a
namespace confined to its queues and tasks, its limit of unfinished PgJobs and its maximum
timeout; another namespace unaffected; a malformed policy file stops the operator at start;
and a ResourceQuota on `count/pgjobs.pgjobs.dev`, enforced by the API server itself."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pgjobs.store import connecting
from tests.e2e.operator_helpers import (
    OPERATOR_ARGS,
    PGJOBS,
    Process,
    Services,
    create,
    events,
    get,
    patch_spec,
    pgjob,
    query,
    sleep_job,
    status,
    wait_phase,
)

pytestmark = pytest.mark.e2e

CONTACT = "the platform team (#platform)"


@pytest.fixture
def other_namespace(kube: Any, namespace: str) -> Iterator[str]:
    name = f"{namespace[:50]}-other"
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


def operator_with_policy(services: Services, rules: list[Any], *namespaces: str) -> Process:
    """An operator watching `namespaces` under the policy `rules` (as admin: the chart's RBAC,
    rendered for one namespace in these tests, would not let it watch a second one)."""
    path = services.log_dir / "policy.yaml"
    path.write_text(yaml.safe_dump({"contact": CONTACT, "rules": rules}))
    watched = [arg for name in namespaces for arg in ("--namespace", name)]
    argv = [PGJOBS, "operator", "--kubeconfig", str(services.kube.kubeconfig), *watched]
    return services._start("operator", [*argv, *OPERATOR_ARGS, "--policy-file", str(path)])


def refused(kube: Any, namespace: str, name: str, *parts: str) -> None:
    """Failed with a message and a Warning Event PolicyDenied that name each of `parts`."""
    current = wait_phase(kube, namespace, name, "Failed", timeout=30)
    message = current["message"]
    assert message.startswith("not allowed: "), message
    for part in (f"namespace {namespace!r}", CONTACT, *parts):
        assert part in message, message
    uid = get(kube, namespace, name)["metadata"]["uid"]

    def denied() -> list[Any]:
        return [e for e in events(kube, namespace, uid) if e["reason"] == "PolicyDenied"]

    (event,) = kube.wait_for(denied, timeout=10, what=f"PolicyDenied Event of {name}")
    assert event["type"] == "Warning" and event["message"] == message


def row_of(database: connecting.DatabaseSettings, name: str) -> list[dict[str, Any]]:
    return query(
        database, "SELECT state::text, timeout_seconds FROM pgjobs.jobs WHERE resource_name = %s", name
    )


def test_a_namespace_is_confined_to_its_queues_and_tasks(
    kube: Any,
    namespace: str,
    other_namespace: str,
    services: Services,
    database: connecting.DatabaseSettings,
) -> None:
    rules = [{"namespaces": [namespace], "queues": ["a"], "tasks": ["noop"]}]
    operator = operator_with_policy(services, rules, namespace, other_namespace)
    services.worker("worker", "--queue", "a", "--queue", "b", "--concurrency", "2")

    create(kube, namespace, pgjob("to-b", "noop", queue="b"))
    refused(kube, namespace, "to-b", "may not use queue 'b' (allowed: a)")
    create(kube, namespace, sleep_job("sleeper", seconds=0.2, queue="a"))
    refused(kube, namespace, "sleeper", "may not run task 'sleep' (allowed: noop)")
    create(kube, namespace, pgjob("to-a", "noop", queue="a"))
    wait_phase(kube, namespace, "to-a", "Completed", timeout=60)
    assert row_of(database, "to-b") == [] and row_of(database, "sleeper") == []

    # Another namespace: no rule matches it, so it may use every queue and task.
    create(kube, other_namespace, pgjob("to-b", "noop", queue="b"))
    create(kube, other_namespace, sleep_job("sleeper", seconds=0.2, queue="a"))
    wait_phase(kube, other_namespace, "to-b", "Completed", timeout=60)
    wait_phase(kube, other_namespace, "sleeper", "Completed", timeout=60)
    assert operator.alive()


def test_limits_of_unfinished_pgjobs_and_timeouts(
    kube: Any, namespace: str, services: Services, database: connecting.DatabaseSettings
) -> None:
    rules = [{"namespaces": [namespace], "maxUnfinished": 2, "maxTimeoutSeconds": 30}]
    operator_with_policy(services, rules, namespace)
    # No worker yet: what is admitted stays Pending.
    create(kube, namespace, sleep_job("first", seconds=0.5))
    create(kube, namespace, sleep_job("second", seconds=0.5, timeoutSeconds=10))
    wait_phase(kube, namespace, "first", "Pending")
    wait_phase(kube, namespace, "second", "Pending")
    # Without a timeout the maximum is the timeout; a smaller one is kept.
    assert row_of(database, "first") == [{"state": "pending", "timeout_seconds": 30}]
    assert row_of(database, "second") == [{"state": "pending", "timeout_seconds": 10}]

    create(kube, namespace, sleep_job("third", seconds=0.5))
    refused(kube, namespace, "third", "has 2 unfinished PgJobs, its limit (maxUnfinished)")
    create(kube, namespace, sleep_job("too-long", seconds=0.5, timeoutSeconds=31))
    refused(kube, namespace, "too-long", "may not set timeoutSeconds 31 (at most 30)")
    assert row_of(database, "third") == [] and row_of(database, "too-long") == []

    # A PgJob created stopped adds nothing unfinished; starting it waits for room.
    create(kube, namespace, sleep_job("parked", seconds=0.5, stopped=True))
    wait_phase(kube, namespace, "parked", "Stopped")
    patch_spec(kube, namespace, "parked", stopped=False)
    time.sleep(3)
    assert row_of(database, "parked") == [{"state": "stopped", "timeout_seconds": 30}]
    # An update cannot raise the timeout past the maximum either.
    patch_spec(kube, namespace, "second", timeoutSeconds=600)
    time.sleep(1)
    assert row_of(database, "second") == [{"state": "pending", "timeout_seconds": 30}]

    services.worker()
    for name in ("first", "second"):
        wait_phase(kube, namespace, name, "Completed", timeout=60)
    wait_phase(kube, namespace, "parked", "Completed", timeout=60)
    # Once there is room, a refused PgJob is submitted again by a restart request.
    patch_spec(kube, namespace, "third", restarts=1)
    wait_phase(kube, namespace, "third", "Completed", timeout=60)


def test_pgjobs_created_at_once_cannot_all_pass_the_limit(
    kube: Any, namespace: str, services: Services, database: connecting.DatabaseSettings
) -> None:
    operator_with_policy(services, [{"namespaces": [namespace], "maxUnfinished": 3}], namespace)
    names = [f"burst-{i}" for i in range(20)]
    create(kube, namespace, *(sleep_job(name, seconds=1) for name in names))

    def phases() -> dict[str, int] | None:
        found = [status(kube, namespace, name).get("phase") for name in names]
        return None if None in found else {phase: found.count(phase) for phase in set(found)}

    assert kube.wait_for(phases, timeout=60, what="a phase for every PgJob") == {"Pending": 3, "Failed": 17}
    assert len(query(database, "SELECT id FROM pgjobs.jobs")) == 3


def test_a_malformed_policy_file_stops_the_operator_at_start(
    kube: Any, namespace: str, services: Services, tmp_path: Path
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("rules:\n  - namespaces: [team-a]\n    queue: [a]\n")  # `queue`: misspelled
    operator = services.operator("operator", "--policy-file", str(path))
    operator.popen.wait(30)
    assert operator.popen.returncode == 2
    assert f"pgjobs: error: policy file {path}: rules[0]: unknown key(s) queue; known:" in operator.text()
    assert "Traceback" not in operator.text()
    missing = services.operator("missing", "--policy-file", str(tmp_path / "absent.yaml"))
    missing.popen.wait(30)
    assert missing.popen.returncode == 2 and "cannot be read" in missing.text()
