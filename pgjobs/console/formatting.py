"""How the pages write times, durations and JSON: pure functions, registered as template filters."""

from __future__ import annotations

import datetime
import json
from typing import Any

from pgjobs.states import Priority


def duration(seconds: float) -> str:
    """A short human duration: 42s, 5m 3s, 2h 10m, 3d 4h."""
    whole = max(0, int(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def ago(moment: datetime.datetime | None, now: datetime.datetime) -> str:
    """'5m 3s ago' (or 'in 20s' for a time still to come); '—' for none."""
    if moment is None:
        return "—"
    seconds = (now - moment).total_seconds()
    return f"{duration(seconds)} ago" if seconds >= 0 else f"in {duration(-seconds)}"


def between(start: datetime.datetime | None, end: datetime.datetime | None, now: datetime.datetime) -> str:
    """How long from `start` to `end` (to now while it has not ended); '—' before it started."""
    if start is None:
        return "—"
    return duration(((end or now) - start).total_seconds())


def stamp(moment: datetime.datetime | None) -> str:
    """An absolute time in UTC, to the second."""
    if moment is None:
        return ""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def priority(value: int) -> str:
    """A stored priority as PgJobs spell it: High, Regular, Low."""
    return Priority(value).label
