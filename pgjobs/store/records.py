"""The values the store takes and returns: plain frozen dataclasses, no SQL."""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import json
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from pgjobs.states import JobState, Priority

#: Arguments larger than this are refused: a job queue row is no place for a payload.
MAX_ARGS_BYTES = 64 * 1024
Row = Mapping[str, Any]


#: JSON nested deeper than this is refused (args, results): every level costs the readers of a
#: row (Python's json, kopf, the API server's clients) a level of recursion, and Python's default
#: recursion limit of 1,000 is within a hostile author's reach. Real arguments nest a few levels.
MAX_JSON_DEPTH = 32
#: Task results larger than this fail the job: a result is read back into every listing and, up
#: to the status sync's own smaller bound, into the PgJob's status.
MAX_RESULT_BYTES = 256 * 1024


#: Messages (a task's error, say) longer than this are cut: they go into every listing and status.
MAX_MESSAGE_CHARS = 4096


def json_problem(value: Any, what: str = "it") -> str | None:
    """Why a JSON-like value may not be stored, or None: nested deeper than MAX_JSON_DEPTH, or
    text PostgreSQL's text and jsonb refuse. A loop, not recursion, so any depth is safe to ask."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, Mapping):
            children: Iterable[Any] = itertools.chain.from_iterable(item.items())
        elif isinstance(item, list | tuple):
            children = item
        else:
            problem = _scalar_problem(item)
            if problem:
                return f"{what} {problem}"
            continue
        if depth > MAX_JSON_DEPTH:
            return f"{what} is nested deeper than {MAX_JSON_DEPTH} levels"
        pending.extend((child, depth + 1) for child in children)
    return None


def _scalar_problem(value: Any) -> str | None:
    """A NUL character, or a lone surrogate (what `surrogateescape` makes of undecodable bytes;
    not valid Unicode)."""
    if not isinstance(value, str):
        return None
    if "\x00" in value:
        return "contains a NUL character (\\u0000)"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        return f"contains a lone surrogate ({value[error.start]!r}), which is not valid Unicode"
    return None


def storable_text(text: str | None) -> str | None:
    """Text as PostgreSQL can store it (a task's error message, say): NUL characters become
    '\\0' and lone surrogates their escape, e.g. '\\udcff'; cut to MAX_MESSAGE_CHARS."""
    if text is None:
        return None
    if len(text) > MAX_MESSAGE_CHARS:
        text = f"{text[:MAX_MESSAGE_CHARS]}... ({len(text)} characters)"
    return text.replace("\x00", "\\0").encode("utf-8", "backslashreplace").decode("utf-8")


class InvalidJob(ValueError):
    """A job that cannot be enqueued as given; the message says which field and why."""


@dataclasses.dataclass(frozen=True)
class NewJob:
    """A job to enqueue; `validation.check_new_job` checks it before it reaches the database."""

    task: str
    args: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    priority: Priority = Priority.REGULAR
    queue: str = "default"
    max_attempts: int = 3
    backoff_seconds: int = 10
    timeout_seconds: int | None = None
    #: Not claimed before this time (timezone-aware); None: at once. A past time runs at once.
    run_at: datetime.datetime | None = None
    #: While an unfinished job of the queue holds this key, no second one is written.
    unique_key: str | None = None

    def args_json(self) -> str:
        if not isinstance(self.args, Mapping):
            raise InvalidJob(f"args must be a JSON object, got {type(self.args).__name__}")
        # The walk first: it bounds the depth that json.dumps would recurse into.
        problem = json_problem(self.args, "args")
        if problem:
            raise InvalidJob(f"args cannot be stored: {problem}")
        try:
            text = json.dumps(self.args, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise InvalidJob(f"args cannot be stored as JSON: {error}") from None
        size = len(text.encode())
        if size > MAX_ARGS_BYTES:
            raise InvalidJob(
                f"args are {size} bytes, over the limit of {MAX_ARGS_BYTES} bytes: "
                "pass a reference (a URL or a key) instead of the data"
            )
        return text

    def parameters(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "args": self.args_json(),
            "priority": int(self.priority),
            "queue": self.queue,
            "max_attempts": self.max_attempts,
            "backoff_seconds": self.backoff_seconds,
            "timeout_seconds": self.timeout_seconds,
            "run_at": self.run_at,
            "unique_key": self.unique_key,
        }


@dataclasses.dataclass(frozen=True)
class ClaimedJob:
    """A job a worker holds: `lease` fences every write the worker makes to it."""

    id: int
    task: str
    args: dict[str, Any]
    attempt: int
    max_attempts: int
    backoff_seconds: int
    timeout_seconds: int | None
    lease: int
    created_at: datetime.datetime
    started_at: datetime.datetime

    @classmethod
    def from_row(cls, row: Row) -> ClaimedJob:
        return cls(**{field.name: row[field.name] for field in dataclasses.fields(cls)})

    def retry_delay(self) -> float | None:
        """Seconds until the next attempt after this one fails, None when none is left."""
        if self.attempt >= self.max_attempts:
            return None
        return float(min(self.backoff_seconds * 2 ** (self.attempt - 1), 86400))


class ClaimAnswer(NamedTuple):
    """What the hot statement answers: whether it completed the held job, the job it claimed,
    and, having claimed none, in how many seconds a rate-limited queue of the worker's has a
    start again (None: no queue of the worker's is held back by its rate)."""

    completed: bool
    job: ClaimedJob | None
    throttled_for: float | None = None


@dataclasses.dataclass(frozen=True)
class Job:
    """A job as stored, for listings, the CLI and the status sync."""

    id: int
    task: str
    args: dict[str, Any]
    priority: Priority
    queue: str
    state: JobState
    attempt: int
    max_attempts: int
    progress: int
    message: str | None
    result: Any
    worker_id: uuid.UUID | None
    worker_name: str | None
    stop_requested: bool
    restarts: int
    run_after: datetime.datetime
    created_at: datetime.datetime
    started_at: datetime.datetime | None
    finished_at: datetime.datetime | None
    resource_uid: str | None
    resource_namespace: str | None
    resource_name: str | None
    ttl_seconds_after_finished: int | None
    change_count: int
    #: Since when no live worker can run this pending job (set by the leading operator once it
    #: waited its delay, `OperatorSettings.no_worker_after`); None otherwise.
    no_worker_since: datetime.datetime | None = None

    @classmethod
    def from_row(cls, row: Row) -> Job:
        values = {field.name: row[field.name] for field in dataclasses.fields(cls)}
        values["priority"] = Priority(row["priority"])
        values["state"] = JobState(row["state"])
        return cls(**values)

    def as_json(self) -> dict[str, Any]:
        """The `pgjobs jobs --json` form: states and priorities spelled as in DESIGN.md."""

        def stamp(value: datetime.datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "id": self.id,
            "task": self.task,
            "state": self.state.phase,
            "priority": self.priority.label,
            "queue": self.queue,
            "progress": self.progress,
            "worker": self.worker_name,
            "attempts": self.attempt,
            "max_attempts": self.max_attempts,
            "message": self.message,
            "result": self.result,
            "created_at": stamp(self.created_at),
            "started_at": stamp(self.started_at),
            "finished_at": stamp(self.finished_at),
            "no_worker_since": stamp(self.no_worker_since),
            # The PgJob that owns the row (NAMESPACE/NAME), None for a job enqueued without one.
            "pgjob": f"{self.resource_namespace}/{self.resource_name}" if self.resource_name else None,
        }


@dataclasses.dataclass(frozen=True)
class ResourceJob:
    """What the operator knows of a PgJob when it upserts the row."""

    uid: str
    namespace: str
    name: str
    job: NewJob
    stopped: bool = False
    restarts: int = 0
    ttl_seconds_after_finished: int | None = None


@dataclasses.dataclass(frozen=True)
class Worker:
    id: uuid.UUID
    hostname: str
    pid: int
    queues: list[str]
    concurrency: int
    state: str
    started_at: datetime.datetime
    heartbeat_at: datetime.datetime
    stopped_at: datetime.datetime | None
    running_jobs: int
    #: Slots counted waiting for work (what targeted wake-ups choose by; see migration 0004).
    idle_slots: int
    #: The tasks it can run; None for a worker of code that did not record them (claims any).
    tasks: list[str] | None = None

    @classmethod
    def from_row(cls, row: Row) -> Worker:
        return cls(**{field.name: row[field.name] for field in dataclasses.fields(cls)})


@dataclasses.dataclass(frozen=True)
class Heartbeat:
    """The answer to a heartbeat: what the worker must stop, and what it still holds."""

    known: bool
    was_presumed_dead: bool
    stop_requested: frozenset[int]
    held_leases: frozenset[int]


@dataclasses.dataclass(frozen=True)
class RescuedJob:
    id: int
    state: JobState
    attempt: int
    max_attempts: int
