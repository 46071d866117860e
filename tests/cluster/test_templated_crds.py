"""`crds.templated=true` on the node: `helm upgrade` upgrades the CRDs, `helm uninstall` keeps them.

Helm installs the chart's crds/ once and never upgrades them; rendered as templates they follow
the chart. The release here takes over the CRDs that plain installs left on the node
(`--take-ownership`, as docs/operations.md tells an existing install to), is upgraded with a copy
of the chart whose PgJob CRD has one more optional field, and is uninstalled. Only the CRDs are
under test, so the release runs no pods (no operator, workers or PostgreSQL): nothing to wait
for. CRDs are cluster-wide: afterwards the field and the ownership are removed again, leaving
the CRDs as plain installs have them for the rest of the session.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pgjobs.devenv import nodeconfig
from tests.cluster.helpers import CHART, ROOT, Release, wait_for

PGJOB_CRD = "pgjobs.pgjobs.dev"
CRDS = ("pgcronjobs.pgjobs.dev", PGJOB_CRD, "pgqueues.pgjobs.dev")
NEW_FIELD = "upgradeProbe"
#: The CRDs and nothing that runs: no pods, so every helm command returns at once.
VALUES: dict[str, Any] = {
    "crds": {"templated": True},
    "postgresql": {"enabled": False},
    "database": {"url": "postgresql://pgjobs@db.invalid:5432/pgjobs", "password": "unused"},
    "operator": {"replicas": 0, "logsApi": {"enabled": False}},
    "worker": {"replicas": 0},
    "uninstallHook": {"enabled": False},
}
OWNERSHIP_ANNOTATIONS = (
    "meta.helm.sh/release-name",
    "meta.helm.sh/release-namespace",
    "helm.sh/resource-policy",
)


@pytest.fixture
def crd_release(node: nodeconfig.Layout) -> Iterator[Release]:
    name = f"pgj-crds-{uuid.uuid4().hex[:6]}"
    rel = Release(node, name=name, namespace=name)
    try:
        yield rel
    finally:
        rel.remove()
        kubectl = str(rel.kubectl_path)
        patch = [{"op": "remove", "path": f"{_spec_path(rel)}/{NEW_FIELD}"}]
        rel.run(kubectl, "patch", "crd", PGJOB_CRD, "--type=json", "-p", json.dumps(patch), check=False)
        for crd in CRDS:
            rel.run(kubectl, "annotate", "crd", crd, *(f"{a}-" for a in OWNERSHIP_ANNOTATIONS), check=False)
            rel.run(kubectl, "label", "crd", crd, "app.kubernetes.io/managed-by-", check=False)


def _crd(release: Release, name: str) -> dict[str, Any]:
    crd: dict[str, Any] = json.loads(release.run(str(release.kubectl_path), "get", "crd", name, "-o", "json"))
    return crd


def _spec_path(release: Release) -> str:
    versions = [v["name"] for v in _crd(release, PGJOB_CRD)["spec"]["versions"]]
    return f"/spec/versions/{versions.index('v1alpha1')}/schema/openAPIV3Schema/properties/spec/properties"


def _spec_fields(release: Release) -> set[str]:
    (version,) = [v for v in _crd(release, PGJOB_CRD)["spec"]["versions"] if v["name"] == "v1alpha1"]
    return set(version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"])


def _chart_with_new_field(tmp_path: Path) -> Path:
    chart = tmp_path / "pgjobs"
    shutil.copytree(CHART, chart)
    path = chart / "crds" / "pgjobs.dev_pgjobs.yaml"
    crd = yaml.safe_load(path.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["properties"][NEW_FIELD] = {"type": "string", "description": "A field a newer chart adds."}
    path.write_text(yaml.safe_dump(crd, sort_keys=False))
    return chart


def _dry_run_pgjob_with_new_field(release: Release) -> str:
    """What a server-side dry run of a PgJob that sets the new field answers: kubectl's strict
    field validation refuses a field the CRD does not declare."""
    job = {
        "apiVersion": "pgjobs.dev/v1alpha1",
        "kind": "PgJob",
        "metadata": {"name": "probe"},
        "spec": {"task": "noop", NEW_FIELD: "set"},
    }
    try:
        return release.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(job))
    except AssertionError as refused:
        return str(refused)


def test_helm_upgrade_upgrades_templated_crds_and_uninstall_keeps_them(
    crd_release: Release, tmp_path: Path
) -> None:
    release = crd_release
    # The CRDs as a plain install leaves them (and the documented upgrade of plain crds/).
    release.run(
        str(release.kubectl_path), "apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds")
    )
    assert NEW_FIELD not in _spec_fields(release)

    release.install(VALUES, "--take-ownership")
    for name in CRDS:
        annotations = _crd(release, name)["metadata"].get("annotations", {})
        assert annotations.get("meta.helm.sh/release-name") == release.name, (name, annotations)
        assert annotations.get("helm.sh/resource-policy") == "keep", (name, annotations)
    assert f'unknown field "spec.{NEW_FIELD}"' in _dry_run_pgjob_with_new_field(release)

    release.upgrade(VALUES, chart=_chart_with_new_field(tmp_path))
    assert NEW_FIELD in _spec_fields(release)
    # The API server serves the new schema: validation accepts the field and explain names it.
    wait_for(
        lambda: "created (server dry run)" in _dry_run_pgjob_with_new_field(release),
        30,
        "the new field accepted",
    )
    explained = wait_for(
        lambda: release.run(
            str(release.kubectl_path),
            "explain",
            f"pgjobs.spec.{NEW_FIELD}",
            "--api-version=pgjobs.dev/v1alpha1",
        ),
        30,
        "kubectl explain of the new field",
    )
    assert "A field a newer chart adds." in explained

    out = release.run(release.helm, "uninstall", release.name, f"--namespace={release.namespace}", "--wait")
    for name in CRDS:
        assert name in out, out  # helm lists what its resource policy kept
        assert _crd(release, name)["metadata"].get("deletionTimestamp") is None
    assert NEW_FIELD in _spec_fields(release)
