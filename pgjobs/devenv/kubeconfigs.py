"""Kubeconfigs for the local clusters and kubectl runs against them.

Each kubeconfig is self-contained (certificates inlined), so it can be copied anywhere; JSON is
valid YAML, and every client (kubectl, the kubernetes package, kopf) reads it.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

from pgjobs.devenv import pki
from pgjobs.devenv.processes import ProcessError


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def write_kubeconfig(path: Path, server: str, ca_pem: bytes, user: str, credentials: dict[str, str]) -> Path:
    """A self-contained kubeconfig (data inlined) so it can be copied anywhere.

    JSON is valid YAML, and every client (kubectl, the kubernetes package,
    kopf) reads it.
    """
    cluster = {"server": server}
    if ca_pem:  # empty when an existing cluster's server has a publicly trusted cert
        cluster["certificate-authority-data"] = b64(ca_pem)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "pgjobs-dev",
                "cluster": cluster,
            }
        ],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": user, "context": {"cluster": "pgjobs-dev", "user": user}}],
        "current-context": user,
    }
    return pki.write_file(path, json.dumps(config, indent=2).encode())


def run_kubectl(
    kubectl: Path | str, kubeconfig: Path, *args: str, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run kubectl; raise with its stderr on failure."""
    argv = [str(kubectl), f"--kubeconfig={kubeconfig}", *args]
    result = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise ProcessError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def serviceaccount_kubeconfig(
    kubectl: Path | str,
    admin_kubeconfig: Path,
    namespace: str,
    name: str,
    out: Path,
    *,
    duration: str = "24h",
) -> Path:
    """Create the ServiceAccount if needed and write a kubeconfig with a bound token.

    The token comes from the TokenRequest API (`kubectl create token`), which
    the API server serves itself: no controller-manager needed. Works against
    any cluster, so tests can run the operator with the chart's RBAC.
    """
    sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}}
    run_kubectl(kubectl, admin_kubeconfig, "apply", "-f", "-", input=json.dumps(sa))
    token = run_kubectl(
        kubectl,
        admin_kubeconfig,
        "create",
        "token",
        name,
        "-n",
        namespace,
        f"--duration={duration}",
    ).stdout.strip()
    # Reuse the admin's cluster entry (server + CA) whatever the cluster is.
    view = json.loads(
        run_kubectl(
            kubectl,
            admin_kubeconfig,
            "config",
            "view",
            "--raw",
            "--minify",
            "--flatten",
            "-o",
            "json",
        ).stdout
    )
    cluster = view["clusters"][0]["cluster"]
    ca = base64.b64decode(cluster.get("certificate-authority-data", ""))
    return write_kubeconfig(
        out, cluster["server"], ca, f"system:serviceaccount:{namespace}:{name}", {"token": token}
    )
