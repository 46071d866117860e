"""The worker Deployment scaled by a real HPA on the queue's backlog, and back.

The chart's HPA (autoscaling/v2, run by the real kube-controller-manager) reads the External
metric `pgjobs_backlog`, which the operator serves through the API server's aggregation layer
(pgjobs.operator.externalmetrics). With the chart's defaults and `maxReplicas: 6`, a burst of
120 short PgJobs grows the Deployment, every job completes exactly once, and once the queue is
drained the Deployment shrinks back to one pod.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from tests.cluster.helpers import FINISHED, Release, sleep_jobs, wait_for

MAX_REPLICAS = 6
CHART_VALUES = {
    "worker": {"replicas": 1, "hpa": {"enabled": True, "minReplicas": 1, "maxReplicas": MAX_REPLICAS}}
}
API_SERVICE = "v1beta1.external.metrics.k8s.io"
#: Enough for the HPA to reach its maximum; `python -m bench --only cluster` measures larger bursts.
JOBS = 120


def _backlog(release: Release) -> int:
    path = f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{release.namespace}/pgjobs_backlog"
    answer = json.loads(release.kubectl("get", "--raw", f"{path}?labelSelector=queue%3Ddefault"))
    (item,) = answer["items"]
    assert item["metricLabels"] == {"queue": "default"}
    return int(item["value"])


def _available(release: Release) -> bool:
    service = release.get("apiservice", API_SERVICE)
    return any(
        c["type"] == "Available" and c["status"] == "True" for c in service["status"].get("conditions", [])
    )


def _replicas(release: Release) -> int:
    hpa: dict[str, Any] = release.get("hpa", release.worker_deployment)
    return int(hpa.get("status", {}).get("desiredReplicas", 0))


@pytest.mark.timeout(1200)
def test_a_burst_scales_workers_up_and_the_drained_queue_scales_them_down(release: Release) -> None:
    wait_for(lambda: _available(release), 120, "the external metrics APIService Available")
    assert _backlog(release) == 0
    first_pods = set(release.worker_pods())
    assert len(first_pods) == 1

    prefix = f"hpa-{uuid.uuid4().hex[:5]}"
    applied_at = time.monotonic()
    release.apply(sleep_jobs(prefix, JOBS, seconds=3, maxAttempts=3))
    wait_for(lambda: _backlog(release) > JOBS // 2, 60, "the backlog counted by the metrics API")

    def added_pod_claiming() -> str | None:
        workers = {s.get("worker") for s in release.statuses(prefix).values() if s.get("phase") == "Running"}
        return next(iter(workers - first_pods - {None}), None)

    added = wait_for(added_pod_claiming, 180, "an added worker pod claiming a job", interval=1)
    first_claim_after = time.monotonic() - applied_at
    peak = 0

    def drained() -> bool:
        nonlocal peak
        peak = max(peak, _replicas(release))
        phases = release.phases(prefix)
        return len(phases) == JOBS and set(phases.values()) <= FINISHED

    wait_for(drained, 900, f"{JOBS} jobs finished", interval=3)
    drained_after = time.monotonic() - applied_at
    phases = release.phases(prefix)
    assert set(phases.values()) == {"Completed"}, {p: n for n, p in phases.items() if p != "Completed"}
    rows = release.job_rows(list(phases))
    assert len(rows) == JOBS
    assert {r["state"] for r in rows.values()} == {"completed"}
    # Never run twice: no attempt was charged (a rescue would) and none failed.
    assert {r["attempt"] for r in rows.values()} == {1}
    assert peak >= 4, f"the HPA asked for at most {peak} replicas"
    assert len(set(release.worker_hostnames().values())) >= 4

    wait_for(lambda: _backlog(release) == 0, 30, "an empty backlog")
    wait_for(lambda: len(release.worker_pods()) == 1, 300, "the Deployment back at one pod", interval=3)
    shrunk_after = time.monotonic() - applied_at
    print(
        f"\nHPA: added pod {added} claimed {first_claim_after:.0f}s after the burst; peak {peak} replicas;"
        f" {JOBS} jobs drained in {drained_after:.0f}s; back to 1 pod at {shrunk_after:.0f}s"
    )
