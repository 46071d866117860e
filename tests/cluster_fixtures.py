"""Fixtures for tests against a real Kubernetes API server (a pytest plugin: tests/conftest.py
registers it once, so the e2e and fault suites share one control plane per session).

One control plane per session (pgjobs.devenv.controlplane: etcd +
kube-apiserver on loopback), or an existing cluster when PGJOBS_TEST_KUBECONFIG
names its kubeconfig (e.g. a kind cluster from `make kind-up`). Each test gets
a fresh namespace. When a test fails, the tail of the control-plane logs is
attached to its report.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import kubernetes
import pytest
import yaml

from pgjobs.devenv import controlplane as cp

T = TypeVar("T")

Cluster = cp.ControlPlane | cp.ExistingCluster

_cluster_key = pytest.StashKey[Cluster]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent / "e2e"
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    cluster = item.config.stash.get(_cluster_key, None)
    if report.failed and cluster is not None and "controlplane" in getattr(item, "fixturenames", ()):
        report.sections.append(("control-plane logs (tail)", cluster.logs_tail()))
    return report


def _missing_binaries(exc: cp.BinariesNotFoundError) -> None:
    """Skip only where the suite cannot build the binaries; never in CI."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI must run the e2e tests: {exc}", pytrace=False)
    if not cp.go_available():
        pytest.skip(f"Go is not installed and the control plane is not built: {exc}")
    pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def controlplane(pytestconfig: pytest.Config) -> Iterator[Cluster]:
    """The cluster under test: PGJOBS_TEST_KUBECONFIG's, or a local one started here."""
    external = os.environ.get("PGJOBS_TEST_KUBECONFIG")
    cluster: Cluster
    if external:
        kubectl = cp.preferred_kubectl()
        if kubectl is None:
            pytest.fail("PGJOBS_TEST_KUBECONFIG is set but no kubectl was found", pytrace=False)
        cluster = cp.ExistingCluster(Path(external), kubectl)
    else:
        try:
            binaries = cp.find_binaries()
        except cp.BinariesNotFoundError as exc:
            _missing_binaries(exc)
            raise
        cluster = cp.ControlPlane(binaries).start()
    pytestconfig.stash[_cluster_key] = cluster
    try:
        yield cluster
    finally:
        del pytestconfig.stash[_cluster_key]
        cluster.stop()


class Kube:
    """A cluster's kubeconfig, the kubectl to use with it and an API client."""

    def __init__(self, kubeconfig: Path, kubectl: Path, cluster: Cluster) -> None:
        self.kubeconfig = kubeconfig
        self.kubectl_path = kubectl
        self.cluster = cluster
        # Any: the kubernetes package returns untyped dicts for custom objects.
        self.api: Any = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
        self.core: Any = kubernetes.client.CoreV1Api(self.api)
        self.custom: Any = kubernetes.client.CustomObjectsApi(self.api)
        self.rbac: Any = kubernetes.client.RbacAuthorizationV1Api(self.api)
        self.apiextensions: Any = kubernetes.client.ApiextensionsV1Api(self.api)

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        kubeconfig: Path | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl; with check, a failure raises showing its stderr."""
        argv = [str(self.kubectl_path), f"--kubeconfig={kubeconfig or self.kubeconfig}", *args]
        result = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
        return result

    def apply(
        self,
        manifest: dict[str, Any] | list[dict[str, Any]] | str | Path,
        namespace: str | None = None,
        *,
        server_side: bool = False,
        check: bool = True,
        kubeconfig: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """`kubectl apply` a file/dir path, a YAML string, or dicts."""
        args = ["apply", *(["--server-side"] if server_side else [])]
        args += ["-n", namespace] if namespace else []
        if isinstance(manifest, Path):
            return self.kubectl(*args, "-f", str(manifest), check=check, kubeconfig=kubeconfig)
        if isinstance(manifest, str):
            text = manifest
        else:
            docs = manifest if isinstance(manifest, list) else [manifest]
            text = yaml.safe_dump_all(docs)
        return self.kubectl(*args, "-f", "-", input=text, check=check, kubeconfig=kubeconfig)

    def get_json(self, *args: str, kubeconfig: Path | None = None) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json", kubeconfig=kubeconfig).stdout)

    def kubeconfig_for_serviceaccount(self, namespace: str, name: str) -> Path:
        return self.cluster.kubeconfig_for_serviceaccount(namespace, name)

    @staticmethod
    def wait_for(
        condition: Callable[[], T],
        timeout: float = 30.0,
        interval: float = 0.2,
        what: str = "condition",
    ) -> T:
        """Poll until `condition()` returns something truthy; return it.

        Exceptions count as "not yet" (the object may not exist yet); the last
        one is shown if time runs out.
        """
        deadline = time.monotonic() + timeout
        last: object = None
        while True:
            try:
                value = condition()
            except Exception as exc:  # reported below if time runs out
                last = exc
            else:
                if value:
                    return value
                last = value
            if time.monotonic() >= deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
            time.sleep(interval)


@pytest.fixture(scope="session")
def kube(controlplane: Cluster) -> Kube:
    return Kube(controlplane.kubeconfig, controlplane.kubectl, controlplane)


def _namespace_name(test_name: str) -> str:
    # DNS-1123 label: lowercase alphanumerics and '-', at most 63 characters.
    base = re.sub(r"[^a-z0-9-]+", "-", test_name.lower()).strip("-")[:40].strip("-")
    return f"e2e-{base}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def namespace(kube: Kube, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, unique so reruns never collide.

    Deleted afterwards without waiting: without the namespace controller (the
    local control plane has none) it would stay Terminating forever, which is
    harmless, and on a real cluster it is garbage-collected.
    """
    name = _namespace_name(request.node.name)
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": {"pgjobs.dev/e2e": "true"}},
        }
    )
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)
