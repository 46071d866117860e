"""The operator end to end: real kube-apiserver, PostgreSQL, `pgjobs operator` and workers as processes.

The user's view: PgJobs applied with kubectl (or the API), their status and Events read back.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import re
import socket
import time
import urllib.request
from typing import Any

from pgjobs.store import connecting
from tests.e2e.operator_helpers import (
    Recorder,
    Services,
    create,
    demo_jobs,
    events,
    exists,
    get,
    patch_spec,
    pgjob,
    query,
    rows,
    sleep_job,
    status,
    wait_phase,
    wait_until,
)

WORKERS = ("worker-1", "worker-2")


def test_demo_jobs_high_before_regular_all_completed(
    kube: Any, namespace: str, services: Services, recorder: Recorder, database: connecting.DatabaseSettings
) -> None:
    services.operator()
    jobs = demo_jobs(seconds=3)
    create(kube, namespace, *jobs)
    names = [job["metadata"]["name"] for job in jobs]
    # All five are queued before a worker looks, as in the old system's start-up.
    for name in names:
        wait_phase(kube, namespace, name, "Pending")
    services.worker("worker-1")
    services.worker("worker-2")
    final = {name: wait_phase(kube, namespace, name, "Completed", timeout=60) for name in names}

    # High jobs are claimed before Regular ones (two workers: H1+H2, then H3+R1, then R2).
    started = {name: final[name]["startedAt"] for name in names}
    assert max(started[n] for n in names if "high" in n) <= min(started[n] for n in names if "regular" in n)
    # The status as the API conventions want it, copied from the rows.
    db_ids = {row["resource_name"]: row["id"] for row in rows(database)}
    for name, st in final.items():
        assert st["progress"] == 100 and st["progressPercent"] == "100%"
        assert st["attempts"] == 1 and st["worker"] in WORKERS and st["jobId"] == db_ids[name]
        assert (st["observedGeneration"] == 1 and st["result"] == {"slept": 3.0}) or "result" in st
        conditions = {c["type"]: c for c in st["conditions"]}
        assert (
            conditions["Succeeded"]["status"] == "True" and conditions["Succeeded"]["reason"] == "Completed"
        )
        assert conditions["Running"]["status"] == "False"
    # Progress moved through the steps in the status, never backwards.
    for name in names:
        seen = recorder.progress(name)
        steps = {p for p in seen if 0 < p < 100}
        assert len(steps) >= 2 and all(p % 10 == 0 for p in steps), (name, seen)
        assert seen == sorted(seen), (name, seen)
    # kubectl shows the columns with the right values.
    table = kube.kubectl("get", "pgjobs", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "PHASE", "PRIORITY", "PROGRESS", "WORKER", "ATTEMPTS", "AGE"]
    for line in table[1:]:
        name, phase, priority, progress, worker, attempts, _age = line.split()
        assert (phase, progress, attempts) == ("Completed", "100%", "1") and worker in WORKERS
        assert priority == ("High" if "high" in name else "Regular")
    # One Started and one Completed Event per job, from the operator, none for progress.
    expected = sorted([(n, "Completed") for n in names] + [(n, "Started") for n in names])

    def reasons() -> list[tuple[str, str]]:
        ours = events(kube, namespace)
        return sorted((e["name"], e["reason"]) for e in ours if e["component"] == "pgjobs-operator")

    wait_until(lambda: len(reasons()) >= len(expected), timeout=5, what="events")
    time.sleep(0.5)  # and no more than those
    assert reasons() == expected


def test_stop_running_job_frees_the_worker_and_start_runs_it_again(
    kube: Any, namespace: str, services: Services
) -> None:
    services.operator()
    services.worker()
    create(kube, namespace, sleep_job("long", seconds=30, steps=30))
    wait_phase(kube, namespace, "long", "Running")
    patch_spec(kube, namespace, "long", stopped=True)
    stopped = wait_phase(kube, namespace, "long", "Stopped", timeout=5)
    assert stopped["finishedAt"]
    # The only worker is free again: a new job runs to the end.
    create(kube, namespace, sleep_job("next", seconds=1, steps=2))
    wait_phase(kube, namespace, "next", "Completed", timeout=15)
    assert status(kube, namespace, "long")["phase"] == "Stopped"
    patch_spec(kube, namespace, "long", stopped=False)
    running = wait_phase(kube, namespace, "long", "Running", timeout=10)
    assert running["attempts"] == 1 and running["observedGeneration"] == 3
    wait_until(
        lambda: [e["reason"] for e in events(kube, namespace) if e["name"] == "long"].count("Started") == 2,
        timeout=5,
        what="a second Started event",
    )
    assert [e["reason"] for e in events(kube, namespace) if e["name"] == "long"].count("Stopped") == 1


def test_failing_job_fails_after_max_attempts_and_restart_runs_it_again(
    kube: Any, namespace: str, services: Services, tmp_path: Any
) -> None:
    services.operator()
    services.worker("worker", "--enable-shell")
    marker = tmp_path / "fixed"
    command = ["sh", "-c", f"test -f {marker} || exit 3"]
    create(
        kube, namespace, pgjob("flaky", "shell", args={"command": command}, maxAttempts=3, backoffSeconds=0)
    )
    failed = wait_phase(kube, namespace, "flaky", "Failed", timeout=30)
    assert failed["attempts"] == 3
    assert "exited with code 3" in failed["message"]
    assert {c["type"]: c["status"] for c in failed["conditions"]}["Succeeded"] == "False"
    # The Event follows the status write that it describes.
    warning = wait_until(lambda: [e for e in events(kube, namespace) if e["reason"] == "Failed"], timeout=5)
    assert len(warning) == 1 and warning[0]["type"] == "Warning"

    marker.touch()
    patch_spec(kube, namespace, "flaky", restarts=1)
    done = wait_phase(kube, namespace, "flaky", "Completed", timeout=15)
    assert done["restarts"] == 1 and done["attempts"] == 1 and done["result"] == {"exit_code": 0}


def test_priority_change_of_a_pending_job_takes_effect(kube: Any, namespace: str, services: Services) -> None:
    services.operator()
    create(kube, namespace, sleep_job("first", seconds=1, steps=1), sleep_job("second", seconds=1, steps=1))
    wait_phase(kube, namespace, "second", "Pending")
    patch_spec(kube, namespace, "second", priority="High")
    wait_until(lambda: status(kube, namespace, "second").get("observedGeneration") == 2, what="generation 2")
    services.worker()
    second = wait_phase(kube, namespace, "second", "Completed", timeout=15)
    first = wait_phase(kube, namespace, "first", "Completed", timeout=15)
    # One worker: the job made High ran first, although it was queued second.
    assert second["finishedAt"] <= first["startedAt"]


def test_delete_running_job_stops_it_and_removes_the_row(
    kube: Any, namespace: str, services: Services, database: connecting.DatabaseSettings
) -> None:
    services.operator()
    services.worker()
    create(kube, namespace, sleep_job("doomed", seconds=30, steps=30))
    wait_phase(kube, namespace, "doomed", "Running")
    assert get(kube, namespace, "doomed")["metadata"]["finalizers"] == ["pgjobs.dev/row"]
    kube.kubectl("delete", "pgjob", "doomed", "-n", namespace, "--timeout=15s")
    assert not exists(kube, namespace, "doomed")
    assert rows(database) == []
    create(kube, namespace, sleep_job("after", seconds=1, steps=2))
    wait_phase(kube, namespace, "after", "Completed", timeout=15)


def test_ttl_deletes_finished_jobs(
    kube: Any, namespace: str, services: Services, database: connecting.DatabaseSettings
) -> None:
    services.operator()
    services.worker()
    create(kube, namespace, pgjob("short-lived", "noop", ttlSecondsAfterFinished=1), pgjob("kept", "noop"))
    wait_until(lambda: not exists(kube, namespace, "short-lived"), timeout=20, what="TTL deletion")
    assert status(kube, namespace, "kept")["phase"] == "Completed"
    assert [row["resource_name"] for row in rows(database)] == ["kept"]


def test_invalid_args_fail_the_job_with_a_message(kube: Any, namespace: str, services: Services) -> None:
    services.operator()
    big = {f"k{i}": "x" * 2000 for i in range(40)}  # 80 KB: fine for the API server, too big for a row
    create(kube, namespace, pgjob("huge", "noop", args=big))
    failed = wait_phase(kube, namespace, "huge", "Failed", timeout=15)
    assert "over the limit" in failed["message"]


def test_api_writes_per_short_job(kube: Any, namespace: str, services: Services, recorder: Recorder) -> None:
    """What a short job costs the API server: object writes (resourceVersion bumps) and Events."""
    metrics_port, liveness_port = free_port(), free_port()
    services.operator("operator", "--metrics-port", str(metrics_port), "--liveness-port", str(liveness_port))
    services.worker()
    names = [f"quick-{i}" for i in range(5)]
    create(kube, namespace, *(pgjob(name, "noop") for name in names))
    for name in names:
        wait_phase(kube, namespace, name, "Completed", timeout=20)
    # Every job's Completed Event is posted (a Started one, if any, is posted before it).
    completed = {f"{name}:Completed" for name in names}
    wait_until(
        lambda: completed <= {f"{e['name']}:{e['reason']}" for e in events(kube, namespace)},
        timeout=15,
        what="a Completed Event per job",
    )
    for name in names:
        versions = {obj["metadata"]["resourceVersion"] for obj in recorder.versions(name)}
        writes = len(versions) - 1  # the first version is the user's create
        event_count = len([e for e in events(kube, namespace) if e["name"] == name])
        print(f"{name}: {writes} object writes + {event_count} events")
        # The finalizer, then at most one status write per phase (Pending, Running, Completed)
        # and the Started and Completed Events; coalescing removes some when the job is quicker
        # than a sync round, which how many depends on the machine's load (bench measures it).
        assert 1 <= event_count <= 2 and 2 <= writes + event_count <= 6, (name, writes, event_count)

    # The operator's metrics and liveness endpoint tell the same story.
    # The leader counts jobs in its maintenance rounds; a round that began before the last job
    # finished shows 4, the next one 5.
    five = 'pgjobs_jobs{phase="Completed",priority="Regular",queue="default"} 5.0'
    wait_until(lambda: five in scrape(metrics_port), timeout=10, what="the job gauges counting all five")
    metrics = scrape(metrics_port)
    assert "pgjobs_operator_leader 1.0" in metrics
    assert 'pgjobs_operator_events_total{reason="Completed"} 5.0' in metrics
    assert "pgjobs_workers_alive 1.0" in metrics
    assert re.search(r"^pgjobs_oldest_snapshot_age_seconds \d", metrics, re.MULTILINE), metrics
    with urllib.request.urlopen(f"http://127.0.0.1:{liveness_port}/healthz", timeout=5) as response:
        assert response.status == 200


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def test_a_pgjob_with_run_at_waits_scheduled_then_runs(kube: Any, namespace: str, services: Services) -> None:
    services.operator()
    services.worker()
    run_at = datetime.datetime.now(datetime.UTC).replace(microsecond=0) + datetime.timedelta(seconds=6)
    create(
        kube, namespace, sleep_job("later", seconds=0.5, steps=1, runAt=run_at.strftime("%Y-%m-%dT%H:%M:%SZ"))
    )

    def scheduled() -> Any:
        conditions = status(kube, namespace, "later").get("conditions") or []
        return next((c for c in conditions if c["type"] == "Scheduled" and c["status"] == "True"), None)

    assert (
        "not claimed before" in wait_until(scheduled, timeout=15, what="the Scheduled condition")["message"]
    )
    assert status(kube, namespace, "later")["phase"] == "Pending"
    done = wait_phase(kube, namespace, "later", "Completed", timeout=40)
    started = datetime.datetime.fromisoformat(done["startedAt"].replace("Z", "+00:00"))
    assert started >= run_at, (started, run_at)
    assert "Scheduled" not in [c["type"] for c in done.get("conditions") or []]


def test_twenty_pgjobs_with_one_unique_key_give_one_run(
    kube: Any, namespace: str, services: Services, database: connecting.DatabaseSettings
) -> None:
    services.operator()
    services.worker()
    names = [f"keyed-{i:02d}" for i in range(20)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        list(
            pool.map(
                lambda n: create(kube, namespace, sleep_job(n, seconds=3, steps=3, uniqueKey="nightly")),
                names,
            )
        )

    def outcomes() -> dict[str, str] | None:
        phases = {n: status(kube, namespace, n).get("phase") for n in names}
        return phases if all(phases.values()) and "Pending" not in phases.values() else None

    phases = wait_until(outcomes, timeout=60, what="every keyed PgJob refused or running")
    running = [n for n, phase in phases.items() if phase in ("Running", "Completed")]
    assert len(running) == 1, phases
    (holder,) = running
    rows = query(database, "SELECT resource_name FROM pgjobs.jobs WHERE unique_key = 'nightly'")
    assert [row["resource_name"] for row in rows] == [holder]
    refused = status(kube, namespace, next(n for n in names if n != holder))
    assert refused["phase"] == "Failed" and f"held by PgJob {namespace}/{holder}" in refused["message"]
    assert [c["type"] for c in refused["conditions"]] == ["Duplicate"]
    wait_phase(kube, namespace, holder, "Completed", timeout=30)
