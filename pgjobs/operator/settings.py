"""The operator's settings: one typed object, each default defined here once.

The `pgjobs operator` command fills it from its options; the chart's values and the docs are
checked against these defaults by a test.
"""

from __future__ import annotations

import dataclasses

from pgjobs import states


@dataclasses.dataclass(frozen=True)
class OperatorSettings:
    #: Namespaces whose PgJobs this operator handles; empty: all.
    namespaces: tuple[str, ...] = ()
    #: A new leader's warm-up before its first rescue sweep, and the stall timeout of a Running
    #: job whose worker has no row any more (each worker's row records its own).
    stall_timeout: float = states.STALL_TIMEOUT
    #: PgJob status writes per second towards the API server (Events get a budget of the same size).
    status_writes_per_second: float = 50.0
    #: Writes allowed at once above the rate (a token bucket's size, as client-go's QPS/Burst).
    status_write_burst: int = 500
    #: Seconds between looks for rows whose status must be copied to Kubernetes.
    sync_interval: float = 0.2
    #: A pending job that no live worker can run (none serves its queue with its task) gets the
    #: condition Runnable=False (NoWorkerForTask) once it has waited this long with no such
    #: worker seen. Two minutes: longer than a worker pod takes to start and register in a
    #: rollout or a scale-up from zero (seconds to tens of seconds, an image pull included) and
    #: than the stall timeout that declares a crashed worker gone, so a fleet being replaced does
    #: not raise it; short enough that whoever waits for the job sees why before wondering.
    no_worker_after: float = 120.0
    #: Seconds between rescue sweeps, TTL cleanups and worker pruning (leader only), and at most
    #: between the leader's rounds over PgCronJobs (which also wake at each scheduled time).
    maintenance_interval: float = 5.0
    #: Seconds a finished job without a PgJob (enqueued by `pgjobs enqueue` or application code)
    #: is kept, then deleted by the leader: three days to look at what happened, and a table
    #: that does not grow for ever (a PgJob's row follows the PgJob and its TTL instead).
    finished_retention: float = 3 * 86400.0
    #: /healthz fails when one of the leader's loops (status sync, maintenance) has not gone
    #: round for this long: stuck, not merely failing (a loop that fails goes round and retries),
    #: so the kubelet restarts the operator. A minute: far above a round's slowest honest wait
    #: (an API call's 30 s timeout), and a restart costs a standby's takeover, seconds.
    duty_stall_timeout: float = 60.0
    #: Port of the /healthz liveness endpoint (0: off).
    liveness_port: int = 8080
    #: The address it listens on; "": every interface in a pod, else the loopback
    #: (`probes.probe_address`).
    liveness_address: str = ""
    #: Port of the Prometheus metrics (0: off).
    metrics_port: int = 9090
    #: Port of the aggregated API: the external metrics API for the worker HPA and PgJob logs
    #: (0: off; pgjobs.operator.externalmetrics, pgjobs.operator.logsapi).
    external_metrics_port: int = 0
    #: Directory with tls.crt and tls.key for the aggregated API.
    serving_cert_dir: str = "/var/run/pgjobs/serving"
    #: Kubeconfig file; None: in-cluster, then KUBECONFIG / ~/.kube/config.
    kubeconfig: str | None = None
    #: How long deleting a PgJob waits for the worker to stop its running job.
    delete_wait: float = 10.0
    #: Dead or stopped workers are forgotten this long after their last heartbeat.
    worker_retention: float = 3600.0
    #: Followers try to take the leadership this often; the leader renews its lease as often.
    leadership_interval: float = 1.0
    #: The leader's lease: a leader that has not renewed it for this long (frozen, starved of
    #: CPU, cut off) stops writing, and a follower takes over; one that died is replaced within
    #: `leadership_interval`. Failover after a freeze takes up to the sum of the two.
    leader_lease: float = 6.0
    #: The policy file: which queues and tasks each namespace may use, and its limits
    #: (pgjobs.operator.policy); None: every namespace may use everything.
    policy_file: str | None = None

    def watches(self, namespace: str) -> bool:
        return not self.namespaces or namespace in self.namespaces
