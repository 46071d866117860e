"""PgCronJob scheduling decisions (pgjobs.operator.schedules): parsing, due times, missed times
and startingDeadlineSeconds, DST transitions, concurrency policies, history limits, names."""

from __future__ import annotations

import datetime

import pytest

from pgjobs.operator import jobtemplates, schedules
from pgjobs.operator.schedules import Action, ConcurrencyPolicy, Run

UTC = datetime.UTC


def at(text: str) -> datetime.datetime:
    """A UTC time from "2024-01-01 12:00[:30]"."""
    return datetime.datetime.fromisoformat(text).replace(tzinfo=UTC)


def local(text: str, zone: str, fold: int = 0) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text).replace(
        tzinfo=schedules.parse("* * * * *", zone).zone, fold=fold
    )


# -- parsing -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "expression"),
    [
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("*/15 9-17 * * MON-FRI", "*/15 9-17 * * MON-FRI"),
        ("0 3 ? * *", "0 3 * * *"),
        ("0 3 1 * ?", "0 3 1 * *"),
        ("  0   3 * * *  ", "0 3 * * *"),
    ],
)
def test_accepted_schedules(written: str, expression: str) -> None:
    assert schedules.parse(written, None).expression == expression


@pytest.mark.parametrize(
    "written",
    [
        "",
        "* * * *",
        "* * * * * *",
        "@reboot",
        "@every 5m",
        "61 * * * *",
        "* 24 * * *",
        "0 0 30 2 *",
        "x * * * *",
    ],
)
def test_refused_schedules_name_the_field(written: str) -> None:
    with pytest.raises(schedules.InvalidSchedule) as refused:
        schedules.parse(written, "UTC")
    assert refused.value.field == "schedule" and refused.value.reason == "InvalidSchedule"
    assert str(refused.value).startswith("spec.schedule: ")


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "Europe/Atlantis", "../etc/passwd", "Local"])
def test_refused_time_zones_name_the_field(zone: str) -> None:
    with pytest.raises(schedules.InvalidSchedule) as refused:
        schedules.parse("0 3 * * *", zone)
    assert refused.value.field == "timeZone" and refused.value.reason == "InvalidTimeZone"
    assert zone in str(refused.value)


def test_no_time_zone_is_utc() -> None:
    daily = schedules.parse("0 3 * * *", None)
    assert daily.after(at("2024-01-01 12:00")) == at("2024-01-02 03:00")


def test_a_time_zone_moves_the_times() -> None:
    berlin = schedules.parse("0 3 * * *", "Europe/Berlin")
    assert berlin.after(at("2024-01-01 12:00")) == at("2024-01-02 02:00")  # CET = UTC+1
    assert berlin.after(at("2024-07-01 12:00")) == at("2024-07-02 01:00")  # CEST = UTC+2


def test_after_is_strict_and_latest_includes_the_moment() -> None:
    minutely = schedules.parse("* * * * *", None)
    assert minutely.after(at("2024-01-01 12:00")) == at("2024-01-01 12:01")
    assert minutely.latest(at("2024-01-01 12:00")) == at("2024-01-01 12:00")
    assert minutely.latest(at("2024-01-01 12:00:59.9")) == at("2024-01-01 12:00")


# -- due times, missed times, startingDeadlineSeconds -----------------------------


MINUTELY = schedules.parse("* * * * *", None)
HOURLY = schedules.parse("@hourly", None)


def test_nothing_due_before_the_first_time() -> None:
    due = schedules.due(MINUTELY, at("2024-01-01 12:00:30"), at("2024-01-01 12:00:50"))
    assert due.time is None and due.missed == 0 and due.next == at("2024-01-01 12:01")


def test_due_at_the_scheduled_time() -> None:
    due = schedules.due(MINUTELY, at("2024-01-01 12:00:30"), at("2024-01-01 12:01:00.2"))
    assert (due.time, due.missed, due.next) == (at("2024-01-01 12:01"), 1, at("2024-01-01 12:02"))


def test_a_scheduled_time_runs_once() -> None:
    # lastScheduleTime is the time just run: nothing until the next one.
    assert schedules.due(MINUTELY, at("2024-01-01 12:01"), at("2024-01-01 12:01:40")).time is None


def test_missed_times_run_only_the_latest() -> None:
    # The operator was down from 12:00 to 15:10: three hourly times missed, one run (15:00).
    due = schedules.due(HOURLY, at("2024-01-01 12:00"), at("2024-01-01 15:10"))
    assert (due.time, due.missed, due.too_many_missed) == (at("2024-01-01 15:00"), 3, False)


def test_too_many_missed_times_are_counted_to_the_limit() -> None:
    due = schedules.due(MINUTELY, at("2024-01-01 00:00"), at("2024-01-02 00:00:05"))
    assert due.time == at("2024-01-02 00:00")
    assert due.missed == schedules.MISSED_LIMIT + 1 and due.too_many_missed


def test_exactly_the_limit_is_not_too_many() -> None:
    due = schedules.due(MINUTELY, at("2024-01-01 00:00"), at("2024-01-01 01:40:30"))
    assert due.missed == schedules.MISSED_LIMIT and not due.too_many_missed


def test_starting_deadline_skips_times_older_than_it() -> None:
    # Down from 12:00 to 15:10 with a deadline of 5 minutes: 15:00 is too old, nothing runs.
    due = schedules.due(HOURLY, at("2024-01-01 12:00"), at("2024-01-01 15:10"), deadline_seconds=300)
    assert due.time is None and due.next == at("2024-01-01 16:00")


def test_starting_deadline_still_runs_a_time_within_it() -> None:
    due = schedules.due(HOURLY, at("2024-01-01 12:00"), at("2024-01-01 15:04"), deadline_seconds=300)
    assert (due.time, due.missed) == (at("2024-01-01 15:00"), 1)


def test_starting_deadline_bounds_the_count_of_missed_times() -> None:
    # A day of missed minutes, but only the last 10 minutes are looked at: no warning.
    due = schedules.due(MINUTELY, at("2024-01-01 00:00"), at("2024-01-02 00:00:05"), deadline_seconds=600)
    assert due.time == at("2024-01-02 00:00") and due.missed == 10 and not due.too_many_missed


def test_a_short_deadline_needs_a_prompt_round() -> None:
    # As Kubernetes: a time is looked at only while it is within the deadline, so 0 never runs
    # (Kubernetes' docs warn below 10 seconds) and 10 runs a round that comes 5 seconds late.
    assert schedules.due(MINUTELY, at("2024-01-01 12:00"), at("2024-01-01 12:01"), 0).time is None
    late = schedules.due(MINUTELY, at("2024-01-01 12:00"), at("2024-01-01 12:01:05"), 10)
    assert late.time == at("2024-01-01 12:01")
    assert schedules.due(MINUTELY, at("2024-01-01 12:00"), at("2024-01-01 12:01:11"), 10).time is None


# -- daylight-saving transitions (America/New_York, 2024) --------------------------
# Spring forward: 2024-03-10 02:00 EST -> 03:00 EDT (02:30 does not exist).
# Fall back: 2024-11-03 02:00 EDT -> 01:00 EST (01:30 happens twice).


def times(schedule: schedules.Schedule, start: datetime.datetime, count: int) -> list[datetime.datetime]:
    found, moment = [], start
    for _ in range(count):
        moment = schedule.after(moment)
        found.append(moment)
    return found


def test_spring_forward_a_time_in_the_gap_runs_when_the_gap_ends() -> None:
    nightly = schedules.parse("30 2 * * *", "America/New_York")
    runs = times(nightly, at("2024-03-09 12:00"), 3)
    # 03-10 02:30 does not exist: it runs at 03:00 EDT (07:00 UTC), once; the days around are normal.
    assert runs == [at("2024-03-10 07:00"), at("2024-03-11 06:30"), at("2024-03-12 06:30")]


def test_spring_forward_hourly_skips_the_missing_hour() -> None:
    hourly = schedules.parse("0 * * * *", "America/New_York")
    runs = times(hourly, local("2024-03-10 00:30", "America/New_York"), 3)
    # 01:00 EST, then 03:00 EDT: one hour of wall-clock time is gone, and only one hour passed.
    assert runs == [at("2024-03-10 06:00"), at("2024-03-10 07:00"), at("2024-03-10 08:00")]


def test_fall_back_a_fixed_time_in_the_repeated_hour_runs_once() -> None:
    nightly = schedules.parse("30 1 * * *", "America/New_York")
    runs = times(nightly, at("2024-11-02 12:00"), 2)
    # 01:30 EDT (05:30 UTC) runs; 01:30 EST an hour later does not; next day 01:30 EST.
    assert runs == [at("2024-11-03 05:30"), at("2024-11-04 06:30")]


def test_fall_back_a_wildcard_hour_runs_in_both_passes() -> None:
    half_hourly = schedules.parse("*/30 * * * *", "America/New_York")
    runs = times(half_hourly, local("2024-11-03 00:45", "America/New_York"), 5)
    # 01:00 and 01:30 happen twice and run twice (an hour apart), as a schedule of "every 30 minutes" wants.
    assert runs == [at(f"2024-11-03 {t}") for t in ("05:00", "05:30", "06:00", "06:30", "07:00")]


def test_fall_back_runs_get_distinct_names() -> None:
    half_hourly = schedules.parse("*/30 * * * *", "America/New_York")
    runs = times(half_hourly, local("2024-11-03 00:45", "America/New_York"), 4)
    names = {jobtemplates.job_name("report", moment) for moment in runs}
    assert len(names) == 4


def test_due_across_fall_back_after_the_first_pass() -> None:
    # 01:30 EDT ran (last); at 01:40 EST nothing is due again for a fixed-time schedule.
    nightly = schedules.parse("30 1 * * *", "America/New_York")
    due = schedules.due(nightly, at("2024-11-03 05:30"), at("2024-11-03 06:40"))
    assert due.time is None and due.next == at("2024-11-04 06:30")


def test_due_across_spring_forward() -> None:
    nightly = schedules.parse("30 2 * * *", "America/New_York")
    due = schedules.due(nightly, at("2024-03-09 07:30"), at("2024-03-10 07:00:10"))
    assert due.time == at("2024-03-10 07:00") and due.missed == 1


# -- concurrency policies --------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "unfinished", "action"),
    [
        (ConcurrencyPolicy.ALLOW, 0, Action.CREATE),
        (ConcurrencyPolicy.ALLOW, 2, Action.CREATE),
        (ConcurrencyPolicy.FORBID, 0, Action.CREATE),
        (ConcurrencyPolicy.FORBID, 1, Action.SKIP),
        (ConcurrencyPolicy.REPLACE, 0, Action.CREATE),
        (ConcurrencyPolicy.REPLACE, 3, Action.REPLACE),
    ],
)
def test_concurrency_policy(policy: ConcurrencyPolicy, unfinished: int, action: Action) -> None:
    assert schedules.decide(policy, unfinished) is action


PHASES_FINISHED = [(None, False), ("Pending", False), ("Running", False), ("Completed", True),
                   ("Failed", True), ("Stopped", True)]  # fmt: skip


@pytest.mark.parametrize(("phase", "finished"), PHASES_FINISHED)
def test_what_counts_as_finished(phase: str | None, finished: bool) -> None:
    assert schedules.is_finished(phase) is finished


# -- history limits ---------------------------------------------------------------


def run(name: str, phase: str | None, minute: int) -> Run:
    return Run(name, phase, at("2024-01-01 12:00") + datetime.timedelta(minutes=minute))


def test_history_keeps_the_newest_within_each_limit() -> None:
    runs = [
        run("c1", "Completed", 1), run("c2", "Completed", 2), run("c3", "Completed", 3),
        run("c4", "Completed", 4), run("c5", "Completed", 5),
        run("f1", "Failed", 6), run("s1", "Stopped", 7), run("f2", "Failed", 8),
        run("p", "Pending", 0), run("r", "Running", 0), run("new", None, 0),
    ]  # fmt: skip
    doomed = {r.name for r in schedules.beyond_history(runs, successful_limit=3, failed_limit=1)}
    # The two oldest Completed beyond 3; Failed and Stopped share the failed limit; unfinished stay.
    assert doomed == {"c1", "c2", "f1", "s1"}


def test_history_limit_zero_deletes_every_finished_run() -> None:
    runs = [run("c1", "Completed", 1), run("f1", "Failed", 2), run("r", "Running", 3)]
    assert {r.name for r in schedules.beyond_history(runs, 0, 0)} == {"c1", "f1"}


def test_history_within_the_limits_deletes_nothing() -> None:
    runs = [run("c1", "Completed", 1), run("f1", "Failed", 2)]
    assert schedules.beyond_history(runs, schedules.SUCCESSFUL_HISTORY, schedules.FAILED_HISTORY) == []


# -- names and the PgJob made from a template ---------------------------------------


def test_job_name_is_minutes_since_the_epoch() -> None:
    assert jobtemplates.job_name("nightly", at("2024-01-01 03:00")) == f"nightly-{1704078000 // 60}"
    assert jobtemplates.job_name("nightly", at("2024-01-01 03:00:40")) == jobtemplates.job_name(
        "nightly", at("2024-01-01 03:00")
    )
    assert jobtemplates.job_name("nightly", at("2024-01-01 03:01")) != jobtemplates.job_name(
        "nightly", at("2024-01-01 03:00")
    )


def test_longest_names_fit_a_label_and_a_name() -> None:
    # The CRD caps a PgCronJob's name at 52 characters, as Kubernetes caps a CronJob's.
    name = jobtemplates.job_name("n" * 52, at("2999-12-31 23:59"))
    assert len(name) <= 63


def test_manual_runs_never_take_a_scheduled_name() -> None:
    assert jobtemplates.manual_prefix("nightly") == "nightly-manual-"


CRONJOB = {
    "apiVersion": "pgjobs.dev/v1alpha1",
    "kind": "PgCronJob",
    "metadata": {"name": "nightly", "namespace": "team-a", "uid": "u-1"},
    "spec": {
        "schedule": "@daily",
        "jobTemplate": {
            "metadata": {
                "labels": {"app": "reports", "pgjobs.dev/cronjob": "spoofed"},
                "annotations": {"a": "b"},
            },
            "spec": {"task": "sleep", "args": {"seconds": 1}, "priority": "High"},
        },
    },
}


def test_pgjob_from_template() -> None:
    job = jobtemplates.pgjob_from(CRONJOB, name="nightly-28401120")
    meta = job["metadata"]
    assert (job["apiVersion"], job["kind"]) == ("pgjobs.dev/v1alpha1", "PgJob")
    assert meta["name"] == "nightly-28401120" and meta["namespace"] == "team-a"
    assert meta["labels"] == {"app": "reports", "pgjobs.dev/cronjob": "nightly"}
    assert meta["annotations"] == {"a": "b"}
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "pgjobs.dev/v1alpha1",
            "kind": "PgCronJob",
            "name": "nightly",
            "uid": "u-1",
            "controller": True,
        }
    ]
    assert job["spec"] == CRONJOB["spec"]["jobTemplate"]["spec"]
    job["spec"]["args"]["seconds"] = 2  # a copy: the template is not changed
    assert CRONJOB["spec"]["jobTemplate"]["spec"]["args"] == {"seconds": 1}
    assert jobtemplates.owned_by(job, "u-1") and not jobtemplates.owned_by(job, "u-2")


def test_manual_pgjob_from_template_uses_generate_name() -> None:
    job = jobtemplates.pgjob_from(CRONJOB, generate_name=jobtemplates.manual_prefix("nightly"))
    assert job["metadata"]["generateName"] == "nightly-manual-" and "name" not in job["metadata"]
