"""Checks of new jobs with messages that name the field: the database enforces the same rules."""

from __future__ import annotations

import re

from pgjobs.store.records import InvalidJob, NewJob

__all__ = ["InvalidJob", "check_new_job"]

TASK_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,127}$")
QUEUE_NAME = re.compile(r"^[a-z0-9]([a-z0-9_.-]{0,61}[a-z0-9])?$")


def check_new_job(job: NewJob) -> None:
    if not TASK_NAME.match(job.task):
        raise InvalidJob(
            f"task {job.task!r} is not a valid task name: letters, digits, "
            "'_', '.', ':' and '-', starting with a letter or '_', at most 128"
        )
    if not QUEUE_NAME.match(job.queue):
        raise InvalidJob(
            f"queue {job.queue!r} is not a valid queue name: lower-case letters, "
            "digits, '_', '.' and '-', at most 63, starting and ending alphanumeric"
        )
    _check_range("max_attempts", job.max_attempts, 1, 100)
    _check_range("backoff_seconds", job.backoff_seconds, 0, 86400)
    if job.timeout_seconds is not None:
        _check_range("timeout_seconds", job.timeout_seconds, 1, 604800)


def _check_range(field: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidJob(f"{field} must be a whole number from {low} to {high}, got {value!r}")
