"""A PgCronJob's jobTemplate as a PgJob, and its name: the object the operator creates at a
scheduled time and `kubectl pgjobs trigger` creates at once.

Plain dictionaries and nothing else, so that the plugin, which has no operator dependencies,
builds exactly the PgJob the operator would.
"""

from __future__ import annotations

import copy
import datetime
from typing import Any

from pgjobs import crd

Json = dict[str, Any]

#: The annotation that records which scheduled time a PgJob runs (RFC 3339, UTC), as Kubernetes'
#: batch.kubernetes.io/cronjob-scheduled-timestamp.
SCHEDULED_ANNOTATION = f"{crd.GROUP}/scheduled-timestamp"


def owner_reference(cronjob: Json) -> Json:
    """The PgCronJob as the controller of its PgJobs: garbage collection deletes them with it.

    No blockOwnerDeletion: it would need update on pgcronjobs/finalizers wherever the
    OwnerReferencesPermissionEnforcement admission plugin runs, for the operator and for every
    user who triggers a run, and foreground deletion of a PgCronJob is all it adds.
    """
    return reference(crd.CRON_KIND, cronjob["metadata"], controller=True)


def reference(kind: str, meta: Json, **extra: Any) -> Json:
    """An object of our API group as a reference (an ownerReference, an entry of status.active)."""
    return {"apiVersion": crd.API_VERSION, "kind": kind, "name": meta["name"], "uid": meta["uid"], **extra}


def pgjob_from(cronjob: Json, *, name: str | None = None, generate_name: str | None = None) -> Json:
    """The PgJob the template describes: its labels and annotations, the PgCronJob's label,
    the ownerReference, and the template's spec as it is (the CRD has validated it)."""
    meta = cronjob["metadata"]
    template = cronjob["spec"]["jobTemplate"]
    template_meta = template.get("metadata") or {}
    labels = {**(template_meta.get("labels") or {}), crd.CRON_LABEL: meta["name"]}
    metadata: Json = {
        "namespace": meta["namespace"],
        "labels": labels,
        "ownerReferences": [owner_reference(cronjob)],
    }
    if template_meta.get("annotations"):
        metadata["annotations"] = dict(template_meta["annotations"])
    if name:
        metadata["name"] = name
    else:
        metadata["generateName"] = generate_name
    return {
        "apiVersion": crd.API_VERSION,
        "kind": crd.KIND,
        "metadata": metadata,
        "spec": copy.deepcopy(template["spec"]),
    }


def owned_by(pgjob: Json, cronjob_uid: str) -> bool:
    """Whether the PgJob is one of this PgCronJob's (its controller reference names the uid)."""
    references = pgjob.get("metadata", {}).get("ownerReferences") or []
    return any(r.get("uid") == cronjob_uid and r.get("controller") for r in references)


def job_name(cronjob: str, scheduled: datetime.datetime) -> str:
    """The PgJob of one scheduled time: the PgCronJob's name and the minutes since the epoch, as
    Kubernetes names a CronJob's Jobs. Two replicas, or one after a failover, that create the
    run of one time create one name, and the API server lets only the first create succeed."""
    return f"{cronjob}-{int(scheduled.timestamp()) // 60}"


def manual_prefix(cronjob: str) -> str:
    """The generateName of a PgJob `kubectl pgjobs trigger` creates (the API server appends five
    random characters): never the name of a scheduled time."""
    return f"{cronjob}-manual-"
