"""How `pgjobs logs` and `kubectl pgjobs logs` print a line of a job's log."""

from __future__ import annotations

import datetime


def line_text(attempt: int, at: datetime.datetime, level: str, message: str) -> str:
    """`2026-12-06T07:50:01.123Z [1] INFO step 1/10`: the time in UTC, [the attempt], the level."""
    when = at.astimezone(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return f"{when} [{attempt}] {level} {message}"
