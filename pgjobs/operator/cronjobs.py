"""PgCronJobs (leader only): at each scheduled time, a PgJob from the jobTemplate.

One loop lists the PgCronJobs and the PgJobs they own every `maintenance_interval`, and wakes
at the next scheduled time in between. Each round, per PgCronJob: the history limits delete old
finished PgJobs, the schedule (`schedules.due`) and the concurrency policy decide whether to
create the PgJob of the latest due time, and the status records it. The decisions are the pure
functions of `schedules`; this module only reads and writes objects.

Correctness does not rest on leadership: a scheduled time's PgJob has a name derived from the
time, so a second replica, or a new leader after a failover that finds the time not yet in the
status, creates the same name and the API server answers AlreadyExists. The PgJobs are ordinary
PgJobs: the PgJob handlers (and the namespace policy) take them from there.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
from collections.abc import Mapping
from typing import Any

from pgjobs import crd
from pgjobs.operator import context, handlers, jobtemplates, kube, schedules

logger = logging.getLogger(__name__)

Json = dict[str, Any]
UTC = datetime.UTC

#: The condition that says whether the operator can use spec.schedule and spec.timeZone.
SCHEDULE_VALID = "ScheduleValid"
#: Events remembered as posted, at most (a Forbid that skips every minute adds one a minute).
REPORTED_LIMIT = 10_000


@dataclasses.dataclass
class Scheduler:
    """The leader's PgCronJob loop; remembers which Events it posted, so a round that finds the
    same thing again (a run Forbid holds back) does not post it again."""

    ctx: context.Context
    reported: set[tuple[str, str, str]] = dataclasses.field(default_factory=set)
    #: Whether the last listing found no PgCronJob CRD (and said so).
    crd_missing: bool = False

    async def run(self) -> None:
        """Rounds until cancelled (when this replica stops leading)."""
        while True:
            wake = await self.run_once(datetime.datetime.now(UTC))
            context.stop_if_cancelled()
            await asyncio.sleep(self._pause(wake))

    def _pause(self, wake: datetime.datetime | None) -> float:
        interval = self.ctx.settings.maintenance_interval
        if wake is None:
            return interval
        # A little after the time: the round that wakes must see it as past.
        until = (wake - datetime.datetime.now(UTC)).total_seconds() + 0.05
        return max(0.0, min(interval, until))

    async def run_once(self, now: datetime.datetime) -> datetime.datetime | None:
        """One round over every PgCronJob; returns the earliest next scheduled time."""
        try:
            cronjobs = await self.ctx.kube.list_objects(crd.CRON_PLURAL, self.ctx.settings.namespaces)
            owned = await self.ctx.kube.list_objects(crd.PLURAL, self.ctx.settings.namespaces, crd.CRON_LABEL)
        except kube.KubeError as error:
            self._say_not_listed(error)
            return None
        except handlers.UNREACHABLE as error:
            logger.warning("PgCronJobs not listed: %s", error)
            return None
        self.crd_missing = False
        wakes = []
        for cronjob in cronjobs:
            uid = cronjob["metadata"]["uid"]
            runs = [job for job in owned if jobtemplates.owned_by(job, uid)]
            wake = await self._reconcile_safely(cronjob, runs, now)
            if wake is not None:
                wakes.append(wake)
        return min(wakes, default=None)

    def _say_not_listed(self, error: kube.KubeError) -> None:
        """A cluster without the PgCronJob CRD (an upgrade that did not apply it): said once,
        since PgJobs work without it."""
        if error.status != 404:
            logger.warning("PgCronJobs not listed: %s", error)
        elif not self.crd_missing:
            self.crd_missing = True
            logger.warning(
                "the PgCronJob CRD (%s) is not installed: no PgCronJob is scheduled until"
                " kubectl apply --server-side -f crds/pgjobs.dev_pgcronjobs.yaml",
                crd.CRON_CRD_NAME,
            )

    async def _reconcile_safely(
        self, cronjob: Json, runs: list[Json], now: datetime.datetime
    ) -> datetime.datetime | None:
        """One PgCronJob; its failure is logged and retried next round, never the loop's end."""
        try:
            return await self.reconcile(cronjob, runs, now)
        except context.NotLeading:
            raise
        except handlers.UNREACHABLE as error:
            logger.warning("PgCronJob %s: %s", _name(cronjob), error)
        except Exception:
            context.stop_if_cancelled()
            logger.exception("PgCronJob %s failed", _name(cronjob))
        return None

    async def reconcile(
        self, cronjob: Json, runs: list[Json], now: datetime.datetime
    ) -> datetime.datetime | None:
        """Bring one PgCronJob up to `now`; returns its next scheduled time (None: not scheduled)."""
        if cronjob["metadata"].get("deletionTimestamp"):
            return None
        spec = cronjob["spec"]
        runs = await self._trim_history(cronjob, runs)
        try:
            schedule = schedules.parse(spec["schedule"], spec.get("timeZone"))
        except schedules.InvalidSchedule as error:
            await self._report_invalid(cronjob, runs, error)
            return None
        status = Status.of(cronjob, runs)
        due = schedules.due(schedule, status.last_schedule(cronjob), now, spec.get("startingDeadlineSeconds"))
        if due.time is not None and not spec.get("suspend"):
            await self._run_due(cronjob, runs, status, due)
        await self._write_status(cronjob, status.body(cronjob, valid_condition(cronjob)))
        return due.next

    async def _run_due(self, cronjob: Json, runs: list[Json], status: Status, due: schedules.Due) -> None:
        assert due.time is not None
        name = jobtemplates.job_name(cronjob["metadata"]["name"], due.time)
        if due.too_many_missed:
            await self._event_once(
                cronjob, "Warning", "TooManyMissedTimes",
                f"more than {schedules.MISSED_LIMIT} scheduled times were missed; only the latest,"
                f" {kube.timestamp(due.time)}, runs (set startingDeadlineSeconds to bound the look back)",
            )  # fmt: skip
        if any(run["metadata"]["name"] == name for run in runs):
            status.scheduled(due.time, None)  # created earlier (by a replica that lost its lead)
            return
        policy = schedules.ConcurrencyPolicy(cronjob["spec"].get("concurrencyPolicy", "Allow"))
        action = schedules.decide(policy, len(status.active))
        if action is schedules.Action.SKIP:
            await self._event_once(
                cronjob, "Normal", "JobAlreadyActive",
                f"the run of {kube.timestamp(due.time)} waits: concurrencyPolicy is Forbid and"
                f" {', '.join(ref['name'] for ref in status.active)} has not finished",
            )  # fmt: skip
            return
        if action is schedules.Action.REPLACE:
            await self._replace(cronjob, status)
        created = await self._create(cronjob, name, due.time)
        status.scheduled(due.time, created)

    async def _create(self, cronjob: Json, name: str, scheduled: datetime.datetime) -> Json | None:
        """Create the PgJob of a scheduled time; None when it exists already."""
        body = jobtemplates.pgjob_from(cronjob, name=name)
        body["metadata"].setdefault("annotations", {})[jobtemplates.SCHEDULED_ANNOTATION] = kube.timestamp(
            scheduled
        )
        self.ctx.fence()
        created = await self.ctx.kube.create_pgjob(body)
        if created is None:
            logger.info("PgCronJob %s: PgJob %s exists already", _name(cronjob), name)
            return None
        logger.info("PgCronJob %s: created PgJob %s for %s", _name(cronjob), name, kube.timestamp(scheduled))
        await self._event(cronjob, "Normal", "SuccessfulCreate", f"created PgJob {name}")
        return created

    async def _replace(self, cronjob: Json, status: Status) -> None:
        """Delete the unfinished PgJobs: their finalizer stops a running job, then removes its row."""
        for ref in list(status.active):
            self.ctx.fence()
            if await self.ctx.kube.delete_pgjob(ref["namespace"], ref["name"], ref["uid"]):
                await self._event(
                    cronjob,
                    "Normal",
                    "SuccessfulDelete",
                    f"deleted PgJob {ref['name']}: concurrencyPolicy is Replace",
                )
            status.active.remove(ref)

    async def _trim_history(self, cronjob: Json, runs: list[Json]) -> list[Json]:
        """Delete the finished PgJobs beyond the history limits; the PgJobs that remain."""
        spec = cronjob["spec"]
        doomed = schedules.beyond_history(
            [_run(job) for job in runs if not job["metadata"].get("deletionTimestamp")],
            int(spec.get("successfulJobsHistoryLimit", schedules.SUCCESSFUL_HISTORY)),
            int(spec.get("failedJobsHistoryLimit", schedules.FAILED_HISTORY)),
        )
        names = {run.name for run in doomed}
        for job in runs:
            meta = job["metadata"]
            if meta["name"] in names:
                self.ctx.fence()
                # The version read here: a PgJob restarted since it was listed is kept this round.
                await self.ctx.kube.delete_pgjob(
                    meta["namespace"], meta["name"], meta["uid"], meta["resourceVersion"]
                )
        return [job for job in runs if job["metadata"]["name"] not in names]

    async def _report_invalid(
        self, cronjob: Json, runs: list[Json], error: schedules.InvalidSchedule
    ) -> None:
        """A schedule or time zone the operator cannot use: a condition and a Warning, no runs."""
        condition = _condition(cronjob, "False", error.reason, str(error))
        said = {key: _previous_condition(cronjob).get(key) for key in ("status", "reason", "message")}
        written = await self._write_status(cronjob, Status.of(cronjob, runs).body(cronjob, condition))
        if written and said != {key: condition[key] for key in said}:
            await self._event(cronjob, "Warning", error.reason, str(error))

    async def _write_status(self, cronjob: Json, status: Json) -> bool:
        """Patch the status when it differs from the one read; whether it did."""
        current = cronjob.get("status") or {}
        if all(current.get(key) == value for key, value in status.items()):
            return False
        meta = cronjob["metadata"]
        self.ctx.fence()
        return await self.ctx.kube.patch_cronjob_status(meta["namespace"], meta["name"], status, meta["uid"])

    async def _event_once(self, cronjob: Json, kind: str, reason: str, message: str) -> None:
        key = (cronjob["metadata"]["uid"], reason, message)
        if len(self.reported) >= REPORTED_LIMIT:
            self.reported.clear()  # bounded memory; at worst an Event is posted a second time
        if key not in self.reported:
            self.reported.add(key)
            await self._event(cronjob, kind, reason, message)

    async def _event(self, cronjob: Json, kind: str, reason: str, message: str) -> None:
        """An Event on the PgCronJob; best effort (the status and the PgJobs say the same)."""
        meta = cronjob["metadata"]
        involved = {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]}
        try:
            await self.ctx.kube.post_event(involved, kind, reason, message, crd.CRON_KIND)
        except handlers.UNREACHABLE as error:
            logger.warning("event %s for PgCronJob %s not posted: %s", reason, _name(cronjob), error)


@dataclasses.dataclass
class Status:
    """The status a round computes: from the PgJobs it listed, plus what it scheduled."""

    active: list[Json]
    last_schedule_time: str | None
    last_successful_time: str | None

    @classmethod
    def of(cls, cronjob: Json, runs: list[Json]) -> Status:
        current = cronjob.get("status") or {}
        # A PgJob being deleted (Replace, a user) is on its way out: no longer active.
        unfinished = [
            job
            for job in runs
            if not schedules.is_finished(_phase(job)) and not job["metadata"].get("deletionTimestamp")
        ]
        finished_at = [
            str(job["status"]["finishedAt"])
            for job in runs
            if _phase(job) == schedules.SUCCEEDED_PHASE and (job.get("status") or {}).get("finishedAt")
        ]
        known = current.get("lastSuccessfulTime")
        last_success = max([*finished_at, *([known] if known else [])], key=_parse, default=None)
        return cls([_reference(job) for job in unfinished], current.get("lastScheduleTime"), last_success)

    def last_schedule(self, cronjob: Json) -> datetime.datetime:
        """Where the schedule resumes: the last scheduled time, else the PgCronJob's creation."""
        return _parse(self.last_schedule_time or cronjob["metadata"]["creationTimestamp"])

    def scheduled(self, time: datetime.datetime, created: Json | None) -> None:
        self.last_schedule_time = kube.timestamp(time)
        if created is not None:
            self.active.append(_reference(created))

    def body(self, cronjob: Json, condition: Json) -> Json:
        body: Json = {
            "active": sorted(self.active, key=lambda ref: str(ref["name"])),
            "activeCount": len(self.active),
            "observedGeneration": cronjob["metadata"].get("generation", 1),
            "conditions": [condition],
        }
        if self.last_schedule_time:
            body["lastScheduleTime"] = self.last_schedule_time
        if self.last_successful_time:
            body["lastSuccessfulTime"] = self.last_successful_time
        return body


def valid_condition(cronjob: Json) -> Json:
    return _condition(cronjob, "True", "Valid", "spec.schedule and spec.timeZone are valid")


def _condition(cronjob: Json, state: str, reason: str, message: str) -> Json:
    """The ScheduleValid condition, keeping its lastTransitionTime while its status stays."""
    meta = cronjob["metadata"]
    previous = _previous_condition(cronjob)
    since = previous.get("lastTransitionTime") if previous.get("status") == state else None
    return {
        "type": SCHEDULE_VALID, "status": state, "reason": reason, "message": message,
        "lastTransitionTime": since or kube.timestamp(datetime.datetime.now(UTC)),
        "observedGeneration": meta.get("generation", 1),
    }  # fmt: skip


def _previous_condition(cronjob: Json) -> Json:
    conditions = (cronjob.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == SCHEDULE_VALID), {})


def _reference(job: Mapping[str, Any]) -> Json:
    meta = job["metadata"]
    return jobtemplates.reference(crd.KIND, meta, namespace=meta["namespace"])


def _run(job: Json) -> schedules.Run:
    return schedules.Run(job["metadata"]["name"], _phase(job), _parse(job["metadata"]["creationTimestamp"]))


def _phase(job: Mapping[str, Any]) -> str | None:
    phase = (job.get("status") or {}).get("phase")
    return str(phase) if phase else None


def _parse(stamp: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _name(cronjob: Json) -> str:
    meta = cronjob["metadata"]
    return f"{meta['namespace']}/{meta['name']}"
