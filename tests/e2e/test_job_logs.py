"""PgJob logs end to end: a real kube-apiserver with its aggregation layer, PostgreSQL, the
operator serving logs.pgjobs.dev (under the chart's RBAC) and a worker; `kubectl pgjobs logs`
as a user types it, with and without the right to get the PgJob. The APIService is registered
as `make demo` does it (`pgjobs.devenv.logsapi`).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pgjobs.cli import kubectl
from pgjobs.devenv import logsapi
from pgjobs.devenv.processes import free_port
from tests.e2e.operator_helpers import Services, create, sleep_job, wait_phase


def plugin(kubeconfig: Path, *args: str) -> tuple[int, str, str]:
    """`kubectl pgjobs ARGS` through the plugin's own entry point: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = kubectl.main(["--kubeconfig", str(kubeconfig), *args])
    return code, out.getvalue(), err.getvalue()


def messages(output: str) -> list[str]:
    """The messages of printed lines (`TIME [ATTEMPT] LEVEL MESSAGE`)."""
    return [line.split(" ", 3)[3] for line in output.splitlines()]


@pytest.fixture
def logs_api(kube: Any, namespace: str, services: Services, tmp_path: Path) -> Iterator[None]:
    """The operator serving the logs API, registered with the API server (APIService Available)."""
    port = free_port()
    ca = logsapi.serving_cert(tmp_path / "serving", namespace)
    services.operator("operator", *logsapi.operator_args(port, tmp_path / "serving"))
    kube.apply(logsapi.manifests(namespace, port, ca))
    try:
        available = "--for=condition=Available"
        kube.kubectl("wait", available, f"apiservice/{logsapi.API_SERVICE}", "--timeout=60s")
        yield
    finally:
        kube.kubectl("delete", "apiservice", logsapi.API_SERVICE, "--ignore-not-found", check=False)


def reader(kube: Any, namespace: str, name: str, rules: list[dict[str, Any]]) -> Path:
    """A kubeconfig of the ServiceAccount `name`, granted `rules` in the namespace."""
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": name, "namespace": namespace},
        "rules": rules,
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
    }
    kubeconfig = kube.kubeconfig_for_serviceaccount(namespace, name)
    kube.apply([role, binding])
    return Path(kubeconfig)


LOGS_RULE = {"apiGroups": ["logs.pgjobs.dev"], "resources": ["pgjoblogs"], "verbs": ["get"]}
PGJOBS_RULE = {"apiGroups": ["pgjobs.dev"], "resources": ["pgjobs"], "verbs": ["get"]}
STEPS = ["step 1/4", "step 2/4", "step 3/4", "step 4/4"]


def sleep_until(
    kube: Any, namespace: str, services: Services, name: str, seconds: float, phase: str | None
) -> None:
    """A worker, and a sleep PgJob of four steps that has reached `phase` (None: just created)."""
    services.worker()
    create(kube, namespace, sleep_job(name, seconds=seconds, steps=4))
    if phase is not None:
        wait_phase(kube, namespace, name, phase, timeout=30)


def test_kubectl_pgjobs_logs_follows_a_sleep_job_and_prints_its_steps(
    kube: Any, namespace: str, services: Services, logs_api: None
) -> None:
    # At once: -f waits through the moments before the operator has written the job's row.
    sleep_until(kube, namespace, services, "stepper", 3, None)
    code, out, err = plugin(kube.kubeconfig, "logs", "stepper", "-n", namespace, "-f")
    assert code == 0, err
    assert messages(out) == STEPS
    assert all(" [1] INFO " in line for line in out.splitlines())
    wait_phase(kube, namespace, "stepper", "Completed", timeout=5)
    code, again, err = plugin(kube.kubeconfig, "logs", "stepper", "-n", namespace)
    assert (code, again) == (0, out), err


def test_reading_a_pgjobs_logs_needs_get_on_the_pgjob(
    kube: Any, namespace: str, services: Services, logs_api: None
) -> None:
    sleep_until(kube, namespace, services, "guarded", 0.4, "Completed")
    without = reader(kube, namespace, "logs-only", [LOGS_RULE])
    code, out, err = plugin(without, "logs", "guarded", "-n", namespace)
    assert code == 1 and out == ""
    assert err == (
        f"error: cannot read the logs of PgJob {namespace}/guarded: user "
        f'"system:serviceaccount:{namespace}:logs-only" cannot get pgjobs "guarded" in namespace '
        f'"{namespace}", so may not read its logs\n'
    )
    nothing = reader(kube, namespace, "pgjobs-only", [PGJOBS_RULE])
    code, _, err = plugin(nothing, "logs", "guarded", "-n", namespace)
    assert code == 1 and 'cannot get resource "pgjoblogs"' in err, err
    allowed = reader(kube, namespace, "pgjobs-reader", [LOGS_RULE, PGJOBS_RULE])
    code, out, err = plugin(allowed, "logs", "guarded", "-n", namespace)
    assert code == 0, err
    assert messages(out) == STEPS
    code, _, err = plugin(allowed, "logs", "missing", "-n", namespace)
    assert code == 1 and err.endswith(': pgjobs.pgjobs.dev "missing" not found\n'), err
