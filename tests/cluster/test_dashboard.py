"""Every panel of the Grafana dashboard answered by a real Prometheus scraping the chart's pods.

Prometheus (tools/prometheus/build.sh) runs as a host process next to the node with the scrape
config a user without the Prometheus Operator uses (deploy/prometheus/prometheus.yaml: the
chart's `pgjobs.dev/metrics` Services, found through the API server) and the rules
(pgjobs-rules.yaml). Only what a test needs is added to that file: a 2 s scrape and evaluation
interval, the admin kubeconfig, absolute rule paths. While jobs complete, fail (bad args, a
timeout), get rescued (a worker's container SIGKILLed mid-job) or handed back (a
worker pod force-deleted mid-job) and expire (ttlSecondsAfterFinished), every panel query of
deploy/grafana/pgjobs-dashboard.json is evaluated through /api/v1/query, with Grafana's variables
replaced by concrete values: once while jobs run (rate window 30 s) and once after the run (the
rate window spans the run).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pgjobs.devenv import nodeconfig, processes
from tests.cluster.helpers import FINISHED, ROOT, Release, sleep_jobs, wait_for

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "pgjobs-dashboard.json"
SCRAPE_INTERVAL = 2
#: Panels that show only Pending jobs: empty, like Grafana's "No data", once the queue is drained.
EMPTY_WHEN_DRAINED = {"Pending jobs by priority"}

Sample = dict[str, Any]


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=30) as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:  # a bad query answers 400 with the reason
            raise AssertionError(f"{path} {params}: {error.code} {error.read().decode()}") from error
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[Sample]:
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        data = self.get("/api/v1/query", **params)
        assert data["resultType"] == "vector", data
        return list(data["result"])

    def scalar(self, expr: str, at: float | None = None) -> float | None:
        """The value of a query that returns at most one series (None: no series)."""
        result = self.query(expr, at)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None


def _prometheus_bin_dir() -> Path:
    out = subprocess.run(
        [str(ROOT / "tools" / "prometheus" / "build.sh"), "--bin-dir"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return Path(out.strip())


def _test_config(node: nodeconfig.Layout) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yaml, with what a test next to the node needs."""
    config: dict[str, Any] = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yaml").read_text())
    interval = f"{SCRAPE_INTERVAL}s"
    config["global"].update(scrape_interval=interval, evaluation_interval=interval)
    config["rule_files"] = [str(PROMETHEUS_DIR / name) for name in config["rule_files"]]
    for job in config["scrape_configs"]:
        for sd in job["kubernetes_sd_configs"]:
            sd["kubeconfig_file"] = str(node.admin_kubeconfig)
    return config


@pytest.fixture(scope="module")
def prometheus(node: nodeconfig.Layout, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    binary = _prometheus_bin_dir() / "prometheus"
    if not binary.exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI must run the dashboard test: {binary} is not built", pytrace=False)
        pytest.skip(f"{binary} is not built (make prometheus)")
    tmp = tmp_path_factory.mktemp("prometheus")
    config = tmp / "prometheus.yaml"
    config.write_text(yaml.safe_dump(_test_config(node)))
    port = processes.free_port()
    # Stopped by pid at the end, and killed with the test process if that dies first.
    process = processes.ChildProcess(
        "prometheus",
        [
            str(binary),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        tmp / "prometheus.log",
    )
    process.start()
    server = Prometheus(f"http://127.0.0.1:{port}")
    try:
        processes.wait_until(lambda: processes.http_ok(f"{server.url}/-/ready"), process, 60, "Prometheus")
        yield server
    finally:
        process.stop()


@pytest.fixture(scope="module")
def dashboard() -> Any:
    return json.loads(DASHBOARD.read_text())


def panel_queries(dashboard: Any) -> dict[str, list[tuple[str, str]]]:
    """Panel title → its targets' (refId, expr)."""
    return {
        panel["title"]: [(target["refId"], target["expr"]) for target in panel["targets"]]
        for panel in dashboard["panels"]
        if panel.get("targets")
    }


def concrete(expr: str, namespace: str, rate_interval: str) -> str:
    """The query Grafana sends for one namespace and queue (its variables substituted)."""
    text = (
        expr.replace("$__rate_interval", rate_interval)
        .replace("$namespace", namespace)
        .replace("$queue", "default")
    )
    assert "$" not in text, f"a Grafana variable this test does not know: {text}"
    return text


def evaluate(
    prometheus: Prometheus,
    dashboard: Any,
    namespace: str,
    rate_interval: str,
    at: float,
    only: str | None = None,
) -> dict[str, dict[str, list[Sample]]]:
    """Panel title → refId → the series its query returns (a query error fails the test)."""
    return {
        title: {ref: prometheus.query(concrete(expr, namespace, rate_interval), at) for ref, expr in targets}
        for title, targets in panel_queries(dashboard).items()
        if only in (None, title)
    }


def values(results: dict[str, dict[str, list[Sample]]], title: str, ref: str = "A") -> dict[str, float]:
    """The values of one target: its series' labels, joined → value."""
    return {
        ",".join(f"{k}={v}" for k, v in sorted(series["metric"].items())): float(series["value"][1])
        for series in results[title][ref]
    }


def one(results: dict[str, dict[str, list[Sample]]], title: str, ref: str = "A") -> float:
    found = values(results, title, ref)
    assert len(found) == 1, (title, ref, found)
    return next(iter(found.values()))


def _total(results: dict[str, dict[str, list[Sample]]], title: str) -> float:
    """The sum over every series of every target of a panel."""
    return sum(sum(values(results, title, ref).values()) for ref in results[title])


def finite(results: dict[str, dict[str, list[Sample]]], title: str) -> dict[str, float]:
    """Every finite value of a panel, by refId and labels (quantiles of empty windows are NaN)."""
    return {
        f"{ref} {labels}": value
        for ref in results[title]
        for labels, value in values(results, title, ref).items()
        if math.isfinite(value)
    }


def _empty_panels(results: dict[str, dict[str, list[Sample]]]) -> list[str]:
    return [title for title, refs in results.items() if not any(refs.values())]


def _job(name: str, task: str, args: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "pgjobs.dev/v1alpha1",
        "kind": "PgJob",
        "metadata": {"name": name},
        "spec": {"task": task, "args": args, **spec},
    }


def _finished(release: Release, jobs: list[dict[str, Any]]) -> dict[str, str] | None:
    names = {job["metadata"]["name"] for job in jobs}
    phases = {name: phase for name, phase in release.phases().items() if name in names}
    return phases if len(phases) == len(names) and set(phases.values()) <= FINISHED else None


def _sigkill_worker(release: Release, pod: str) -> None:
    """SIGKILL the worker container's process, as an OOM kill would: no hand-back, no goodbye."""
    statuses = release.get("pod", pod)["status"]["containerStatuses"]
    container = next(s["containerID"] for s in statuses if s["name"] == "worker")
    release.run(
        "ctr",
        f"--address={release.node.containerd_socket}",
        "--namespace=k8s.io",
        "tasks",
        "kill",
        "--signal=SIGKILL",
        container.removeprefix("containerd://"),
    )


def test_every_panel_is_answered_during_a_run(
    release: Release, prometheus: Prometheus, dashboard: Any
) -> None:
    ns = release.namespace
    pending_expr = concrete(panel_queries(dashboard)["Pending jobs"][0][1], ns, "30s")

    # The operator and both workers found through the Services and scraped.
    wait_for(
        lambda: prometheus.scalar(f'count(up{{namespace="{ns}"}} == 1)') == 3,
        90,
        "the operator and 2 workers scraped",
        interval=2,
    )
    wait_for(
        lambda: prometheus.scalar(f'sum(pgjobs_operator_leader{{namespace="{ns}"}})') == 1, 60, "a leader"
    )

    started = time.time()
    prefix = f"dash-{uuid.uuid4().hex[:5]}"
    once = {"maxAttempts": 1, "priority": "High"}
    failing = [
        *(_job(f"{prefix}-badargs-{i}", "sleep", {"seconds": -1}, **once) for i in range(3)),
        _job(f"{prefix}-timeout-0", "sleep", {"seconds": 30}, timeoutSeconds=1, **once),
        # A fourth bad-args job where an unknown task was: a worker leaves a job of a task it
        # does not know Pending now (for a worker that has it), and the test wants 5 Failed.
        _job(f"{prefix}-badargs-3", "sleep", {"seconds": -1}, **once),
    ]
    burst = sleep_jobs(f"{prefix}-burst", 30, seconds=2)
    expiring = [
        _job(f"{prefix}-ttl-{i}", "noop", {}, priority="Low", ttlSecondsAfterFinished=1) for i in range(2)
    ]
    release.apply(failing + burst + expiring)

    # The pending gauge, sampled twice: it falls as two workers drain the burst.
    first = wait_for(lambda: (v := prometheus.scalar(pending_expr)) and v >= 10 and v, 60, "10+ pending")
    second, during = wait_for(
        lambda: (v := prometheus.scalar(pending_expr)) is not None and v < first and (v, time.time()),
        60,
        f"pending below {first}",
        interval=SCRAPE_INTERVAL,
    )
    running = evaluate(prometheus, dashboard, ns, "30s", during)
    assert _empty_panels(running) == []
    assert values(running, "Throughput: job attempts finished per second").get("result=completed", 0) > 0
    assert values(running, "Throughput by task").get("task=sleep", 0) > 0
    assert one(running, "Running jobs") > 0
    assert one(running, "Busy worker slots") > 0
    assert one(running, "Workers alive") >= 2
    assert sum(values(running, "Pending jobs by priority").values()) > 0
    assert "phase=Pending" in values(running, "Queue depth by phase")

    finished = wait_for(
        lambda: _finished(release, failing + burst), 180, "the burst and the failing jobs done"
    )
    assert sorted(p for n, p in finished.items() if "-burst-" not in n) == ["Failed"] * 5, finished
    assert {p for n, p in finished.items() if "-burst-" in n} == {"Completed"}, finished
    wait_for(lambda: not release.phases(f"{prefix}-ttl"), 60, "the ttl jobs deleted")

    # Two long jobs, one on each worker: one worker's process SIGKILLed (its job rescued after
    # the stall timeout), the other pod force-deleted (its job handed back or rescued).
    rescue = sleep_jobs(f"{prefix}-rescue", 2, seconds=12, maxAttempts=3, priority="High")
    release.apply(rescue)
    on = wait_for(
        lambda: (
            (w := {n: s.get("worker") for n, s in release.statuses(f"{prefix}-rescue").items()})
            and len(set(w.values()) & set(release.worker_pods())) == 2
            and w
        ),
        60,
        "both jobs Running on the two workers",
        interval=0.5,
    )
    killed, deleted = sorted(on.values())
    _sigkill_worker(release, killed)
    release.kubectl("delete", "pod", deleted, "--grace-period=0", "--force", "--wait=false")
    final = wait_for(lambda: _finished(release, rescue), 150, "the two jobs done", interval=2)
    assert set(final.values()) == {"Completed"}, final
    attempts = {name: row["attempt"] for name, row in release.job_rows(list(final)).items()}

    window = f"{math.ceil(time.time() - started) + 30}s"
    rescued_title = "Rescued jobs (workers that went silent)"
    wait_for(
        lambda: _total(
            evaluate(prometheus, dashboard, ns, window, time.time(), only=rescued_title), rescued_title
        ),
        60,
        "the rescues counted",
        interval=SCRAPE_INTERVAL,
    )
    # The operator's gauges lag by a maintenance pass and a scrape: wait for them to settle.
    depth_title = "Queue depth by phase"
    wait_for(
        lambda: (
            values(evaluate(prometheus, dashboard, ns, window, time.time(), only=depth_title), depth_title)
            == {"phase=Completed": 32, "phase=Failed": 5}
        ),
        30,
        "the queue depth: 32 Completed, 5 Failed, nothing else",
        interval=SCRAPE_INTERVAL,
    )
    ended = time.time()
    after = evaluate(prometheus, dashboard, ns, window, ended)

    assert set(_empty_panels(after)) <= EMPTY_WHEN_DRAINED
    throughput = values(after, "Throughput: job attempts finished per second")
    assert throughput.get("result=completed", 0) > 0 and throughput.get("result=failed", 0) > 0, throughput
    assert one(after, "Errors", "A") > 0  # failed attempts
    rescued = _total(after, rescued_title)
    assert rescued >= 1, (rescued, attempts)
    assert one(after, "Clean-up: TTL deletions and orphan rows", "A") > 0
    run_time = values(after, "Run time of jobs by final phase (p95)")
    assert run_time.get("phase=Completed", 0) > 0 and run_time.get("phase=Failed", 0) > 0, run_time
    assert one(after, "Pending jobs") == 0
    for title in (
        "Pickup latency (claim after runnable, workers)",
        "Pickup latency (first start after creation, operator)",
        "Run time of attempts by task (p50 / p95)",
        "Claim round trip (p50 / p99)",
        "Status-sync lag (DB change to PgJob status)",
    ):
        quantiles = finite(after, title)
        assert quantiles and all(v >= 0 for v in quantiles.values()), (title, quantiles)
    writes = values(after, "Status writes and Events")
    assert writes.get("result=written", 0) > 0, writes
    assert list(values(after, "Operator leader").values()) == [1.0]
    assert one(after, "Oldest open transaction (holds back the clean-up of finished jobs)") >= 0
    assert one(after, "Workers alive") >= 1

    print(
        f"\npending {first:.0f} -> {second:.0f}; while running: {json.dumps(_flat(running))}"
        f"\nafter the run ({window}): {json.dumps(_flat(after))}\nrescue attempts: {attempts}"
    )


def test_template_variables_list_the_release(release: Release, prometheus: Prometheus) -> None:
    # label_values(pgjobs_operator_leader, namespace) and label_values(pgjobs_jobs, queue).
    namespaces = prometheus.get("/api/v1/label/namespace/values", **{"match[]": "pgjobs_operator_leader"})
    assert release.namespace in namespaces
    queues = prometheus.get(
        "/api/v1/label/queue/values", **{"match[]": f'pgjobs_jobs{{namespace="{release.namespace}"}}'}
    )
    assert queues == ["default"]


def test_the_rules_are_loaded_and_evaluate(release: Release, prometheus: Prometheus) -> None:
    rules_file = yaml.safe_load((PROMETHEUS_DIR / "pgjobs-rules.yaml").read_text())
    expected = {group["name"]: len(group["rules"]) for group in rules_file["groups"]}
    groups = wait_for(
        lambda: (
            (g := prometheus.get("/api/v1/rules")["groups"])
            and all(r["health"] == "ok" for group in g for r in group["rules"])
            and g
        ),
        30,
        "every rule evaluated",
    )
    assert {group["name"]: len(group["rules"]) for group in groups} == expected
    errors = [
        (r["name"], r.get("lastError")) for group in groups for r in group["rules"] if r.get("lastError")
    ]
    assert errors == []
    ns = release.namespace
    assert prometheus.query(f'pgjobs:jobs:leader{{namespace="{ns}"}}')
    assert prometheus.scalar(f'pgjobs:operator_leaders:sum{{namespace="{ns}"}}') == 1
    assert (prometheus.scalar(f'pgjobs:workers_alive:leader{{namespace="{ns}"}}') or 0) >= 1
    firing = [a for a in prometheus.get("/api/v1/alerts")["alerts"] if a["state"] == "firing"]
    assert [a for a in firing if a["labels"].get("namespace") == ns] == []


def _flat(results: dict[str, dict[str, list[Sample]]]) -> dict[str, dict[str, float]]:
    return {
        f"{title} {ref}": {labels: round(v, 3) for labels, v in values(results, title, ref).items()}
        for title, refs in results.items()
        for ref in refs
    }
