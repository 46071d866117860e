"""`kubectl pgjobs watch`: follow PgJobs (list, then watch) and show their progress live.

Progress bars on a terminal, one line per change otherwise; the final line sums up and decides
the exit code.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TextIO

from pgjobs.cli.kubectl.api import JobsApi, api_error_message, api_errors
from pgjobs.cli.kubectl.errors import EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT, PluginError
from pgjobs.cli.kubectl.objects import FINISHED_PHASES, Json

# Server-side watch timeout: the stream ends after this and is resumed from
# the last resourceVersion, which also detects silently dead connections.
WATCH_CHUNK_SECONDS = 60


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


def snapshot_of(obj: Json, qualified: bool = False) -> Snapshot:
    """The watch view of a PgJob (named NAMESPACE/NAME when `qualified`); not yet seen is Pending."""
    status = obj.get("status") or {}
    progress = status.get("progress")
    attempts = status.get("attempts")
    metadata = obj.get("metadata", {})
    name = str(metadata.get("name", "?"))
    if qualified:
        name = f"{metadata.get('namespace', '?')}/{name}"
    return Snapshot(
        name=name,
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


@dataclasses.dataclass(frozen=True)
class Selection:
    """Which PgJobs `watch` follows."""

    names: frozenset[str] = frozenset()
    selector: str | None = None
    include_finished: bool = True
    all_namespaces: bool = False

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
        snap = snapshot_of(obj, qualified=self.selection.all_namespaces)
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
        where = "any namespace" if jobs.all_namespaces else f"namespace {jobs.namespace!r}"
        with api_errors(f"cannot list PgJobs in {where}"):
            listing = jobs.list_all(selector)
        for obj in listing.get("items") or []:
            tracker.apply("ADDED", obj, initial=True)
        if tracker.done():
            return True
        version = str(listing.get("metadata", {}).get("resourceVersion", ""))
        outcome = watch_from(jobs, tracker, version, deadline)
        if outcome is not None:
            return outcome


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
