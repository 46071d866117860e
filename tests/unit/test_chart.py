"""Static checks of the Helm chart and the raw manifests rendered from it (no helm, no cluster).

tests/e2e/test_chart.py renders the chart with helm and hands it to a real API server; these
read the checked-in files: the CRD copy, the default rendering in deploy/manifests/pgjobs.yaml
(its currency is checked where helm is available) and the chart's own sources.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "pgjobs"
MANIFESTS = ROOT / "deploy" / "manifests" / "pgjobs.yaml"

Obj = dict[str, Any]

# What the operator may do, and nothing else (see helm/pgjobs/templates/rbac.yaml).
OPERATOR_RULES = {
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
    # create: the runs of PgCronJobs; delete: TTL, PgCronJob history limits and Replace.
    ("pgjobs.dev", "pgjobs"): {"get", "list", "watch", "create", "patch", "delete"},
    ("pgjobs.dev", "pgjobs/status"): {"get", "patch"},
    ("pgjobs.dev", "pgcronjobs"): {"get", "list", "watch", "patch"},
    ("pgjobs.dev", "pgcronjobs/status"): {"get", "patch"},
    # create: a PgQueue for each queue in use; its spec is the cluster admin's, never patched.
    ("pgjobs.dev", "pgqueues"): {"get", "list", "watch", "create"},
    ("pgjobs.dev", "pgqueues/status"): {"get", "patch"},
    ("", "events"): {"create"},
}


@pytest.fixture(scope="module")
def objects() -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(MANIFESTS.read_text()) if doc]


def by_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [obj for obj in objects if obj["kind"] == kind]


def deployment(objects: list[Obj], component: str) -> Obj:
    (found,) = [
        obj
        for obj in by_kind(objects, "Deployment")
        if obj["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    return found


CRD_FILES = ("pgjobs.dev_pgcronjobs.yaml", "pgjobs.dev_pgjobs.yaml", "pgjobs.dev_pgqueues.yaml")


def test_chart_crds_are_copies_of_the_single_source() -> None:
    for name in CRD_FILES:
        source = (ROOT / "crds" / name).read_text()
        assert (CHART / "crds" / name).read_text() == source, (
            f"helm/pgjobs/crds/ is out of date: cp crds/{name} helm/pgjobs/crds/"
        )
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == list(CRD_FILES)
    assert sorted(p.name for p in (ROOT / "crds").iterdir()) == list(CRD_FILES)


@pytest.mark.parametrize(
    ("source", "copy"),
    [("deploy/prometheus/pgjobs-rules.yaml", "files/pgjobs-rules.yaml"),
     ("deploy/grafana/pgjobs-dashboard.json", "files/pgjobs-dashboard.json")],
)  # fmt: skip
def test_the_charts_monitoring_files_are_copies_of_the_single_sources(source: str, copy: str) -> None:
    assert (CHART / copy).read_text() == (ROOT / source).read_text(), f"cp {source} helm/pgjobs/{copy}"


def test_rendered_manifests_carry_the_same_crds(objects: list[Obj]) -> None:
    rendered = sorted(by_kind(objects, "CustomResourceDefinition"), key=lambda crd: crd["metadata"]["name"])
    assert rendered == [yaml.safe_load((ROOT / "crds" / name).read_text()) for name in CRD_FILES]


def test_workers_have_no_token_and_no_permissions(objects: list[Obj]) -> None:
    pod = deployment(objects, "worker")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    account = pod["serviceAccountName"]
    (sa,) = [obj for obj in by_kind(objects, "ServiceAccount") if obj["metadata"]["name"] == account]
    assert sa["automountServiceAccountToken"] is False
    bound = {
        subject["name"]
        for obj in by_kind(objects, "ClusterRoleBinding") + by_kind(objects, "RoleBinding")
        for subject in obj["subjects"]
    }
    assert account not in bound


def test_operator_rbac_is_exactly_what_it_needs(objects: list[Obj]) -> None:
    (role,) = [r for r in by_kind(objects, "ClusterRole") if r["metadata"]["name"].endswith("-operator")]
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    assert granted == OPERATOR_RULES
    (binding,) = [
        b for b in by_kind(objects, "ClusterRoleBinding") if b["metadata"]["name"].endswith("-operator")
    ]
    operator = deployment(objects, "operator")["spec"]["template"]["spec"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert [s["name"] for s in binding["subjects"]] == [operator["serviceAccountName"]]


def test_pgjobs_join_the_built_in_view_edit_and_admin_roles(objects: list[Obj]) -> None:
    roles = {r["metadata"]["name"].rsplit("-", 1)[-1]: r for r in by_kind(objects, "ClusterRole")}
    aggregated = {
        name: {
            k.rsplit("-", 1)[-1]
            for k, v in role["metadata"]["labels"].items()
            if "aggregate-to" in k and v == "true"
        }
        for name, role in roles.items()
    }
    assert aggregated["view"] == {"view"} and aggregated["edit"] == {"edit", "admin"}
    assert roles["view"]["rules"] == [
        {
            "apiGroups": ["pgjobs.dev"],
            "resources": ["pgjobs", "pgcronjobs", "pgqueues"],
            "verbs": ["get", "list", "watch"],
        },
        # Logs are read through the operator, which also checks `get` on the PgJob itself.
        {"apiGroups": ["logs.pgjobs.dev"], "resources": ["pgjoblogs"], "verbs": ["get"]},
    ]
    (edit,) = roles["edit"]["rules"]
    assert (
        edit["resources"] == ["pgjobs", "pgcronjobs"]
        and "create" in edit["verbs"]
        and "*" not in edit["verbs"]
    )


def test_rbac_template_has_no_wildcards_secrets_or_pods() -> None:
    source = (CHART / "templates" / "rbac.yaml").read_text()
    rules = source.split("*/", 1)[1]  # after the explanatory comment
    assert "*" not in rules
    for forbidden in ("secrets", "pods", "escalate", "bind", "impersonate"):
        assert not re.search(rf"\b{forbidden}\b", rules), forbidden


def test_every_container_is_hardened(objects: list[Obj]) -> None:
    for component in ("operator", "worker"):
        pod = deployment(objects, component)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod.get("initContainers", []) + pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, container["name"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


def test_worker_grace_period_covers_the_shutdown_grace(objects: list[Obj]) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())["worker"]
    pod = deployment(objects, "worker")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert f"--shutdown-grace={values['shutdownGrace']}" in container["args"]
    assert pod["terminationGracePeriodSeconds"] == values["shutdownGrace"] + values["terminationGraceMargin"]
    assert pod["terminationGracePeriodSeconds"] > values["shutdownGrace"]
    assert "--enable-shell" not in container["args"]


def test_operator_has_a_liveness_probe_and_one_replica(objects: list[Obj]) -> None:
    operator = deployment(objects, "operator")
    assert operator["spec"]["replicas"] == 1
    (container,) = operator["spec"]["template"]["spec"]["containers"]
    probe = container["livenessProbe"]["httpGet"]
    assert probe["path"] == "/healthz"
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert probe["port"] == "liveness"
    assert f"--liveness-port={ports['liveness']}" in container["args"]


def test_database_settings_come_from_a_secret(objects: list[Obj]) -> None:
    for component in ("operator", "worker"):
        pod = deployment(objects, component)["spec"]["template"]["spec"]
        for container in pod["containers"]:
            env = {item["name"]: item for item in container["env"]}
            for name in ("PGJOBS_DATABASE_URL", "DB_PASSWORD"):
                assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "pgjobs-database"


def test_values_schema_is_strict_json_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) >= set(values), "every top-level value is described in the schema"
    worker = schema["properties"]["worker"]["properties"]
    assert set(worker) >= set(values["worker"])


# What the console may do (helm/pgjobs/templates/console.yaml): its actions on PgJobs, and reads.
CONSOLE_RULES = {
    ("pgjobs.dev", "pgjobs"): {"get", "list", "watch", "patch", "delete"},
    ("pgjobs.dev", "pgqueues"): {"get", "list"},
}


def test_the_console_is_off_by_default(objects: list[Obj]) -> None:
    components = {obj["metadata"].get("labels", {}).get("app.kubernetes.io/component") for obj in objects}
    assert "console" not in components


def test_the_console_renders_with_exactly_the_rbac_its_actions_need(helm: Path, tmp_path: Path) -> None:
    from tests.e2e.chart_helpers import render

    objects = render(helm, tmp_path, {"console": {"enabled": True}})
    ours = [
        o for o in objects if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "console"
    ]
    assert sorted(o["kind"] for o in ours) == [
        "ClusterRole", "ClusterRoleBinding", "Deployment", "Service", "ServiceAccount",
    ]  # fmt: skip
    (role,) = by_kind(ours, "ClusterRole")
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    assert granted == CONSOLE_RULES
    pod = deployment(ours, "console")["spec"]["template"]["spec"]
    (binding,) = by_kind(ours, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert [s["name"] for s in binding["subjects"]] == [pod["serviceAccountName"]]
    (container,) = pod["containers"]
    assert container["args"][:3] == ["console", "--address=0.0.0.0", "--port=8090"]
    assert (
        container["image"]
        == deployment(objects, "operator")["spec"]["template"]["spec"]["containers"][0]["image"]
    )
    env = {item["name"]: item["valueFrom"]["secretKeyRef"]["name"] for item in container["env"]}
    assert env == {"PGJOBS_DATABASE_URL": "pgjobs-database", "DB_PASSWORD": "pgjobs-database"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    (service,) = by_kind(ours, "Service")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"][0]["targetPort"] == "http"
