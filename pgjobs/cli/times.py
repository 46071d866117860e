"""Times and durations as the command lines take them: `--at 2026-12-24T18:00:00Z`, `--in 10m`."""

from __future__ import annotations

import datetime
import re

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


def parse_time(text: str) -> datetime.datetime:
    """An RFC 3339 time with its offset (2026-12-24T18:00:00Z, 2026-12-24T19:00:00+01:00)."""
    try:
        parsed = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"invalid time {text!r}: use RFC 3339, e.g. 2026-12-24T18:00:00Z") from None
    if parsed.tzinfo is None:
        raise ValueError(f"time {text!r} has no offset: add Z (UTC) or one such as +01:00")
    return parsed


def run_at(
    at: str | None, after: str | None, now: datetime.datetime | None = None
) -> datetime.datetime | None:
    """The time of `--at TIME` or `--in DURATION` (at most one is given), None for neither."""
    if at is not None:
        return parse_time(at)
    if after is not None:
        return (now or datetime.datetime.now(datetime.UTC)) + datetime.timedelta(
            seconds=parse_duration(after)
        )
    return None


def rfc3339(moment: datetime.datetime) -> str:
    """The time in UTC, to the second, as Kubernetes writes times."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
