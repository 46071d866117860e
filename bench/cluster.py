"""On real pods: the single-node cluster of `make cluster`, the image, the chart (`--only cluster`).

Needs root and the built binaries and images (`make cluster` builds them); uses a running cluster
or starts one (timed: the node's cold start) and tears down what it started. One `helm install`
(timed) of the chart with deploy/cluster/values.yaml plus a short shutdown grace, in a namespace
of its own. Every time is client-side on this host, from polling the API server (20 ms for the
latencies, 0.5-1 s for the long runs), so each figure is an upper bound by about one interval.

a. `kubectl apply` -> status Running of one PgJob at a time with two idle worker pods, p50/p90.
b. `burst_jobs` noop PgJobs created at once with `burst_workers` worker pods: seconds until all
   Completed.
c. `kubectl scale` from 1 to 3 worker pods with a backlog: seconds until a new pod claims a job.
d. A worker pod deleted (SIGTERM) mid-job: seconds until its job runs on another pod (the
   shutdown grace, 2 s here, the hand-back to Pending and the replacement pod's claim).
e. The HPA (chart defaults, maxReplicas 6) against a fixed 6 replicas on `hpa_jobs` 3-second
   jobs: burst -> first added pod claiming, and the drain time of each.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from bench import environment
from pgjobs.devenv import cluster, controlplane, nodeconfig

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "pgjobs"
VALUES = ROOT / "deploy" / "cluster" / "values.yaml"
SHUTDOWN_GRACE = 2


def _script(script: str, *args: str) -> str:
    return subprocess.run([str(ROOT / script), *args], capture_output=True, text=True, check=True).stdout


class Release:
    def __init__(self, layout: nodeconfig.Layout, name: str) -> None:
        self.layout = layout
        self.name = name
        self.helm = _script("tools/helm/build.sh", "--bin").strip()
        self.kubectl_path = str(controlplane.bin_dir() / "kubectl")

    def run(self, *argv: str, stdin: str | None = None) -> str:
        env = {**os.environ, "KUBECONFIG": str(self.layout.admin_kubeconfig)}
        result = subprocess.run(argv, input=stdin, capture_output=True, text=True, env=env, timeout=900)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: {result.stdout}{result.stderr}")
        return result.stdout

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        return self.run(self.kubectl_path, "-n", self.name, *args, stdin=stdin)

    def helm_install(self, values: dict[str, Any]) -> None:
        self.run(self.helm, "upgrade", "--install", self.name, str(CHART), f"--namespace={self.name}",
                 "--create-namespace", f"--values={VALUES}", "--values=-", "--wait", "--timeout=5m",
                 stdin=yaml.safe_dump(values))  # fmt: skip

    def statuses(self) -> dict[str, dict[str, Any]]:
        items = json.loads(self.kubectl("get", "pgjobs", "-o", "json"))["items"]
        return {i["metadata"]["name"]: i.get("status", {}) for i in items}

    def status(self, name: str) -> dict[str, Any]:
        got: dict[str, Any] = json.loads(self.kubectl("get", "pgjob", name, "-o", "json")).get("status", {})
        return got

    def worker_pods(self, ready: bool = False) -> list[str]:
        selector = f"app.kubernetes.io/instance={self.name},app.kubernetes.io/component=worker"
        pods = json.loads(self.kubectl("get", "pods", "-l", selector, "-o", "json"))["items"]
        return [
            p["metadata"]["name"]
            for p in pods
            if not p["metadata"].get("deletionTimestamp") and (not ready or _ready(p))
        ]

    def scale(self, replicas: int) -> None:
        self.kubectl("scale", f"deployment/{self.name}-worker", f"--replicas={replicas}")

    def apply(self, docs: list[dict[str, Any]]) -> None:
        self.kubectl("create", "-f", "-", stdin=yaml.safe_dump_all(docs))

    def clear(self) -> None:
        self.kubectl("delete", "pgjobs", "--all", "--wait=true", "--timeout=300s")


def _ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def _jobs(prefix: str, count: int, task: str, args: dict[str, Any]) -> list[dict[str, Any]]:
    spec = {"task": task, "args": args}
    return [
        {
            "apiVersion": "pgjobs.dev/v1alpha1",
            "kind": "PgJob",
            "metadata": {"name": f"{prefix}-{i}"},
            "spec": spec,
        }
        for i in range(count)
    ]


def _until(condition: Callable[[], Any], timeout: float, interval: float) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"not reached within {timeout:.0f}s")
        time.sleep(interval)
    return time.monotonic() - started


def _all_done(release: Release, count: int) -> Callable[[], bool]:
    def check() -> bool:
        phases = [s.get("phase") for s in release.statuses().values()]
        return len(phases) == count and all(p == "Completed" for p in phases)

    return check


def _latency(release: Release, count: int) -> dict[str, Any]:
    release.scale(2)
    _until(lambda: len(release.worker_pods(ready=True)) == 2, 120, 0.5)
    times = []
    for i in range(count):
        name = f"lat{i}-0"
        started = time.monotonic()
        release.apply(_jobs(f"lat{i}", 1, "noop", {}))
        _until(lambda name=name: release.status(name).get("phase") in ("Running", "Completed"), 30, 0.02)
        times.append(time.monotonic() - started)
    release.clear()
    quantiles = statistics.quantiles(times, n=10)
    return {"jobs": count, "p50_s": round(statistics.median(times), 3), "p90_s": round(quantiles[8], 3)}


def _burst(release: Release, count: int, workers: int) -> dict[str, Any]:
    release.scale(workers)
    _until(lambda: len(release.worker_pods(ready=True)) == workers, 180, 0.5)
    started = time.monotonic()
    release.apply(_jobs("burst", count, "noop", {}))
    seconds = time.monotonic() - started + _until(_all_done(release, count), 900, 1.0)
    release.clear()
    return {
        "jobs": count,
        "worker_pods": workers,
        "seconds": round(seconds, 1),
        "jobs_per_s": round(count / seconds, 1),
    }


def _scale_to_claim(release: Release) -> dict[str, Any]:
    release.scale(1)
    _until(lambda: len(release.worker_pods()) == 1, 120, 0.5)
    first = set(release.worker_pods())
    release.apply(_jobs("scale", 12, "sleep", {"seconds": 20, "steps": 2}))
    _until(lambda: any(s.get("phase") == "Running" for s in release.statuses().values()), 60, 0.2)
    release.scale(3)

    def new_pod_claims() -> bool:
        return any(
            s.get("worker") not in first for s in release.statuses().values() if s.get("phase") == "Running"
        )

    seconds = _until(new_pod_claims, 120, 0.1)
    release.scale(1)
    release.clear()
    return {"from": 1, "to": 3, "seconds_to_first_claim_on_a_new_pod": round(seconds, 2)}


def _sigterm_to_running_elsewhere(release: Release) -> dict[str, Any]:
    """The job's Pending spell is shorter than the status sync shows (a replacement pod claims it
    at once), so what is timed is: pod deleted -> the job Running on another pod."""
    release.scale(1)
    _until(lambda: len(release.worker_pods(ready=True)) == 1, 120, 0.5)
    release.apply(_jobs("term", 1, "sleep", {"seconds": 120, "steps": 4}))
    _until(lambda: release.status("term-0").get("phase") == "Running", 60, 0.1)
    pod = release.status("term-0")["worker"]
    release.kubectl("delete", "pod", pod, "--wait=false")

    def elsewhere() -> bool:
        status = release.status("term-0")
        return status.get("phase") == "Running" and status.get("worker") != pod

    seconds = _until(elsewhere, 120, 0.05)
    attempts = release.status("term-0").get("attempts")
    release.clear()
    return {
        "shutdown_grace_s": SHUTDOWN_GRACE,
        "sigterm_to_running_elsewhere_s": round(seconds, 2),
        "attempts": attempts,
    }


def _autoscaling(release: Release, jobs: int, fixed: int) -> dict[str, Any]:
    results: dict[str, Any] = {"jobs": jobs, "job_seconds": 3}
    for mode in ("fixed", "hpa"):
        hpa = {"enabled": mode == "hpa", "maxReplicas": fixed}
        release.helm_install(
            {
                "worker": {
                    "replicas": fixed if mode == "fixed" else 1,
                    "hpa": hpa,
                    "shutdownGrace": SHUTDOWN_GRACE,
                }
            }
        )
        want = fixed if mode == "fixed" else 1
        _until(lambda want=want: len(release.worker_pods(ready=True)) == want, 300, 1.0)
        first = set(release.worker_pods())
        started = time.monotonic()
        release.apply(_jobs(mode, jobs, "sleep", {"seconds": 3, "steps": 3}))
        row: dict[str, Any] = {}
        if mode == "hpa":

            def added_claims(first: set[str] = first) -> bool:
                return any(
                    s.get("worker") not in first
                    for s in release.statuses().values()
                    if s.get("phase") == "Running"
                )

            row["first_added_pod_claims_s"] = round(
                time.monotonic() - started + _until(added_claims, 300, 0.5), 1
            )
        row["drain_s"] = round(time.monotonic() - started + _until(_all_done(release, jobs), 1200, 1.0), 1)
        results[mode] = row
        environment.progress(f"autoscaling {mode}: {row}")
        release.clear()
    return results


def run(size: dict[str, Any]) -> dict[str, Any]:
    layout = nodeconfig.Layout(cluster.DEFAULT_DIR)
    results: dict[str, Any] = {}
    started_here = not cluster.running(layout)
    if started_here:
        listed = [line.split() for line in _script("deploy/image/build.sh", "--archives").splitlines()]
        archives = [Path(path) for ref, path in listed if "-base:" not in ref]
        coredns = Path(_script("tools/coredns/build.sh", "--bin").strip())
        if layout.root.exists():
            cluster.down(layout)
        results["node_start_s"] = round(cluster.up(layout, coredns, archives), 1)
    release = Release(layout, f"pgjobs-bench-{uuid.uuid4().hex[:5]}")  # names are the release's
    try:
        began = time.monotonic()
        release.helm_install({"worker": {"shutdownGrace": SHUTDOWN_GRACE}})
        results["helm_install_ready_s"] = round(time.monotonic() - began, 1)
        environment.progress(f"cluster: node and chart up {results}")
        results["apply_to_running"] = _latency(release, size["cluster_latency_jobs"])
        environment.progress(f"cluster: apply -> Running {results['apply_to_running']}")
        results["burst"] = _burst(release, size["cluster_burst_jobs"], size["cluster_burst_workers"])
        environment.progress(f"cluster: burst {results['burst']}")
        results["scale_to_claim"] = _scale_to_claim(release)
        results["sigterm"] = _sigterm_to_running_elsewhere(release)
        environment.progress(f"cluster: {results['scale_to_claim']} {results['sigterm']}")
        results["autoscaling"] = _autoscaling(release, size["cluster_hpa_jobs"], 6)
    finally:
        release.run(release.helm, "uninstall", release.name, f"--namespace={release.name}", "--wait")
        release.run(release.kubectl_path, "delete", "namespace", release.name, "--wait=false")
        if started_here:
            cluster.down(layout)
    return results
