"""The operator's PgJob logs API (`pgjobs.operator.logsapi`) on the local control plane.

In a cluster the chart registers it: an APIService, a Service to the operator pods and a serving
certificate. The local control plane has no kube-proxy, so no Service address answers; the
APIService here names an ExternalName Service of "localhost", which the API server dials as it
is, and the operator runs on this machine with a certificate for the name the API server checks
(SERVICE.NAMESPACE.svc). Everything else is as in a cluster: the front-proxy client certificate,
the SubjectAccessReview, RBAC on pgjoblogs and on pgjobs. Used by `make demo` and the e2e tests.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from pgjobs.devenv import pki

SERVICE = "pgjobs-logs"
API_SERVICE = "v1alpha1.logs.pgjobs.dev"


def serving_cert(directory: Path, namespace: str) -> bytes:
    """tls.crt and tls.key in `directory` for SERVICE.NAMESPACE.svc; the PEM of their CA."""
    ca = pki.new_ca("pgjobs-logs-ca")
    cert = pki.new_cert(pki.common_name(SERVICE), ca, server=True, names=[f"{SERVICE}.{namespace}.svc"])
    directory.mkdir(parents=True)
    pki.write_file(directory / "tls.crt", cert.cert_pem())
    pki.write_file(directory / "tls.key", cert.key_pem())
    return ca.cert_pem()


def operator_args(port: int, cert_dir: Path) -> list[str]:
    """The `pgjobs operator` options that serve the aggregated API (logs and external metrics)."""
    return ["--external-metrics-port", str(port), "--serving-cert-dir", str(cert_dir)]


def manifests(namespace: str, port: int, ca: bytes) -> list[dict[str, Any]]:
    """The Service and the APIService that route logs.pgjobs.dev to the operator on `port`."""
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": SERVICE, "namespace": namespace},
        "spec": {"type": "ExternalName", "externalName": "localhost", "ports": [{"port": port}]},
    }
    api_service = {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": API_SERVICE},
        "spec": {
            "group": "logs.pgjobs.dev",
            "version": "v1alpha1",
            "service": {"name": SERVICE, "namespace": namespace, "port": port},
            "caBundle": base64.b64encode(ca).decode(),
            "groupPriorityMinimum": 100,
            "versionPriority": 100,
        },
    }
    return [service, api_service]
