"""Checks of new jobs with messages that name the field: the database enforces the same rules.

The numeric ranges are the CRD's bounds too (a unit test compares them), so a PgJob out of range
is refused by the API server and, should an older CRD let it through, by the operator.
"""

from __future__ import annotations

import dataclasses
import datetime
import re

from pgjobs.store.records import InvalidJob, NewJob, ResourceJob

__all__ = ["RANGES", "InvalidJob", "check_new_job", "check_resource_job"]

TASK_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,127}")
QUEUE_NAME = re.compile(r"[a-z0-9]([a-z0-9_.-]{0,61}[a-z0-9])?")
#: The largest value of PostgreSQL's integer columns.
INT32_MAX = 2**31 - 1


@dataclasses.dataclass(frozen=True)
class Range:
    """The bounds of one numeric field, by its name in the PgJob spec and in Python."""

    spec_field: str
    attribute: str
    low: int
    high: int

    def check(self, value: int | None) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int) or not self.low <= value <= self.high:
            raise InvalidJob(
                f"{self.attribute} must be a whole number from {self.low} to {self.high}, got {value!r}"
            )


MAX_ATTEMPTS = Range("maxAttempts", "max_attempts", 1, 100)
BACKOFF_SECONDS = Range("backoffSeconds", "backoff_seconds", 0, 86400)
TIMEOUT_SECONDS = Range("timeoutSeconds", "timeout_seconds", 1, 604800)
TTL_SECONDS_AFTER_FINISHED = Range("ttlSecondsAfterFinished", "ttl_seconds_after_finished", 0, 31536000)
RESTARTS = Range("restarts", "restarts", 0, INT32_MAX)
#: Every integer field of a PgJob's spec.
RANGES = (MAX_ATTEMPTS, BACKOFF_SECONDS, TIMEOUT_SECONDS, TTL_SECONDS_AFTER_FINISHED, RESTARTS)


#: What a unique key may be: printable, no control characters, at most 256 characters.
UNIQUE_KEY = re.compile(r"[^\x00-\x1f\x7f]{1,256}")


def check_new_job(job: NewJob) -> None:
    # fullmatch: `$` would also match before a final newline, which the database refuses.
    if not isinstance(job.task, str) or not TASK_NAME.fullmatch(job.task):
        raise InvalidJob(
            f"task {job.task!r} is not a valid task name: letters, digits, "
            "'_', '.', ':' and '-', starting with a letter or '_', at most 128"
        )
    if not isinstance(job.queue, str) or not QUEUE_NAME.fullmatch(job.queue):
        raise InvalidJob(
            f"queue {job.queue!r} is not a valid queue name: lower-case letters, "
            "digits, '_', '.' and '-', at most 63, starting and ending alphanumeric"
        )
    MAX_ATTEMPTS.check(job.max_attempts)
    BACKOFF_SECONDS.check(job.backoff_seconds)
    TIMEOUT_SECONDS.check(job.timeout_seconds)
    key = job.unique_key
    if key is not None and (not isinstance(key, str) or not UNIQUE_KEY.fullmatch(key)):
        raise InvalidJob(f"unique key {key!r}: 1 to 256 printable characters")
    if job.run_at is not None and (
        not isinstance(job.run_at, datetime.datetime) or job.run_at.tzinfo is None
    ):
        raise InvalidJob(f"run_at {job.run_at!r} must be a time with a time zone, e.g. 2026-12-24T18:00:00Z")


def check_resource_job(resource: ResourceJob) -> None:
    """A PgJob's row: its job, and the fields only PgJobs have."""
    check_new_job(resource.job)
    RESTARTS.check(resource.restarts)
    TTL_SECONDS_AFTER_FINISHED.check(resource.ttl_seconds_after_finished)
