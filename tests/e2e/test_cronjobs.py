"""PgCronJobs end to end: a real kube-apiserver, PostgreSQL, `pgjobs operator` and a worker.

The clock is never faked: the tests that need a scheduled time use `* * * * *` and wait for the
next minute (under 70 s). The local control plane has no kube-controller-manager, so no garbage
collector: the ownerReferences that let Kubernetes delete a PgCronJob's PgJobs with it are
checked, not the deletion.
"""

from __future__ import annotations

import datetime
import time
from typing import Any

import kubernetes
import pytest

from pgjobs.cli import kubectl
from pgjobs.operator import jobtemplates
from tests.e2e.operator_helpers import (
    GROUP,
    PLURAL,
    VERSION,
    Services,
    create,
    get,
    wait_phase,
    wait_until,
)

CRON_PLURAL = "pgcronjobs"
Json = dict[str, Any]
#: A scheduled minute is waited for at most this long (a minute, and the operator's round).
MINUTE_WAIT = 75


def cronjob(name: str, schedule: str = "* * * * *", seconds: float = 1, **spec: Any) -> Json:
    template = {
        "metadata": {"labels": {"app": "cron-e2e"}},
        "spec": {"task": "sleep", "args": {"seconds": seconds, "steps": 2}, "backoffSeconds": 0},
    }
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "PgCronJob",
        "metadata": {"name": name},
        "spec": {"schedule": schedule, "jobTemplate": template, **spec},
    }


def create_cronjob(kube: Any, namespace: str, body: Json) -> Json:
    created: Json = kube.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, CRON_PLURAL, body)
    return created


def get_cronjob(kube: Any, namespace: str, name: str) -> Json:
    found: Json = kube.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, CRON_PLURAL, name)
    return found


def patch_cronjob(kube: Any, namespace: str, name: str, **spec: Any) -> None:
    kube.custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, CRON_PLURAL, name, {"spec": spec},
        _content_type="application/merge-patch+json",
    )  # fmt: skip


def pgjobs_of(kube: Any, namespace: str, cronjob_name: str) -> list[Json]:
    listing = kube.custom.list_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, label_selector=f"pgjobs.dev/cronjob={cronjob_name}"
    )
    return sorted(listing["items"], key=lambda job: job["metadata"]["name"])


def cron_events(kube: Any, namespace: str, name: str) -> list[tuple[str, str, str]]:
    """(type, reason, message) of the Events about one PgCronJob."""
    listing = kube.core.list_namespaced_event(namespace)
    return [
        (e.type, e.reason, e.message)
        for e in listing.items
        if e.involved_object.kind == "PgCronJob" and e.involved_object.name == name
    ]


def minute_name(name: str, minute: datetime.datetime) -> str:
    return jobtemplates.job_name(name, minute)


def next_minute(after: datetime.datetime | None = None) -> datetime.datetime:
    moment = after or datetime.datetime.now(datetime.UTC)
    return moment.replace(second=0, microsecond=0) + datetime.timedelta(minutes=1)


def test_every_minute_creates_an_owned_pgjob_that_completes_and_suspend_creates_none(
    kube: Any, namespace: str, services: Services
) -> None:
    services.operator()
    services.worker()
    every = create_cronjob(kube, namespace, cronjob("every"))
    create_cronjob(kube, namespace, cronjob("held", suspend=True))
    created_at = datetime.datetime.now(datetime.UTC)

    jobs = wait_until(
        lambda: pgjobs_of(kube, namespace, "every"), timeout=MINUTE_WAIT, what="a scheduled PgJob"
    )
    (job,) = jobs
    minute = next_minute(created_at - datetime.timedelta(seconds=1))
    # Named by its scheduled time, created within seconds of it, owned by the PgCronJob.
    meta = job["metadata"]
    assert meta["name"] == minute_name("every", minute)
    assert meta["annotations"][jobtemplates.SCHEDULED_ANNOTATION] == minute.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert meta["labels"] == {"app": "cron-e2e", "pgjobs.dev/cronjob": "every"}
    assert meta["ownerReferences"] == [
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "PgCronJob", "name": "every",
         "uid": every["metadata"]["uid"], "controller": True}
    ]  # fmt: skip
    created = datetime.datetime.fromisoformat(meta["creationTimestamp"].replace("Z", "+00:00"))
    assert minute <= created < minute + datetime.timedelta(seconds=5)
    done = wait_phase(kube, namespace, meta["name"], "Completed", timeout=30)

    def recorded() -> Json | None:
        current = get_cronjob(kube, namespace, "every").get("status") or {}
        return current if current.get("lastSuccessfulTime") else None

    cron_status = wait_until(recorded, timeout=15, what="lastSuccessfulTime")
    assert cron_status["lastScheduleTime"] == minute.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert cron_status["lastSuccessfulTime"] == done["finishedAt"]
    conditions = {c["type"]: c for c in cron_status["conditions"]}
    assert conditions["ScheduleValid"]["status"] == "True"
    # The suspended one, past the same minute, has none.
    assert pgjobs_of(kube, namespace, "held") == []
    assert "lastScheduleTime" not in (get_cronjob(kube, namespace, "held").get("status") or {})
    assert ("Normal", "SuccessfulCreate", f"created PgJob {meta['name']}") in cron_events(
        kube, namespace, "every"
    )
    # kubectl shows the columns.
    table = kube.kubectl("get", "pgcj", "-n", namespace).stdout.splitlines()
    assert table[0].split() == [
        "NAME",
        "SCHEDULE",
        "TIMEZONE",
        "SUSPEND",
        "ACTIVE",
        "LAST",
        "SCHEDULE",
        "AGE",
    ]
    rows = {line.split()[0]: line.split() for line in table[1:]}
    # NAME, the five fields of SCHEDULE, TIMEZONE (unset: empty), SUSPEND, ACTIVE, ...
    assert rows["held"][1:8] == ["*", "*", "*", "*", "*", "true", "0"]
    assert rows["every"][6] == "false"


def trigger(kube: Any, namespace: str, name: str) -> str:
    """`kubectl pgjobs trigger NAME`, through the plugin's own entry point; the PgJob's name."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = kubectl.main(["--kubeconfig", str(kube.kubeconfig), "trigger", name, "-n", namespace])
    assert code == 0
    return out.getvalue().strip()


def test_trigger_runs_at_once_and_forbid_skips_the_schedule_while_it_runs(
    kube: Any, namespace: str, services: Services
) -> None:
    services.operator()
    services.worker()
    forbid = create_cronjob(kube, namespace, cronjob("forbid", seconds=120, concurrencyPolicy="Forbid"))
    name = trigger(kube, namespace, "forbid")
    assert name.startswith("forbid-manual-")
    job = get(kube, namespace, name)
    assert job["metadata"]["ownerReferences"][0]["uid"] == forbid["metadata"]["uid"]
    assert job["spec"]["task"] == "sleep" and job["spec"]["args"] == {"seconds": 120, "steps": 2}
    wait_phase(kube, namespace, name, "Running", timeout=15)
    # The next minute passes while it runs: Forbid creates nothing and says why.
    minute = next_minute()
    wait_until(
        lambda: "JobAlreadyActive" in [reason for _, reason, _ in cron_events(kube, namespace, "forbid")],
        timeout=MINUTE_WAIT,
        what="the Forbid event",
    )
    assert datetime.datetime.now(datetime.UTC) >= minute
    time.sleep(2)
    assert [j["metadata"]["name"] for j in pgjobs_of(kube, namespace, "forbid")] == [name]
    cron_status = get_cronjob(kube, namespace, "forbid")["status"]
    assert [ref["name"] for ref in cron_status["active"]] == [name] and cron_status["activeCount"] == 1
    assert "lastScheduleTime" not in cron_status


def test_history_limits_delete_the_oldest_finished_runs(
    kube: Any, namespace: str, services: Services
) -> None:
    services.operator()
    services.worker()
    create_cronjob(
        kube, namespace, cronjob("history", "0 0 1 1 *", seconds=0.1, successfulJobsHistoryLimit=1)
    )
    names = []
    for _ in range(3):
        names.append(trigger(kube, namespace, "history"))
        wait_phase(kube, namespace, names[-1], "Completed", timeout=20)
        time.sleep(1.1)  # distinct creation times (seconds) order the runs

    def kept() -> list[str]:
        return [j["metadata"]["name"] for j in pgjobs_of(kube, namespace, "history")]

    # wait_until raises on its timeout; the assertion says what must hold once it returns.
    wait_until(lambda: kept() == [names[-1]], timeout=15, what="the two oldest runs deleted")
    assert kept() == [names[-1]], f"kept {kept()}, made {names}"


def test_an_invalid_schedule_is_refused_by_the_api_server(kube: Any, crd: None, namespace: str) -> None:
    for spec, field in (
        ({"schedule": "* * * *"}, "spec.schedule"),
        ({"schedule": "@every 5m"}, "spec.schedule"),
        ({"timeZone": "../etc/passwd"}, "spec.timeZone"),
        ({"concurrencyPolicy": "Sometimes"}, "spec.concurrencyPolicy"),
    ):
        body = cronjob("bad")
        body["spec"].update(spec)
        with pytest.raises(kubernetes.client.exceptions.ApiException) as refused:
            create_cronjob(kube, namespace, body)
        assert refused.value.status == 422 and field in str(refused.value.body), spec
    body = cronjob("bad-template")
    body["spec"]["jobTemplate"]["spec"]["priority"] = "Urgent"
    with pytest.raises(kubernetes.client.exceptions.ApiException) as refused:
        create_cronjob(kube, namespace, body)
    assert "spec.jobTemplate.spec.priority" in str(refused.value.body)
    with pytest.raises(kubernetes.client.exceptions.ApiException) as refused:
        create_cronjob(kube, namespace, cronjob("n" * 53))
    assert "52 characters" in str(refused.value.body)


def test_a_schedule_or_zone_the_operator_cannot_use_gets_a_condition_and_a_warning(
    kube: Any, namespace: str, services: Services
) -> None:
    services.operator()
    create_cronjob(kube, namespace, cronjob("zone", timeZone="Mars/Olympus_Mons"))
    create_cronjob(kube, namespace, cronjob("minute", "61 * * * *"))

    def condition(name: str, state: str) -> Json | None:
        conditions = (get_cronjob(kube, namespace, name).get("status") or {}).get("conditions") or []
        found = [c for c in conditions if c["type"] == "ScheduleValid" and c["status"] == state]
        return found[0] if found else None

    zone = wait_until(lambda: condition("zone", "False"), timeout=15, what="InvalidTimeZone")
    assert zone["reason"] == "InvalidTimeZone" and zone["message"].startswith("spec.timeZone: ")
    minute = wait_until(lambda: condition("minute", "False"), timeout=15, what="InvalidSchedule")
    assert minute["reason"] == "InvalidSchedule" and minute["message"].startswith("spec.schedule: ")
    warnings = wait_until(
        lambda: [e for e in cron_events(kube, namespace, "zone") if e[0] == "Warning"],
        timeout=10,
        what="warning",
    )
    assert [reason for _, reason, _ in warnings] == ["InvalidTimeZone"]
    # The operator goes on: fixing the zone makes the condition True.
    patch_cronjob(kube, namespace, "zone", timeZone="Europe/Berlin")
    wait_until(lambda: condition("zone", "True"), timeout=15, what="ScheduleValid again")
    assert all(process.alive() for process in services.processes)
    assert [e for e in cron_events(kube, namespace, "zone") if e[0] == "Warning"] == warnings


def test_two_operators_create_one_pgjob_per_scheduled_time(
    kube: Any, namespace: str, services: Services
) -> None:
    created = create_cronjob(kube, namespace, cronjob("pair"))
    minute = next_minute(datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=5))
    # The run of `minute` exists already and the leader's listing does not show it (no label: as
    # a replica that lost its lead and created it after this one listed): the API server's
    # AlreadyExists is what keeps it one PgJob.
    earlier = jobtemplates.pgjob_from(created, name=minute_name("pair", minute))
    del earlier["metadata"]["labels"]
    create(kube, namespace, earlier)
    uid = get(kube, namespace, earlier["metadata"]["name"])["metadata"]["uid"]
    services.operator("operator-1")
    services.operator("operator-2")

    def recorded() -> str | None:
        return (get_cronjob(kube, namespace, "pair").get("status") or {}).get("lastScheduleTime")

    stamp = wait_until(recorded, timeout=MINUTE_WAIT, what="the minute recorded")
    assert stamp == minute.strftime("%Y-%m-%dT%H:%M:%SZ")
    time.sleep(3)  # both replicas had rounds after that minute
    assert get(kube, namespace, earlier["metadata"]["name"])["metadata"]["uid"] == uid
    listing = kube.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
    assert [job["metadata"]["name"] for job in listing] == [earlier["metadata"]["name"]]
    logs = [process.text() for process in services.processes]
    assert sum("exists already" in text for text in logs) == 1, "one replica, the leader, scheduled it"
    assert not any("Traceback" in text for text in logs)
