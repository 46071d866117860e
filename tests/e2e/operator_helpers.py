"""Helpers and fixtures for the operator's e2e tests: the CRD, pgjobs processes, PgJob access, a recorder.

The operator and the workers run as real processes (`pgjobs operator`, `pgjobs worker`) with
short timings; their logs go to files whose tails are printed at teardown (pytest shows them
for failing tests). Test modules import the fixtures from here.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import psycopg
import pytest
import yaml
from psycopg.rows import dict_row

from pgjobs.store import connecting
from tests import processes
from tests.e2e import chart_helpers

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "crds" / "pgjobs.dev_pgjobs.yaml"
CRDS = ROOT / "crds"
DEMO_JOBS = ROOT / "deploy" / "examples" / "demo-jobs.yaml"
GROUP, VERSION, PLURAL = "pgjobs.dev", "v1alpha1", "pgjobs"
PGJOBS = str(Path(sys.executable).with_name("pgjobs"))

WORKER_ARGS = (
    "--heartbeat-interval", "0.5", "--stall-timeout", "3", "--poll-interval", "0.5",
    "--stop-grace", "1", "--shutdown-grace", "2",
)  # fmt: skip
OPERATOR_ARGS = (
    "--stall-timeout", "3", "--sync-interval", "0.1", "--maintenance-interval", "0.5",
    "--liveness-port", "0", "--metrics-port", "0",
)  # fmt: skip

Json = dict[str, Any]


@pytest.fixture(scope="session")
def crd(kube: Any) -> None:
    """Every CRD of crds/ (PgJob, PgCronJob, PgQueue) installed, Established and in discovery."""
    kube.apply(CRDS)
    for name in ("pgjobs", "pgcronjobs", "pgqueues"):
        kube.kubectl("wait", "--for=condition=Established", f"crd/{name}.pgjobs.dev", "--timeout=60s")
        kube.wait_for(
            lambda name=name: kube.kubectl("get", name, "-A", check=False).returncode == 0,
            timeout=60,
            what=f"{name} in discovery",
        )


class Process:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        with log.open("ab") as out:
            self.popen = subprocess.Popen(
                argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """kill -9: no clean-up, no deregistration, connections dropped by the kernel."""
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait()

    def stop(self) -> None:
        if self.alive():
            self.popen.terminate()
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class Services:
    """The pgjobs processes of one test, against its database and namespace."""

    def __init__(
        self, kube: Any, env: dict[str, str], namespace: str, log_dir: Path, operator_kubeconfig: Path
    ) -> None:
        self.kube = kube
        #: The chart's operator ServiceAccount under the chart's RBAC (admin only without helm).
        self.operator_kubeconfig = operator_kubeconfig
        self.env = env
        self.namespace = namespace
        self.log_dir = log_dir
        self.processes: list[Process] = []

    def _start(self, name: str, argv: list[str]) -> Process:
        process = Process(name, argv, self.env, self.log_dir / f"{name}.log")
        self.processes.append(process)
        return process

    def operator(self, name: str = "operator", *extra: str) -> Process:
        argv = [
            PGJOBS,
            "operator",
            "--kubeconfig",
            str(self.operator_kubeconfig),
            "--namespace",
            self.namespace,
        ]
        return self._start(name, [*argv, *OPERATOR_ARGS, *extra])

    def worker(self, name: str = "worker", *extra: str) -> Process:
        return self._start(name, [PGJOBS, "worker", "--name", name, *WORKER_ARGS, *extra])

    def console(self, port: int, *extra: str) -> Process:
        """`pgjobs console` on 127.0.0.1:`port` (tests/browser)."""
        return self._start("console", [PGJOBS, "console", "--port", str(port), *extra])

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            process.stop()

    def print_logs(self, lines: int = 60) -> None:
        for process in self.processes:
            tail = "\n".join(process.text().splitlines()[-lines:])
            print(f"---- {process.name} (pid {process.pid}) {process.log} ----\n{tail}")


@pytest.fixture
def services(
    kube: Any, crd: None, database_env: dict[str, str], namespace: str, tmp_path: Path
) -> Iterator[Services]:
    with _operator_identity(kube, namespace, tmp_path) as operator_kubeconfig:
        running = Services(kube, database_env, namespace, tmp_path, operator_kubeconfig)
        try:
            yield running
        finally:
            running.stop_all()
            running.print_logs()


@contextlib.contextmanager
def _operator_identity(kube: Any, namespace: str, tmp_path: Path) -> Iterator[Path]:
    """Operators in these tests run with the chart's own RBAC, which proves it is enough.

    The test operator watches one namespace (--namespace), so the chart is rendered that way
    (operator.watchNamespaces). Without a helm binary (outside CI) they fall back to admin.
    """
    helm = chart_helpers.helm_binary()
    if helm is None:
        warnings.warn(
            "helm is not built (`make helm`): the operator runs as admin, not with the chart's RBAC",
            stacklevel=2,
        )
        yield Path(kube.kubeconfig)
        return
    values = {"operator": {"watchNamespaces": [namespace]}}
    with chart_helpers.chart_rbac(helm, kube, namespace, tmp_path, values) as kubeconfig:
        yield kubeconfig


# -- PgJob access ---------------------------------------------------------------


def pgjob(name: str, task: str = "sleep", **spec: Any) -> Json:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "PgJob",
        "metadata": {"name": name},
        "spec": {"task": task, **spec},
    }


def sleep_job(name: str, seconds: float = 3, steps: int = 10, **spec: Any) -> Json:
    return pgjob(name, "sleep", args={"seconds": seconds, "steps": steps}, **spec)


def demo_jobs(seconds: float) -> list[Json]:
    """deploy/examples/demo-jobs.yaml with shorter sleeps."""
    docs = [doc for doc in yaml.safe_load_all(DEMO_JOBS.read_text()) if doc]
    for doc in docs:
        doc["spec"]["args"]["seconds"] = seconds
    return docs


def create(kube: Any, namespace: str, *bodies: Json) -> None:
    for body in bodies:
        kube.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)


def get(kube: Any, namespace: str, name: str) -> Json:
    body: Json = kube.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    return body


def status(kube: Any, namespace: str, name: str) -> Json:
    return dict(get(kube, namespace, name).get("status") or {})


def patch_spec(kube: Any, namespace: str, name: str, **spec: Any) -> None:
    kube.custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, {"spec": spec},
        _content_type="application/merge-patch+json",
    )  # fmt: skip


def exists(kube: Any, namespace: str, name: str) -> bool:
    try:
        get(kube, namespace, name)
    except kubernetes.client.exceptions.ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


def wait_phase(kube: Any, namespace: str, name: str, phase: str, timeout: float = 30) -> Json:
    def reached() -> Json | None:
        current = status(kube, namespace, name)
        return current if current.get("phase") == phase else None

    found: Json = kube.wait_for(reached, timeout=timeout, interval=0.1, what=f"{name} {phase}")
    return found


def events(kube: Any, namespace: str, uid: str | None = None) -> list[Json]:
    """Events about PgJobs of the namespace (of one uid), oldest first."""
    listing = kube.core.list_namespaced_event(namespace)
    return [
        {"reason": e.reason, "message": e.message, "type": e.type, "uid": e.involved_object.uid,
         "name": e.involved_object.name, "component": e.source.component if e.source else None}
        for e in listing.items
        if e.involved_object.kind == "PgJob" and (uid is None or e.involved_object.uid == uid)
    ]  # fmt: skip


# -- the database ---------------------------------------------------------------


def query(database: connecting.DatabaseSettings, sql: str, *params: Any) -> list[dict[str, Any]]:
    with psycopg.connect(database.conninfo(), autocommit=True, row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]


def rows(database: connecting.DatabaseSettings) -> list[dict[str, Any]]:
    return query(
        database,
        "SELECT id, state::text, attempt, worker_id, resource_uid, resource_name, restarts"
        " FROM pgjobs.jobs ORDER BY id",
    )


def running_worker(database: connecting.DatabaseSettings, uid: str) -> Any:
    found = query(
        database, "SELECT worker_id FROM pgjobs.jobs WHERE resource_uid = %s AND state = 'running'", uid
    )
    return found[0]["worker_id"] if found else None


def worker_pid(database: connecting.DatabaseSettings, worker_id: Any) -> int:
    return int(query(database, "SELECT pid FROM pgjobs.workers WHERE id = %s", worker_id)[0]["pid"])


# -- a watch that records every version of the PgJobs of a namespace ----------------


class Recorder:
    """Every ADDED/MODIFIED version of the namespace's PgJobs, in order (a background watch)."""

    def __init__(self, kube: Any, namespace: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self.seen: list[Json] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        time.sleep(0.3)  # let the watch open before the test creates objects

    def _run(self) -> None:
        watch: Any = kubernetes.watch.Watch()
        version = ""
        while not self._stop.is_set():
            try:
                for event in watch.stream(
                    self.kube.custom.list_namespaced_custom_object, GROUP, VERSION, self.namespace, PLURAL,
                    resource_version=version, timeout_seconds=2,
                ):  # fmt: skip
                    obj = event["object"]
                    version = obj["metadata"]["resourceVersion"]
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self.seen.append(obj)
                    if self._stop.is_set():
                        return
            except Exception:  # the API server restarts in some tests: watch again
                time.sleep(0.2)

    def versions(self, name: str) -> list[Json]:
        return [obj for obj in self.seen if obj["metadata"]["name"] == name]

    def progress(self, name: str) -> list[int]:
        return [int((obj.get("status") or {}).get("progress", 0)) for obj in self.versions(name)]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def recorder(kube: Any, namespace: str) -> Iterator[Recorder]:
    watching = Recorder(kube, namespace)
    try:
        yield watching
    finally:
        watching.close()


def wait_until(condition: Any, timeout: float = 30, what: str = "condition") -> Any:
    return processes.wait_for(condition, timeout, what=what)
