"""The operator's pods and the chart's rollouts: leader loss, `helm upgrade`, probes.

Two operator replicas (the leader holds a PostgreSQL advisory lock; the standby takes over),
two workers. Every job applied here must end Completed with nothing lost, however the pods
around it are replaced.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import urllib.request
import uuid
from typing import Any

from tests.cluster.helpers import FINISHED, Release, sleep_jobs, wait_for

CHART_VALUES = {"operator": {"replicas": 2}, "worker": {"replicas": 2, "shutdownGrace": 2}}


def _leads(pod: dict[str, Any]) -> bool:
    url = f"http://{pod['status']['podIP']}:9090/metrics"
    with urllib.request.urlopen(url, timeout=3) as response:
        text = response.read().decode()
    return any(line.strip() == "pgjobs_operator_leader 1.0" for line in text.splitlines())


def _leader(release: Release) -> str | None:
    for pod in release.pods("operator"):
        if pod.get("status", {}).get("podIP") and _leads(pod):
            return str(pod["metadata"]["name"])
    return None


def _all_completed(release: Release, prefix: str, count: int) -> dict[str, str]:
    final = wait_for(
        lambda: (p := release.phases(prefix)) and len(p) == count and set(p.values()) <= FINISHED and p,
        300,
        f"{count} jobs finished",
        interval=2,
    )
    assert set(final.values()) == {"Completed"}, final
    rows = release.job_rows(list(final))
    assert len(rows) == count and {r["state"] for r in rows.values()} == {"completed"}, rows
    return final


def helm_test(release: Release) -> str:
    """`helm test` of the release: its Pod submits a PgJob with the plugin and waits for Completed."""
    return release.run(
        release.helm, "test", release.name, f"--namespace={release.namespace}", "--timeout=4m", timeout=300
    )


def test_helm_test_passes_on_a_fresh_install(release: Release) -> None:
    out = helm_test(release)
    assert re.search(rf"TEST SUITE:\s+{release.name}-test\n", out) and re.search(
        r"Phase:\s+Succeeded", out
    ), out


def test_statuses_keep_flowing_when_the_leading_operator_pod_is_deleted(release: Release) -> None:
    leader = wait_for(lambda: _leader(release), 60, "a leading operator replica")
    prefix = f"lead-{uuid.uuid4().hex[:5]}"
    release.kubectl("delete", "pod", leader, "--wait=false")
    release.apply(sleep_jobs(prefix, 4, seconds=2))
    # The standby leads and syncs statuses; the replacement pod joins as the new standby.
    _all_completed(release, prefix, 4)
    new_leader = wait_for(lambda: _leader(release), 60, "a new leader")
    assert new_leader != leader
    wait_for(lambda: len([p for p in release.pods("operator") if _ready(p)]) == 2, 120, "2 operator pods")


def _ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def _restarts(release: Release) -> dict[str, int]:
    return {
        f"{pod['metadata']['name']}/{c['name']}": c.get("restartCount", 0)
        for pod in release.get("pods")["items"]
        for c in pod["status"].get("containerStatuses", [])
    }


def test_helm_upgrade_with_new_values_and_image_tag_loses_nothing(release: Release) -> None:
    prefix = f"upg-{uuid.uuid4().hex[:5]}"
    release.apply(sleep_jobs(prefix, 8, seconds=6))
    wait_for(lambda: "Running" in release.phases(prefix).values(), 60, "a job Running")
    old_pods = {p["metadata"]["name"] for p in release.pods("worker") + release.pods("operator")}
    # A new tag of the same image in the node's containerd: what a user's next release looks like.
    subprocess.run(
        [
            "ctr",
            f"--address={release.node.containerd_socket}",
            "-n",
            "k8s.io",
            "images",
            "tag",
            "--force",
            "localhost/pgjobs:dev",
            "localhost/pgjobs:dev-next",
        ],
        check=True,
        capture_output=True,
    )
    release.upgrade(
        {
            "image": {"tag": "dev-next"},
            "operator": {"replicas": 2, "logLevel": "debug"},
            "worker": {"replicas": 2, "shutdownGrace": 2, "logLevel": "debug"},
        }
    )
    pods = release.pods("worker") + release.pods("operator")
    assert not old_pods & {p["metadata"]["name"] for p in pods}, "helm --wait returned before the rollout"
    assert {c["image"] for p in pods for c in p["spec"]["containers"]} == {"localhost/pgjobs:dev-next"}
    _all_completed(release, prefix, 8)
    assert set(_restarts(release).values()) == {0}, _restarts(release)
    assert re.search(r"Phase:\s+Succeeded", helm_test(release))


def test_a_worker_whose_event_loop_hangs_is_restarted_by_its_liveness_probe(release: Release) -> None:
    pod = release.pods("worker")[0]
    name = pod["metadata"]["name"]
    container_id = pod["status"]["containerStatuses"][0]["containerID"].split("//")[-1]
    pid = _container_pid(release, container_id)
    # SIGSTOP freezes the process with its sockets open: the probe connects but gets no answer,
    # as with a task that blocks the event loop.
    os.kill(pid, signal.SIGSTOP)
    try:
        restarted = wait_for(
            lambda: _restarts(release).get(f"{name}/worker", 0) >= 1,
            # periodSeconds 10 times failureThreshold 3, then the termination grace (12 s).
            90,
            "the kubelet restarting the hung worker",
            interval=2,
        )
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGCONT)
    assert restarted
    wait_for(lambda: name in release.ready_worker_pods(), 60, "the restarted worker ready")
    events = release.kubectl("get", "events", "--field-selector", f"involvedObject.name={name}")
    assert "Liveness probe failed" in events, events


def _container_pid(release: Release, container_id: str) -> int:
    out = subprocess.run(
        ["ctr", f"--address={release.node.containerd_socket}", "-n", "k8s.io", "tasks", "ls"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for line in out.splitlines()[1:]:
        task, pid, *_ = line.split()
        if task == container_id:
            return int(pid)
    raise AssertionError(f"container {container_id} not among containerd's tasks:\n{out}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
