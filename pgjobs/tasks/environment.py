"""The environment of processes that tasks start: an allow-list, never the worker's own.

A worker's environment holds its database login (`DB_PASSWORD`, `PGJOBS_DATABASE_URL`, libpq's
`PG*`), and in a pod whatever else was mounted into it. A process a task starts runs what a job
asked for (the `shell` task runs the job's command): it inherits only the variables named in
`INHERITED` (where to find programs, the locale, the time zone, a home and a temporary
directory) plus those the job or the task give it. An allow-list rather than a deny-list,
because a deny-list misses every secret named in a way nobody thought of (`AWS_*`, `*_KEY`,
`*_DSN`, `SENTRY_URL`, …).

`protect_process` also makes the worker's own memory and `/proc/<pid>/environ` unreadable to
those processes, which run as the same user and could otherwise read the worker's environment
(and its password) from there.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
from collections.abc import Mapping

#: Variables a started process inherits from the worker when they are set.
INHERITED = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
    "LC_NUMERIC",
    "LC_TIME",
    "LC_COLLATE",
    "TZ",
    "TMPDIR",
    "TERM",
)
#: Names a job may set: an environment variable name, nothing else.
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")

_PR_SET_DUMPABLE = 4


def scrubbed(
    extra: Mapping[str, str] | None = None, source: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment for a process a task starts: `INHERITED` from `source` (the worker's
    environment by default), then `extra` (what the job or the task adds) over it."""
    source = os.environ if source is None else source
    environment = {name: source[name] for name in INHERITED if name in source}
    for name, value in (extra or {}).items():
        if not isinstance(name, str) or not _NAME.match(name) or not isinstance(value, str):
            raise ValueError(
                f"environment variables need a name like NAME_1 and a string value, got {name!r}"
            )
        environment[name] = value
    return environment


def protect_process() -> bool:
    """Make this process non-dumpable (Linux): processes of the same user can then no longer
    read its memory or `/proc/<pid>/environ`. True when it is (or already was)."""
    path = ctypes.util.find_library("c")
    if not path:
        return False
    try:
        libc = ctypes.CDLL(path, use_errno=True)
        return bool(libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False
