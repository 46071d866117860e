"""The jobs page's filter and keyset cursor, parsed from a query string: pure, checked, bounded.

Whatever a user types reaches SQL only as a bound parameter; what cannot be a filter (an unknown
phase, a cursor that is not an id, an absurdly long value) is a BadFilter, which the page turns
into a 400 with the reason.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

from pgjobs.states import JobState

#: Jobs on one page of the listing.
PAGE_SIZE = 50
#: The longest value a name filter (namespace, queue, task) or the args text may have: longer
#: than any valid name, short enough that a pasted blob is refused rather than searched.
MAX_VALUE = 256
#: The largest job id (bigint).
MAX_ID = 2**63 - 1
#: "Created within": the choices the page offers, in seconds.
WITHIN = {"15m": 900, "1h": 3600, "6h": 21600, "24h": 86400, "7d": 604800}
#: The query-string keys of the filter, in the order links write them.
KEYS = ("namespace", "queue", "task", "phase", "q", "within")

_LIKE_SPECIAL = re.compile(r"([\\%_])")


class BadFilter(ValueError):
    """A query string that is no filter: the page answers 400 with this message."""


@dataclasses.dataclass(frozen=True)
class JobFilter:
    """What the jobs page shows: each field None (or "") leaves that filter out."""

    namespace: str = ""
    queue: str = ""
    task: str = ""
    phase: JobState | None = None
    #: Text searched for in the args' JSON, case-insensitively.
    q: str = ""
    #: A key of WITHIN: jobs created that recently.
    within: str = ""

    def query(self) -> dict[str, str]:
        """The filter as query-string pairs (empty ones left out), for links and forms."""
        values = {
            "namespace": self.namespace,
            "queue": self.queue,
            "task": self.task,
            "phase": self.phase.phase if self.phase else "",
            "q": self.q,
            "within": self.within,
        }
        return {key: value for key, value in values.items() if value}

    def parameters(self, now: datetime.datetime) -> dict[str, Any]:
        """The filter's parameters of job_page_older / job_page_newer (without cursor and limit)."""
        since = now - datetime.timedelta(seconds=WITHIN[self.within]) if self.within else None
        return {
            "namespace": self.namespace or None,
            "queue": self.queue or None,
            "task": self.task or None,
            "state": self.phase.value if self.phase else None,
            "args_like": f"%{like_escaped(self.q)}%" if self.q else None,
            "since": since,
        }


def like_escaped(text: str) -> str:
    """`text` matched literally by LIKE: its %, _ and backslash escaped."""
    return _LIKE_SPECIAL.sub(r"\\\1", text)


@dataclasses.dataclass(frozen=True)
class Cursor:
    """Where a page starts: the jobs older than `before` (None: the newest). Pages go one way, to
    older jobs, as a keyset walk does cheaply; "Newest" starts over and the browser goes back."""

    before: int | None = None


def parse(params: Mapping[str, str]) -> tuple[JobFilter, Cursor]:
    """The filter and cursor of a query string; BadFilter when a value cannot be one."""
    phase = _text(params, "phase")
    within = _text(params, "within")
    if within and within not in WITHIN:
        raise BadFilter(f"'within' must be one of {', '.join(WITHIN)}")
    try:
        state = JobState.from_phase(phase) if phase else None
    except ValueError as error:
        raise BadFilter(str(error)) from None
    job_filter = JobFilter(
        namespace=_text(params, "namespace"),
        queue=_text(params, "queue"),
        task=_text(params, "task"),
        phase=state,
        q=_text(params, "q"),
        within=within,
    )
    return job_filter, Cursor(before=_id(params, "before"))


def _text(params: Mapping[str, str], key: str) -> str:
    value = params.get(key, "").strip()
    if len(value) > MAX_VALUE:
        raise BadFilter(f"{key!r} is longer than {MAX_VALUE} characters")
    if "\x00" in value:
        raise BadFilter(f"{key!r} holds a NUL character")
    return value


def _id(params: Mapping[str, str], key: str) -> int | None:
    value = params.get(key, "").strip()
    if not value:
        return None
    if not value.isascii() or not value.isdigit() or not 0 < int(value) <= MAX_ID:
        raise BadFilter(f"{key!r} must be a job id (a positive whole number)")
    return int(value)


def job_id(text: str) -> int | None:
    """A job id from a URL path segment; None when it cannot be one (the page is a 404 then)."""
    if not text.isascii() or not text.isdigit() or not 0 < int(text) <= MAX_ID:
        return None
    return int(text)


def link(job_filter: JobFilter, cursor: Cursor | None = None) -> str:
    """The jobs page's URL for a filter and a cursor."""
    pairs = job_filter.query()
    if cursor and cursor.before is not None:
        pairs["before"] = str(cursor.before)
    return "/jobs" + (f"?{urllib.parse.urlencode(pairs)}" if pairs else "")
