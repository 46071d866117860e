"""Job states and priorities: the one place they are declared (the SQL enum mirrors it, checked by a test).

Each state says who moves a job into it and out of it.
"""

from __future__ import annotations

import enum


class JobState(enum.StrEnum):
    """Where a job is in its life. The values are the SQL enum labels; `phase` is the Kubernetes spelling."""

    #: Waiting to be claimed. In: enqueue, a failed attempt with attempts left (after a backoff),
    #: rescue of a stalled attempt, a worker's graceful shutdown, a worker handing back a job it
    #: holds but none of its slots runs (a claim whose answer was lost), start of a Stopped job,
    #: restart.
    #: Out: claimed by a worker (Running), stop (Stopped), delete.
    PENDING = "pending"
    #: A worker holds it and runs it. In: claim. Out: the worker finishes it (Completed, Failed,
    #: Stopped), fails an attempt with attempts left (Pending), shuts down (Pending), or the rescue
    #: sweep finds its worker silent (Pending, or Failed without attempts left).
    RUNNING = "running"
    #: Finished successfully. In: the worker. Out: restart (Pending), delete.
    COMPLETED = "completed"
    #: Finished unsuccessfully with no attempts left (error, timeout, stall, unknown task).
    #: In: the worker or the rescue sweep. Out: restart (Pending), delete.
    FAILED = "failed"
    #: Stopped on request (or by a worker shutting down with `--on-shutdown stop`).
    #: In: stop of a Pending job (at once) or the worker acknowledging a stop of a Running job;
    #: a stop requested while a job ran also wins over its retry, hand-back or rescue.
    #: Out: start or restart (Pending), delete.
    STOPPED = "stopped"

    @property
    def phase(self) -> str:
        """The state as `PgJob.status.phase` and the old system spell it: `Pending`, `Running`, …"""
        return self.value.capitalize()

    @property
    def is_finished(self) -> bool:
        return self in FINISHED_STATES

    @classmethod
    def from_phase(cls, phase: str) -> JobState:
        """Parse `Running`, `running` or `RUNNING`; raises ValueError naming the valid phases."""
        try:
            return cls(phase.strip().lower())
        except ValueError:
            valid = ", ".join(state.phase for state in cls)
            raise ValueError(f"unknown state {phase!r}: expected one of {valid}") from None


FINISHED_STATES = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.STOPPED})

#: Seconds a Running job's worker may stay silent before the rescue sweep moves the job on (to
#: Pending, or Failed without attempts left). Workers, the operator and `pgjobs rescue` share it.
STALL_TIMEOUT = 15.0


class Priority(enum.IntEnum):
    """Claim order: higher first, FIFO within one priority. Stored as a small integer."""

    LOW = 0
    REGULAR = 1
    HIGH = 2

    @property
    def label(self) -> str:
        return self.name.capitalize()

    @classmethod
    def parse(cls, text: str) -> Priority:
        """Parse `High`, `high` or `HIGH`; raises ValueError naming the valid priorities."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            valid = ", ".join(priority.label for priority in cls)
            raise ValueError(f"unknown priority {text!r}: expected one of {valid}") from None
