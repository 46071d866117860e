"""The Helm chart against real tools: helm lint/template, the values schema, server-side dry-run
on the real API server, and the operator running with the chart's own RBAC.

helm is built from the Go module proxy by tools/helm/build.sh into the pgjobs cache. Without it
these tests are skipped, except in CI (CI=true), where the session builds it.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.chart_helpers import CHART, ROOT, Obj, chart_rbac, render, run_helm, values_file
from tests.e2e.operator_helpers import (
    Services,
    create,
    exists,
    pgjob,
    sleep_job,
    wait_phase,
    wait_until,
)

# Every optional feature on.
ALL_FEATURES: Obj = {
    "postgresql": {"enabled": True, "persistence": {"enabled": True}},
    "database": {"roles": {"separate": True}},
    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
    "worker": {
        "hpa": {"enabled": True},
        "enableShell": True,
        "tasks": ["tests.sample_tasks"],
        "queues": ["default", "reports"],
        "concurrency": 2,
        "image": {"repository": "acme-worker", "tag": "1"},
    },
    "operator": {"replicas": 2, "extraArgs": ["--status-writes-per-second=20"]},
    "imagePullSecrets": [{"name": "registry"}],
}
WITH_HPA: Obj = {
    "database": {"url": "postgresql://pgjobs@db:5432/pgjobs", "password": "s3cret"},
    "worker": {"hpa": {"enabled": True}},
}

# A minimal CRD standing in for the Prometheus Operator's: enough for the API server to accept
# (and dry-run) the chart's ServiceMonitor.
FOREIGN_CRDS = [
    ("monitoring.coreos.com", "v1", "ServiceMonitor", "servicemonitors"),
]


def kinds(objects: list[Obj]) -> set[str]:
    return {obj["kind"] for obj in objects}


@pytest.mark.parametrize(
    "values",
    [{}, ALL_FEATURES, WITH_HPA, {"crds": {"templated": True}}],
    ids=["defaults", "all-features", "hpa", "templated-crds"],
)
def test_lint(helm: Path, tmp_path: Path, values: Obj) -> None:
    result = run_helm(helm, "lint", "--strict", str(CHART), "-f", values_file(tmp_path, values))
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


def test_template_defaults_and_every_feature(helm: Path, tmp_path: Path) -> None:
    defaults = kinds(render(helm, tmp_path, {}))
    # Job, Role and RoleBinding: the uninstall hook (rendered by `helm template`, run by uninstall);
    # Pod: the `helm test` hook.
    # APIService and Secret (its serving certificate): the operator's logs API (operator.logsApi).
    assert defaults == {"ClusterRole", "ClusterRoleBinding", "Deployment", "PodDisruptionBudget", "Service",
                        "ServiceAccount", "Job", "Role", "RoleBinding", "NetworkPolicy", "Pod",
                        "APIService", "Secret"}  # fmt: skip
    everything = render(helm, tmp_path, ALL_FEATURES)
    assert kinds(everything) - defaults == {
        "StatefulSet", "ServiceMonitor", "HorizontalPodAutoscaler",
        "ConfigMap",  # the dev PostgreSQL's script that creates the separate logins
    }  # fmt: skip
    (worker,) = [
        o for o in everything if o["kind"] == "Deployment" and o["metadata"]["name"] == "pgjobs-worker"
    ]
    assert "replicas" not in worker["spec"], "the HPA owns the replica count"
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "acme-worker:1"
    assert {"--enable-shell", "--tasks=tests.sample_tasks", "--queue=reports", "--concurrency=2"} <= set(
        container["args"]
    )
    (hpa,) = [o for o in everything if o["kind"] == "HorizontalPodAutoscaler"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["external"]["metric"]["selector"] == {
        "matchExpressions": [{"key": "queue", "operator": "In", "values": ["default", "reports"]}]
    }
    services = {o["metadata"]["name"]: o["spec"] for o in everything if o["kind"] == "APIService"}
    assert set(services) == {"v1beta1.external.metrics.k8s.io", "v1alpha1.logs.pgjobs.dev"}
    for spec in services.values():
        assert spec["service"] == {"name": "pgjobs-external-metrics", "namespace": "pgjobs", "port": 443}
    (secret,) = [
        o for o in everything if o["kind"] == "Secret" and o["metadata"]["name"] == "pgjobs-database"
    ]
    assert (
        secret["stringData"]["PGJOBS_DATABASE_URL"]
        == "postgresql://pgjobs@pgjobs-postgresql.pgjobs.svc:5432/pgjobs"
    )

    (hpa,) = [o for o in render(helm, tmp_path, WITH_HPA) if o["kind"] == "HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "External" and metric["external"]["metric"]["name"] == "pgjobs_backlog"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"worker": {"concurrency": 0}}, "/worker/concurrency'"),
        ({"worker": {"replicas": "two"}}, "/worker/replicas'"),
        ({"workers": {"replicas": 3}}, "'workers'"),  # a misspelled key
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy'"),
        ({"operator": {"watchNamespaces": ["Not_A_Namespace"]}}, "/operator/watchNamespaces/0'"),
        ({"crds": {"templated": "yes"}}, "/crds/templated'"),
    ],
    ids=[
        "concurrency-0",
        "replicas-string",
        "unknown-key",
        "pull-policy",
        "namespace-name",
        "crds-templated",
    ],
)
def test_schema_rejects_wrong_values(helm: Path, tmp_path: Path, values: Obj, message: str) -> None:
    result = run_helm(
        helm, "template", "pgjobs", str(CHART), "-f", values_file(tmp_path, values), check=False
    )
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr, result.stderr


def test_templated_crds_are_the_charts_crd_files_kept_on_uninstall(helm: Path, tmp_path: Path) -> None:
    """crds.templated=true renders the files of crds/ themselves (no third copy), each with
    helm.sh/resource-policy: keep; by default no template renders a CRD (Helm installs crds/)."""
    assert "CustomResourceDefinition" not in kinds(render(helm, tmp_path, {}))
    rendered = [
        o
        for o in render(helm, tmp_path, {"crds": {"templated": True}})
        if o["kind"] == "CustomResourceDefinition"
    ]
    expected = []
    for path in sorted((CHART / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        crd["metadata"]["annotations"] = {
            **crd["metadata"].get("annotations", {}),
            "helm.sh/resource-policy": "keep",
        }
        expected.append(crd)
    assert len(expected) == 3
    by_name = sorted(rendered, key=lambda crd: crd["metadata"]["name"])
    assert by_name == sorted(expected, key=lambda crd: crd["metadata"]["name"])


def api_services_and_operator_args(rendered: list[Obj]) -> tuple[set[str], list[str]]:
    """The names of the APIServices, and the operator's arguments."""
    (operator,) = [
        o for o in rendered if o["metadata"]["name"] == "pgjobs-operator" and o["kind"] == "Deployment"
    ]
    names = {o["metadata"]["name"] for o in rendered if o["kind"] == "APIService"}
    return names, operator["spec"]["template"]["spec"]["containers"][0]["args"]


def test_an_hpa_on_another_adapters_metric_serves_no_external_metrics(helm: Path, tmp_path: Path) -> None:
    hpa = {"enabled": True, "serveExternalMetrics": False, "metricName": "queue_depth"}
    rendered = render(helm, tmp_path, {**WITH_HPA, "worker": {"hpa": hpa}})
    (autoscaler,) = [o for o in rendered if o["kind"] == "HorizontalPodAutoscaler"]
    assert autoscaler["spec"]["metrics"][0]["external"]["metric"]["name"] == "queue_depth"
    names, args = api_services_and_operator_args(rendered)
    assert names == {"v1alpha1.logs.pgjobs.dev"}, "only the logs API"
    without_logs = {**WITH_HPA, "worker": {"hpa": hpa}, "operator": {"logsApi": {"enabled": False}}}
    names, args = api_services_and_operator_args(render(helm, tmp_path, without_logs))
    assert names == set()
    assert not any("external-metrics" in a for a in args)


def _operator_rules(rendered: list[Obj]) -> list[Obj]:
    (role,) = [
        o for o in rendered if o["kind"] == "ClusterRole" and o["metadata"]["name"] == "pgjobs-operator"
    ]
    return list(role["rules"])


def test_the_logs_api_may_review_access_and_only_when_it_is_served(helm: Path, tmp_path: Path) -> None:
    review = {
        "apiGroups": ["authorization.k8s.io"],
        "resources": ["subjectaccessreviews"],
        "verbs": ["create"],
    }
    assert review in _operator_rules(render(helm, tmp_path, {}))
    off = render(helm, tmp_path, {"operator": {"logsApi": {"enabled": False}}})
    assert review not in _operator_rules(off)


def _database_secrets(pod: Obj) -> dict[str, set[str]]:
    """Per container: the Secrets its PGJOBS_DATABASE_URL and DB_PASSWORD come from."""
    containers = pod["spec"].get("initContainers", []) + pod["spec"]["containers"]
    return {
        c["name"]: {
            e["valueFrom"]["secretKeyRef"]["name"]
            for e in c.get("env", [])
            if e["name"] in ("PGJOBS_DATABASE_URL", "DB_PASSWORD")
        }
        for c in containers
    }


def test_separate_roles_give_workers_and_operator_their_own_logins(helm: Path, tmp_path: Path) -> None:
    """database.roles.separate: the admin login only migrates; each component has its own."""
    values = {
        "database": {
            "url": "postgresql://admin@db:5432/pgjobs?sslmode=require",
            "password": "admin-secret",
            "roles": {"separate": True, "worker": {"password": "w"}, "operator": {"password": "o"}},
        }
    }
    rendered = render(helm, tmp_path, values)
    pods = {o["metadata"]["name"]: o["spec"]["template"] for o in rendered if o["kind"] == "Deployment"}
    assert _database_secrets(pods["pgjobs-operator"]) == {
        "migrate": {"pgjobs-database"},
        "operator": {"pgjobs-database-operator"},
    }
    assert _database_secrets(pods["pgjobs-worker"]) == {"worker": {"pgjobs-database-worker"}}
    [migrate] = pods["pgjobs-operator"]["spec"]["initContainers"]
    assert migrate["args"][-2:] == ["--pool", "pgjobs_worker_login=default"]  # row scoping
    # (The serving certificate's Secret, of the logs API, holds no login: it has `data` only.)
    secrets = {o["metadata"]["name"]: o["stringData"] for o in rendered if "stringData" in o}
    assert secrets["pgjobs-database-worker"] == {
        "PGJOBS_DATABASE_URL": "postgresql://pgjobs_worker_login@db:5432/pgjobs?sslmode=require",
        "DB_PASSWORD": "w",
    }
    assert "admin-secret" not in str(secrets["pgjobs-database-operator"])
    # off (the default): every container uses the one login, as before
    rendered = render(helm, tmp_path, {"database": {"url": "postgresql://pgjobs@db/pgjobs", "password": "x"}})
    for obj in rendered:
        if obj["kind"] == "Deployment" and obj["metadata"]["name"] != "pgjobs-uninstall":
            assert set().union(*_database_secrets(obj["spec"]["template"]).values()) <= {"pgjobs-database"}


def test_the_dev_postgresql_creates_the_separate_logins(helm: Path, tmp_path: Path) -> None:
    rendered = render(
        helm, tmp_path, {"postgresql": {"enabled": True}, "database": {"roles": {"separate": True}}}
    )
    (init,) = [o for o in rendered if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-init")]
    script = init["data"]["pgjobs-logins.sh"]
    assert 'IN ROLE :"worker_group"' in script and 'IN ROLE :"operator_group"' in script
    (database,) = [o for o in rendered if o["kind"] == "StatefulSet"]
    env = {e["name"]: e for e in database["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["PGJOBS_WORKER_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "pgjobs-database-worker"
    assert env["PGJOBS_WORKER_GROUP"]["value"] == "pgjobs_worker"


def test_the_uninstall_hook_may_only_release_pgjobs_and_stop_its_operator(helm: Path, tmp_path: Path) -> None:
    objects = render(helm, tmp_path, {})
    hook = [o for o in objects if o["metadata"]["name"].endswith("-uninstall")]
    assert all(o["metadata"]["annotations"]["helm.sh/hook"] == "pre-delete" for o in hook)
    (cluster_role,) = [o for o in hook if o["kind"] == "ClusterRole"]
    assert cluster_role["rules"] == [
        {"apiGroups": ["pgjobs.dev"], "resources": ["pgjobs"], "verbs": ["get", "list", "patch"]}
    ]
    (role,) = [o for o in hook if o["kind"] == "Role"]
    operator = next(
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-operator")
    )["metadata"]["name"]
    assert {
        (r["resources"][0], tuple(r.get("resourceNames", [])), tuple(r["verbs"])) for r in role["rules"]
    } == {
        ("deployments", (operator,), ("get",)),
        ("deployments/scale", (operator,), ("patch",)),
        ("pods", (), ("list",)),
    }
    (job,) = [o for o in hook if o["kind"] == "Job"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"][:3] == [
        "release-pgjobs",
        f"--operator-namespace={job['metadata']['namespace']}",
        f"--operator-deployment={operator}",
    ]


def test_raw_manifests_are_current(helm: Path) -> None:
    script = ROOT / "scripts" / "render-manifests.sh"
    expected = subprocess.run(
        [str(script), "--stdout"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "HELM": str(helm)},
    ).stdout
    # The uninstall hook is for `helm uninstall`: applied by kubectl, its Job would run at once.
    assert "release-pgjobs" not in expected
    assert (ROOT / "deploy" / "manifests" / "pgjobs.yaml").read_text() == expected, (
        "deploy/manifests/pgjobs.yaml is stale: run scripts/render-manifests.sh (make manifests)"
    )


# -- against the real API server --------------------------------------------------------------


@pytest.fixture(scope="session")
def foreign_crds(kube: Any, crd: None) -> None:
    for group, version, kind, plural in FOREIGN_CRDS:
        kube.apply(
            {
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {"name": f"{plural}.{group}"},
                "spec": {
                    "group": group,
                    "scope": "Namespaced",
                    "names": {
                        "kind": kind,
                        "plural": plural,
                        "singular": kind.lower(),
                        "listKind": f"{kind}List",
                    },
                    "versions": [
                        {
                            "name": version,
                            "served": True,
                            "storage": True,
                            "schema": {
                                "openAPIV3Schema": {
                                    "type": "object",
                                    "x-kubernetes-preserve-unknown-fields": True,
                                }
                            },
                        }
                    ],
                },
            }
        )
        kube.kubectl("wait", "--for=condition=Established", f"crd/{plural}.{group}", "--timeout=60s")
    for _, _, _, plural in FOREIGN_CRDS:
        kube.wait_for(
            lambda plural=plural: kube.kubectl("get", plural, "-A", check=False).returncode == 0,
            timeout=60,
            what=f"{plural} in discovery",
        )


@pytest.mark.parametrize("case", ["defaults", "all-features", "hpa"])
def test_server_side_dry_run_accepts_every_object(
    helm: Path, kube: Any, foreign_crds: None, namespace: str, tmp_path: Path, case: str
) -> None:
    values = {
        "defaults": {},
        "all-features": {
            **ALL_FEATURES,
            "operator": {**ALL_FEATURES["operator"], "watchNamespaces": [namespace]},
        },
        "hpa": WITH_HPA,
    }[case]
    objects = render(helm, tmp_path, values, release=f"r{uuid.uuid4().hex[:6]}", namespace=namespace)
    text = yaml.safe_dump_all(objects)
    result = kube.kubectl("apply", "--dry-run=server", "-f", "-", input=text)
    accepted = [line for line in result.stdout.splitlines() if "(server dry run)" in line]
    assert len(accepted) == len(objects), result.stdout
    assert len(objects) >= 10


# -- the chart's RBAC ------------------------------------------------------------------------


@pytest.fixture
def operator_kubeconfig(helm: Path, kube: Any, crd: None, namespace: str, tmp_path: Path) -> Iterator[Path]:
    """The chart's default RBAC: the operator watches all namespaces."""
    with chart_rbac(helm, kube, namespace, tmp_path, {}) as kubeconfig:
        yield kubeconfig


@pytest.fixture
def namespaced_operator_kubeconfig(
    helm: Path, kube: Any, crd: None, namespace: str, tmp_path: Path
) -> Iterator[Path]:
    """The chart's RBAC with operator.watchNamespaces=[namespace]: PgJob rights in a Role only."""
    values = {"operator": {"watchNamespaces": [namespace]}}
    with chart_rbac(helm, kube, namespace, tmp_path, values) as kubeconfig:
        assert can_i(kube, kubeconfig, "patch", "pgjobs.pgjobs.dev", "-n", namespace)
        assert not can_i(kube, kubeconfig, "patch", "pgjobs.pgjobs.dev", "-n", "default")
        yield kubeconfig


def can_i(kube: Any, kubeconfig: Path, *args: str) -> bool:
    result = kube.kubectl("auth", "can-i", *args, kubeconfig=kubeconfig, check=False)
    answer: str = result.stdout.strip()
    assert answer in {"yes", "no"}, result.stderr
    return answer == "yes"


def test_operator_rbac_allows_what_the_operator_does(
    kube: Any, operator_kubeconfig: Path, namespace: str
) -> None:
    allowed = [
        ("list", "customresourcedefinitions.apiextensions.k8s.io"),
        ("watch", "customresourcedefinitions.apiextensions.k8s.io"),
        *[(verb, "pgjobs.pgjobs.dev") for verb in ("get", "list", "watch", "patch", "delete")],
        ("patch", "pgjobs.pgjobs.dev", "--subresource=status"),
        ("create", "events"),
    ]
    for verb, resource, *extra in allowed:
        assert can_i(kube, operator_kubeconfig, verb, resource, "-n", namespace, *extra), (verb, resource)
        assert can_i(kube, operator_kubeconfig, verb, resource, "--all-namespaces", *extra), (verb, resource)


def test_operator_rbac_denies_everything_else(kube: Any, operator_kubeconfig: Path, namespace: str) -> None:
    denied = [
        ("get", "secrets"),
        ("list", "secrets"),
        ("watch", "secrets"),
        ("get", "pods"),
        ("list", "pods"),
        ("create", "pods"),
        ("create", "pods", "--subresource=exec"),
        ("update", "pgjobs.pgjobs.dev"),
        ("delete", "events"),
        ("list", "configmaps"),
        ("create", "customresourcedefinitions.apiextensions.k8s.io"),
        ("patch", "customresourcedefinitions.apiextensions.k8s.io"),
        ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
        ("impersonate", "serviceaccounts"),
        ("create", "serviceaccounts", "--subresource=token"),
        ("list", "deployments.apps"),
    ]
    for verb, resource, *extra in denied:
        assert not can_i(kube, operator_kubeconfig, verb, resource, "-n", namespace, *extra), (verb, resource)
    listing = kube.kubectl("auth", "can-i", "--list", "-n", namespace, kubeconfig=operator_kubeconfig).stdout
    resources = [
        line.split() for line in listing.splitlines()[1:] if line.strip() and not line.startswith(" ")
    ]
    assert resources and all(row[0] != "*" and "*" not in row[-1] for row in resources), listing


def test_operator_runs_with_the_charts_rbac(
    kube: Any, namespaced_operator_kubeconfig: Path, services: Services, namespace: str
) -> None:
    """Create, run, delete (finalizer) and TTL-delete PgJobs with only the chart's permissions.

    The test operator watches its test namespace (--namespace), so the chart is rendered the
    same way (operator.watchNamespaces).
    """
    operator = services.operator("operator", "--kubeconfig", str(namespaced_operator_kubeconfig))
    create(
        kube,
        namespace,
        sleep_job("sleepy", seconds=1, steps=2),
        pgjob("short-lived", "noop", ttlSecondsAfterFinished=1),
        pgjob("doomed", "noop", stopped=True),
    )
    services.worker("worker")
    completed = wait_phase(kube, namespace, "sleepy", "Completed", timeout=45)
    assert completed["progress"] == 100
    wait_phase(kube, namespace, "doomed", "Stopped", timeout=30)
    kube.kubectl("delete", "pgjob", "doomed", "-n", namespace, "--wait=false")
    wait_until(lambda: not exists(kube, namespace, "doomed"), timeout=30, what="finalizer removed")
    wait_until(lambda: not exists(kube, namespace, "short-lived"), timeout=30, what="TTL deletion")
    reasons = {
        event["reason"]
        for event in kube.get_json("events", "-n", namespace)["items"]
        if event["involvedObject"]["name"] == "sleepy"
    }
    assert reasons, "the operator posted Events about the job"
    log = operator.text()
    assert operator.alive(), log[-3000:]
    assert "403" not in log and "Forbidden" not in log, log[-3000:]


DIGEST = "sha256:" + "ab" * 32


def test_placement_priority_digest_and_the_operators_readiness(helm: Path, tmp_path: Path) -> None:
    spread = [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway"}]
    placed = {"topologySpreadConstraints": spread, "priorityClassName": "batch-low"}
    without_api = {**placed, "logsApi": {"enabled": False}}
    values = {"image": {"digest": DIGEST}, "operator": without_api, "worker": placed}
    objects = render(helm, tmp_path, values)
    pods = {
        o["metadata"]["name"]: o["spec"]["template"]["spec"] for o in objects if o["kind"] == "Deployment"
    }
    for name in ("pgjobs-operator", "pgjobs-worker"):
        pod = pods[name]
        assert pod["topologySpreadConstraints"] == spread and pod["priorityClassName"] == "batch-low"
        assert pod["containers"][0]["image"] == f"ghcr.io/pgjobs/pgjobs@{DIGEST}"
    probe = pods["pgjobs-operator"]["containers"][0]["readinessProbe"]
    assert probe["httpGet"] == {"path": "/healthz", "port": "liveness"}
    # Serving the aggregated API (the HPA's metric, the logs API of the defaults): ready once it does.
    (served,) = [o for o in render(helm, tmp_path, {}) if o["metadata"]["name"] == "pgjobs-operator"
                 and o["kind"] == "Deployment"]  # fmt: skip
    assert served["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["tcpSocket"] == {
        "port": "ext-metrics"
    }
    refused = run_helm(helm, "template", "pgjobs", str(CHART), "-f",
                       values_file(tmp_path, {"image": {"digest": "latest"}}), check=False)  # fmt: skip
    assert refused.returncode != 0 and "/image/digest" in refused.stderr


def test_the_prometheusrule_and_the_dashboard_configmap_come_from_the_single_sources(
    helm: Path, tmp_path: Path
) -> None:
    values = {
        "metrics": {
            "prometheusRule": {"enabled": True, "labels": {"release": "kps"}},
            "dashboard": {"enabled": True},
        }
    }
    path = values_file(tmp_path, values)
    text = run_helm(
        helm,
        "template",
        "pgjobs",
        str(CHART),
        "-f",
        path,
        "--api-versions",
        "monitoring.coreos.com/v1/PrometheusRule",
    ).stdout
    objects = {
        o["kind"]: o for o in yaml.safe_load_all(text) if o and o["kind"] in ("PrometheusRule", "ConfigMap")
    }
    rules = yaml.safe_load((ROOT / "deploy/prometheus/pgjobs-rules.yaml").read_text())
    assert objects["PrometheusRule"]["spec"]["groups"] == rules["groups"]
    assert objects["PrometheusRule"]["metadata"]["labels"]["release"] == "kps"
    dashboard = objects["ConfigMap"]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["data"]["pgjobs-dashboard.json"] == (
        ROOT / "deploy/grafana/pgjobs-dashboard.json"
    ).read_text().rstrip("\n")
    # Without the Prometheus Operator's CRD there is no PrometheusRule to render.
    assert "PrometheusRule" not in kinds(render(helm, tmp_path, values))
