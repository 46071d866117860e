"""`python -m bench [--quick] [--only …] [--name NAME]`: run the benchmarks, print a table, write
bench/results/NAME.json (and PNG plots when matplotlib is installed). `--only soak` (never part
of a default run: it takes half an hour) writes bench/results/soak-NAME.json and .png."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import (
    baseline,
    coldburst,
    environment,
    isolation,
    latency,
    profiling,
    recovery,
    report,
    scaling,
    soak,
    throughput,
)
from pgjobs.devenv.postgres import PostgresServer

RESULTS = Path(__file__).resolve().parent / "results"
PARTS = (
    "throughput",
    "latency",
    "recovery",
    "profile",
    "scaling",
    "coldburst",
    "isolation",
    "kubernetes",
    "cluster",
    "soak",
)
#: A run without --only: the soak takes half an hour on its own server, so it is asked for by name.
DEFAULT_PARTS = [part for part in PARTS if part != "soak"]
SIZES = {
    "full": {
        "jobs": 10_000,
        "workers": [1, 2, 4, 8, 16],
        "samples": 2000,
        "repeats": 5,
        "profile_jobs": 10_000,
        "scaling_pending": [1_000, 10_000, 100_000, 1_000_000],
        "scaling_finished": 1_000_000,
        "scaling_dead": 1_000_000,
        "k8s_latency_jobs": 50,
        "k8s_burst_jobs": 1_000,
        "k8s_burst_workers": 8,
        "k8s_memory_jobs": 10_000,
        "cluster_latency_jobs": 20,
        "cluster_burst_jobs": 1_000,
        "cluster_burst_workers": 8,
        "cluster_hpa_jobs": 300,
    },
    "quick": {
        "jobs": 2_000,
        "workers": [1, 2, 4, 8],
        "samples": 200,
        "repeats": 1,
        "profile_jobs": 3_000,
        "scaling_pending": [1_000, 10_000, 100_000],
        "scaling_finished": 100_000,
        "scaling_dead": 100_000,
        "k8s_latency_jobs": 20,
        "k8s_burst_jobs": 200,
        "k8s_burst_workers": 4,
        "k8s_memory_jobs": 1_000,
        "cluster_latency_jobs": 10,
        "cluster_burst_jobs": 200,
        "cluster_burst_workers": 4,
        "cluster_hpa_jobs": 60,
    },
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a small run (about two minutes)")
    parser.add_argument("--name", help="results file name (default: quick or full)")
    parser.add_argument(
        "--only", nargs="+", choices=PARTS, default=DEFAULT_PARTS, help="run only these parts"
    )
    parser.add_argument("--jobs", type=int, help="jobs per throughput run (default 10000, quick 2000)")
    parser.add_argument("--workers", type=int, nargs="+", help="worker counts (default 1 2 4 8 16)")
    parser.add_argument("--samples", type=int, help="pickup latency samples (default 2000, quick 200)")
    parser.add_argument("--latency-workers", type=int, nargs="+", default=[1, 4], help="idle workers")
    parser.add_argument(
        "--shared-cpus",
        action="store_true",
        help="do not give PostgreSQL its own CPUs in the queue parts (see bench/README.md)",
    )
    parser.add_argument(
        "--durable",
        action="store_true",
        help="a durable server (fsync, synchronous_commit, full_page_writes on); with --shared-cpus,"
        " a small real deployment (see bench/README.md)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure every worker count this many times, interleaved (a noisy machine)",
    )
    parser.add_argument(
        "--worker-log-level",
        choices=("debug", "info", "warning"),
        default="warning",
        help="the pgjobs workers' log level (a deployment's default is info; lines below warning"
        " go to /dev/null)",
    )
    parser.add_argument(
        "--one-process",
        type=int,
        nargs="*",
        metavar="K",
        help="for these worker counts, also one process with K slots (default with --shared-cpus: 8)",
    )
    parser.add_argument("--no-procrastinate", action="store_true", help="skip the Procrastinate baseline")
    parser.add_argument(
        "--soak-jobs", type=int, default=2_000_000, help="jobs of the soak part (default 2,000,000)"
    )
    parser.add_argument(
        "--soak-idle-transaction",
        action="store_true",
        help="in the soak, hold a session idle in a transaction for 5 minutes mid-run",
    )
    parser.add_argument(
        "--soak-rate",
        type=float,
        help="feed the soak at this many jobs/s instead of 80%% of the capacity its first phase measures",
    )
    parser.add_argument(
        "--soak-max-minutes",
        type=float,
        help="fewer soak jobs if at the measured rate they would take longer (the JSON says so)",
    )
    args = parser.parse_args(argv)
    if "soak" in args.only:
        if args.only != ["soak"]:
            parser.error("--only soak runs alone (its own durable server, half an hour)")
        return _soak(args)
    size = dict(SIZES["quick" if args.quick else "full"])
    size |= {
        k: v for k, v in {"jobs": args.jobs, "workers": args.workers, "samples": args.samples}.items() if v
    }
    config = report.configuration(durable=args.durable, shared_cpus=args.shared_cpus)
    config["worker_log_level"] = environment.WORKER_LOG_LEVEL = args.worker_log_level
    name = args.name or ("quick" if args.quick else "full")
    if not args.name and set(args.only) != set(PARTS):  # a partial run keeps the full one's file
        name += "-" + "-".join(part for part in PARTS if part in args.only)
    if not args.name and config["name"] != "pinned":  # nor does another configuration
        name += "-" + config["name"]
    RESULTS.mkdir(exist_ok=True)

    results = _header(name, config)
    results["sizes"] = size
    began = time.monotonic()
    with PostgresServer(durable=args.durable) as server:
        with _connect(server) as conn:
            results["server_version"] = conn.execute("SHOW server_version").fetchone()[0]
        with environment.split_cpus(server, enabled=not args.shared_cpus) as layout:
            results["cpu_layout"] = layout
            if "throughput" in args.only:
                results["throughput"] = _throughput(
                    server,
                    size,
                    skip_procrastinate=args.no_procrastinate,
                    rounds=args.rounds,
                    slots_rows=args.one_process
                    if args.one_process is not None
                    else ([8] if args.shared_cpus else []),
                )
            if "latency" in args.only:
                results["latency"] = [
                    latency.run(server, size["samples"], workers) for workers in args.latency_workers
                ]
                for part in results["latency"]:
                    environment.progress(
                        f"latency, {part['workers']} idle worker(s): {latency.summary(part)}"
                    )
            if "recovery" in args.only:
                results["recovery"] = recovery.run(server, size["repeats"])
                environment.progress(f"recovery: {results['recovery']}")
            if "profile" in args.only:
                try:
                    results["profile"] = profiling.run(
                        server, size["profile_jobs"], RESULTS / f"profile-{name}.txt"
                    )
                except (RuntimeError, baseline.BaselineUnavailable) as error:
                    results["profile"] = {"error": str(error)}
            if "scaling" in args.only:
                results["scaling"] = scaling.run(
                    server, size["scaling_pending"], size["scaling_finished"], size["scaling_dead"]
                )
            if "coldburst" in args.only:
                results["coldburst"] = coldburst.run(server, quick=args.quick)
            if "isolation" in args.only:
                results["isolation"] = isolation.run(server, quick=args.quick)
        if "kubernetes" in args.only:
            from bench import kubernetes

            results["kubernetes"] = kubernetes.run(server, size)
    if "cluster" in args.only:
        from bench import cluster

        results["cluster"] = cluster.run(size)
    results["duration_s"] = round(time.monotonic() - began, 1)
    results["load_average_end"] = os.getloadavg()

    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(report.table(results))
    print(f"\nresults: {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    print(report.plots(results, RESULTS / name))
    return 0


def _header(name: str, config: dict[str, Any]) -> dict[str, Any]:
    """What every results file starts with: the run, the machine, the server, the load."""
    return {
        "name": name,
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
        },
        "server": config["server"],
        "configuration": config,
        "load_average_start": os.getloadavg(),
    }


def _soak(args: argparse.Namespace) -> int:
    """The soak on a durable server, PostgreSQL and the worker on the same CPUs (nothing pinned)."""
    name = "soak-" + (args.name or ("idle-transaction" if args.soak_idle_transaction else "shared-durable"))
    config = report.configuration(durable=True, shared_cpus=True)
    config["worker_log_level"] = environment.WORKER_LOG_LEVEL = args.worker_log_level
    results = _header(name, config)
    began = time.monotonic()
    with PostgresServer(durable=True) as server:
        with _connect(server) as conn:
            results["server_version"] = conn.execute("SHOW server_version").fetchone()[0]
            results["autovacuum"] = conn.execute("SHOW autovacuum").fetchone()[0]
        results["soak"] = soak.run(
            server,
            args.soak_jobs,
            idle_transaction=args.soak_idle_transaction,
            max_minutes=args.soak_max_minutes,
            rate=args.soak_rate,
        )
    results["duration_s"] = round(time.monotonic() - began, 1)
    results["load_average_end"] = os.getloadavg()
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(soak.summary(results["soak"]))
    print(f"\nresults: {path}")
    print(soak.plot(results["soak"], RESULTS / f"{name}.png"))
    return 0


def _connect(server: PostgresServer) -> Any:
    import psycopg

    return psycopg.connect(server.url(), autocommit=True)


def _throughput(
    server: PostgresServer,
    size: dict[str, Any],
    *,
    skip_procrastinate: bool,
    rounds: int = 1,
    slots_rows: Sequence[int] = (),
) -> list[dict[str, Any]]:
    rows = []
    procrastinate_error: str | None = "skipped (--no-procrastinate)" if skip_procrastinate else None
    startup = throughput.startup_cpu(server)
    for round_, workers in ((r, w) for r in range(1, rounds + 1) for w in size["workers"]):
        row: dict[str, Any] = {"workers": workers, "jobs": size["jobs"]}
        if rounds > 1:
            row["round"] = round_
        row["pgjobs"] = measured = _loaded(throughput.run_pgjobs, server, size["jobs"], workers)
        # Worker CPU per job without each process's start-up and exit (measured on an empty queue).
        net = measured["worker_cpu_s"] - workers * startup
        measured["startup_cpu_s"] = startup
        measured["worker_cpu_us_per_job_net"] = 1e6 * net / max(1, measured["completed"])
        if workers > 1 and workers in slots_rows:
            # The same slots in one process: one wake-up may serve several answers.
            one = row["pgjobs_one_process"] = _loaded(throughput.run_pgjobs, server, size["jobs"], 1, workers)
            one["worker_cpu_us_per_job_net"] = (
                1e6 * (one["worker_cpu_s"] - startup) / max(1, one["completed"])
            )
        row["pgbench"] = _loaded(throughput.run_pgbench, server, size["jobs"], workers)
        if workers == 1:
            row["store_loop"] = _loaded(throughput.run_store_loop, server, size["jobs"])
        if procrastinate_error is None:
            try:
                row["procrastinate"] = _loaded(throughput.run_procrastinate, server, size["jobs"], workers)
            except Exception as error:
                procrastinate_error = f"{type(error).__name__}: {error}"
        if procrastinate_error:
            row["procrastinate"] = {"error": procrastinate_error}
        environment.progress(f"throughput {workers} worker(s): {report.throughput_line(row)}")
        rows.append(row)
    return rows


def _loaded(run: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """One measurement, with the machine's load average (1 min) before and after it: the machine
    is shared, and a figure taken under a high load is repeated or said to be."""
    before = os.getloadavg()[0]
    measured = run(*args)
    measured["load_average"] = [round(before, 2), round(os.getloadavg()[0], 2)]
    return measured


if __name__ == "__main__":
    sys.exit(main())
