"""The worker's settings: one typed object, each default defined here once.

The `pgjobs worker` command fills it from its options; the chart's values and the docs are
checked against these defaults by a test.
"""

from __future__ import annotations

import dataclasses
import enum
import socket

from pgjobs import states


class OnShutdown(enum.StrEnum):
    #: Hand the job back to Pending without charging an attempt: a scale-down loses nothing.
    REQUEUE = "requeue"
    #: Mark it Stopped, as the system pgjobs replaces did.
    STOP = "stop"


#: The worker's own log: text lines, or JSON lines (`pgjobs.worker.capture.JsonFormatter`).
LOG_FORMATS = ("text", "json")


@dataclasses.dataclass(frozen=True)
class WorkerSettings:
    #: Queues to take jobs from.
    queues: tuple[str, ...] = ("default",)
    #: Jobs run at the same time (one slot each).
    concurrency: int = 1
    #: Seconds between heartbeats.
    heartbeat_interval: float = 2.0
    #: A worker silent this long is presumed dead and its jobs are rescued.
    stall_timeout: float = states.STALL_TIMEOUT
    #: How often idle slots look for work when no notification arrives.
    poll_interval: float = 2.0
    #: How long a stopped or timed-out task may take to end by itself before it is cancelled.
    stop_grace: float = 5.0
    #: On SIGTERM, seconds running jobs get to finish before they are handed back.
    shutdown_grace: float = 25.0
    #: What happens to jobs still running when the shutdown grace is over.
    on_shutdown: OnShutdown = OnShutdown.REQUEUE
    #: Drain the queues, then exit.
    burst: bool = False
    #: Allow the `shell` task, which runs commands from job args.
    enable_shell: bool = False
    #: Minimum seconds between two progress writes of one job (the final value is always written).
    progress_interval: float = 1.0
    #: Serve Prometheus metrics on this port.
    metrics_port: int | None = None
    #: Serve /healthz and /readyz for the kubelet's probes on this port (pgjobs.worker.health).
    health_port: int | None = None
    #: The address they listen on; "": every interface in a pod, else the loopback
    #: (`probes.probe_address`).
    health_address: str = ""
    #: How the worker writes its own log: "text" lines, or "json" lines (with job_id and attempt
    #: on the lines a running task emits; one of LOG_FORMATS).
    log_format: str = "text"
    #: The name shown for this worker in listings (in Kubernetes, the pod name).
    hostname: str = dataclasses.field(default_factory=socket.gethostname)

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {self.concurrency}")
        if self.stall_timeout <= 2 * self.heartbeat_interval:
            raise ValueError(
                f"stall timeout ({self.stall_timeout}s) must exceed two heartbeat intervals "
                f"({self.heartbeat_interval}s each), or live workers would be presumed dead"
            )
        if not self.queues:
            raise ValueError("a worker needs at least one queue")
