"""kubectl's conventions in the plugin: global flags anywhere, selectors, -o, --dry-run, completion.

Parsing and output only; tests/e2e/test_user_path.py runs the same commands against a real API
server.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from pgjobs.cli import kubectl
from pgjobs.cli.kubectl import arguments, completion, verbs, watching


@pytest.mark.parametrize(
    "argv",
    [
        ["-n", "ns", "--context", "c", "--kubeconfig", "k", "--request-timeout", "30s", "stop", "a"],
        ["stop", "a", "-n", "ns", "--context", "c", "--kubeconfig", "k", "--request-timeout", "30s"],
        ["--kubeconfig", "k", "stop", "-n", "ns", "a", "--context=c", "--request-timeout=30s"],
    ],
)
def test_global_flags_go_before_or_after_the_verb(argv: list[str]) -> None:
    opts = arguments.parse_command_line(argv)
    assert (opts.namespace, opts.context, opts.kubeconfig, opts.request_timeout) == ("ns", "c", "k", 30)
    assert opts.names == ["a"]


def test_a_global_flag_after_the_verb_wins_and_absent_ones_keep_their_default() -> None:
    opts = arguments.parse_command_line(["-n", "first", "watch", "-n", "second"])
    assert opts.namespace == "second"
    opts = arguments.parse_command_line(["watch"])
    assert (opts.namespace, opts.context, opts.kubeconfig, opts.request_timeout) == (None, None, None, None)


def test_selector_instead_of_names() -> None:
    for verb in ("stop", "start", "restart"):
        opts = arguments.parse_command_line([verb, "-l", "app=batch", "-n", "ns"])
        assert (opts.names, opts.selector) == ([], "app=batch")


def test_watch_all_namespaces_shows_namespace_slash_name() -> None:
    opts = arguments.parse_command_line(["watch", "-A", "-l", "app=x"])
    assert opts.all_namespaces and opts.selector == "app=x"
    obj = {"metadata": {"name": "a", "namespace": "team-a"}, "status": {"phase": "Running"}}
    assert watching.snapshot_of(obj, qualified=True).name == "team-a/a"
    assert watching.snapshot_of(obj).name == "a"


class RecordingJobs:
    namespace = "ns"
    all_namespaces = False

    def __init__(self, items: list[dict[str, Any]] | None = None) -> None:
        self.items = items or []
        self.created: list[tuple[dict[str, Any], bool]] = []
        self.patched: list[str] = []

    def create(self, body: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
        self.created.append((body, dry_run))
        return {**body, "metadata": {**body["metadata"], "name": "sleep-abcde", "namespace": "ns"}}

    def list_all(self, selector: str | None = None) -> dict[str, Any]:
        return {"items": self.items}

    def merge_patch(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        self.patched.append(name)
        return {}


def run(argv: list[str], jobs: RecordingJobs, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    monkeypatch.setattr(verbs, "connect", lambda opts: jobs)
    opts = arguments.parse_command_line(argv)
    out = io.StringIO()
    return opts.func(opts, out), out.getvalue()


def test_submit_output_formats(monkeypatch: pytest.MonkeyPatch) -> None:
    jobs = RecordingJobs()
    assert run(["submit", "sleep"], jobs, monkeypatch) == (0, "sleep-abcde\n")
    assert run(["submit", "sleep", "-o", "name"], jobs, monkeypatch) == (0, "pgjob.pgjobs.dev/sleep-abcde\n")
    code, text = run(["submit", "sleep", "-o", "json", "--label", "team=data"], jobs, monkeypatch)
    created = json.loads(text)
    assert code == 0 and created["metadata"]["labels"] == {"team": "data"}
    code, text = run(["submit", "sleep", "-o", "yaml"], jobs, monkeypatch)
    assert yaml.safe_load(text)["spec"]["task"] == "sleep"
    assert [dry for _, dry in jobs.created] == [False] * 4


def test_submit_dry_run_client_prints_the_manifest_without_any_api_call(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--kubeconfig", str(tmp_path / "none"), "submit", "sleep", "--dry-run=client", "-n", "team-a"]
    assert kubectl.main([*argv, "--args", '{"seconds": 1}', "--label", "app=x"]) == 0
    manifest = yaml.safe_load(capsys.readouterr().out)
    assert manifest["kind"] == "PgJob" and manifest["apiVersion"] == "pgjobs.dev/v1alpha1"
    assert manifest["metadata"] == {"generateName": "sleep-", "labels": {"app": "x"}, "namespace": "team-a"}
    assert manifest["spec"] == {"task": "sleep", "args": {"seconds": 1}}


def test_submit_dry_run_server_asks_the_server_not_to_persist(monkeypatch: pytest.MonkeyPatch) -> None:
    jobs = RecordingJobs()
    code, text = run(["submit", "sleep", "--dry-run=server"], jobs, monkeypatch)
    assert code == 0 and jobs.created[0][1] is True
    assert yaml.safe_load(text)["metadata"]["name"] == "sleep-abcde"


def test_stop_with_a_selector_stops_every_match(monkeypatch: pytest.MonkeyPatch) -> None:
    jobs = RecordingJobs([{"metadata": {"name": "a"}}, {"metadata": {"name": "b"}}])
    code, text = run(["stop", "-l", "app=x"], jobs, monkeypatch)
    assert code == 0 and jobs.patched == ["a", "b"]
    assert text.splitlines() == ["pgjob.pgjobs.dev/a stop requested", "pgjob.pgjobs.dev/b stop requested"]


def test_stop_with_a_selector_that_matches_nothing_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verbs, "connect", lambda opts: RecordingJobs())
    with pytest.raises(kubectl.PluginError, match="no PgJobs match 'app=x' in namespace ns"):
        verbs.cmd_stop(arguments.parse_command_line(["stop", "-l", "app=x"]), io.StringIO())


def test_version_without_a_cluster_still_prints_the_plugins_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert kubectl.main(["version", "--kubeconfig", str(tmp_path / "none")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("kubectl-pgjobs ") and lines[1].startswith("operator: unknown (no kubeconfig")


def test_completion_of_verbs_and_flags_comes_from_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    assert completion.candidates([""]) == [
        "logs",
        "pause",
        "prune",
        "restart",
        "resume",
        "start",
        "stop",
        "submit",
        "trigger",
        "version",
        "watch",
    ]
    assert completion.candidates(["st"]) == ["start", "stop"]
    assert "--dry-run" in completion.candidates(["submit", "--d"])
    assert "--all-namespaces" in completion.candidates(["watch", "--"])
    completion.main(["s"])
    assert capsys.readouterr().out.splitlines()[-1] == completion.NO_FILE_COMPLETION


def test_completion_of_names_is_silent_without_a_cluster(tmp_path: Path) -> None:
    assert completion.candidates(["--kubeconfig", str(tmp_path / "none"), "stop", ""]) == []


def test_submit_at_or_in_sets_spec_run_at(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--kubeconfig", str(tmp_path / "none"), "submit", "sleep", "--dry-run=client"]
    assert kubectl.main([*base, "--at", "2026-12-24T18:00:00Z"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["spec"]["runAt"] == "2026-12-24T18:00:00Z"
    before = dt.datetime.now(dt.UTC)
    assert kubectl.main([*base, "--in", "10m"]) == 0
    run_at = dt.datetime.fromisoformat(
        yaml.safe_load(capsys.readouterr().out)["spec"]["runAt"].replace("Z", "+00:00")
    )
    assert dt.timedelta(seconds=598) <= run_at - before <= dt.timedelta(seconds=602)


@pytest.mark.parametrize(
    "argv",
    [
        ["submit", "sleep", "--at", "tomorrow"],
        ["submit", "sleep", "--at", "2026-12-24T18:00:00"],  # no offset: whose six o'clock?
        ["submit", "sleep", "--in", "soon"],
        ["submit", "sleep", "--at", "2026-12-24T18:00:00Z", "--in", "1h"],
    ],
)
def test_submit_refuses_unclear_times(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        arguments.parse_command_line(argv)
    assert exit_.value.code == 2


class CronJobs(RecordingJobs):
    def get_cronjob(self, name: str) -> dict[str, Any]:
        template = {
            "metadata": {"labels": {"app": "reports"}},
            "spec": {"task": "sleep", "args": {"seconds": 1}},
        }
        return {
            "metadata": {"name": name, "namespace": "ns", "uid": "cron-uid"},
            "spec": {"schedule": "@daily", "jobTemplate": template},
        }


def test_trigger_creates_an_owned_pgjob_from_the_template(monkeypatch: pytest.MonkeyPatch) -> None:
    jobs = CronJobs()
    assert run(["trigger", "nightly", "-n", "ns"], jobs, monkeypatch) == (0, "sleep-abcde\n")
    ((body, dry_run),) = jobs.created
    meta = body["metadata"]
    assert not dry_run and meta["generateName"] == "nightly-manual-" and "name" not in meta
    assert meta["labels"] == {"app": "reports", "pgjobs.dev/cronjob": "nightly"}
    assert [(r["kind"], r["name"], r["uid"], r["controller"]) for r in meta["ownerReferences"]] == [
        ("PgCronJob", "nightly", "cron-uid", True)
    ]
    assert body["spec"] == {"task": "sleep", "args": {"seconds": 1}}
