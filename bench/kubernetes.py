"""End to end through Kubernetes: a real kube-apiserver + etcd (pgjobs.devenv.controlplane), the
operator and single-slot workers as processes, PgJobs created with kubectl.

Every time is a client-side `time.time()` on this machine: a watch on PgJobs (kubernetes client,
in a thread) stamps each event when it arrives; the database's `finished_at` comes from the same
clock (same host). Measured:

a. `kubectl apply` → status Running for one PgJob at a time (idle workers waiting), p50 over
   `latency_jobs` jobs; also from the watch's ADDED event (without kubectl's own start-up),
   and kubectl's own round trip applying an object the operator does not watch (a ConfigMap):
   the in-run baseline of what any controller's latency stands on.
b. `burst_jobs` noop PgJobs created at once (`kubectl create -f` of one list) with
   `burst_workers` single-slot workers: seconds until every status says Completed.
c. Status lag under that load: watch time of the Completed status - the row's `finished_at`.
d. Writes to the API server by the operator per PgJob: resourceVersion bumps seen by the watch
   after our create (finalizer, status patches) + Events about it.
e. Operator RSS (/proc/PID/status VmRSS, VmHWM) idle, then with `memory_jobs` PgJobs created
   (no workers: they stay Pending), once the operator has a row for each.

`python -m bench.kubernetes --burst-only` runs b-d alone at full size (1,000 PgJobs, 8 workers,
the operator's default settings unless `--operator-arg` says otherwise), about a minute instead
of 8: for iterating on the operator. It prints the burst's JSON (as in the full run's "burst")
and writes it to bench/results/NAME.json.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench import environment
from pgjobs.devenv import controlplane, demo
from pgjobs.devenv.postgres import PostgresServer

GROUP, VERSION, PLURAL = "pgjobs.dev", "v1alpha1", "pgjobs"
NAMESPACE = "default"
PGJOBS = str(Path(sys.executable).with_name("pgjobs"))
TARGETS = {
    "apply_to_running_p50_ms": 300.0,
    "burst_completed_s": 60.0,
    "status_lag_p99_s": 2.0,
    "writes_per_job": 4.0,
    "operator_rss_mb": 300.0,
}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pgjob(name: str, task: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "PgJob",
        "metadata": {"name": name},
        "spec": {"task": task, "args": args or {}},
    }


class Watcher:
    """Every PgJob watch event with its arrival time: (time, type, name, uid, rv, phase)."""

    def __init__(self, kubeconfig: Path) -> None:
        import kubernetes

        self._api = kubernetes.client.CustomObjectsApi(
            kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
        )
        self._watch = kubernetes.watch.Watch()
        self.events: list[tuple[float, str, str, str, str, str | None]] = []
        self.phase: dict[str, str | None] = {}
        self.changed = threading.Condition()
        listed = self._api.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)
        self._since = listed["metadata"]["resourceVersion"]
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                stream = self._watch.stream(
                    self._api.list_namespaced_custom_object, GROUP, VERSION, NAMESPACE, PLURAL,
                    resource_version=self._since, timeout_seconds=3600, allow_watch_bookmarks=False,
                )  # fmt: skip
                for event in stream:
                    now = time.time()
                    obj = event["object"]
                    meta = obj["metadata"]
                    phase = (obj.get("status") or {}).get("phase")
                    self._since = meta["resourceVersion"]
                    with self.changed:
                        self.events.append(
                            (now, event["type"], meta["name"], meta["uid"], meta["resourceVersion"], phase)
                        )
                        self.phase[meta["name"]] = None if event["type"] == "DELETED" else phase
                        self.changed.notify_all()
            except Exception:  # the watch expired or broke: resume from the last version seen
                if self._stopped:
                    return
                time.sleep(0.1)
            else:
                if self._stopped:
                    return

    _stopped = False

    def stop(self) -> None:
        self._stopped = True
        self._watch.stop()

    def wait(self, ready: Any, timeout: float, what: str) -> float:
        """Until ready(phase-by-name) holds; returns the arrival time of the event that made it so."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not ready(self.phase):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
                self.changed.wait(min(left, 1.0))
            return self.events[-1][0] if self.events else time.time()

    def first(self, name: str, phase: str | None = None, kind: str | None = None) -> float | None:
        with self.changed:
            for when, type_, n, _, _, p in self.events:
                if n == name and (phase is None or p == phase) and (kind is None or type_ == kind):
                    return when
        return None


class Cluster:
    """Control plane, CRD, database, the operator and workers."""

    def __init__(self, server: PostgresServer, log_dir: Path) -> None:
        self.server = server
        self.log_dir = log_dir
        self.plane = controlplane.ControlPlane().start()
        demo.install_crd(self.plane)
        self.database = environment.pgjobs_database(server, "k8s")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("PGJOBS_", "PG"))} | {
            "PGJOBS_DATABASE_URL": server.url_without_password(self.database.name),
            "DB_PASSWORD": server.password,
        }
        self.workers: list[subprocess.Popen[bytes]] = []
        self.start_operator()

    def start_operator(self, *extra: str) -> None:
        self.metrics_port = _free_port()
        self.operator = self._start(
            "operator",
            [PGJOBS, "operator", "--kubeconfig", str(self.plane.kubeconfig), "--liveness-port", "0",
             "--metrics-port", str(self.metrics_port), "--sync-interval", "0.1", *extra],
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:  # up: metrics served and leading
            try:
                if self.metrics().get("pgjobs_operator_leader") == 1.0:
                    return
            except OSError:
                pass
            if self.operator.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the operator did not start (logs in {self.log_dir})")
            time.sleep(0.2)

    def stop_operator(self) -> None:
        environment.stop_processes([self.operator])  # type: ignore[list-item]

    def _start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{name}.log").open("ab")
        return subprocess.Popen(argv, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    def start_workers(self, count: int) -> None:
        for _ in range(count):
            number = len(self.workers) + 1
            self.workers.append(
                self._start(
                    f"worker-{number}", [PGJOBS, "worker", "--name", f"w{number}", "--concurrency", "1"]
                )
            )
        environment.wait_for_workers(self.database, len(self.workers))

    def stop_workers(self) -> None:
        environment.stop_processes(self.workers)  # type: ignore[arg-type]
        with self.database.connect() as conn:
            conn.execute("DELETE FROM pgjobs.workers")
        self.workers = []

    def create(self, bodies: list[dict[str, Any]], verb: str = "create") -> float:
        """`kubectl <verb> -f -` of one List; returns the time just before kubectl started."""
        document = json.dumps({"apiVersion": "v1", "kind": "List", "items": bodies})
        began = time.time()
        done = subprocess.run(
            [str(self.plane.kubectl), f"--kubeconfig={self.plane.kubeconfig}", verb, "-f", "-", "-o", "name"],
            input=document, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"kubectl {verb} failed: {done.stderr[-2000:]}")
        return began

    def delete_all(self) -> None:
        subprocess.run(
            [str(self.plane.kubectl), f"--kubeconfig={self.plane.kubeconfig}", "delete", "pgjobs", "--all",
             "--wait=true", "--timeout=300s"],
            capture_output=True, text=True, check=False, timeout=400,
        )  # fmt: skip

    def metrics(self) -> dict[str, float]:
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read()
        values: dict[str, float] = {}
        for line in text.decode().splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                values[key] = float(value)
        return values

    def rss(self) -> dict[str, float]:
        fields = {}
        for line in Path(f"/proc/{self.operator.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024  # kB → MB
        return {"rss_mb": fields["VmRSS"], "peak_rss_mb": fields["VmHWM"]}

    def cpu(self) -> dict[str, float]:
        """CPU seconds (user + system) so far of each part: apiserver, etcd, operator, workers."""
        ticks = os.sysconf("SC_CLK_TCK")

        def of(pid: int | None) -> float:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            except (OSError, TypeError):
                return 0.0
            return (int(fields[11]) + int(fields[12])) / ticks

        parts = {
            "kube-apiserver": of(self.plane._apiserver.popen and self.plane._apiserver.popen.pid),
            "etcd": of(self.plane._etcd.popen and self.plane._etcd.popen.pid),
            "operator": of(self.operator.pid),
            "workers": sum(of(worker.pid) for worker in self.workers),
        }
        parts["postgres"] = _postgres_cpu(self.server)
        return parts

    def close(self) -> None:
        environment.stop_processes([*self.workers, self.operator])  # type: ignore[list-item]
        self.plane.stop()


def _postgres_cpu(server: PostgresServer) -> float:
    """CPU seconds of this server: the postmaster (with its reaped children) and its live children."""
    ticks = os.sysconf("SC_CLK_TCK")
    process = getattr(server, "_process", None)
    if process is None:
        return 0.0
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(stat.parent.name) == process.pid:
            total += sum(int(f) for f in fields[11:15]) / ticks  # utime stime cutime cstime
        elif int(fields[1]) == process.pid:
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "samples": len(values),
        "p50": _percentile(values, 0.5),
        "p99": _percentile(values, 0.99),
        "max": max(values),
        "mean": statistics.fmean(values),
    }


def _latency(cluster: Cluster, watcher: Watcher, count: int) -> dict[str, Any]:
    """(a) one PgJob at a time, 2 idle workers; a short sleep so that Running is visible."""
    apply_ms, created_ms, kubectl_ms = [], [], []
    for number in range(count):
        # Baseline: kubectl apply of an object nobody acts on (kubectl start-up + one write).
        began = time.time()
        cluster.plane.run_kubectl(
            "apply", "-f", "-",
            input=json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                              "metadata": {"name": f"bench-{number}"}, "data": {"n": str(number)}}),
        )  # fmt: skip
        kubectl_ms.append(1000 * (time.time() - began))
        name = f"lat-{number}"
        began = time.time()
        cluster.plane.run_kubectl(
            "apply", "-f", "-", input=json.dumps(_pgjob(name, "sleep", {"seconds": 0.2, "steps": 1}))
        )
        running = watcher.wait(
            lambda phases, n=name: phases.get(n) in ("Running", "Completed"), 30, f"{name} Running"
        )
        watcher.wait(lambda phases, n=name: phases.get(n) == "Completed", 30, f"{name} Completed")
        added = watcher.first(name, kind="ADDED")
        apply_ms.append(1000 * (running - began))
        created_ms.append(1000 * (running - (added or began)))
    return {
        "jobs": count,
        "apply_to_running_ms": _summary(apply_ms),
        "created_to_running_ms": _summary(created_ms),
        "kubectl_apply_configmap_ms": _summary(kubectl_ms),
        "target_p50_ms": TARGETS["apply_to_running_p50_ms"],
    }


def _burst(
    cluster: Cluster, watcher: Watcher, count: int, workers: int, prefix: str = "burst"
) -> dict[str, Any]:
    """(b), (c), (d): `count` noop PgJobs at once, `workers` single-slot workers."""
    names = [f"{prefix}-{n:05d}" for n in range(count)]
    # Baseline: the same number of ConfigMaps created the same way (no controller acts on them).
    maps = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{prefix}-cm-{n:05d}"}, "data": {}}
        for n in range(count)
    ]
    began = cluster.create(maps)
    configmaps_s = time.time() - began
    before = cluster.metrics()
    cpu_before = cluster.cpu()
    began = cluster.create([_pgjob(name, "noop") for name in names])
    created = time.time()
    wanted = set(names)
    done = watcher.wait(
        lambda phases: all(phases.get(n) == "Completed" for n in wanted), 600, f"{count} PgJobs Completed"
    )
    after = cluster.metrics()
    cpu_after = cluster.cpu()
    time.sleep(1.0)  # late Events
    # (c) status lag: Completed status seen - the row's finished_at (same host clock).
    with cluster.database.connect() as conn:
        rows = conn.execute(
            "SELECT resource_name, extract(epoch FROM finished_at)::float8 AS finished,"
            " extract(epoch FROM started_at)::float8 AS started, extract(epoch FROM created_at)::float8"
            " AS created FROM pgjobs.jobs WHERE resource_name LIKE %s",
            (f"{prefix}-%",),
        ).fetchall()
    finished = {row["resource_name"]: row["finished"] for row in rows}
    lags = []
    timeline: dict[int, float] = defaultdict(float)  # worst lag by 2-second bin of finished_at
    for name in names:
        seen = watcher.first(name, phase="Completed")
        if seen is not None and finished.get(name):
            lags.append(seen - finished[name])
            second = int((finished[name] - began) // 2 * 2)
            timeline[second] = max(timeline[second], round(seen - finished[name], 2))
    # (d) writes per PgJob: watch events after our ADDED + Events about it.
    bumps: dict[str, int] = defaultdict(int)
    uids: dict[str, str] = {}
    with watcher.changed:
        for _, type_, name, uid, _, _ in watcher.events:
            if name in wanted:
                uids[name] = uid
                if type_ == "MODIFIED":
                    bumps[name] += 1
    kube_events = _events_by_uid(cluster)
    writes = [bumps[name] + kube_events.get(uids.get(name, ""), 0) for name in names]
    span_db = max(r["finished"] for r in rows) - min(r["created"] for r in rows)

    def delta(key: str) -> float:
        return sum(v for k, v in after.items() if k.startswith(key)) - sum(
            v for k, v in before.items() if k.startswith(key)
        )

    return {
        "jobs": count,
        "workers": workers,
        "kubectl_create_s": created - began,
        "kubectl_create_configmaps_s": configmaps_s,
        "cpu_s": {key: round(cpu_after[key] - cpu_before[key], 2) for key in cpu_after},
        "all_completed_s": done - began,
        "rows_created_to_last_finished_s": span_db,
        "target_completed_s": TARGETS["burst_completed_s"],
        "status_lag_s": _summary(lags) if lags else None,
        "target_lag_p99_s": TARGETS["status_lag_p99_s"],
        "operator_sync_lag_histogram_mean_s": (
            delta("pgjobs_operator_status_sync_lag_seconds_sum")
            / max(1.0, delta("pgjobs_operator_status_sync_lag_seconds_count"))
        ),
        "status_lag_worst_by_finished_s": dict(sorted(timeline.items())),
        "operator_sync_lag_buckets": {
            key.split('le="')[1].rstrip('"}'): delta(key)
            for key in after
            if key.startswith("pgjobs_operator_status_sync_lag_seconds_bucket")
        },
        "writes_per_job": {
            "mean": statistics.fmean(writes),
            "max": max(writes),
            "resource_version_bumps_mean": statistics.fmean(bumps[n] for n in names),
            "events_mean": statistics.fmean(kube_events.get(uids.get(n, ""), 0) for n in names),
        },
        "operator_status_writes": delta("pgjobs_operator_status_writes_total"),
        "operator_events": delta("pgjobs_operator_events_total"),
        "operator_events_skipped": delta("pgjobs_operator_events_skipped_total"),
        "target_writes_per_job": TARGETS["writes_per_job"],
    }


def _events_by_uid(cluster: Cluster) -> dict[str, int]:
    out = subprocess.run(
        [str(cluster.plane.kubectl), f"--kubeconfig={cluster.plane.kubeconfig}", "get", "events",
         "-n", NAMESPACE, "-o", "json", "--chunk-size=0"],
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout  # fmt: skip
    counts: dict[str, int] = defaultdict(int)
    for item in json.loads(out)["items"]:
        involved = item.get("involvedObject") or {}
        if involved.get("kind") == "PgJob":
            counts[involved.get("uid", "")] += int(item.get("count") or 1)
    return counts


def _memory(cluster: Cluster, count: int) -> dict[str, Any]:
    """(e) `count` PgJobs that stay Pending (no workers); RSS once the operator has all their rows."""
    idle = cluster.rss()  # fresh operator, with the earlier PgJobs (all finished) in its cache
    names = [f"mem-{n:05d}" for n in range(count)]
    began = time.time()
    for start in range(0, count, 1000):
        cluster.create([_pgjob(name, "noop") for name in names[start : start + 1000]])
    created = time.time()
    deadline = time.monotonic() + 600
    samples = []
    with cluster.database.connect() as conn:
        while True:
            n = conn.execute(
                "SELECT count(*) AS n FROM pgjobs.jobs WHERE resource_name LIKE 'mem-%'"
            ).fetchone()
            samples.append(cluster.rss()["rss_mb"])
            if n["n"] >= count or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    rows_at = time.time()
    time.sleep(5)  # let the status backlog drain a little; RSS after it
    loaded = cluster.rss()
    return {
        "jobs": count,
        "idle": idle,
        "loaded": loaded,
        "rss_max_while_creating_mb": max(samples),
        "kubectl_create_s": created - began,
        "all_rows_s": rows_at - began,
        "target_rss_mb": TARGETS["operator_rss_mb"],
    }


def run(server: PostgresServer, size: dict[str, Any]) -> dict[str, Any]:
    log_dir = Path(tempfile.mkdtemp(prefix="pgjobs-bench-k8s-"))
    result: dict[str, Any] = {"logs": str(log_dir), "targets": TARGETS}
    try:
        cluster = Cluster(server, log_dir)
    except (controlplane.BinariesNotFoundError, controlplane.ControlPlaneError) as error:
        return {"error": f"{type(error).__name__}: {error}"}
    watcher = None
    try:
        watcher = Watcher(cluster.plane.kubeconfig)
        result["operator_idle_rss"] = cluster.rss()
        cluster.start_workers(2)
        result["latency"] = _latency(cluster, watcher, size["k8s_latency_jobs"])
        environment.progress(f"kubernetes apply → Running: {result['latency']['apply_to_running_ms']}")
        cluster.start_workers(size["k8s_burst_workers"] - 2)
        result["burst"] = _burst(cluster, watcher, size["k8s_burst_jobs"], size["k8s_burst_workers"])
        environment.progress(f"kubernetes burst: {result['burst']}")
        # The same burst with the operator's write budget (--status-writes-per-second, default
        # 50, shared by status patches and Events) out of the way: what the budget costs.
        cluster.stop_operator()
        cluster.start_operator("--status-writes-per-second", "1000")
        time.sleep(2 + size["k8s_burst_jobs"] / 100)  # let it resume the PgJobs it finds
        result["burst_budget_1000"] = _burst(
            cluster, watcher, size["k8s_burst_jobs"], size["k8s_burst_workers"], prefix="fast"
        )
        result["burst_budget_1000"]["status_writes_per_second"] = 1000
        environment.progress(f"kubernetes burst, budget 1000/s: {result['burst_budget_1000']}")
        cluster.stop_operator()
        cluster.start_operator()
        cluster.stop_workers()
        result["memory"] = _memory(cluster, size["k8s_memory_jobs"])
        environment.progress(f"kubernetes memory: {result['memory']}")
    except Exception as error:
        result["error"] = f"{type(error).__name__}: {error}"
        environment.progress(f"kubernetes: {result['error']} (logs in {log_dir})")
    finally:
        if watcher:
            watcher.stop()
        cluster.close()
    return result


def run_burst_only(
    server: PostgresServer, jobs: int, workers: int, operator_args: list[str]
) -> dict[str, Any]:
    """(b)-(d) alone on a fresh control plane: `workers` idle workers, then `jobs` PgJobs at once."""
    log_dir = Path(tempfile.mkdtemp(prefix="pgjobs-bench-k8s-"))
    cluster = Cluster(server, log_dir)
    watcher = None
    try:
        if operator_args:
            cluster.stop_operator()
            cluster.start_operator(*operator_args)
        watcher = Watcher(cluster.plane.kubeconfig)
        cluster.start_workers(workers)
        result = _burst(cluster, watcher, jobs, workers)
        result["operator_args"] = operator_args
        result["operator_cpu_ms_per_job"] = 1000 * result["cpu_s"]["operator"] / jobs
        result["logs"] = str(log_dir)
        return result
    finally:
        if watcher:
            watcher.stop()
        cluster.close()


def run_memory_only(server: PostgresServer, jobs: int) -> dict[str, Any]:
    """(e) alone on a fresh control plane: the operator's RSS with `jobs` PgJobs pending."""
    log_dir = Path(tempfile.mkdtemp(prefix="pgjobs-bench-k8s-"))
    cluster = Cluster(server, log_dir)
    try:
        result = _memory(cluster, jobs)
        result["logs"] = str(log_dir)
        return result
    finally:
        cluster.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.kubernetes", description=__doc__)
    part = parser.add_mutually_exclusive_group(required=True)
    part.add_argument("--burst-only", action="store_true", help="run b-d only")
    part.add_argument("--memory-only", action="store_true", help="run e only (with --jobs PgJobs)")
    parser.add_argument("--jobs", type=int, default=1000, help="PgJobs in the burst (default 1000)")
    parser.add_argument("--workers", type=int, default=8, help="single-slot workers (default 8)")
    parser.add_argument(
        "--operator-arg", action="append", default=[], help="an extra operator option (repeatable)"
    )
    parser.add_argument("--name", default="", help="results file name (default: burst- or memory-kubernetes)")
    args = parser.parse_args(argv)
    with PostgresServer() as server:
        if args.memory_only:
            result = run_memory_only(server, args.jobs)
        else:
            result = run_burst_only(server, args.jobs, args.workers, args.operator_arg)
    name = args.name or ("memory-kubernetes" if args.memory_only else "burst-kubernetes")
    text = json.dumps(result, indent=2, default=str)
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(exist_ok=True)
    (results / f"{name}.json").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
