"""What a task logs, kept per attempt: captured from `logging`, capped, redacted, batched.

While a task runs, its attempt's `AttemptLog` is the value of `CURRENT` in the task's context
(asyncio tasks and `asyncio.to_thread` threads inherit it), so the one `CaptureHandler` on the
root logger files each record under the attempt that emitted it: the task's context logger,
any logger the task's code uses, and the output of the `shell` task's process (which that task
logs line by line). The worker's own loggers (`pgjobs.worker`, `pgjobs.store`) are not the
task's and stay out. Each attempt stores at most `MAX_ATTEMPT_BYTES` of text, counted before
anything is buffered, then one `TRUNCATED` line; the database password never reaches a line
(`Redactor`). A failed attempt's log ends with why it failed and the task's traceback
(`record_failure`). The slot's `Execution` writes the lines out (`pgjobs.store.job_logs.write`) a
`FLUSH_INTERVAL` after the first one waiting, and at the end of the attempt: a task that logs
nothing costs nothing but the context variable.

`JsonFormatter` is the worker's own log as JSON lines (`pgjobs worker --log-format json`), with
`job_id` and `attempt` on the lines emitted while a task runs.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import json
import logging
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Mapping

import psycopg
from psycopg.conninfo import conninfo_to_dict

from pgjobs.store import connecting
from pgjobs.store.job_logs import NewLine
from pgjobs.store.records import storable_text

#: Bytes of text (UTF-8) one attempt may store; past them, the `TRUNCATED` line and no more.
MAX_ATTEMPT_BYTES = 64 * 1024
#: Seconds a running attempt's first waiting line waits for more before they are written.
FLUSH_INTERVAL = 1.0
TRUNCATED = f"[pgjobs: log truncated: this attempt logged more than {MAX_ATTEMPT_BYTES} bytes]"
REDACTED = "[redacted]"
#: The worker's own loggers: their lines are about the job, not the task's.
_WORKER_LOGGERS = ("pgjobs.worker", "pgjobs.store")

#: The attempt whose task is running in this context (None: the worker's own code).
CURRENT: contextvars.ContextVar[AttemptLog | None] = contextvars.ContextVar("pgjobs_attempt", default=None)


class Redactor:
    """Replaces each secret in a text with `REDACTED`."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so that a secret containing another is replaced whole.
        self._secrets = sorted({secret for secret in secrets if secret}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


def secrets_of(database: connecting.DatabaseSettings, env: Mapping[str, str]) -> list[str]:
    """The passwords the worker holds (DB_PASSWORD, the URL's, PGPASSWORD), as written and as a
    URL spells them."""
    found = [database.password or "", env.get("DB_PASSWORD", ""), env.get("PGPASSWORD", "")]
    # A URL that does not parse has no password to hide: the worker fails to connect with it.
    with contextlib.suppress(psycopg.ProgrammingError):
        found.append(str(conninfo_to_dict(database.url).get("password") or ""))
    return [form for secret in found if secret for form in {secret, urllib.parse.quote(secret, safe="")}]


#: Guards every attempt's waiting lines: taken only when a task logs, so one lock made once
#: costs a job that logs nothing nothing (an attempt is made per job).
_LOCK = threading.Lock()


class AttemptLog:
    """One attempt's lines waiting to be written; `add` may be called from any thread."""

    __slots__ = ("_budget", "_on_first", "_waiting", "attempt", "closed", "job_id")

    def __init__(self, job_id: int, attempt: int, on_first: Callable[[], None]) -> None:
        self.job_id = job_id
        self.attempt = attempt
        #: Called (in the emitting thread) when a line arrives and none was waiting.
        self._on_first = on_first
        self._waiting: list[NewLine] = []
        self._budget = MAX_ATTEMPT_BYTES
        #: The attempt has ended: what its task logs now (a thread it left running) is dropped.
        self.closed = False

    def add(self, level: str, message: str) -> None:
        """Buffer a line (redacted already) within the attempt's budget."""
        line = self._line(level, message)
        if line is None:
            return
        with _LOCK:
            if self.closed:
                return
            first = not self._waiting
            self._waiting.append(line)
        if first:
            self._on_first()

    def _line(self, level: str, message: str) -> NewLine | None:
        """The line to buffer within the budget, the truncation marker once it is spent, or None."""
        if self._budget <= 0:
            return None
        text = storable_text(message) or ""
        size = len(text.encode())
        now = datetime.datetime.now(datetime.UTC)
        if size > self._budget:
            self._budget = 0
            return NewLine(now, "WARNING", TRUNCATED)
        self._budget -= size
        return NewLine(now, level, text)

    def take(self) -> list[NewLine]:
        """The lines waiting, which are no longer waiting."""
        with _LOCK:
            lines, self._waiting = self._waiting, []
        return lines

    def put_back(self, lines: list[NewLine]) -> None:
        """Lines a write could not store (the database away): they go first in the next one."""
        with _LOCK:
            self._waiting[:0] = lines

    def close(self) -> list[NewLine]:
        """The last lines; what the task logs after this is dropped."""
        with _LOCK:
            self.closed = True
            lines, self._waiting = self._waiting, []
        return lines


class CaptureHandler(logging.Handler):
    """On the root logger: files a task's records under its attempt; ignores everything else."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self._redact = redact
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        attempt = CURRENT.get()
        if attempt is None or record.name.startswith(_WORKER_LOGGERS):
            return
        self.file(attempt, record)

    def file(self, attempt: AttemptLog, record: logging.LogRecord) -> None:
        """Keep the record, redacted, as a line of `attempt`."""
        try:
            attempt.add(record.levelname, self._redact(self.format(record)))
        except Exception:  # logging must never fail the task that logs
            self.handleError(record)


def record_failure(attempt: AttemptLog, message: str, error: BaseException | None) -> None:
    """Why the attempt failed, with the traceback of the task's exception, as a line of its log
    (redacted like the task's own); the worker's own log has its one line about it already."""
    exc_info = None if error is None else (type(error), error, error.__traceback__)
    record = logging.LogRecord(
        "pgjobs.task", logging.ERROR, __file__, 0, "the attempt failed: %s", (message,), exc_info
    )
    for handler in logging.getLogger().handlers:
        if isinstance(handler, CaptureHandler):
            handler.file(attempt, record)


def install(redact: Redactor) -> None:
    """Add the capture handler to the root logger (once per process)."""
    root = logging.getLogger()
    if not any(isinstance(handler, CaptureHandler) for handler in root.handlers):
        root.addHandler(CaptureHandler(redact))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the running job's ids."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        attempt = CURRENT.get()
        if attempt is not None:
            entry["job_id"], entry["attempt"] = attempt.job_id, attempt.attempt
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def use_json_format() -> None:
    """Make the root logger's handlers write JSON lines."""
    for handler in logging.getLogger().handlers:
        if not isinstance(handler, CaptureHandler):
            handler.setFormatter(JsonFormatter())
