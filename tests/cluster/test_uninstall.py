"""`helm uninstall` with PgJobs still there: nothing is left that cannot be deleted.

The chart's pre-delete hook stops the operator and removes its finalizer from every PgJob
(pgjobs.operator.uninstalling); without it, deleting a PgJob or its namespace after the
uninstall would wait for ever on an operator that no longer exists.
"""

from __future__ import annotations

import uuid

from tests.cluster.helpers import Release, sleep_jobs, wait_for

CHART_VALUES = {"worker": {"replicas": 1}}


def test_pgjobs_and_their_namespace_delete_after_helm_uninstall(release: Release) -> None:
    prefix = f"left-{uuid.uuid4().hex[:5]}"
    # One after the other: the release has one worker slot, and a long job claimed first would
    # keep the short one pending for ten minutes.
    release.apply(sleep_jobs(prefix, 1, seconds=1))
    wait_for(lambda: release.phases(prefix).get(f"{prefix}-0") == "Completed", 120, "a job Completed")
    release.apply(sleep_jobs(f"{prefix}-long", 1, seconds=600))
    wait_for(lambda: release.phases(prefix).get(f"{prefix}-long-0") == "Running", 60, "a job Running")
    pgjobs = release.get("pgjobs")["items"]
    assert all("pgjobs.dev/row" in p["metadata"].get("finalizers", []) for p in pgjobs)

    release.run(release.helm, "uninstall", release.name, f"--namespace={release.namespace}", "--wait")

    left = release.get("pgjobs")["items"]
    assert sorted(p["metadata"]["name"] for p in left) == [f"{prefix}-0", f"{prefix}-long-0"]
    assert [p["metadata"].get("finalizers") for p in left] == [None, None]
    assert release.get("deployments")["items"] == []
    release.kubectl("delete", "pgjobs", "--all", "--timeout=30s")
    release.run(str(release.kubectl_path), "delete", "namespace", release.namespace, "--timeout=90s")
