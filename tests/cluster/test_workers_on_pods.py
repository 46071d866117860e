"""Worker pods under the things Kubernetes does to them: scaling, deletion, SIGKILL.

The chart runs as a user installs it; only the shutdown grace is short (2 s, so the pod's
termination grace is 12 s) to make hand-backs happen within these tests' jobs. Outcomes are
checked in the PgJob statuses and in the job rows of the release's PostgreSQL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

from tests.cluster.helpers import FINISHED, Release, sleep_jobs, wait_for

SHUTDOWN_GRACE = 2
TERMINATION_GRACE = SHUTDOWN_GRACE + 10  # the chart's default terminationGraceMargin
STALL_TIMEOUT = 15  # the chart's default
HEARTBEAT = 2  # the chart's default
#: The rescue sweep runs once per maintenance round (the operator's default): a job goes stale
#: up to a round before the sweep that rescues it.
MAINTENANCE_INTERVAL = 5
#: Status sync and polling add a little on top of the rescue itself.
STATUS_SLACK = 5
CHART_VALUES = {"worker": {"replicas": 2, "shutdownGrace": SHUTDOWN_GRACE}}


def _finished(release: Release, prefix: str, count: int) -> dict[str, str] | None:
    phases = release.phases(prefix)
    return phases if len(phases) == count and set(phases.values()) <= FINISHED else None


def _running_on(release: Release, prefix: str) -> dict[str, str]:
    """PgJob name → worker pod, for the jobs Running now."""
    return {
        name: status.get("worker", "")
        for name, status in release.statuses(prefix).items()
        if status.get("phase") == "Running"
    }


def _set_max_running(release: Release, queue: str, cap: int | None) -> None:
    patch = json.dumps({"spec": {"maxRunning": cap}})
    release.kubectl("patch", "pgqueue", queue, "--type=merge", "-p", patch)


def test_a_pgqueue_cap_holds_across_worker_pods(release: Release) -> None:
    """`maxRunning: 1` on the queue two worker pods serve: one job at a time across both pods,
    until the cap is raised, when both run at once (so the pods could have broken the cap)."""
    release.scale_workers(2)
    wait_for(lambda: len(release.ready_worker_pods()) == 2, 120, "2 ready worker pods")
    prefix = f"capped-{uuid.uuid4().hex[:5]}"
    release.apply(sleep_jobs(prefix, 1, seconds=0.5))  # the operator creates the PgQueue "default"
    wait_for(
        lambda: "default" in [q["metadata"]["name"] for q in release.get("pgqueues")["items"]],
        60,
        "the PgQueue default",
    )
    _set_max_running(release, "default", 1)
    try:
        release.apply(sleep_jobs(f"{prefix}-x", 4, seconds=4))
        most, deadline = 0, time.monotonic() + 90
        while sum(p == "Completed" for p in release.phases(f"{prefix}-x").values()) < 2:
            assert time.monotonic() < deadline, f"2 capped jobs not done in 90s: {release.phases(prefix)}"
            most = max(most, len(_running_on(release, f"{prefix}-x")))
            time.sleep(0.3)
        assert most == 1, f"{most} jobs ran at once under maxRunning 1"
        _set_max_running(release, "default", 2)
        wait_for(lambda: len(_running_on(release, f"{prefix}-x")) == 2, 60, "2 Running once the cap is 2")
    finally:
        _set_max_running(release, "default", None)
    wait_for(lambda: _finished(release, f"{prefix}-x", 4), 60, "every capped job finished")


def test_scaling_2_4_1_loses_nothing_and_charges_no_attempt(release: Release) -> None:
    prefix = f"scale-{uuid.uuid4().hex[:5]}"
    count = 10
    release.apply(sleep_jobs(prefix, count, seconds=12, maxAttempts=3))
    wait_for(lambda: len(_running_on(release, prefix)) == 2, 120, "2 jobs Running on 2 workers")

    release.scale_workers(4)
    wait_for(lambda: len(release.ready_worker_pods()) == 4, 120, "4 ready worker pods")
    wait_for(
        lambda: (r := _running_on(release, prefix)) and len(set(r.values())) >= 3 and r, 60, "jobs on 3+ pods"
    )

    before = set(release.worker_pods())
    running = _running_on(release, prefix)  # just before the scale-down: what the removed pods run
    release.scale_workers(1)
    scaled_at = time.monotonic()
    survivor = wait_for(lambda: len(p := release.worker_pods()) == 1 and p[0], 30, "one worker left")
    removed = before - {survivor}
    handed_back = {job for job, pod in running.items() if pod in removed}
    wait_for(
        lambda: (
            not (
                set(p["metadata"]["name"] for p in release.pods("worker", include_terminating=True)) & removed
            )
        ),
        TERMINATION_GRACE + 10,
        "the removed pods gone",
    )
    gone_after = time.monotonic() - scaled_at

    final = wait_for(lambda: _finished(release, prefix, count), 300, "every job finished", interval=2)
    assert set(final.values()) == {"Completed"}, final
    rows = release.job_rows(list(final))
    assert {row["state"] for row in rows.values()} == {"completed"}
    # A job taken from a removed pod was handed back, not rescued: its attempt was refunded.
    assert {name: row["attempt"] for name, row in rows.items()} == dict.fromkeys(final, 1)
    assert handed_back, f"no job was running on a removed pod ({running}, removed {removed})"
    # A removed pod's job either ended within its 2 s grace or was handed back and ran on the
    # survivor; with 12 s jobs on three removed pods, at least one had more than 2 s left.
    statuses = release.statuses(prefix)
    assert any(statuses[job]["worker"] == survivor for job in handed_back), statuses
    assert gone_after < TERMINATION_GRACE + 5, f"removed pods took {gone_after:.0f}s to go"
    release.scale_workers(2)


def _delete_worker_mid_job(release: Release, *flags: str) -> tuple[str, dict[str, object], float]:
    release.scale_workers(2)
    wait_for(lambda: len(release.ready_worker_pods()) == 2, 120, "2 ready worker pods")
    name = f"del-{uuid.uuid4().hex[:5]}-0"
    release.apply(sleep_jobs(name[:-2], 1, seconds=30, maxAttempts=3))
    pod = wait_for(lambda: _running_on(release, name).get(name), 60, "the job Running")
    assert pod in release.worker_pods()
    release.kubectl("delete", "pod", pod, "--wait=false", *flags)
    deleted_at = time.monotonic()
    elsewhere = wait_for(
        lambda: (w := _running_on(release, name).get(name)) and w != pod and w,
        STALL_TIMEOUT + 2 * HEARTBEAT + STATUS_SLACK + 10,
        "the job Running on another worker",
        interval=0.5,
    )
    moved_after = time.monotonic() - deleted_at
    final = wait_for(
        lambda: (s := release.statuses(name)[name]).get("phase") in FINISHED and s, 120, "the job done"
    )
    assert final["phase"] == "Completed", final
    assert final["worker"] == elsewhere
    row = release.job_rows([name])[name]
    assert row["state"] == "completed"
    return pod, {"attempt": row["attempt"], "status_attempts": final.get("attempts")}, moved_after


def test_deleting_a_worker_pod_gracefully_hands_its_job_back(release: Release) -> None:
    _, attempts, moved_after = _delete_worker_mid_job(release)
    # SIGTERM: the worker hands the job back within its shutdown grace, attempt refunded.
    assert attempts == {"attempt": 1, "status_attempts": 1}
    assert moved_after < TERMINATION_GRACE + STATUS_SLACK, f"{moved_after:.1f}s"


def test_force_deleting_a_worker_pod_gets_its_job_rescued(release: Release) -> None:
    _, attempts, moved_after = _delete_worker_mid_job(release, "--grace-period=0", "--force")
    # Killed: either the worker still handed the job back (attempt 1) or the rescue sweep took
    # it after the stall timeout (attempt 2); never lost, never completed twice.
    assert attempts["attempt"] in (1, 2), attempts
    assert attempts["attempt"] == attempts["status_attempts"]
    bound = STALL_TIMEOUT + MAINTENANCE_INTERVAL + 2 * HEARTBEAT + STATUS_SLACK
    assert moved_after < bound, f"{moved_after:.1f}s"


def test_a_resourcequota_on_pgjobs_refuses_the_plugins_submit_in_one_line(release: Release) -> None:
    """The real quota controller (kube-controller-manager on the node) counts PgJobs; over the
    count, `kubectl pgjobs submit` says so in one line and creates nothing."""
    prefix = f"quota-{uuid.uuid4().hex[:5]}"
    # Room for exactly one more PgJob than the namespace holds from this module's other tests.
    room = len(release.get("pgjobs")["items"]) + 1
    release.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "ResourceQuota",
                "metadata": {"name": prefix},
                "spec": {"hard": {"count/pgjobs.pgjobs.dev": str(room)}},
            }
        ]
    )
    wait_for(
        lambda: release.get("resourcequota", prefix).get("status", {}).get("used"), 60, "the quota counted"
    )
    release.apply(sleep_jobs(prefix, 1, seconds=0.2))  # the last one that fits
    submit = [sys.executable, "-m", "pgjobs.cli.kubectl", "submit", "sleep", "-n", release.namespace]
    result = subprocess.run(
        submit,
        env={**os.environ, "KUBECONFIG": str(release.node.admin_kubeconfig)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result
    assert result.stderr.count("\n") == 1 and "exceeded quota" in result.stderr, result.stderr
    assert len([n for n in release.phases() if n.startswith("sleep-")]) == 0
    release.kubectl("delete", "resourcequota", prefix)


def test_a_namespace_editor_may_manage_pgjobs_and_a_viewer_only_read_them(release: Release) -> None:
    """The chart's ClusterRoles aggregate into the built-in edit and view roles (the node's
    kube-controller-manager merges them): RoleBindings to those are all a team needs."""
    for role in ("edit", "view"):
        release.kubectl("create", "serviceaccount", f"team-{role}")
        release.kubectl(
            "create", "rolebinding", f"team-{role}", f"--clusterrole={role}",
            f"--serviceaccount={release.namespace}:team-{role}",
        )  # fmt: skip

    def can(role: str, verb: str) -> bool:
        who = f"--as=system:serviceaccount:{release.namespace}:team-{role}"
        answer = release.kubectl("auth", "can-i", verb, "pgjobs.pgjobs.dev", who, check=False)
        return answer.strip() == "yes"

    wait_for(lambda: can("edit", "create"), 60, "edit to include PgJobs")
    assert can("edit", "delete") and can("view", "list") and can("view", "watch")
    assert not can("view", "create") and not can("view", "delete")
