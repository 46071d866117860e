"""The PgJob CRD and the kubectl plugin against a real kube-apiserver.

Schema validation, defaulting, CEL transition rules, pruning, the status
subresource, printer columns and `kubectl explain` are implemented by the
API server; only a real one shows whether the CRD does what it says. No
operator runs here: the plugin's verbs only change specs, and tests play
the operator's part by writing status through the status subresource.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

import pgjobs.crd
from pgjobs.cli.kubectl import errors

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "crds" / "pgjobs.dev_pgjobs.yaml"
CRD_NAME = f"{pgjobs.crd.PLURAL}.{pgjobs.crd.GROUP}"
SPEC_FIELDS = sorted(
    yaml.safe_load(CRD_PATH.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][
        "spec"
    ]["properties"]
)


# -- helpers -------------------------------------------------------------------


@pytest.fixture(scope="module")
def crd(kube: Any) -> None:
    """The CRD installed and servable (Established, and known to discovery)."""
    kube.apply(CRD_PATH)

    def established() -> bool:
        conditions = kube.get_json("crd", CRD_NAME)["status"].get("conditions", [])
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    kube.wait_for(established, timeout=60, what=f"CRD {CRD_NAME} Established")
    # kubectl resolves "pgjobs" through discovery, which lags a little.
    kube.wait_for(
        lambda: kube.kubectl("get", "pgjobs", "-A", check=False).returncode == 0,
        timeout=60,
        what="pgjobs in discovery",
    )


def pgjob(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{pgjobs.crd.GROUP}/{pgjobs.crd.VERSION}",
        "kind": pgjobs.crd.KIND,
        "metadata": {"name": name},
        "spec": {"task": "sleep", **spec},
    }


def create(kube: Any, namespace: str, doc: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    result: subprocess.CompletedProcess[str] = kube.kubectl(
        "create", "-n", namespace, "-f", "-", input=json.dumps(doc), check=False
    )
    return result


def merge_patch(
    kube: Any, namespace: str, name: str, spec: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    patch = json.dumps({"spec": spec})
    result: subprocess.CompletedProcess[str] = kube.kubectl(
        "patch", "pgjob", name, "-n", namespace, "--type=merge", "-p", patch, check=False
    )
    return result


def get(kube: Any, namespace: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = kube.get_json("pgjob", name, "-n", namespace)
    return obj


def set_status(kube: Any, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
    """Write status as the operator does: through the status subresource."""
    result: dict[str, Any] = kube.custom.patch_namespaced_custom_object_status(
        pgjobs.crd.GROUP, pgjobs.crd.VERSION, namespace, pgjobs.crd.PLURAL, name, {"status": status}
    )
    return result


def run_plugin(
    kube: Any, namespace: str, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "pgjobs.cli.kubectl", "--kubeconfig", str(kube.kubeconfig)]
    return subprocess.run([*argv, "-n", namespace, *args], capture_output=True, text=True, timeout=timeout)


def ago(**delta: float) -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


FULL_STATUS: dict[str, Any] = {
    "phase": "Running",
    "progress": 40,
    "progressPercent": "40%",
    "message": "step 4 of 10",
    "worker": "worker-7f9c-1",
    "attempts": 2,
    "restarts": 0,
    "jobId": 12345,
    "startedAt": "2026-01-02T12:00:00Z",
    "finishedAt": "2026-01-02T12:05:00Z",
    "result": {"rows": 3, "nested": {"list": [1, "two", None, {"x": True}]}},
    "observedGeneration": 1,
    "conditions": [
        {
            "type": "Succeeded",
            "status": "Unknown",
            "reason": "Running",
            "message": "attempt 2 running",
            "lastTransitionTime": "2026-01-02T12:00:00Z",
            "observedGeneration": 1,
        }
    ],
}


# -- schema: defaults and refusals --------------------------------------------


def test_valid_pgjob_is_accepted_with_defaults(kube: Any, crd: None, namespace: str) -> None:
    result = create(kube, namespace, pgjob("minimal"))
    assert result.returncode == 0, result.stderr
    spec = get(kube, namespace, "minimal")["spec"]
    assert spec == {
        "task": "sleep",
        "args": {},
        "priority": "Regular",
        "queue": "default",
        "maxAttempts": 3,
        "backoffSeconds": 10,
        "stopped": False,
        "restarts": 0,
    }


def test_args_are_kept_verbatim(kube: Any, crd: None, namespace: str) -> None:
    args = {"seconds": 10, "nested": {"list": [1, {"deep": "x"}], "null": None}, "f": 1.5}
    assert create(kube, namespace, pgjob("with-args", args=args)).returncode == 0
    assert get(kube, namespace, "with-args")["spec"]["args"] == args


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"priority": "Urgent"}, ["spec.priority", "Unsupported value", '"Urgent"']),
        ({"timeoutSeconds": -5}, ["spec.timeoutSeconds", "should be greater than or equal to 1"]),
        ({"maxAttempts": 0}, ["spec.maxAttempts", "should be greater than or equal to 1"]),
        ({"maxAttempts": 101}, ["spec.maxAttempts", "less than or equal to 100"]),
        ({"backoffSeconds": -1}, ["spec.backoffSeconds"]),
        ({"ttlSecondsAfterFinished": 31536001}, ["spec.ttlSecondsAfterFinished"]),
        ({"task": "1 bad name"}, ["spec.task", "should match"]),
        ({"task": "x" * 129}, ["spec.task"]),
        ({"queue": "Not_A_Queue"}, ["spec.queue", "should match"]),
        ({"args": "not an object"}, ["spec.args", "must be of type object"]),
        ({"args": {f"k{i}": i for i in range(65)}}, ["spec.args", "at most 64"]),
        ({"restarts": -1}, ["spec.restarts"]),
        ({"colour": "red"}, ["unknown field", "spec.colour"]),
    ],
    ids=lambda v: "-".join(v) if isinstance(v, dict) else None,
)
def test_invalid_pgjob_is_refused_naming_the_field(
    kube: Any, crd: None, namespace: str, spec: dict[str, Any], expected: list[str]
) -> None:
    result = create(kube, namespace, pgjob("invalid", **spec))
    assert result.returncode != 0, f"accepted: {spec}"
    for text in expected:
        assert text in result.stderr, result.stderr
    assert kube.kubectl("get", "pgjob", "invalid", "-n", namespace, check=False).returncode != 0


def test_missing_task_is_refused(kube: Any, crd: None, namespace: str) -> None:
    doc = pgjob("no-task")
    del doc["spec"]["task"]
    result = create(kube, namespace, doc)
    assert result.returncode != 0
    assert "spec.task: Required value" in result.stderr


def test_args_over_the_request_limit_are_refused(kube: Any, crd: None, namespace: str) -> None:
    # Few keys, huge values: maxProperties cannot see this, the API server's
    # request/object size limit does (the operator's 64 KiB check is stricter).
    big = {"blob": "x" * (3 * 1024 * 1024 + 1)}
    result = create(kube, namespace, pgjob("huge", args=big))
    assert result.returncode != 0
    assert any(
        text in result.stderr for text in ("too large", "Too large", "request entity too large", "limit is")
    ), result.stderr[-500:]


# -- CEL transition rules --------------------------------------------------------


@pytest.fixture
def existing(kube: Any, crd: None, namespace: str) -> str:
    result = create(kube, namespace, pgjob("existing", args={"seconds": 1, "steps": 1}))
    assert result.returncode == 0, result.stderr
    return "existing"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"task": "noop"}, 'spec.task: Invalid value: "noop": task is immutable'),
        ({"queue": "other"}, 'spec.queue: Invalid value: "other": queue is immutable'),
        ({"args": {"seconds": 2, "steps": 1}}, "spec.args: Invalid value: args is immutable"),
        # A merge patch removes a key with null.
        ({"args": {"steps": None}}, "args is immutable"),
        ({"args": {"seconds": 1, "steps": 1, "extra": True}}, "args is immutable"),
    ],
    ids=["task", "queue", "args-value", "args-key-removed", "args-key-added"],
)
def test_immutable_fields_refuse_changes(
    kube: Any, namespace: str, existing: str, change: dict[str, Any], message: str
) -> None:
    before = get(kube, namespace, existing)
    result = merge_patch(kube, namespace, existing, change)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert get(kube, namespace, existing)["spec"] == before["spec"]


@pytest.mark.xfail(
    strict=True,
    reason="kube-apiserver CEL equality on objects without declared properties skips keys "
    "missing on one side, so renaming a key (same count) passes `self == oldSelf`; the "
    "operator snapshots args at creation. Remove this xfail when upstream fixes it.",
)
def test_args_key_rename_is_refused(kube: Any, namespace: str, existing: str) -> None:
    # Merge patch: null deletes "steps", and a new key with the same count is added.
    result = merge_patch(kube, namespace, existing, {"args": {"steps": None, "renamed": 1}})
    assert result.returncode != 0, "a renamed args key was accepted"


def test_restarts_may_only_grow(kube: Any, namespace: str, existing: str) -> None:
    assert merge_patch(kube, namespace, existing, {"restarts": 2}).returncode == 0
    result = merge_patch(kube, namespace, existing, {"restarts": 1})
    assert result.returncode != 0
    assert "restarts may not decrease" in result.stderr
    assert get(kube, namespace, existing)["spec"]["restarts"] == 2


def test_a_status_older_than_the_stored_one_is_refused(kube: Any, namespace: str, existing: str) -> None:
    """An old leader's status write that the API server applies late must not undo a newer one:
    the operator's client sees the rule's refusal as StaleStatus (and reads the row again)."""
    from pgjobs.operator import kube as operator_kube

    def status(phase: str, synced_at: str) -> dict[str, Any]:
        return {"phase": phase, "syncedAt": synced_at}

    set_status(kube, namespace, existing, status("Completed", "2026-12-06T10:00:00.000200Z"))
    with pytest.raises(kubernetes.client.exceptions.ApiException) as refused:
        set_status(kube, namespace, existing, status("Pending", "2026-12-06T10:00:00.000100Z"))
    assert refused.value.status == 422 and operator_kube.STALE_STATUS_MESSAGE in str(refused.value.body)
    assert get(kube, namespace, existing)["status"]["phase"] == "Completed"
    # The same read again (a write repeated), then a later one.
    set_status(kube, namespace, existing, status("Completed", "2026-12-06T10:00:00.000200Z"))
    set_status(kube, namespace, existing, status("Running", "2026-12-06T10:00:01.000000Z"))
    # A status without the stamp (the operator's refusals, conditions) passes, as before.
    set_status(kube, namespace, existing, {"message": "a condition's update"})
    assert get(kube, namespace, existing)["status"]["phase"] == "Running"


def test_mutable_fields_can_change(kube: Any, namespace: str, existing: str) -> None:
    change = {"priority": "High", "stopped": True, "restarts": 1, "maxAttempts": 5}
    result = merge_patch(kube, namespace, existing, change)
    assert result.returncode == 0, result.stderr
    spec = get(kube, namespace, existing)["spec"]
    assert {k: spec[k] for k in change} == change


# -- explain, status subresource, printer columns ------------------------------------


def test_explain_documents_every_spec_field(kube: Any, crd: None) -> None:
    def explained() -> str:
        result = kube.kubectl("explain", "pgjob.spec", check=False)
        return result.stdout if result.returncode == 0 and "FIELDS" in result.stdout else ""

    text = kube.wait_for(explained, timeout=60, what="kubectl explain pgjob.spec")
    for field in SPEC_FIELDS:
        assert f"\n  {field}\t" in text, f"{field} missing from:\n{text}"
    prose = " ".join(text.split())  # explain wraps lines at its own width
    assert "task <string> -required- Name of a task registered in the workers" in prose
    assert "enum: High, Regular, Low" in prose
    assert """kubectl patch pgjob NAME --type merge -p '{"spec":{"restarts":N}}'""" in prose


def test_status_subresource_keeps_every_field(kube: Any, namespace: str, existing: str) -> None:
    written = set_status(kube, namespace, existing, FULL_STATUS)
    assert written["status"] == FULL_STATUS  # nothing pruned, nothing added
    stored = get(kube, namespace, existing)
    assert stored["status"] == FULL_STATUS
    # Status writes leave generation alone: the operator's observedGeneration
    # compares against spec changes only.
    assert stored["metadata"]["generation"] == 1


def test_status_is_ignored_through_the_main_resource(kube: Any, namespace: str, existing: str) -> None:
    # Only the operator (through the subresource) may write status.
    patch = json.dumps({"status": {"phase": "Completed"}})
    kube.kubectl("patch", "pgjob", existing, "-n", namespace, "--type=merge", "-p", patch)
    assert "status" not in get(kube, namespace, existing)


def test_status_refuses_invalid_values(kube: Any, namespace: str, existing: str) -> None:
    from kubernetes.client.exceptions import ApiException

    with pytest.raises(ApiException) as err:
        set_status(kube, namespace, existing, {"phase": "Exploded", "progress": 101})
    assert err.value.status == 422
    assert "status.phase" in str(err.value.body) and "status.progress" in str(err.value.body)


def test_printer_columns(kube: Any, namespace: str, existing: str) -> None:
    merge_patch(kube, namespace, existing, {"priority": "High"})
    set_status(kube, namespace, existing, FULL_STATUS)
    header, row = kube.kubectl("get", "pgjobs", "-n", namespace).stdout.splitlines()
    assert header.split() == ["NAME", "PHASE", "PRIORITY", "PROGRESS", "WORKER", "ATTEMPTS", "AGE"]
    assert row.split()[:6] == [existing, "Running", "High", "40%", "worker-7f9c-1", "2"]
    wide_header, wide_row = kube.kubectl("get", "pgj", "-n", namespace, "-o", "wide").stdout.splitlines()
    assert wide_header.split()[-1] == "MESSAGE"
    assert wide_row.endswith("step 4 of 10")
    # The category lets `kubectl get pgjobs` style aggregation find it too.
    assert existing in kube.kubectl("get", "pgjobs.pgjobs.dev", "-n", namespace, "-o", "name").stdout


# -- the kubectl plugin against the real API server ---------------------------------


def test_plugin_submit_creates_a_pgjob(kube: Any, crd: None, namespace: str) -> None:
    result = run_plugin(
        kube,
        namespace,
        "submit",
        "sleep",
        "--args",
        '{"seconds": 3}',
        "--priority",
        "High",
        "--max-attempts",
        "5",
        "--ttl",
        "60",
    )
    assert result.returncode == 0, result.stderr
    name = result.stdout.strip()
    assert name.startswith("sleep-") and len(name) > len("sleep-")
    spec = get(kube, namespace, name)["spec"]
    assert spec["args"] == {"seconds": 3} and spec["priority"] == "High"
    assert spec["maxAttempts"] == 5 and spec["ttlSecondsAfterFinished"] == 60
    assert spec["queue"] == "default"  # left to the CRD default


def test_plugin_submit_shows_the_servers_refusal_in_one_line(kube: Any, crd: None, namespace: str) -> None:
    result = run_plugin(kube, namespace, "submit", "sleep", "--name", "bad", "--max-attempts", "0")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: cannot create PgJob for task 'sleep':")
    assert "spec.maxAttempts" in result.stderr and "Traceback" not in result.stderr


def test_plugin_stop_and_start(kube: Any, namespace: str, existing: str) -> None:
    result = run_plugin(kube, namespace, "stop", existing)
    assert result.returncode == 0, result.stderr
    assert get(kube, namespace, existing)["spec"]["stopped"] is True
    assert run_plugin(kube, namespace, "start", existing).returncode == 0
    assert get(kube, namespace, existing)["spec"]["stopped"] is False


def test_plugin_stop_reports_a_missing_job(kube: Any, namespace: str, existing: str) -> None:
    result = run_plugin(kube, namespace, "stop", "nope", existing)
    assert result.returncode == 1
    assert "cannot stop PgJob 'nope': pgjobs.pgjobs.dev \"nope\" not found" in result.stderr
    assert get(kube, namespace, existing)["spec"]["stopped"] is True  # the others still done


def test_plugin_concurrent_restarts_all_count(kube: Any, namespace: str, existing: str) -> None:
    argv = [sys.executable, "-m", "pgjobs.cli.kubectl", "--kubeconfig", str(kube.kubeconfig)]
    procs = [
        subprocess.Popen(
            [*argv, "-n", namespace, "restart", existing],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outcomes = [(p.wait(timeout=60), p.stderr.read() if p.stderr else "") for p in procs]
    assert [code for code, _ in outcomes] == [0, 0, 0, 0], outcomes
    assert get(kube, namespace, existing)["spec"]["restarts"] == 4


def test_plugin_prune(kube: Any, crd: None, namespace: str) -> None:
    statuses = {
        "old-done": {"phase": "Completed", "finishedAt": ago(hours=2)},
        "old-failed": {"phase": "Failed", "finishedAt": ago(hours=3)},
        "new-done": {"phase": "Completed", "finishedAt": ago(minutes=5)},
        "old-stopped": {"phase": "Stopped", "finishedAt": ago(hours=5)},
        "running": {"phase": "Running"},
    }
    for name, status in statuses.items():
        assert create(kube, namespace, pgjob(name)).returncode == 0
        set_status(kube, namespace, name, status)

    def names() -> set[str]:
        listing = kube.get_json("pgjobs", "-n", namespace)
        return {item["metadata"]["name"] for item in listing["items"]}

    dry = run_plugin(kube, namespace, "prune", "--older-than", "1h", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "old-done would be deleted" in dry.stdout and "old-failed would be deleted" in dry.stdout
    assert names() == set(statuses)

    result = run_plugin(kube, namespace, "prune", "--older-than", "1h")
    assert result.returncode == 0, result.stderr
    assert names() == {"new-done", "old-stopped", "running"}

    result = run_plugin(kube, namespace, "prune", "--phase", "Completed,Stopped")
    assert result.returncode == 0, result.stderr
    assert names() == {"running"}


def test_plugin_watch_exits_when_jobs_finish(kube: Any, crd: None, namespace: str) -> None:
    for name in ("w-a", "w-b"):
        assert create(kube, namespace, pgjob(name)).returncode == 0
    argv = [sys.executable, "-m", "pgjobs.cli.kubectl", "--kubeconfig", str(kube.kubeconfig)]
    proc = subprocess.Popen(
        [*argv, "-n", namespace, "watch", "--timeout", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Both jobs shown: the listing is done, and the watch resumes from its resourceVersion, so
    # everything that follows arrives as events.
    assert proc.stdout is not None
    listed = [proc.stdout.readline(), proc.stdout.readline()]
    assert sorted(line.split()[0] for line in listed) == ["w-a", "w-b"], listed
    set_status(kube, namespace, "w-a", {"phase": "Running", "progress": 50, "worker": "w1"})
    set_status(kube, namespace, "w-a", {"phase": "Completed", "progress": 100})
    set_status(kube, namespace, "w-b", {"phase": "Failed", "message": "boom"})
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    lines = [line.rstrip("\n") for line in listed] + out.splitlines()
    assert lines[-1] == "1 Completed, 1 Failed (w-b)"
    a_lines = [line.split()[:3] for line in lines if line.startswith("w-a ")]
    assert a_lines == [["w-a", "Pending", "0%"], ["w-a", "Running", "50%"], ["w-a", "Completed", "100%"]]


def test_plugin_watch_times_out(kube: Any, crd: None, namespace: str) -> None:
    assert create(kube, namespace, pgjob("forever")).returncode == 0
    result = run_plugin(kube, namespace, "watch", "forever", "--timeout", "2s")
    assert result.returncode == errors.EXIT_TIMEOUT
    assert result.stdout.splitlines()[-1] == "timed out after 2s; not finished: forever"
