"""Unit tests of the kubectl-pgjobs plugin: parsing, patches, filters, output.

The API is replaced by small fakes here; tests/e2e/test_crd_validation.py
runs the same verbs against a real API server.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kubernetes.client.exceptions import ApiException

from pgjobs.cli import kubectl
from pgjobs.cli.kubectl import api, arguments, errors, objects, patching, verbs, watching

NOW = dt.datetime(2026, 1, 2, 12, 0, 0, tzinfo=dt.UTC)


def job(name: str, phase: str | None = None, **status: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "metadata": {"name": name, "uid": f"uid-{name}", "resourceVersion": "7"},
        "spec": {"task": "sleep", "restarts": 0},
    }
    if phase is not None:
        obj["status"] = {"phase": phase, **status}
    return obj


def api_exception(status: int, message: str) -> ApiException:
    exc = ApiException(status=status, reason="Reason")
    exc.body = json.dumps({"kind": "Status", "message": message})
    return exc


# -- durations, args, phases -------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("10m", 600), ("1h", 3600), ("2d", 172800), ("1h30m", 5400), ("45", 45)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert arguments.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "1x", "h", "1.5h", "-1h", "1h 30m", "1hh"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        arguments.parse_duration(text)


@given(st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from("smhd")), min_size=1, max_size=4))
def test_parse_duration_sums_parts(parts: list[tuple[int, str]]) -> None:
    text = "".join(f"{n}{u}" for n, u in parts)
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    assert arguments.parse_duration(text) == sum(n * unit[u] for n, u in parts)


def test_parse_args_json() -> None:
    assert objects.parse_args_json('{"seconds": 10}') == {"seconds": 10}
    with pytest.raises(errors.PluginError, match="not valid JSON") as bad:
        objects.parse_args_json("{seconds: 10}")
    assert bad.value.code == errors.EXIT_USAGE
    with pytest.raises(errors.PluginError, match="must be a JSON object"):
        objects.parse_args_json("[1, 2]")


def test_parse_phases() -> None:
    assert arguments.parse_phases("Completed, Failed") == {"Completed", "Failed"}
    for bad in ("Running", "", "Completed,Nope"):
        with pytest.raises(ValueError, match="invalid phase list"):
            arguments.parse_phases(bad)


# -- manifests and patches ---------------------------------------------------


def test_build_manifest_leaves_unset_options_to_crd_defaults() -> None:
    body = objects.build_manifest("sleep", args={"seconds": 1})
    assert body == {
        "apiVersion": "pgjobs.dev/v1alpha1",
        "kind": "PgJob",
        "metadata": {"generateName": "sleep-"},
        "spec": {"task": "sleep", "args": {"seconds": 1}},
    }


def test_build_manifest_maps_every_option() -> None:
    body = objects.build_manifest(
        "sleep",
        args={},
        priority="High",
        queue="q",
        max_attempts=5,
        timeout_seconds=60,
        ttl_seconds=0,
        name="exact",
    )
    assert body["metadata"] == {"name": "exact"}
    assert body["spec"] == {
        "task": "sleep",
        "args": {},
        "priority": "High",
        "queue": "q",
        "maxAttempts": 5,
        "timeoutSeconds": 60,
        "ttlSecondsAfterFinished": 0,
    }


@pytest.mark.parametrize(
    ("task", "prefix"),
    [("sleep", "sleep-"), ("Reports.Nightly:v2", "reports-nightly-v2-"), ("__", "pgjob-")],
)
def test_generate_name_for(task: str, prefix: str) -> None:
    assert objects.generate_name_for(task) == prefix


@given(st.from_regex(r"[A-Za-z_][A-Za-z0-9_.:-]{0,127}", fullmatch=True))
def test_generate_name_is_always_a_valid_prefix(task: str) -> None:
    prefix = objects.generate_name_for(task)
    # The API server appends 5 characters and requires a DNS-1123 subdomain.
    assert len(prefix) <= 58
    assert re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?-", prefix), prefix


def test_restart_patch_tests_the_old_value() -> None:
    assert objects.restart_patch(2) == [
        {"op": "test", "path": "/spec/restarts", "value": 2},
        {"op": "replace", "path": "/spec/restarts", "value": 3},
    ]
    assert objects.restart_patch(None) == [{"op": "add", "path": "/spec/restarts", "value": 1}]


def test_stopped_patch() -> None:
    assert objects.stopped_patch(True) == {"spec": {"stopped": True}}
    assert objects.stopped_patch(False) == {"spec": {"stopped": False}}


# -- prune filter -------------------------------------------------------------


def finished(name: str, phase: str, ago: dt.timedelta | None) -> dict[str, Any]:
    extra = {} if ago is None else {"finishedAt": (NOW - ago).strftime("%Y-%m-%dT%H:%M:%SZ")}
    return job(name, phase, **extra)


def test_prunable_by_phase() -> None:
    phases = frozenset({"Completed", "Failed"})
    assert objects.prunable(finished("a", "Completed", None), phases, None, NOW)
    assert objects.prunable(finished("b", "Failed", None), phases, None, NOW)
    assert not objects.prunable(finished("c", "Stopped", None), phases, None, NOW)
    assert not objects.prunable(job("d", "Running"), phases, None, NOW)
    assert not objects.prunable(job("e"), phases, None, NOW)


def test_prunable_by_age() -> None:
    phases = frozenset({"Completed"})
    hour = 3600.0
    assert objects.prunable(finished("old", "Completed", dt.timedelta(hours=2)), phases, hour, NOW)
    assert objects.prunable(finished("edge", "Completed", dt.timedelta(hours=1)), phases, hour, NOW)
    assert not objects.prunable(finished("new", "Completed", dt.timedelta(minutes=59)), phases, hour, NOW)
    # Age unknown: keep rather than guess.
    assert not objects.prunable(finished("unknown", "Completed", None), phases, hour, NOW)


def test_parse_time() -> None:
    assert objects.parse_time("2026-01-02T12:00:00Z") == NOW
    assert objects.parse_time("2026-01-02T12:00:00") == NOW
    assert objects.parse_time("yesterday") is None
    assert objects.parse_time(None) is None


# -- watch output -------------------------------------------------------------


def test_snapshot_of_a_job_the_operator_has_not_seen() -> None:
    snap = watching.snapshot_of(job("fresh"))
    assert (snap.phase, snap.progress, snap.worker, snap.finished) == ("Pending", 0, "", False)


def test_format_line() -> None:
    running = watching.snapshot_of(job("demo-high-1", "Running", progress=40, worker="w-1", attempts=1))
    assert watching.format_line(running).split() == [
        "demo-high-1",
        "Running",
        "40%",
        "worker=w-1",
        "attempts=1",
    ]
    failed = watching.snapshot_of(job("x", "Failed", progress=0, message="boom: no such task"))
    assert watching.format_line(failed).endswith("Failed      0% boom: no such task")


def test_summarize() -> None:
    done = [watching.snapshot_of(job(n, "Completed")) for n in ("a", "b")]
    assert watching.summarize(done) == ("2 Completed", 0)
    mixed = [*done, watching.snapshot_of(job("c", "Failed")), watching.snapshot_of(job("d", "Stopped"))]
    assert watching.summarize(mixed) == ("2 Completed, 1 Failed (c), 1 Stopped (d)", 1)
    assert watching.summarize([]) == ("no PgJobs to watch", 0)


def test_line_display_prints_only_changes() -> None:
    out = io.StringIO()
    display = watching.LineDisplay(out)
    for progress in (10, 10, 20):
        display.update(watching.snapshot_of(job("a", "Running", progress=progress)))
    assert [line.split()[2] for line in out.getvalue().splitlines()] == ["10%", "20%"]


def test_selection() -> None:
    done = watching.snapshot_of(job("old", "Completed"))
    unnamed = watching.Selection(include_finished=False)
    assert not unnamed.wants(done, initial=True)
    assert unnamed.wants(done, initial=False)  # finished while we watched
    assert watching.Selection(include_finished=True).wants(done, initial=True)
    named = watching.Selection(names=frozenset({"x"}))
    assert not named.wants(done, initial=True)


def test_tracker_done_waits_for_named_jobs_to_appear() -> None:
    tracker = watching.Tracker(
        watching.Selection(names=frozenset({"a", "b"})), watching.LineDisplay(io.StringIO())
    )
    tracker.apply("ADDED", job("a", "Completed"))
    assert not tracker.done()
    tracker.apply("ADDED", job("b", "Running"))
    assert not tracker.done()
    tracker.apply("MODIFIED", job("b", "Completed"))
    assert tracker.done()


def test_tracker_counts_a_deleted_job_as_not_completed() -> None:
    tracker = watching.Tracker(watching.Selection(), watching.LineDisplay(io.StringIO()))
    tracker.apply("ADDED", job("a", "Running"))
    tracker.apply("DELETED", job("a", "Running"))
    assert tracker.done()
    assert watching.summarize(tracker.jobs.values()) == ("1 Deleted (a)", 1)


# -- verbs against a fake API ----------------------------------------------------


class FakeJobs:
    """Just enough of PgJobApi for the verbs; records what was called."""

    namespace = "ns"
    all_namespaces = False

    def __init__(self, *listings: list[dict[str, Any]]) -> None:
        # Each list call returns the next listing; the last one repeats.
        self.listings = list(listings) or [[]]
        self.restarts = 0
        self.patch_failures: list[ApiException] = []
        self.json_patches: list[list[dict[str, Any]]] = []
        self.deleted: list[tuple[str, str, str]] = []
        self.delete_error: ApiException | None = None
        self.events: list[list[dict[str, Any]]] = []

    def get(self, name: str) -> dict[str, Any]:
        return {"metadata": {"name": name}, "spec": {"restarts": self.restarts}}

    def json_patch(self, name: str, patch: list[dict[str, Any]]) -> dict[str, Any]:
        self.json_patches.append(patch)
        if self.patch_failures:
            # Somebody else's restart landed between our get and our patch.
            self.restarts += 1
            raise self.patch_failures.pop(0)
        self.restarts = patch[-1]["value"]
        return self.get(name)

    def list_all(self, selector: str | None = None) -> dict[str, Any]:
        items = self.listings.pop(0) if len(self.listings) > 1 else self.listings[0]
        return {"metadata": {"resourceVersion": "1"}, "items": items}

    def delete_exact(self, name: str, uid: str, resource_version: str) -> None:
        if self.delete_error is not None:
            raise self.delete_error
        self.deleted.append((name, uid, resource_version))

    def watch(self, selector: str | None, resource_version: str, timeout: int) -> Iterator[dict[str, Any]]:
        if not self.events:
            raise api_exception(410, "too old resource version")
        yield from self.events.pop(0)


# What kube-apiserver 1.36 answers when a JSON patch `test` op fails.
TEST_FAILED = "the server rejected our request due to an error in our request"


def test_restart_retries_when_someone_else_restarted_first() -> None:
    jobs = FakeJobs()
    jobs.patch_failures = [api_exception(422, TEST_FAILED)]
    assert patching.restart_one(jobs, "a") == 2
    tested = [p[0]["value"] for p in jobs.json_patches]
    assert tested == [0, 1]


def test_restart_gives_up_after_bounded_retries() -> None:
    jobs = FakeJobs()
    jobs.patch_failures = [api_exception(422, TEST_FAILED)] * (patching.RESTART_ATTEMPTS + 1)
    with pytest.raises(errors.PluginError, match="kept changing"):
        patching.restart_one(jobs, "a")


class RefusingJobs(FakeJobs):
    """Refuses every patch with 422 without anybody changing the object."""

    def json_patch(self, name: str, patch: list[dict[str, Any]]) -> dict[str, Any]:
        self.json_patches.append(patch)
        raise api_exception(422, 'PgJob.pgjobs.dev "a" is invalid: spec.restarts: Invalid value')


def test_restart_does_not_retry_a_real_refusal() -> None:
    jobs = RefusingJobs()
    with pytest.raises(errors.PluginError, match=r"spec\.restarts: Invalid value"):
        patching.restart_one(jobs, "a")
    assert len(jobs.json_patches) == 1


def test_restart_reports_other_errors_with_the_servers_message() -> None:
    jobs = FakeJobs()
    jobs.patch_failures = [api_exception(404, 'pgjobs.pgjobs.dev "a" not found')]
    with pytest.raises(errors.PluginError) as err:
        patching.restart_one(jobs, "a")
    assert str(err.value) == "cannot restart PgJob 'a': pgjobs.pgjobs.dev \"a\" not found"


def test_prune_one_deletes_with_preconditions() -> None:
    jobs = FakeJobs()
    line = verbs.prune_one(jobs, job("a", "Completed"), dry_run=False)
    assert jobs.deleted == [("a", "uid-a", "7")]
    assert line == "pgjob.pgjobs.dev/a deleted (Completed)"


def test_prune_one_keeps_a_job_that_changed_and_dry_run_deletes_nothing() -> None:
    jobs = FakeJobs()
    assert "would be deleted" in verbs.prune_one(jobs, job("a", "Failed"), dry_run=True)
    jobs.delete_error = api_exception(409, "Precondition failed")
    assert "changed since listed, kept" in verbs.prune_one(jobs, job("a", "Failed"), dry_run=False)
    assert jobs.deleted == []


def test_run_watch_follows_events_and_relists_after_410() -> None:
    jobs = FakeJobs(
        [job("a", "Pending"), job("b", "Completed")],
        [job("a", "Failed", message="boom"), job("b", "Completed")],
    )
    # One stream with an update; the next watch call gets 410 Gone -> re-list.
    jobs.events = [[{"type": "MODIFIED", "object": job("a", "Running", progress=50, worker="w")}]]
    out = io.StringIO()
    code = watching.run_watch(
        jobs, watching.Selection(include_finished=False), None, out, display_factory=watching.LineDisplay
    )
    lines = out.getvalue().splitlines()
    # b had finished before watch started, so it is not shown.
    assert [line.split()[:3] for line in lines[:-1]] == [
        ["a", "Pending", "0%"],
        ["a", "Running", "50%"],
        ["a", "Failed", "0%"],
    ]
    assert lines[-1] == "1 Failed (a)"
    assert code == 1


def test_run_watch_times_out() -> None:
    jobs = FakeJobs([job("a", "Running")])
    jobs.events = [[] for _ in range(1000)]
    out = io.StringIO()
    code = watching.run_watch(jobs, watching.Selection(), 0.05, out, display_factory=watching.LineDisplay)
    assert code == errors.EXIT_TIMEOUT
    assert out.getvalue().splitlines()[-1] == "timed out after 0.05s; not finished: a"


# -- command line ------------------------------------------------------------------


def test_parser_global_options_and_verbs() -> None:
    opts = arguments.build_parser().parse_args(
        ["--kubeconfig", "k", "-n", "ns", "prune", "--phase", "Stopped", "--older-than", "2d"]
    )
    assert (opts.kubeconfig, opts.namespace, opts.verb) == ("k", "ns", "prune")
    assert opts.phase == {"Stopped"} and opts.older_than == 172800
    assert arguments.build_parser().parse_args(["prune"]).phase == {"Completed", "Failed"}


@pytest.mark.parametrize(
    "argv",
    [
        ["prune", "--phase", "Running"],
        ["prune", "--older-than", "soon"],
        ["submit", "sleep", "--priority", "Urgent"],
        ["submit", "sleep", "--name", "a", "--generate-name", "b-"],
        ["stop"],
        ["restart", "a", "-l", "app=x"],
        ["submit", "sleep", "--dry-run=client", "--wait"],
        ["submit", "sleep", "--label", "no-equals-sign"],
        ["submit", "sleep", "--label", "a=b c"],
        ["submit", "sleep", "-o", "wide"],
        ["list"],
        ["rescue"],
    ],
)
def test_parser_refuses(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        arguments.parse_command_line(argv)
    assert exit_.value.code == 2


def test_every_verb_help_shows_the_kubectl_equivalent() -> None:
    for verb, (_, details) in arguments.VERB_HELP.items():
        assert "kubectl " in details.split("equivalent", 1)[1], verb
    assert "kubectl get pgjobs" in arguments.DESCRIPTION


def test_submit_with_bad_json_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = kubectl.main(["--kubeconfig", "/nonexistent", "submit", "sleep", "--args", "{oops"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: --args is not valid JSON") and err.count("\n") == 1


def test_missing_kubeconfig_says_how_to_point_at_a_cluster(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = kubectl.main(["--kubeconfig", str(tmp_path / "none"), "stop", "x"])
    err = capsys.readouterr().err
    assert code == 1
    assert "no kubeconfig at" in err and "--kubeconfig FILE" in err
    assert "Traceback" not in err


def test_kube_namespace_comes_from_the_context(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text(
        """
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts:
- {name: with-ns, context: {cluster: c, user: u, namespace: jobs}}
- {name: without, context: {cluster: c, user: u}}
current-context: with-ns
"""
    )
    assert api.kube_namespace(str(config), None) == "jobs"
    assert api.kube_namespace(str(config), "without") == "default"
    with pytest.raises(errors.PluginError, match="not found"):
        api.kube_namespace(str(config), "nope")


def test_api_error_message() -> None:
    message = 'PgJob.pgjobs.dev "x" is invalid: spec.priority: Unsupported value: "Urgent"'
    assert api.api_error_message(api_exception(422, message)) == message
    missing = api.api_error_message(api_exception(404, "the server could not find the requested resource"))
    assert "is the PgJob CRD installed?" in missing
    no_body = ApiException(status=503, reason="Service Unavailable")
    assert api.api_error_message(no_body) == "503 Service Unavailable"
