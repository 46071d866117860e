"""The Helm chart in tests: the helm binary (built from the Go module proxy), rendering, and a
kubeconfig that authenticates as the chart's operator ServiceAccount under the chart's own RBAC."""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "pgjobs"
BUILD = ROOT / "tools" / "helm" / "build.sh"

Obj = dict[str, Any]


@functools.cache
def helm_binary() -> Path | None:
    """The cached helm; built here in CI (CI=true), None elsewhere when it is not built yet."""
    path = Path(
        subprocess.run([str(BUILD), "--bin"], capture_output=True, text=True, check=True).stdout.strip()
    )
    if path.is_file() and os.access(path, os.X_OK):
        return path
    if os.environ.get("CI", "").lower() == "true":
        subprocess.run([str(BUILD)], check=True, timeout=1800)
        return path
    return None


@pytest.fixture(scope="session")
def helm() -> Path:
    """The helm binary for the chart tests (a fixture of every suite: tests/conftest.py)."""
    path = helm_binary()
    if path is None:
        pytest.skip("helm is not built: run tools/helm/build.sh (`make helm`, a few minutes)")
    return path


def run_helm(helm: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result


def values_file(tmp_path: Path, values: Obj, name: str = "values.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(values))
    return str(path)


def render(
    helm: Path, tmp_path: Path, values: Obj, *, release: str = "pgjobs", namespace: str = "pgjobs"
) -> list[Obj]:
    text = run_helm(
        helm, "template", release, str(CHART), "--namespace", namespace, "-f", values_file(tmp_path, values)
    ).stdout
    return [doc for doc in yaml.safe_load_all(text) if doc]


def operator_rbac(helm: Path, tmp_path: Path, namespace: str, release: str, values: Obj) -> list[Obj]:
    """The chart's operator ServiceAccount and (Cluster)Roles and bindings for this release."""
    values = {"fullnameOverride": release, **values}
    objects = render(helm, tmp_path, values, release=release, namespace=namespace)
    wanted = {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    return [
        o
        for o in objects
        if o["kind"] in wanted
        or (o["kind"] == "ServiceAccount" and o["metadata"]["name"].endswith("-operator"))
    ]


@contextlib.contextmanager
def chart_rbac(helm: Path, kube: Any, namespace: str, tmp_path: Path, values: Obj) -> Iterator[Path]:
    """A kubeconfig authenticating as the chart's operator ServiceAccount, bound by the chart's RBAC."""
    release = f"rbac-{uuid.uuid4().hex[:8]}"
    with applied(kube, operator_rbac(helm, tmp_path, namespace, release, values)):
        yield kube.kubeconfig_for_serviceaccount(namespace, f"{release}-operator")


@contextlib.contextmanager
def applied(kube: Any, objects: list[Obj]) -> Iterator[None]:
    """The objects applied; the cluster-scoped ones deleted after (the namespaced ones go with
    the test's namespace)."""
    kube.apply(objects)
    try:
        yield
    finally:
        for obj in objects:
            if obj["kind"].startswith("Cluster"):
                name = obj["metadata"]["name"]
                kube.kubectl("delete", obj["kind"], name, "--ignore-not-found", check=False)
