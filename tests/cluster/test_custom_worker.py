"""A worker image with a user's own tasks (deploy/examples/custom-worker) on real pods.

`make image` builds `localhost/acme-worker:dev`: the pgjobs image plus the example package,
whose task `acme.wordcount` is declared in the `pgjobs.tasks` entry-point group and nowhere
else (the chart's `worker.tasks` stays empty). The chart runs it as its workers through
`worker.image`, as the example's README tells a user to; the operator keeps the pgjobs image.
"""

from __future__ import annotations

import uuid

import psycopg

from tests.cluster.helpers import FINISHED, Release, wait_for

EXAMPLE_IMAGE = {"repository": "localhost/acme-worker", "tag": "dev"}
CHART_VALUES = {"worker": {"replicas": 1, "image": EXAMPLE_IMAGE}}


def _advertised_tasks(release: Release) -> dict[str, list[str]]:
    """Host name (the pod) → the tasks each live worker registered with."""
    with psycopg.connect(release.database_url()) as conn:
        rows = conn.execute("SELECT hostname, tasks FROM pgjobs.workers WHERE tasks IS NOT NULL").fetchall()
    return {str(hostname): list(tasks) for hostname, tasks in rows}


def test_the_example_image_runs_its_entry_point_task(release: Release) -> None:
    (pod,) = release.pods("worker")
    images = {c["name"]: c["image"] for c in pod["spec"]["containers"]}
    assert set(images.values()) == {"localhost/acme-worker:dev"}, images
    (operator,) = release.pods("operator")
    assert {c["image"] for c in operator["spec"]["containers"]} == {"localhost/pgjobs:dev"}

    name = f"count-{uuid.uuid4().hex[:5]}"
    release.apply(
        [
            {
                "apiVersion": "pgjobs.dev/v1alpha1",
                "kind": "PgJob",
                "metadata": {"name": name},
                "spec": {"task": "acme.wordcount", "args": {"text": "one two\nthree"}},
            }
        ]
    )
    status = wait_for(
        lambda: (s := release.statuses(name).get(name, {})).get("phase") in FINISHED and s,
        120,
        "the acme.wordcount job finished",
    )
    assert status["phase"] == "Completed", status
    assert status.get("result") == {"words": 3, "lines": 2}, status
    assert status["worker"] == pod["metadata"]["name"]

    advertised = _advertised_tasks(release)
    tasks = advertised.get(pod["metadata"]["name"], [])
    # The example's task comes from the entry point, next to the built-in ones of the base image.
    assert "acme.wordcount" in tasks and "sleep" in tasks, advertised
