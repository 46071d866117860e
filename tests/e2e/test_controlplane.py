"""The local control plane is a real API server: schemas, status, watches, RBAC.

Uses its own throwaway CRD (widgets.e2e.pgjobs.dev), not the PgJob CRD, so it
tests the harness and nothing else.
"""

from __future__ import annotations

import contextlib
import queue
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from pgjobs.devenv import controlplane as cp
from tests.cluster_fixtures import Cluster, Kube

GROUP, VERSION, PLURAL = "e2e.pgjobs.dev", "v1", "widgets"
REPO = Path(__file__).resolve().parents[2]

WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                ],
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {
                                    "size": {"type": "integer", "minimum": 1, "maximum": 10},
                                    "color": {"type": "string", "enum": ["red", "blue"]},
                                },
                                "x-kubernetes-validations": [
                                    {
                                        "rule": "!has(oldSelf.color) || self.color == oldSelf.color",
                                        "message": "color is immutable",
                                    }
                                ],
                            },
                            "status": {
                                "type": "object",
                                "properties": {"phase": {"type": "string"}},
                            },
                        },
                    }
                },
            }
        ],
    },
}


def widget(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": spec,
    }


@pytest.fixture(scope="session")
def widget_crd(kube: Kube) -> str:
    kube.apply(WIDGET_CRD)
    kube.kubectl("wait", "--for=condition=Established", f"crd/{PLURAL}.{GROUP}", "--timeout=30s")
    return f"{PLURAL}.{GROUP}"


def test_pinned_version_is_the_one_go_mod_builds() -> None:
    go_mod = (REPO / "tools/controlplane/go.mod").read_text()
    pinned = re.search(r"^\s*k8s\.io/kubernetes (v\S+)", go_mod, re.MULTILINE)
    assert pinned is not None, "go.mod does not require k8s.io/kubernetes"
    assert pinned.group(1) == f"v{cp.K8S_VERSION}"


def test_server_and_kubectl_report_the_pinned_version(kube: Kube, controlplane: Cluster) -> None:
    if not isinstance(controlplane, cp.ControlPlane):
        pytest.skip("an existing cluster runs whatever version it runs")
    server = kube.kubectl("get", "--raw", "/version")
    assert f'"gitVersion": "v{cp.K8S_VERSION}"' in server.stdout
    client = kube.kubectl("version", "--client", "-o", "json")
    assert f'"gitVersion": "v{cp.K8S_VERSION}"' in client.stdout


@contextlib.contextmanager
def _watch_widgets(kube: Kube, namespace: str, resource_version: str) -> Iterator[queue.Queue[Any]]:
    """Stream watch events into a queue from a background thread."""
    events: queue.Queue[Any] = queue.Queue()
    watch = kubernetes.watch.Watch()

    def run() -> None:
        try:
            for event in watch.stream(
                kube.custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                resource_version=resource_version,
                timeout_seconds=30,
            ):
                events.put(event)
        except Exception as exc:  # surfaced to the test through the queue
            events.put({"type": "EXCEPTION", "object": exc})

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield events
    finally:
        watch.stop()


def _next_event(events: queue.Queue[Any], kind: str) -> dict[str, Any]:
    while True:
        event = events.get(timeout=20)
        assert event["type"] != "EXCEPTION", event["object"]
        if event["type"] == kind:
            obj: dict[str, Any] = event["object"]
            return obj


def test_custom_resource_create_watch_and_status_subresource(
    kube: Kube, namespace: str, widget_crd: str
) -> None:
    listed = kube.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    with _watch_widgets(kube, namespace, listed["metadata"]["resourceVersion"]) as events:
        # Created through the API without strict field validation (unlike
        # kubectl apply), so the unknown field reaches the server to be pruned.
        kube.custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, widget("w1", size=3, color="red", unknown="x")
        )
        added = _next_event(events, "ADDED")
        assert added["spec"] == {"size": 3, "color": "red"}, "structural pruning drops unknowns"

        kube.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, "w1", {"status": {"phase": "Running"}}
        )
        modified = _next_event(events, "MODIFIED")
        assert modified["status"] == {"phase": "Running"}

    # Through the main resource, status changes are ignored: the subresource is real.
    kube.custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "w1", {"status": {"phase": "Hacked"}}
    )
    got = kube.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "w1")
    assert got["status"] == {"phase": "Running"}

    table = kube.kubectl("get", f"{PLURAL}.{GROUP}", "-n", namespace, "w1").stdout
    assert re.search(r"w1\s+3\s+Running", table), table


def test_invalid_objects_are_rejected_naming_the_field(kube: Kube, namespace: str, widget_crd: str) -> None:
    too_big = kube.apply(widget("big", size=99), namespace, check=False)
    assert too_big.returncode != 0
    assert "spec.size" in too_big.stderr
    assert "less than or equal to 10" in too_big.stderr

    bad_color = kube.apply(widget("green", size=1, color="green"), namespace, check=False)
    assert bad_color.returncode != 0
    assert "spec.color" in bad_color.stderr

    kube.apply(widget("fixed", size=1, color="red"), namespace)
    recolor = kube.apply(widget("fixed", size=1, color="blue"), namespace, check=False)
    assert recolor.returncode != 0
    assert "color is immutable" in recolor.stderr, "CEL validation rules are evaluated"


@pytest.fixture
def limited_sa(kube: Kube, namespace: str) -> Iterator[Path]:
    yield kube.kubeconfig_for_serviceaccount(namespace, "limited")


def test_rbac_is_enforced_for_a_serviceaccount(kube: Kube, namespace: str, limited_sa: Path) -> None:
    kube.kubectl("create", "configmap", "cfg", "-n", namespace, "--from-literal=a=b")

    denied = kube.kubectl("get", "configmaps", "-n", namespace, kubeconfig=limited_sa, check=False)
    assert denied.returncode != 0
    # Forbidden (authenticated, not authorised), not Unauthorized: the token works.
    assert (
        f'User "system:serviceaccount:{namespace}:limited" cannot list resource "configmaps"' in denied.stderr
    )

    kube.kubectl("create", "role", "read-cm", "-n", namespace, "--verb=get,list", "--resource=configmaps")
    kube.kubectl(
        "create",
        "rolebinding",
        "read-cm",
        "-n",
        namespace,
        "--role=read-cm",
        f"--serviceaccount={namespace}:limited",
    )
    allowed = kube.wait_for(
        lambda: (
            kube.kubectl(
                "get", "configmaps", "-n", namespace, "-o", "name", kubeconfig=limited_sa, check=False
            ).stdout
        ),
        what="the RoleBinding to take effect",
    )
    assert "configmap/cfg" in allowed
    still_denied = kube.kubectl(
        "delete", "configmap", "cfg", "-n", namespace, kubeconfig=limited_sa, check=False
    )
    assert "cannot delete resource" in still_denied.stderr


def test_client_certificate_user_without_bindings_is_forbidden(
    controlplane: Cluster, kube: Kube, namespace: str
) -> None:
    if not isinstance(controlplane, cp.ControlPlane):
        pytest.skip("minting client certificates needs the local control plane's CA")
    nobody = controlplane.kubeconfig_for_user("nobody", ["e2e-testers"])
    version = kube.kubectl("get", "--raw", "/version", kubeconfig=nobody)
    assert f"v{cp.K8S_VERSION}" in version.stdout, "authenticated: /version is open to all"
    denied = kube.kubectl("get", "namespaces", kubeconfig=nobody, check=False)
    assert 'User "nobody" cannot list resource "namespaces"' in denied.stderr


def test_restart_apiserver_keeps_data(controlplane: Cluster, kube: Kube, namespace: str) -> None:
    if not isinstance(controlplane, cp.ControlPlane):
        pytest.skip("only the local control plane can be restarted")
    kube.kubectl("create", "configmap", "survivor", "-n", namespace)
    controlplane.restart_apiserver()
    got = kube.get_json("configmap", "survivor", "-n", namespace)
    assert got["metadata"]["name"] == "survivor"
