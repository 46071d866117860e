"""The `kubectl-pgjobs` plugin: thin, documented verbs over the PgJob API.

Installed as the console script `kubectl-pgjobs`, so kubectl finds it as
`kubectl pgjobs ...`. Every verb is one or two plain Kubernetes API calls on
`pgjobs.dev/v1alpha1` PgJob objects, and each verb's --help shows the plain
kubectl command that does the same: the plugin is a convenience, never the
only way. It never talks to PostgreSQL; the operator turns spec changes into
actions and reports back in the status.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, TextIO, cast

GROUP = "pgjobs.dev"
VERSION = "v1alpha1"
PLURAL = "pgjobs"
KIND = "PgJob"
PRIORITIES = ("High", "Regular", "Low")
PHASES = ("Pending", "Running", "Completed", "Failed", "Stopped")
FINISHED_PHASES = frozenset({"Completed", "Failed", "Stopped"})
DEFAULT_PRUNE_PHASES = ("Completed", "Failed")

EXIT_OK = 0
EXIT_FAILED = 1  # a job Failed/Stopped, or an API call failed
EXIT_USAGE = 2  # argparse uses 2 as well
EXIT_TIMEOUT = 124  # as coreutils `timeout`

# Restart retries: each retry means somebody else changed spec.restarts
# between our read and our patch, which is rare; a bound keeps a bug from
# spinning forever.
RESTART_ATTEMPTS = 5
# Server-side watch timeout: the stream ends after this and is resumed from
# the last resourceVersion, which also detects silently dead connections.
WATCH_CHUNK_SECONDS = 60

Json = dict[str, Any]


class PluginError(Exception):
    """A failure to report as one line, without a traceback."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------
# Pure helpers (unit-tested without a cluster)
# --------------------------------------------------------------------------

_DURATION_PART = re.compile(r"(\d+)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Seconds in "30s", "10m", "1h", "2d", "1h30m" or a bare number of seconds."""
    text = text.strip()
    if text.isdigit():
        return float(text)
    parts = _DURATION_PART.findall(text)
    if not text or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"invalid duration {text!r}: use e.g. 30s, 10m, 1h, 2d or 1h30m")
    return float(sum(int(n) * _UNIT_SECONDS[u] for n, u in parts))


def parse_args_json(text: str) -> Json:
    """The --args value as a JSON object, or a PluginError saying what is wrong."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PluginError(f"--args is not valid JSON: {exc}", EXIT_USAGE) from None
    if not isinstance(value, dict):
        raise PluginError("--args must be a JSON object, e.g. '{\"seconds\": 10}'", EXIT_USAGE)
    return value


def parse_phases(text: str) -> frozenset[str]:
    """A comma-separated list of finished phases, checked against the known ones."""
    phases = frozenset(p.strip() for p in text.split(",") if p.strip())
    unknown = phases - FINISHED_PHASES
    if not phases or unknown:
        raise ValueError(f"invalid phase list {text!r}: choose from {', '.join(sorted(FINISHED_PHASES))}")
    return phases


def generate_name_for(task: str) -> str:
    """A valid metadata.generateName prefix derived from a task name."""
    # Task names allow upper case, '_', '.', ':' which object names do not.
    base = re.sub(r"[^a-z0-9-]+", "-", task.lower()).strip("-")[:50].strip("-")
    return f"{base or 'pgjob'}-"


def build_manifest(
    task: str,
    *,
    args: Json,
    priority: str | None = None,
    queue: str | None = None,
    max_attempts: int | None = None,
    timeout_seconds: int | None = None,
    ttl_seconds: int | None = None,
    name: str | None = None,
    generate_name: str | None = None,
) -> Json:
    """The PgJob object `submit` creates; unset options are left to CRD defaults."""
    spec: Json = {"task": task, "args": args}
    optional = {
        "priority": priority,
        "queue": queue,
        "maxAttempts": max_attempts,
        "timeoutSeconds": timeout_seconds,
        "ttlSecondsAfterFinished": ttl_seconds,
    }
    spec.update({k: v for k, v in optional.items() if v is not None})
    metadata: Json = {"name": name} if name else {"generateName": generate_name or generate_name_for(task)}
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "metadata": metadata, "spec": spec}


def stopped_patch(stopped: bool) -> Json:
    """Merge patch for stop/start."""
    return {"spec": {"stopped": stopped}}


def restart_patch(current: int | None) -> list[Json]:
    """JSON patch that increments spec.restarts only if it still equals `current`.

    The `test` op makes the API server refuse the patch when another client
    restarted in between, so two concurrent restarts give two new runs
    instead of silently collapsing into one.
    """
    if current is None:
        # Only objects stored before the CRD had a default lack the field.
        return [{"op": "add", "path": "/spec/restarts", "value": 1}]
    return [
        {"op": "test", "path": "/spec/restarts", "value": current},
        {"op": "replace", "path": "/spec/restarts", "value": current + 1},
    ]


def parse_time(value: object) -> dt.datetime | None:
    """An RFC 3339 timestamp from the status, or None when absent or malformed."""
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def prunable(obj: Json, phases: frozenset[str], older_than: float | None, now: dt.datetime) -> bool:
    """Whether `prune` should delete this PgJob."""
    status = obj.get("status") or {}
    if status.get("phase") not in phases:
        return False
    if older_than is None:
        return True
    finished = parse_time(status.get("finishedAt"))
    # Without finishedAt the age is unknown: keep it rather than guess.
    return finished is not None and (now - finished).total_seconds() >= older_than


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """What `watch` shows of one PgJob."""

    name: str
    phase: str
    progress: int
    worker: str
    attempts: int
    message: str

    @property
    def finished(self) -> bool:
        return self.phase in FINISHED_PHASES


def snapshot_of(obj: Json) -> Snapshot:
    """The watch view of a PgJob; a job the operator has not seen yet is Pending."""
    status = obj.get("status") or {}
    progress = status.get("progress")
    attempts = status.get("attempts")
    return Snapshot(
        name=str(obj.get("metadata", {}).get("name", "?")),
        phase=str(status.get("phase") or "Pending"),
        progress=progress if isinstance(progress, int) else 0,
        worker=str(status.get("worker") or ""),
        attempts=attempts if isinstance(attempts, int) else 0,
        message=str(status.get("message") or ""),
    )


def format_line(snap: Snapshot) -> str:
    """One line per change, for logs (stdout is not a terminal)."""
    parts = [f"{snap.name:<24}", f"{snap.phase:<9}", f"{snap.progress:>3}%"]
    if snap.worker:
        parts.append(f"worker={snap.worker}")
    if snap.attempts:
        parts.append(f"attempts={snap.attempts}")
    if snap.message:
        parts.append(snap.message)
    return " ".join(parts).rstrip()


def summarize(snaps: Iterable[Snapshot]) -> tuple[str, int]:
    """The final line of `watch` and its exit code."""
    by_phase: dict[str, list[str]] = {}
    for snap in sorted(snaps, key=lambda s: s.name):
        by_phase.setdefault(snap.phase, []).append(snap.name)
    if not by_phase:
        return "no PgJobs to watch", EXIT_OK
    text = ", ".join(
        f"{len(names)} {phase}" + ("" if phase == "Completed" else f" ({', '.join(names)})")
        for phase, names in sorted(by_phase.items())
    )
    ok = set(by_phase) == {"Completed"}
    return text, EXIT_OK if ok else EXIT_FAILED


# --------------------------------------------------------------------------
# Kubernetes access: a small typed wrapper over the untyped client
# --------------------------------------------------------------------------


def default_kubeconfig() -> str:
    return os.environ.get("KUBECONFIG") or str(Path("~/.kube/config").expanduser())


def api_error_message(exc: Exception) -> str:
    """One line from an ApiException: the API server's own message when it has one."""
    body = getattr(exc, "body", None)
    message = ""
    if isinstance(body, str | bytes):
        with contextlib.suppress(ValueError):
            decoded = json.loads(body)
            if isinstance(decoded, dict):
                message = str(decoded.get("message") or "")
    status = getattr(exc, "status", None)
    if not message:
        message = f"{status} {getattr(exc, 'reason', '') or ''}".strip()
    if status == 404 and "could not find the requested resource" in message:
        message += " (is the PgJob CRD installed? kubectl apply -f crds/pgjobs.dev_pgjobs.yaml)"
    return message.replace("\n", " ")


@contextlib.contextmanager
def api_errors(what: str) -> Iterator[None]:
    """Turn client exceptions into PluginError('<what>: <server message>')."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        yield
    except ApiException as exc:
        raise PluginError(f"{what}: {api_error_message(exc)}") from None
    except HTTPError as exc:
        raise PluginError(f"{what}: cannot reach the API server: {exc}") from None


class PgJobApi:
    """PgJob calls of one namespace, returning plain JSON dicts."""

    def __init__(self, api: Any, namespace: str) -> None:
        self._api = api  # kubernetes.client.CustomObjectsApi
        self.namespace = namespace

    def _where(self) -> tuple[str, str, str, str]:
        return GROUP, VERSION, self.namespace, PLURAL

    def create(self, body: Json) -> Json:
        return cast(Json, self._api.create_namespaced_custom_object(*self._where(), body))

    def get(self, name: str) -> Json:
        return cast(Json, self._api.get_namespaced_custom_object(*self._where(), name))

    def list_all(self, selector: str | None = None) -> Json:
        return cast(Json, self._api.list_namespaced_custom_object(*self._where(), label_selector=selector))

    def merge_patch(self, name: str, patch: Json) -> Json:
        return cast(Json, self._api.patch_namespaced_custom_object(*self._where(), name, patch))

    def json_patch(self, name: str, patch: list[Json]) -> Json:
        return cast(
            Json,
            self._api.patch_namespaced_custom_object(
                *self._where(), name, patch, _content_type="application/json-patch+json"
            ),
        )

    def delete_exact(self, name: str, uid: str, resource_version: str) -> None:
        """Delete only if the object is still the version we looked at."""
        from kubernetes.client import V1DeleteOptions, V1Preconditions

        options = V1DeleteOptions(preconditions=V1Preconditions(uid=uid, resource_version=resource_version))
        self._api.delete_namespaced_custom_object(*self._where(), name, body=options)

    def watch(self, selector: str | None, resource_version: str, timeout: int) -> Iterator[Json]:
        """Raw watch events (dicts with 'type' and 'object') from a resourceVersion."""
        from kubernetes import watch

        untyped: Any = watch  # the client's watch module is not annotated
        watcher = untyped.Watch()
        stream = watcher.stream(
            self._api.list_namespaced_custom_object,
            *self._where(),
            label_selector=selector,
            resource_version=resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=timeout,
            deserialize=False,
            _request_timeout=timeout + 10,
        )
        for event in stream:
            yield cast(Json, event)


class JobsApi(Protocol):
    """What the verbs need of PgJobApi (the unit tests pass fakes)."""

    namespace: str

    def get(self, name: str) -> Json: ...
    def list_all(self, selector: str | None = None) -> Json: ...
    def json_patch(self, name: str, patch: list[Json]) -> Json: ...
    def delete_exact(self, name: str, uid: str, resource_version: str) -> None: ...
    def watch(self, selector: str | None, resource_version: str, timeout: int) -> Iterator[Json]: ...


def kube_namespace(kubeconfig: str, context: str | None) -> str:
    """The namespace of the chosen (or current) kubeconfig context, else 'default'."""
    from kubernetes import config

    untyped: Any = config  # kubernetes.config is not annotated
    contexts, current = untyped.list_kube_config_contexts(kubeconfig)
    chosen = current
    if context:
        chosen = next((c for c in contexts if c.get("name") == context), None)
        if chosen is None:
            raise PluginError(f"context {context!r} not found in {kubeconfig}")
    namespace = (chosen or {}).get("context", {}).get("namespace")
    return str(namespace or "default")


def connect(opts: argparse.Namespace) -> PgJobApi:
    """A PgJobApi from --kubeconfig/--context/--namespace."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    kubeconfig = opts.kubeconfig or default_kubeconfig()
    first = kubeconfig.split(os.pathsep)[0]
    if not Path(first).expanduser().exists():
        raise PluginError(
            f"no kubeconfig at {first}: point at a cluster with --kubeconfig FILE or "
            "KUBECONFIG=FILE (`make demo KEEP=1` prints one for the local control plane)"
        )
    configuration = client.Configuration()
    untyped: Any = config  # kubernetes.config is not annotated
    try:
        untyped.load_kube_config(
            config_file=kubeconfig, context=opts.context, client_configuration=configuration
        )
        namespace = opts.namespace or kube_namespace(kubeconfig, opts.context)
    except ConfigException as exc:
        raise PluginError(f"cannot use kubeconfig {kubeconfig}: {exc}") from None
    api = client.CustomObjectsApi(client.ApiClient(configuration))
    return PgJobApi(api, namespace)


# --------------------------------------------------------------------------
# Verbs
# --------------------------------------------------------------------------


def cmd_submit(opts: argparse.Namespace, out: TextIO) -> int:
    body = build_manifest(
        opts.task,
        args=parse_args_json(opts.args),
        priority=opts.priority,
        queue=opts.queue,
        max_attempts=opts.max_attempts,
        timeout_seconds=opts.timeout,
        ttl_seconds=opts.ttl,
        name=opts.name,
        generate_name=opts.generate_name,
    )
    jobs = connect(opts)
    with api_errors(f"cannot create PgJob for task {opts.task!r}"):
        created = jobs.create(body)
    name = str(created["metadata"]["name"])
    print(name, file=out, flush=True)
    if not opts.wait:
        return EXIT_OK
    return run_watch(jobs, Selection(names=frozenset({name})), opts.wait_timeout, out)


def set_stopped(opts: argparse.Namespace, stopped: bool, out: TextIO) -> int:
    jobs = connect(opts)
    verb = "stop" if stopped else "start"
    failures = 0
    for name in opts.names:
        try:
            with api_errors(f"cannot {verb} PgJob {name!r}"):
                jobs.merge_patch(name, stopped_patch(stopped))
        except PluginError as exc:
            failures += 1
            print(f"error: {exc}", file=sys.stderr)
            continue
        print(f"pgjob.{GROUP}/{name} {verb} requested", file=out)
    return EXIT_FAILED if failures else EXIT_OK


def cmd_stop(opts: argparse.Namespace, out: TextIO) -> int:
    return set_stopped(opts, True, out)


def cmd_start(opts: argparse.Namespace, out: TextIO) -> int:
    return set_stopped(opts, False, out)


def lost_race(jobs: JobsApi, name: str, exc: Exception, tested: int | None) -> bool:
    """Whether a refused restart patch failed only because spec.restarts moved on.

    A failed JSON patch `test` comes back as a bare 422 "Invalid" without
    details, like other refusals; the reliable sign is the value itself.
    """
    if getattr(exc, "status", None) != 422:
        return False
    now: object = jobs.get(name).get("spec", {}).get("restarts")
    return now != tested


def restart_one(jobs: JobsApi, name: str) -> int:
    """Increment spec.restarts of one PgJob; returns the new value."""
    from kubernetes.client.exceptions import ApiException

    what = f"cannot restart PgJob {name!r}"
    for _ in range(RESTART_ATTEMPTS):
        with api_errors(what):
            current = jobs.get(name).get("spec", {}).get("restarts")
            try:
                updated = jobs.json_patch(name, restart_patch(current))
            except ApiException as exc:
                if lost_race(jobs, name, exc, current):
                    continue  # someone restarted concurrently: count on top of theirs
                raise
        return int(updated["spec"]["restarts"])
    raise PluginError(f"{what}: spec.restarts kept changing, try again")


def cmd_restart(opts: argparse.Namespace, out: TextIO) -> int:
    jobs = connect(opts)
    failures = 0
    for name in opts.names:
        try:
            restarts = restart_one(jobs, name)
        except PluginError as exc:
            failures += 1
            print(f"error: {exc}", file=sys.stderr)
            continue
        print(f"pgjob.{GROUP}/{name} restart requested (spec.restarts={restarts})", file=out)
    return EXIT_FAILED if failures else EXIT_OK


def prune_one(jobs: JobsApi, obj: Json, dry_run: bool) -> str:
    """Delete one listed PgJob unless it changed since it was listed."""
    from kubernetes.client.exceptions import ApiException

    meta = obj["metadata"]
    name = str(meta["name"])
    phase = (obj.get("status") or {}).get("phase")
    if dry_run:
        return f"pgjob.{GROUP}/{name} would be deleted ({phase}) (dry run)"
    try:
        jobs.delete_exact(name, str(meta["uid"]), str(meta["resourceVersion"]))
    except ApiException as exc:
        if exc.status == 404:
            return f"pgjob.{GROUP}/{name} already gone"
        if exc.status == 409:
            # Restarted or otherwise changed after we listed it: not ours to delete.
            return f"pgjob.{GROUP}/{name} changed since listed, kept"
        raise
    return f"pgjob.{GROUP}/{name} deleted ({phase})"


def cmd_prune(opts: argparse.Namespace, out: TextIO) -> int:
    jobs = connect(opts)
    with api_errors(f"cannot list PgJobs in namespace {jobs.namespace!r}"):
        items = jobs.list_all(opts.selector).get("items") or []
    now = dt.datetime.now(dt.UTC)
    chosen = [o for o in items if prunable(o, opts.phase, opts.older_than, now)]
    for obj in chosen:
        with api_errors(f"cannot delete PgJob {obj['metadata']['name']!r}"):
            print(prune_one(jobs, obj, opts.dry_run), file=out)
    if not chosen:
        print(f"no PgJobs to prune in namespace {jobs.namespace}", file=out)
    return EXIT_OK


# --------------------------------------------------------------------------
# watch
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Selection:
    """Which PgJobs `watch` follows."""

    names: frozenset[str] = frozenset()
    selector: str | None = None
    include_finished: bool = True

    def wants(self, snap: Snapshot, initial: bool) -> bool:
        if self.names:
            return snap.name in self.names
        # Without names: jobs already finished when watch starts are old
        # news unless --all (or a selector) asks for them.
        return self.include_finished or not (initial and snap.finished)


class Display(Protocol):
    def update(self, snap: Snapshot) -> None: ...
    def close(self) -> None: ...


class LineDisplay:
    """One line per visible change: for CI logs and pipes."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._last: dict[str, Snapshot] = {}

    def update(self, snap: Snapshot) -> None:
        if self._last.get(snap.name) == snap:
            return
        self._last[snap.name] = snap
        print(format_line(snap), file=self._out, flush=True)

    def close(self) -> None:
        pass


class BarDisplay:
    """Live rich progress bars, one per job."""

    def __init__(self, out: TextIO) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn

        self._progress = Progress(
            TextColumn("{task.description:<24}"),
            BarColumn(),
            TextColumn("{task.completed:>3.0f}%"),
            TextColumn("{task.fields[phase]:<9}"),
            TextColumn("{task.fields[detail]}"),
            console=Console(file=out),
        )
        self._tasks: dict[str, Any] = {}
        self._progress.start()

    def update(self, snap: Snapshot) -> None:
        detail = " ".join(x for x in (snap.worker, snap.message) if x)
        if snap.name not in self._tasks:
            self._tasks[snap.name] = self._progress.add_task(
                snap.name, total=100, completed=snap.progress, phase=snap.phase, detail=detail
            )
            return
        self._progress.update(
            self._tasks[snap.name], completed=snap.progress, phase=snap.phase, detail=detail
        )

    def close(self) -> None:
        self._progress.stop()


class Tracker:
    """Current snapshots of the followed jobs and whether all are finished."""

    def __init__(self, selection: Selection, display: Display) -> None:
        self.selection = selection
        self.display = display
        self.jobs: dict[str, Snapshot] = {}

    def apply(self, event_type: str, obj: Json, initial: bool = False) -> None:
        snap = snapshot_of(obj)
        if event_type == "DELETED":
            if snap.name in self.jobs:
                # A deleted job will never finish; show it as gone.
                gone = dataclasses.replace(snap, phase="Deleted")
                self.jobs[snap.name] = gone
                self.display.update(gone)
            return
        if snap.name not in self.jobs and not self.selection.wants(snap, initial):
            return
        self.jobs[snap.name] = snap
        self.display.update(snap)

    def done(self) -> bool:
        """All followed jobs finished (or deleted); nothing to follow counts as done."""
        if not self.selection.names and not self.jobs:
            return True
        if self.selection.names - set(self.jobs):
            return False  # a named job we have not seen yet
        return all(s.finished or s.phase == "Deleted" for s in self.jobs.values())


def follow(jobs: JobsApi, tracker: Tracker, deadline: float | None) -> bool:
    """List, then watch from the list's resourceVersion until done (True) or deadline."""
    selector = tracker.selection.selector
    while True:
        with api_errors(f"cannot list PgJobs in namespace {jobs.namespace!r}"):
            listing = jobs.list_all(selector)
        for obj in listing.get("items") or []:
            tracker.apply("ADDED", obj, initial=True)
        if tracker.done():
            return True
        version = str(listing.get("metadata", {}).get("resourceVersion", ""))
        outcome = watch_from(jobs, tracker, version, deadline)
        if outcome is not None:
            return outcome
        # None: the resourceVersion expired (410 Gone): list again.


def watch_from(jobs: JobsApi, tracker: Tracker, version: str, deadline: float | None) -> bool | None:
    """Follow watch streams from `version`; None means re-list needed."""
    from kubernetes.client.exceptions import ApiException

    while deadline is None or time.monotonic() < deadline:
        chunk = WATCH_CHUNK_SECONDS
        if deadline is not None:
            chunk = max(1, min(chunk, int(deadline - time.monotonic()) + 1))
        try:
            for event in jobs.watch(tracker.selection.selector, version, chunk):
                version = event_version(event) or version
                if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                    tracker.apply(str(event["type"]), event["object"])
                if tracker.done():
                    return True
        except ApiException as exc:
            if exc.status == 410:
                return None
            raise PluginError(f"watching PgJobs failed: {api_error_message(exc)}") from None
    return False


def event_version(event: Json) -> str | None:
    obj = event.get("object")
    if isinstance(obj, dict):
        version = obj.get("metadata", {}).get("resourceVersion")
        return str(version) if version else None
    return None


def make_display(out: TextIO) -> Display:
    return BarDisplay(out) if out.isatty() else LineDisplay(out)


def run_watch(
    jobs: JobsApi,
    selection: Selection,
    timeout: float | None,
    out: TextIO,
    display_factory: Callable[[TextIO], Display] = make_display,
) -> int:
    """Follow the selected jobs until all finished; exit code per `summarize`."""
    deadline = None if timeout is None else time.monotonic() + timeout
    tracker = Tracker(selection, display_factory(out))
    try:
        finished = follow(jobs, tracker, deadline)
    finally:
        tracker.display.close()
    if not finished:
        waiting = sorted(s.name for s in tracker.jobs.values() if not s.finished)
        missing = sorted(selection.names - set(tracker.jobs))
        print(
            f"timed out after {timeout:g}s; not finished: {', '.join(waiting + missing)}",
            file=out,
        )
        return EXIT_TIMEOUT
    text, code = summarize(tracker.jobs.values())
    print(text, file=out)
    return code


def cmd_watch(opts: argparse.Namespace, out: TextIO) -> int:
    jobs = connect(opts)
    selection = Selection(
        names=frozenset(opts.names),
        selector=opts.selector,
        include_finished=opts.all or bool(opts.selector),
    )
    return run_watch(jobs, selection, opts.timeout, out)


# --------------------------------------------------------------------------
# Argument parsing
# --------------------------------------------------------------------------

DESCRIPTION = """\
Manage PgJobs (pgjobs.dev/v1alpha1): background jobs run by pgjobs workers.

Each verb is a thin layer over the Kubernetes API; its --help shows the plain
kubectl command that does the same. To list jobs use kubectl itself:
  kubectl get pgjobs            (or: kubectl get pgj -o wide, kubectl get pgjobs -w)
"""

EPILOG = """\
examples:
  kubectl pgjobs submit sleep --args '{"seconds": 10, "steps": 10}' --priority High
  kubectl pgjobs watch --selector app.kubernetes.io/part-of=pgjobs-demo
  kubectl pgjobs stop my-job; kubectl pgjobs start my-job
  kubectl pgjobs restart my-failed-job
  kubectl pgjobs prune --phase Completed,Failed --older-than 1h --dry-run

exit codes: 0 ok; 1 a job Failed/was Stopped, or an API call failed;
            2 bad usage; 124 watch timed out
"""

VERB_HELP = {
    "submit": (
        "create a PgJob for TASK and print its name",
        """\
equivalent:
  kubectl create -f - <<EOF
  apiVersion: pgjobs.dev/v1alpha1
  kind: PgJob
  metadata: {generateName: sleep-}
  spec: {task: sleep, args: {seconds: 10}, priority: High}
  EOF

examples:
  kubectl pgjobs submit sleep --args '{"seconds": 5}'
  kubectl pgjobs submit resize --name resize-42 --priority High --max-attempts 5 --wait
""",
    ),
    "stop": (
        "stop PgJobs: Pending ones become Stopped, Running ones are cancelled",
        """\
equivalent:
  kubectl patch pgjob NAME --type merge -p '{"spec":{"stopped":true}}'
""",
    ),
    "start": (
        "start Stopped PgJobs again (they become Pending)",
        """\
equivalent:
  kubectl patch pgjob NAME --type merge -p '{"spec":{"stopped":false}}'
""",
    ),
    "restart": (
        "start a new run of Completed/Failed/Stopped PgJobs (increments spec.restarts)",
        """\
equivalent (N = current spec.restarts + 1):
  kubectl patch pgjob NAME --type merge -p '{"spec":{"restarts":N}}'
the plugin uses a JSON patch that first tests the current value, so two
concurrent restarts are two restarts:
  kubectl patch pgjob NAME --type json -p \\
    '[{"op":"test","path":"/spec/restarts","value":0},
      {"op":"replace","path":"/spec/restarts","value":1}]'
""",
    ),
    "prune": (
        "delete finished PgJobs (by phase, optionally older than a duration)",
        """\
equivalent (kubectl has no age filter, and status fields are not selectable):
  kubectl get pgjobs -o jsonpath=\\
    '{range .items[?(@.status.phase=="Completed")]}{.metadata.name}{"\\n"}{end}' \\
    | xargs -r kubectl delete pgjob
a PgJob that changed after it was listed (e.g. restarted) is kept.
spec.ttlSecondsAfterFinished makes the operator delete jobs by itself.
""",
    ),
    "watch": (
        "show live progress until the shown PgJobs are finished",
        """\
equivalent:
  kubectl get pgjobs -w
shows the named jobs, or the jobs matching --selector, or else the jobs of
the namespace that are not finished yet (--all: finished ones too), plus
jobs created while watching. Progress bars on a terminal, one line per
change otherwise. Exits 0 when all are Completed, 1 if any is Failed or
Stopped (or deleted), 124 on --timeout.
""",
    ),
}


def duration_arg(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def phases_arg(text: str) -> frozenset[str]:
    try:
        return parse_phases(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_verb(sub: Any, name: str, func: Callable[[argparse.Namespace, TextIO], int]) -> Any:
    summary, details = VERB_HELP[name]
    parser = sub.add_parser(
        name,
        help=summary,
        description=summary,
        epilog=details,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(func=func)
    return parser


def add_submit(sub: Any) -> None:
    p = add_verb(sub, "submit", cmd_submit)
    p.add_argument("task", metavar="TASK", help="name of a registered task, e.g. sleep")
    p.add_argument("--args", default="{}", help="task arguments as a JSON object (default {})")
    p.add_argument("--priority", choices=PRIORITIES, help="default: Regular")
    p.add_argument("--queue", help="queue name (default: default)")
    p.add_argument("--max-attempts", type=int, metavar="N", help="1..100 (default 3)")
    p.add_argument("--timeout", type=int, metavar="S", help="per-attempt timeout in seconds")
    p.add_argument("--ttl", type=int, metavar="S", help="delete the PgJob S seconds after it finished")
    names = p.add_mutually_exclusive_group()
    names.add_argument("--name", help="exact object name")
    names.add_argument("--generate-name", metavar="PREFIX", help="name prefix (default: TASK-)")
    p.add_argument("--wait", action="store_true", help="watch the job until it finished")
    p.add_argument("--wait-timeout", type=duration_arg, metavar="DURATION", help="give up waiting after this")


def add_names_verb(sub: Any, name: str, func: Callable[[argparse.Namespace, TextIO], int]) -> None:
    p = add_verb(sub, name, func)
    p.add_argument("names", nargs="+", metavar="NAME", help="PgJob names")


def add_prune(sub: Any) -> None:
    p = add_verb(sub, "prune", cmd_prune)
    p.add_argument(
        "--phase",
        type=phases_arg,
        default=frozenset(DEFAULT_PRUNE_PHASES),
        metavar="P1,P2",
        help="phases to delete (default Completed,Failed; Stopped allowed)",
    )
    p.add_argument(
        "--older-than",
        type=duration_arg,
        metavar="DURATION",
        help="only jobs finished at least this long ago: 30s, 10m, 1h, 2d",
    )
    p.add_argument("--dry-run", action="store_true", help="only print what would be deleted")
    p.add_argument("-l", "--selector", help="label selector, e.g. app=batch")


def add_watch(sub: Any) -> None:
    p = add_verb(sub, "watch", cmd_watch)
    p.add_argument("names", nargs="*", metavar="NAME", help="PgJob names (default: see below)")
    p.add_argument("-l", "--selector", help="label selector, e.g. app.kubernetes.io/part-of=demo")
    p.add_argument("--all", action="store_true", help="include jobs already finished")
    p.add_argument("--timeout", type=duration_arg, metavar="DURATION", help="give up after this")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubectl pgjobs",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    parser.add_argument("--context", help="kubeconfig context (default: the current one)")
    parser.add_argument(
        "-n", "--namespace", help="namespace (default: the context's namespace, else default)"
    )
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    add_submit(sub)
    add_names_verb(sub, "stop", cmd_stop)
    add_names_verb(sub, "start", cmd_start)
    add_names_verb(sub, "restart", cmd_restart)
    add_prune(sub)
    add_watch(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `kubectl-pgjobs` console script."""
    opts = build_parser().parse_args(argv)
    try:
        return int(opts.func(opts, sys.stdout))
    except PluginError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
