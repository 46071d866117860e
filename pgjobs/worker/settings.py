"""Worker settings, with the defaults every entry point shares."""

from __future__ import annotations

import dataclasses
import enum
import socket


class OnShutdown(enum.StrEnum):
    #: Hand the job back to Pending without charging an attempt: a scale-down loses nothing.
    REQUEUE = "requeue"
    #: Mark it Stopped, as the system pgjobs replaces did.
    STOP = "stop"


@dataclasses.dataclass(frozen=True)
class WorkerSettings:
    queues: tuple[str, ...] = ("default",)
    concurrency: int = 1
    heartbeat_interval: float = 2.0
    #: A worker silent this long is presumed dead and its jobs are rescued.
    stall_timeout: float = 15.0
    #: How often idle slots look for work when no notification arrives.
    poll_interval: float = 2.0
    #: How long a stopped or timed-out task may take to end by itself before it is cancelled.
    stop_grace: float = 5.0
    shutdown_grace: float = 25.0
    on_shutdown: OnShutdown = OnShutdown.REQUEUE
    #: Drain the queues, then exit.
    burst: bool = False
    enable_shell: bool = False
    #: Minimum seconds between two progress writes of one job (the final value is always written).
    progress_interval: float = 1.0
    metrics_port: int | None = None
    #: Serve /healthz and /readyz for the kubelet's probes on this port (pgjobs.worker.health).
    health_port: int | None = None
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
