"""The table on stdout and the optional PNG plots (matplotlib is not a dependency)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import profiling

TARGETS = {
    "ratio_8_vs_sql": 0.80,
    "ratio_8_vs_procrastinate": 5.0,
    "ratio_1_vs_sql": 1.0,
    "p50_ms": 2.0,
    "p99_ms": 6.0,
}


def _rate(row: dict[str, Any], system: str) -> float | None:
    value = row.get(system, {}).get("jobs_per_s")
    return float(value) if value else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _fmt(value: float | None, pattern: str = "{:.0f}") -> str:
    return "—" if value is None else pattern.format(value)


def throughput_line(row: dict[str, Any]) -> str:
    pg, sql, pr = (_rate(row, name) for name in ("pgjobs", "pgbench", "procrastinate"))
    return f"pgjobs {_fmt(pg)}/s, raw SQL {_fmt(sql)}/s, procrastinate {_fmt(pr)}/s"


def _verdict(value: float | None, target: float, *, at_most: bool = False) -> str:
    if value is None:
        return "n/a"
    return "ok" if (value <= target if at_most else value >= target) else "MISSED"


def table(results: dict[str, Any]) -> str:
    out = [
        f"pgjobs benchmarks ({results['name']}; {results['machine']['cpus']} CPUs, PostgreSQL "
        f"{results.get('server_version', '?')}, non-durable test server)"
    ]
    rows = results.get("throughput") or []
    if rows:
        out += [
            "",
            f"Throughput: {rows[0]['jobs']} noop jobs, single-slot workers"
            " (jobs/s, first start → last finish)",
            f"{'workers':>7} {'pgjobs':>8} {'raw SQL':>8} {'procr.':>8} {'pgjobs/SQL':>10}"
            f" {'pgjobs/procr.':>13} {'worker CPU µs/job*':>18}",
        ]
        for row in rows:
            pg, sql, pr = (_rate(row, name) for name in ("pgjobs", "pgbench", "procrastinate"))
            cpu = row["pgjobs"].get("worker_cpu_us_per_job_net")
            out.append(
                f"{row['workers']:>7} {_fmt(pg):>8} {_fmt(sql):>8} {_fmt(pr):>8} "
                f"{_fmt(_ratio(pg, sql), '{:.2f}'):>10} {_fmt(_ratio(pg, pr), '{:.1f}x'):>13} {_fmt(cpu):>18}"
            )
        out.append("  * CPU (user + system) of the worker processes per job, start-up and exit excluded")
        errors = {row.get("procrastinate", {}).get("error") for row in rows} - {None}
        if errors:
            out.append(f"  procrastinate: {errors.pop()}")
        by = {row["workers"]: row for row in rows}
        out.append("  targets:")
        if 8 in by:
            r = _ratio(_rate(by[8], "pgjobs"), _rate(by[8], "pgbench"))
            out.append(f"    8 workers ≥ 80% of raw SQL: {_fmt(r, '{:.0%}')} {_verdict(r, 0.8)}")
            r = _ratio(_rate(by[8], "pgjobs"), _rate(by[8], "procrastinate"))
            out.append(f"    8 workers ≥ 5x Procrastinate: {_fmt(r, '{:.1f}x')} {_verdict(r, 5.0)}")
        if 1 in by:
            r = _ratio(_rate(by[1], "pgjobs"), _rate(by[1], "pgbench"))
            out.append(f"    1 worker ≥ raw SQL with 1 client: {_fmt(r, '{:.0%}')} {_verdict(r, 1.0)}")
            loop = by[1].get("store_loop")
            if loop:
                r = _ratio(_rate(by[1], "pgjobs"), loop["jobs_per_s"])
                out.append(
                    f"  Python floor (store loop, 1 connection, no worker): {loop['jobs_per_s']:.0f} jobs/s,"
                    f" {loop['client_cpu_us_per_job']:.0f} µs CPU/job;"
                    f" 1 worker reaches {_fmt(r, '{:.0%}')} of it"
                )
    for measured in results.get("latency") or []:
        out += [
            "",
            f"Pickup latency, {measured['workers']} idle worker(s),"
            f" {measured['enqueue_to_claimed']['samples']} samples (ms)",
            f"{'':>24} {'p50':>6} {'p95':>6} {'p99':>6} {'max':>6}",
        ]
        for key in ("enqueue_to_claimed", "enqueue_to_task_started"):
            p = measured[key]
            numbers = " ".join(f"{p[f'{q}_ms']:6.2f}" for q in ("p50", "p95", "p99", "max"))
            p50_ok = _verdict(p["p50_ms"], TARGETS["p50_ms"], at_most=True)
            p99_ok = _verdict(p["p99_ms"], TARGETS["p99_ms"], at_most=True)
            out.append(f"{key.replace('_', ' '):>24} {numbers}   p50 {p50_ok}, p99 {p99_ok}")
    rec = results.get("recovery")
    if rec:
        out += [
            "",
            f"Recovery (heartbeat {rec['heartbeat_interval_s']}s, stall timeout {rec['stall_timeout_s']}s, "
            f"poll {rec['poll_interval_s']}s; seconds until Running on another worker)",
        ]
        for key, label in (("sigkill", "kill -9"), ("sigterm", "SIGTERM, --shutdown-grace 0")):
            r = rec[key]
            samples = ", ".join(f"{s:.2f}" for s in r["samples_s"])
            out.append(
                f"  {label:<28} max {r['max_s']:.2f}  (target ≤ {r['target_s']:.1f}: "
                f"{_verdict(r['max_s'], r['target_s'], at_most=True)}; samples {samples})"
            )
    prof = results.get("profile")
    if prof:
        out += ["", profiling.format_profile(prof) if "error" not in prof else f"profile: {prof['error']}"]
    return "\n".join(out)


def plots(results: dict[str, Any], stem: Path) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "plots: skipped (matplotlib is not installed; `pip install matplotlib` to get PNGs)"
    written = []
    rows = results.get("throughput") or []
    if rows:
        figure, axes = plt.subplots(figsize=(6, 4))
        workers = [row["workers"] for row in rows]
        for system, label in (
            ("pgjobs", "pgjobs"),
            ("pgbench", "raw SQL (pgbench)"),
            ("procrastinate", "Procrastinate"),
        ):
            values = [_rate(row, system) for row in rows]
            if any(values):
                axes.plot(workers, [v or 0 for v in values], marker="o", label=label)
        axes.set(xlabel="worker processes / clients", ylabel="jobs/s", xscale="log", title="Queue throughput")
        axes.set_xticks(workers, [str(w) for w in workers])
        axes.legend()
        figure.savefig(f"{stem}-throughput.png", dpi=120, bbox_inches="tight")
        written.append(f"{stem}-throughput.png")
    for measured in results.get("latency") or []:
        del measured  # percentiles only are kept; a CDF would need the raw samples
    return "plots: " + (", ".join(written) if written else "none")
