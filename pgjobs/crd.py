"""The custom resources' names in the Kubernetes API (PgJob, PgCronJob, PgQueue), declared once.

The CRDs (`crds/pgjobs.dev_pgjobs.yaml`, `…_pgcronjobs.yaml`, `…_pgqueues.yaml`) are checked against
it by a test; the operator and the `kubectl-pgjobs` plugin address the resources through it.
"""

from __future__ import annotations

GROUP = "pgjobs.dev"
VERSION = "v1alpha1"
PLURAL = "pgjobs"
SINGULAR = "pgjob"
KIND = "PgJob"
API_VERSION = f"{GROUP}/{VERSION}"
#: Held by every PgJob that has a row, so that its deletion waits until the operator removed the row.
FINALIZER = f"{GROUP}/row"

#: Every field of a PgJob's spec and status this code reads or writes. A CRD in the cluster
#: that lacks one is older than this code: the API server would drop the field (structural
#: schemas prune unknown fields). tests/unit/test_crd.py checks these against crds/.
SPEC_FIELDS = frozenset(
    {"task", "args", "priority", "queue", "maxAttempts", "backoffSeconds", "timeoutSeconds"}
    | {"ttlSecondsAfterFinished", "stopped", "restarts", "runAt", "uniqueKey"}
)
STATUS_FIELDS = frozenset(
    {"phase", "progress", "progressPercent", "message", "worker", "attempts", "startedAt"}
    | {"finishedAt", "result", "conditions", "observedGeneration", "restarts", "jobId"}
)
CRD_NAME = f"{PLURAL}.{GROUP}"

CRON_PLURAL = "pgcronjobs"
CRON_SINGULAR = "pgcronjob"
CRON_KIND = "PgCronJob"
CRON_CRD_NAME = f"{CRON_PLURAL}.{GROUP}"
#: The label on every PgJob a PgCronJob created (its value: the PgCronJob's name), so that the
#: operator lists a PgCronJob's PgJobs with a selector; their ownerReference says which one.
CRON_LABEL = f"{GROUP}/cronjob"
#: Every field of a PgCronJob's spec and status the operator reads or writes (checked by
#: tests/unit/test_crd.py against crds/).
CRON_SPEC_FIELDS = frozenset(
    {"schedule", "timeZone", "concurrencyPolicy", "suspend", "startingDeadlineSeconds"}
    | {"successfulJobsHistoryLimit", "failedJobsHistoryLimit", "jobTemplate"}
)
CRON_STATUS_FIELDS = frozenset(
    {"lastScheduleTime", "lastSuccessfulTime", "active", "activeCount", "conditions", "observedGeneration"}
)

QUEUE_PLURAL = "pgqueues"
QUEUE_SINGULAR = "pgqueue"
QUEUE_KIND = "PgQueue"
QUEUE_CRD_NAME = f"{QUEUE_PLURAL}.{GROUP}"
#: Every field of a PgQueue's spec and status the operator reads or writes (checked by
#: tests/unit/test_crd.py against crds/).
QUEUE_SPEC_FIELDS = frozenset({"paused", "maxRunning", "maxPerSecond"})
QUEUE_STATUS_FIELDS = frozenset({"pending", "running", "workers", "oldestPendingSince", "observedGeneration"})
#: The label on a PgQueue the operator created for a queue that got jobs.
QUEUE_CREATED_LABEL = f"{GROUP}/created-by-operator"


def missing_fields(definition: dict[str, object]) -> list[str]:
    """`spec.X` / `status.X` this code needs that a CRD object (as the API serves it) lacks."""
    versions = definition.get("spec", {}).get("versions", [])  # type: ignore[attr-defined]
    served = next((v for v in versions if v.get("name") == VERSION), None)
    if served is None:
        return [f"version {VERSION}"]
    properties = served.get("schema", {}).get("openAPIV3Schema", {}).get("properties", {})
    missing = []
    for part, needed in (("spec", SPEC_FIELDS), ("status", STATUS_FIELDS)):
        present = set(properties.get(part, {}).get("properties", {}))
        missing += [f"{part}.{field}" for field in sorted(needed - present)]
    return missing
