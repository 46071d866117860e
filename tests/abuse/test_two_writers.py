"""Two writers: the `pgjobs` admin commands refuse the job of a PgJob (Kubernetes owns its
intent) and name the kubectl command instead; --force still acts on the row."""

from __future__ import annotations

from typing import Any

import pytest

from pgjobs.store import connecting
from tests.abuse.helpers import Fleet
from tests.e2e.operator_helpers import Services, create, pgjob, query, wait_phase
from tests.processes import pgjobs as pgjobs_command

pytestmark = pytest.mark.e2e

KUBECTL = {
    "stop": "kubectl pgjobs stop {name} -n {namespace}",
    "start": "kubectl pgjobs start {name} -n {namespace}",
    "restart": "kubectl pgjobs restart {name} -n {namespace}",
    "delete": "kubectl delete pgjob {name} -n {namespace}",
}


def test_admin_commands_refuse_a_pgjobs_job_unless_forced(
    kube: Any, namespace: str, services: Services, database: connecting.DatabaseSettings
) -> None:
    fleet = Fleet(services)
    create(kube, namespace, pgjob("owned", "noop"))
    wait_phase(kube, namespace, "owned", "Completed", timeout=60)
    [row] = query(database, "SELECT id, state::text FROM pgjobs.jobs WHERE resource_name = 'owned'")
    for command, kubectl in KUBECTL.items():
        result = pgjobs_command(services.env, command, str(row["id"]))
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert kubectl.format(name="owned", namespace=namespace) in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
    assert query(database, "SELECT state::text FROM pgjobs.jobs WHERE id = %s", row["id"]) == [
        {"state": row["state"]}
    ]
    forced = pgjobs_command(services.env, "restart", "--force", str(row["id"]))
    assert forced.returncode == 0, forced.stderr
    fleet.check(kube, namespace)
