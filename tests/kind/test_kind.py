"""pgjobs on a real (containerised) cluster: kind + the image + the Helm chart (opt-in).

PGJOBS_KIND=1 runs it (`make kind-e2e`); it needs docker with a reachable daemon, kind, kubectl
and helm (on PATH, or built by tools/helm/build.sh). One module-scoped cluster: create it, build
and load the image, `helm install` with the dev PostgreSQL, then the tests below in order;
the cluster is deleted at the end unless PGJOBS_KIND_KEEP=1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = os.environ.get("KIND_CLUSTER", "pgjobs-e2e")
NAMESPACE = "pgjobs"
RELEASE = "pgjobs"
IMAGE = "pgjobs:kind-e2e"
JOBS_NAMESPACE = "default"

T = TypeVar("T")


def _helm() -> str | None:
    on_path = shutil.which("helm")
    if on_path:
        return on_path
    built = subprocess.run(
        [str(ROOT / "tools" / "helm" / "build.sh"), "--bin"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return built if built and os.access(built, os.X_OK) else None


def _missing() -> str | None:
    if os.environ.get("PGJOBS_KIND") != "1":
        return "kind end-to-end tests are opt-in: set PGJOBS_KIND=1 (make kind-e2e)"
    absent = [tool for tool in ("docker", "kind", "kubectl") if shutil.which(tool) is None]
    if _helm() is None:
        absent.append("helm (PATH or tools/helm/build.sh)")
    if absent:
        return f"kind end-to-end tests need: {', '.join(absent)}"
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        return "docker is installed but its daemon is not reachable ('docker info' fails)"
    return None


pytestmark = [pytest.mark.kind, pytest.mark.skipif(_missing() is not None, reason=str(_missing()))]


class Cluster:
    def __init__(self, kubeconfig: Path, helm: str) -> None:
        self.kubeconfig = kubeconfig
        self.helm = helm

    def run(self, *argv: str, input: str | None = None, timeout: float = 600) -> str:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        result = subprocess.run(argv, input=input, capture_output=True, text=True, env=env, timeout=timeout)
        if result.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        return result.stdout

    def kubectl(self, *args: str, input: str | None = None) -> str:
        return self.run("kubectl", *args, input=input)

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def phases(self) -> dict[str, str]:
        items = self.get("pgjobs", "-n", JOBS_NAMESPACE)["items"]
        return {item["metadata"]["name"]: item.get("status", {}).get("phase", "") for item in items}

    def worker_pods(self) -> list[str]:
        selector = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=worker"
        pods = self.get("pods", "-n", NAMESPACE, "-l", selector)["items"]
        return [pod["metadata"]["name"] for pod in pods if pod["metadata"].get("deletionTimestamp") is None]

    def scale_workers(self, replicas: int) -> None:
        self.kubectl("scale", "-n", NAMESPACE, f"deployment/{RELEASE}-worker", f"--replicas={replicas}")


def wait_for(condition: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = condition()
        except AssertionError as error:
            last = error
        else:
            if value:
                return value
            last = value
        time.sleep(2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def sleep_jobs(prefix: str, count: int, seconds: float) -> str:
    docs = [
        {
            "apiVersion": "pgjobs.dev/v1alpha1",
            "kind": "PgJob",
            "metadata": {"name": f"{prefix}-{i}"},
            "spec": {"task": "sleep", "args": {"seconds": seconds, "steps": 10}, "maxAttempts": 3},
        }
        for i in range(count)
    ]
    return yaml.safe_dump_all(docs)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    helm = _helm()
    assert helm is not None
    kubeconfig = tmp_path_factory.mktemp("kind") / "kubeconfig"
    config = ROOT / "deploy" / "kind" / "cluster.yaml"
    create = ["kind", "create", "cluster", "--name", CLUSTER, "--config", str(config)]
    subprocess.run([*create, "--kubeconfig", str(kubeconfig), "--wait", "180s"], check=True, timeout=600)
    try:
        subprocess.run(
            ["docker", "build", "-t", IMAGE, "-f", str(ROOT / "deploy" / "Dockerfile"), str(ROOT)],
            check=True,
            timeout=1200,
        )
        subprocess.run(["kind", "load", "docker-image", IMAGE, "--name", CLUSTER], check=True, timeout=600)
        c = Cluster(kubeconfig, helm)
        repository, tag = IMAGE.split(":")
        values = {
            "image.repository": repository,
            "image.tag": tag,
            "image.pullPolicy": "Never",  # the image only exists inside the kind nodes
            "postgresql.enabled": "true",
            "worker.replicas": "2",
        }
        sets = [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]
        chart = str(ROOT / "helm" / "pgjobs")
        c.run(
            helm,
            "install",
            RELEASE,
            chart,
            "-n",
            NAMESPACE,
            "--create-namespace",
            *sets,
            "--wait",
            "--timeout",
            "5m",
        )
        yield c
    finally:
        if os.environ.get("PGJOBS_KIND_KEEP") != "1":
            subprocess.run(["kind", "delete", "cluster", "--name", CLUSTER], check=False, timeout=300)


def test_demo_jobs_complete(cluster: Cluster) -> None:
    demo = ROOT / "deploy" / "examples" / "demo-jobs.yaml"
    cluster.kubectl("apply", "-n", JOBS_NAMESPACE, "-f", str(demo))
    names = [doc["metadata"]["name"] for doc in yaml.safe_load_all(demo.read_text()) if doc]
    assert len(names) == 5
    wait_for(
        lambda: all(cluster.phases().get(name) == "Completed" for name in names), 300, "demo jobs Completed"
    )
    cluster.kubectl("delete", "pgjobs", "-n", JOBS_NAMESPACE, *names)


def test_scaling_workers_mid_run_loses_and_fails_nothing(cluster: Cluster) -> None:
    prefix = f"scale-{uuid.uuid4().hex[:5]}"
    cluster.kubectl("apply", "-n", JOBS_NAMESPACE, "-f", "-", input=sleep_jobs(prefix, 12, seconds=8))
    wait_for(lambda: "Running" in cluster.phases().values(), 120, "a job Running")
    cluster.scale_workers(4)
    wait_for(lambda: len(cluster.worker_pods()) == 4, 180, "4 worker pods")
    # Scale down while jobs run: the removed workers finish or hand back their jobs.
    wait_for(lambda: list(cluster.phases().values()).count("Running") >= 2, 120, "jobs Running")
    cluster.scale_workers(1)

    def finished() -> dict[str, str] | None:
        phases = {n: p for n, p in cluster.phases().items() if n.startswith(prefix)}
        done = all(p in {"Completed", "Failed", "Stopped"} for p in phases.values())
        return phases if phases and done else None

    final = wait_for(finished, 600, "all jobs finished")
    assert len(final) == 12
    assert set(final.values()) == {"Completed"}, final
    cluster.scale_workers(2)


def test_deleting_a_worker_pod_mid_job_rescues_the_job(cluster: Cluster) -> None:
    name = f"rescue-{uuid.uuid4().hex[:5]}"
    cluster.kubectl("apply", "-n", JOBS_NAMESPACE, "-f", "-", input=sleep_jobs(name, 1, seconds=40))
    job = f"{name}-0"

    def running_on() -> str:
        status = cluster.get("pgjob", "-n", JOBS_NAMESPACE, job).get("status", {})
        return str(status.get("worker", "")) if status.get("phase") == "Running" else ""

    worker = wait_for(running_on, 120, "the job Running")
    # status.worker is the worker's host name: its pod's name.
    assert worker in cluster.worker_pods(), (worker, cluster.worker_pods())
    # No grace: the worker dies without handing the job back; the rescue sweep must.
    cluster.kubectl("delete", "pod", "-n", NAMESPACE, worker, "--grace-period=0", "--force")

    def completed() -> dict[str, Any] | None:
        status: dict[str, Any] = cluster.get("pgjob", "-n", JOBS_NAMESPACE, job).get("status", {})
        return status if status.get("phase") == "Completed" else None

    final = wait_for(completed, 300, "the rescued job Completed")
    assert final["attempts"] >= 2, final


def test_uninstall_is_clean(cluster: Cluster) -> None:
    cluster.kubectl("delete", "pgjobs", "--all", "-n", JOBS_NAMESPACE, "--wait=true", "--timeout=120s")
    cluster.run(cluster.helm, "uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", "--timeout", "5m")
    left = cluster.get("all", "-n", NAMESPACE, "-l", f"app.kubernetes.io/instance={RELEASE}")["items"]
    assert left == [], [item["metadata"]["name"] for item in left]
    roles = cluster.get("clusterroles", "-l", f"app.kubernetes.io/instance={RELEASE}")["items"]
    assert roles == []
    # Helm keeps CRDs on uninstall (documented): the PgJob CRD stays for the next install.
    cluster.kubectl("get", "crd", "pgjobs.pgjobs.dev")
