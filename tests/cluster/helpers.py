"""One `helm install` of the chart on the real node, and what tests do with it.

Tests act as a user would (helm, kubectl) and check the outcome where it is recorded: the PgJob
statuses through the API server and the job rows in the release's own PostgreSQL pod, reached
from the host on the pod's address (the node's bridge routes to it).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import yaml

from pgjobs.devenv import controlplane, nodeconfig

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "pgjobs"
VALUES = ROOT / "deploy" / "cluster" / "values.yaml"
#: The chart's dev PostgreSQL defaults (helm/pgjobs/values.yaml).
DB_USER = "pgjobs"
DB_NAME = "pgjobs"
DB_PASSWORD = "pgjobs-dev-password"
FINISHED = {"Completed", "Failed", "Stopped"}

T = TypeVar("T")


def helm_binary() -> str:
    return subprocess.run(
        [str(ROOT / "tools" / "helm" / "build.sh"), "--bin"], capture_output=True, text=True, check=True
    ).stdout.strip()


def wait_for(condition: Callable[[], T | None], timeout: float, what: str, interval: float = 1.0) -> T:
    """Poll until `condition` returns something truthy; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = condition()
        except (AssertionError, psycopg.OperationalError) as error:
            last = error
        else:
            if value:
                return value
            last = value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


def sleep_jobs(prefix: str, count: int, seconds: float, **spec: Any) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "pgjobs.dev/v1alpha1",
            "kind": "PgJob",
            "metadata": {"name": f"{prefix}-{i}"},
            "spec": {"task": "sleep", "args": {"seconds": seconds, "steps": 10}, **spec},
        }
        for i in range(count)
    ]


class Release:
    """The chart installed as `name` in `namespace`, its operator watching that namespace only."""

    def __init__(self, node: nodeconfig.Layout, *, name: str, namespace: str) -> None:
        self.node = node
        self.name = name
        self.namespace = namespace
        self.helm = helm_binary()
        self.kubectl_path = controlplane.bin_dir() / "kubectl"
        self.worker_deployment = f"{name}-worker"
        self.operator_deployment = f"{name}-operator"

    # -- commands ---------------------------------------------------------

    def run(self, *argv: str, input: str | None = None, timeout: float = 420, check: bool = True) -> str:
        env = {**os.environ, "KUBECONFIG": str(self.node.admin_kubeconfig)}
        result = subprocess.run(argv, input=input, capture_output=True, text=True, env=env, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        return result.stdout

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 120, check: bool = True) -> str:
        return self.run(
            str(self.kubectl_path), "-n", self.namespace, *args, input=input, timeout=timeout, check=check
        )

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def apply(self, docs: list[dict[str, Any]]) -> None:
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))

    def helm_args(self, values: dict[str, Any]) -> tuple[list[str], str]:
        """Arguments for helm install/upgrade, and the values document they read from stdin."""
        overrides = {"fullnameOverride": self.name, "operator": {"watchNamespaces": [self.namespace]}}
        return [
            f"--namespace={self.namespace}",
            f"--values={VALUES}",
            "--values=-",
            "--wait",
            "--timeout=5m",
        ], yaml.safe_dump(_merge(overrides, values))

    def install(self, values: dict[str, Any], *flags: str) -> None:
        args, text = self.helm_args(values)
        self.run(self.helm, "install", self.name, str(CHART), "--create-namespace", *args, *flags, input=text)

    def upgrade(self, values: dict[str, Any], *flags: str, chart: Path = CHART) -> None:
        args, text = self.helm_args(values)
        self.run(self.helm, "upgrade", self.name, str(chart), *args, *flags, input=text)

    def remove(self) -> None:
        """Uninstall and delete the namespace; PgJobs first, while their operator still runs."""
        self.kubectl("delete", "pgjobs", "--all", "--wait=true", "--timeout=60s", check=False)
        self.run(self.helm, "uninstall", self.name, f"--namespace={self.namespace}", "--wait", check=False)
        self.run(str(self.kubectl_path), "delete", "namespace", self.namespace, "--wait=false", check=False)

    # -- state ------------------------------------------------------------

    def statuses(self, prefix: str = "") -> dict[str, dict[str, Any]]:
        items = self.get("pgjobs")["items"]
        return {
            item["metadata"]["name"]: item.get("status", {})
            for item in items
            if item["metadata"]["name"].startswith(prefix)
        }

    def phases(self, prefix: str = "") -> dict[str, str]:
        return {name: status.get("phase", "") for name, status in self.statuses(prefix).items()}

    def pods(self, component: str, *, include_terminating: bool = False) -> list[dict[str, Any]]:
        selector = f"app.kubernetes.io/instance={self.name},app.kubernetes.io/component={component}"
        pods: list[dict[str, Any]] = self.get("pods", "-l", selector)["items"]
        return [p for p in pods if include_terminating or p["metadata"].get("deletionTimestamp") is None]

    def worker_pods(self) -> list[str]:
        return [p["metadata"]["name"] for p in self.pods("worker")]

    def ready_worker_pods(self) -> list[str]:
        return [p["metadata"]["name"] for p in self.pods("worker") if _ready(p)]

    def scale_workers(self, replicas: int) -> None:
        self.kubectl("scale", f"deployment/{self.worker_deployment}", f"--replicas={replicas}")

    def database_url(self) -> str:
        pod = self.get("pod", f"{self.name}-postgresql-0")
        return (
            f"postgresql://{DB_USER}:{DB_PASSWORD}@{pod['status']['podIP']}:5432/{DB_NAME}?connect_timeout=5"
        )

    def job_rows(self, names: list[str]) -> dict[str, dict[str, Any]]:
        """The PostgreSQL rows of these PgJobs, by PgJob name."""
        with psycopg.connect(self.database_url(), row_factory=psycopg.rows.dict_row) as conn:
            rows = conn.execute(
                "SELECT resource_name, state::text AS state, attempt, worker_id::text AS worker_id"
                " FROM pgjobs.jobs WHERE resource_namespace = %s AND resource_name = ANY(%s)",
                (self.namespace, names),
            ).fetchall()
        return {row["resource_name"]: row for row in rows}

    def worker_hostnames(self) -> dict[str, str]:
        """Worker id → host name (the pod name) of every worker that ever registered."""
        with psycopg.connect(self.database_url()) as conn:
            return {str(i): h for i, h in conn.execute("SELECT id, hostname FROM pgjobs.workers").fetchall()}

    def diagnostics(self) -> str:
        parts = [self.kubectl("get", "pods,pgjobs", "-o", "wide", check=False)]
        for pod in self.get("pods")["items"]:
            name = pod["metadata"]["name"]
            parts.append(f"---- logs of {name} ----")
            parts.append(self.kubectl("logs", name, "--all-containers", "--tail=25", check=False))
        parts.append(self.kubectl("get", "events", "--sort-by=.lastTimestamp", check=False)[-3000:])
        return "\n".join(parts)


def _ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged
