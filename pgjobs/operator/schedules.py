"""PgCronJob scheduling as pure functions: when a run is due, what the concurrency policy says,
and which finished PgJobs the history limits delete.

No I/O and no clock: the caller passes `now`, so every rule (missed times, startingDeadlineSeconds,
daylight-saving transitions) is unit-tested. The rules are Kubernetes CronJob's; the cron
expressions are evaluated by cronsim, which follows Debian cron, also across DST transitions.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import zoneinfo
from collections.abc import Iterable, Sequence

import cronsim

from pgjobs.states import JobState

#: The @-forms Kubernetes CronJob accepts (robfig/cron's), as the five fields they stand for.
SHORTHANDS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
#: Missed times beyond this many are not counted, and a Warning says so (Kubernetes' limit).
MISSED_LIMIT = 100
#: spec.timeZone unset: the schedule is read in UTC (Kubernetes uses the controller's zone,
#: which is UTC in practically every cluster).
DEFAULT_ZONE = "UTC"
#: The CRD's defaults of the history limits (Kubernetes CronJob's).
SUCCESSFUL_HISTORY = 3
FAILED_HISTORY = 1

UTC = datetime.UTC


class InvalidSchedule(ValueError):
    """A schedule or time zone the operator cannot use; `field` names the spec field."""

    def __init__(self, field: str, reason: str, message: str) -> None:
        super().__init__(f"spec.{field}: {message}")
        self.field = field
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A checked cron expression (five fields) read in a time zone."""

    expression: str
    zone: zoneinfo.ZoneInfo

    def after(self, moment: datetime.datetime) -> datetime.datetime:
        """The first scheduled time strictly after `moment`, in UTC."""
        return _first(cronsim.CronSim(self.expression, moment.astimezone(self.zone)))

    def latest(self, moment: datetime.datetime) -> datetime.datetime:
        """The last scheduled time at or before `moment`, in UTC."""
        # cronsim's reverse iteration starts strictly before its start: one second later
        # includes `moment` itself (scheduled times are whole minutes).
        start = moment.replace(microsecond=0) + datetime.timedelta(seconds=1)
        return _first(cronsim.CronSim(self.expression, start.astimezone(self.zone), reverse=True))


def _first(times: cronsim.CronSim) -> datetime.datetime:
    return next(times).astimezone(UTC)


def parse(schedule: str, time_zone: str | None) -> Schedule:
    """The Schedule of spec.schedule and spec.timeZone, or InvalidSchedule naming the field."""
    expression = SHORTHANDS.get(schedule.strip(), schedule.strip())
    fields = expression.split()
    if len(fields) != 5:
        raise InvalidSchedule(
            "schedule",
            "InvalidSchedule",
            f"{schedule!r} is not five cron fields or one of {', '.join(SHORTHANDS)}",
        )
    # '?' means "any" in day-of-month and day-of-week for Kubernetes (robfig/cron), not for cronsim.
    for day in (2, 4):
        fields[day] = fields[day].replace("?", "*")
    expression = " ".join(fields)
    zone = _zone(time_zone)
    try:
        cronsim.CronSim(expression, datetime.datetime.now(zone))
    except cronsim.CronSimError as error:
        raise InvalidSchedule("schedule", "InvalidSchedule", f"{schedule!r}: {error}") from None
    return Schedule(expression, zone)


def _zone(name: str | None) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name or DEFAULT_ZONE)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidSchedule(
            "timeZone", "InvalidTimeZone", f"{name!r} is not an IANA time zone, e.g. Europe/Berlin"
        ) from None


@dataclasses.dataclass(frozen=True)
class Due:
    """What a round finds for one PgCronJob at `now`."""

    #: The most recent scheduled time that has not run yet (Kubernetes runs only that one of
    #: several missed times); None when nothing is due.
    time: datetime.datetime | None
    #: Scheduled times that have not run, counted up to MISSED_LIMIT + 1.
    missed: int
    #: The first scheduled time after `now`: when to look again.
    next: datetime.datetime

    @property
    def too_many_missed(self) -> bool:
        return self.missed > MISSED_LIMIT


def due(
    schedule: Schedule,
    last: datetime.datetime,
    now: datetime.datetime,
    deadline_seconds: int | None = None,
) -> Due:
    """The time to run at `now`, given the last scheduled time (or the PgCronJob's creation).

    As Kubernetes CronJob: times before `now - startingDeadlineSeconds` are not looked at (they
    are skipped), and of the unmet times that remain only the latest is run.
    """
    earliest = last
    if deadline_seconds is not None:
        earliest = max(earliest, now - datetime.timedelta(seconds=deadline_seconds))
    following = schedule.after(now)
    latest = schedule.latest(now)
    if latest <= earliest:
        return Due(None, 0, following)
    return Due(latest, _count_between(schedule, earliest, latest), following)


def _count_between(schedule: Schedule, earliest: datetime.datetime, latest: datetime.datetime) -> int:
    """Scheduled times in (earliest, latest], up to MISSED_LIMIT + 1."""
    count, moment = 0, earliest
    while count <= MISSED_LIMIT:
        moment = schedule.after(moment)
        if moment > latest:
            break
        count += 1
    return count


class ConcurrencyPolicy(enum.StrEnum):
    ALLOW = "Allow"
    FORBID = "Forbid"
    REPLACE = "Replace"


class Action(enum.Enum):
    #: Create the PgJob of the due time.
    CREATE = "create"
    #: Do not create it: an earlier run is unfinished (Forbid).
    SKIP = "skip"
    #: Delete the unfinished PgJobs, then create it (Replace).
    REPLACE = "replace"


def decide(policy: ConcurrencyPolicy, unfinished: int) -> Action:
    """What to do at a due time while `unfinished` PgJobs of the PgCronJob are not finished."""
    if unfinished == 0 or policy is ConcurrencyPolicy.ALLOW:
        return Action.CREATE
    return Action.SKIP if policy is ConcurrencyPolicy.FORBID else Action.REPLACE


FINISHED_PHASES = frozenset(state.phase for state in (JobState.COMPLETED, JobState.FAILED, JobState.STOPPED))
SUCCEEDED_PHASE = JobState.COMPLETED.phase


def is_finished(phase: str | None) -> bool:
    """Whether a PgJob in this phase is done (no status yet: not finished)."""
    return phase in FINISHED_PHASES


@dataclasses.dataclass(frozen=True)
class Run:
    """One PgJob of a PgCronJob, as the history limits see it."""

    name: str
    phase: str | None
    created: datetime.datetime


def beyond_history(runs: Iterable[Run], successful_limit: int, failed_limit: int) -> list[Run]:
    """The finished runs to delete: the oldest beyond each limit. Completed ones count against
    successfulJobsHistoryLimit, Failed and Stopped ones against failedJobsHistoryLimit."""
    finished = sorted(
        (r for r in runs if is_finished(r.phase)), key=lambda r: (r.created, r.name), reverse=True
    )
    succeeded = [r for r in finished if r.phase == SUCCEEDED_PHASE]
    failed = [r for r in finished if r.phase != SUCCEEDED_PHASE]
    return _oldest_beyond(succeeded, successful_limit) + _oldest_beyond(failed, failed_limit)


def _oldest_beyond(newest_first: Sequence[Run], limit: int) -> list[Run]:
    return list(newest_first[max(limit, 0) :])
