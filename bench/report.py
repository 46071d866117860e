"""The table on stdout and the optional PNG plots (matplotlib is not a dependency)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import coldburst, isolation, profiling

TARGETS = {
    # PostgreSQL on its own CPUs, non-durable: the queue's SQL limit.
    "ratio_8_vs_sql": 0.80,
    "ratio_8_vs_procrastinate": 5.0,
    "ratio_1_vs_sql": 1.0,
    "p50_ms": 2.0,
    "p99_ms": 6.0,
    # Everything on the same CPUs, a durable server: what a small deployment gets (issue 15).
    "shared_ratio_8_vs_sql": 0.5,
    "shared_cpu_8_vs_1": 1.3,
}


def configuration(*, durable: bool, shared_cpus: bool) -> dict[str, Any]:
    """The server and CPU configuration of a run, recorded in its JSON and named in its table.
    `pinned` (non-durable, PostgreSQL on its own CPUs) measures the queue's SQL limit;
    `shared-durable` (fsync, synchronous_commit and full_page_writes on, no pinning) what a
    small deployment whose workers share CPUs with PostgreSQL gets."""
    names = {(False, False): "pinned", (True, True): "shared-durable"}
    name = names.get((durable, shared_cpus)) or ("durable" if durable else "shared")
    server = (
        "pgjobs.devenv.PostgresServer(durable=True): fsync, synchronous_commit, full_page_writes on"
        if durable
        else "pgjobs.devenv.PostgresServer defaults: fsync, synchronous_commit, full_page_writes off"
    )
    return {"name": name, "durable": durable, "shared_cpus": shared_cpus, "server": server}


def _median(values: list[float]) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def shared_targets(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """The shared-durable targets: 8 workers' rate / pgbench's with 8 clients, and 8 workers' CPU
    per job / 1 worker's. With several rounds, each round's rows are compared with each other
    and the median over rounds is judged (the baseline of the same round, never another's)."""
    rounds: dict[int, dict[int, dict[str, Any]]] = {}
    for row in rows:
        rounds.setdefault(row.get("round", 1), {})[row["workers"]] = row
    ratios, cpu_ratios = [], []
    for by in rounds.values():
        if 8 in by:
            ratio = _ratio(_rate(by[8], "pgjobs"), _rate(by[8], "pgbench"))
            if ratio is not None:
                ratios.append(ratio)
        if 8 in by and 1 in by:
            cpu = _ratio(
                by[8]["pgjobs"].get("worker_cpu_us_per_job_net"),
                by[1]["pgjobs"].get("worker_cpu_us_per_job_net"),
            )
            if cpu is not None:
                cpu_ratios.append(cpu)
    return {"ratio_8_vs_sql": _median(ratios), "cpu_8_vs_1": _median(cpu_ratios)}


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


def _layout_line(layout: dict[str, Any] | None) -> str:
    if not layout:
        return "CPUs: not recorded"
    if layout.get("split"):
        return (
            f"CPUs (queue parts): PostgreSQL on {layout['postgres_cpus']}, workers, pgbench's client and"
            f" Procrastinate on {layout['client_cpus']}"
        )
    return f"CPUs: shared by PostgreSQL and its clients ({layout.get('cpus')})"


def _load(row: dict[str, Any]) -> str:
    """The 1-minute load average at the start and end of the row's pgjobs and pgbench runs."""
    loads = [v for name in ("pgjobs", "pgbench") for v in row.get(name, {}).get("load_average") or []]
    return f"{min(loads):.1f}-{max(loads):.1f}" if loads else "—"


def _server_words(results: dict[str, Any]) -> str:
    config = results.get("configuration")
    if config is None:  # results from before configurations were recorded: always non-durable
        return "non-durable test server"
    server = "durable server" if config["durable"] else "non-durable server"
    level = config.get("worker_log_level", "warning")
    return f"configuration {config['name']}: {server}, workers log at {level}"


def table(results: dict[str, Any]) -> str:
    out = [
        f"pgjobs benchmarks ({results['name']}; {results['machine']['cpus']} CPUs, PostgreSQL "
        f"{results.get('server_version', '?')}, {_server_words(results)})",
        _layout_line(results.get("cpu_layout")),
    ]
    if "load_average_start" in results:
        start, end = results["load_average_start"], results.get("load_average_end") or [None]
        out.append(f"Load average (1 min) at start {start[0]:.2f}, at end {_fmt(end[0], '{:.2f}')}")
    rows = results.get("throughput") or []
    if rows:
        rounds = len({row.get("round", 1) for row in rows}) > 1
        out += [
            "",
            f"Throughput: {rows[0]['jobs']} noop jobs, single-slot workers"
            " (jobs/s, first start → last finish)",
            f"{'round ' if rounds else ''}{'workers':>7} {'pgjobs':>8} {'raw SQL':>8} {'procr.':>8}"
            f" {'pgjobs/SQL':>10} {'pgjobs/procr.':>13} {'worker CPU µs/job*':>18} {'load':>9}",
        ]
        for row in rows:
            pg, sql, pr = (_rate(row, name) for name in ("pgjobs", "pgbench", "procrastinate"))
            cpu = row["pgjobs"].get("worker_cpu_us_per_job_net")
            out.append(
                (f"{row.get('round', 1):>5} " if rounds else "")
                + f"{row['workers']:>7} {_fmt(pg):>8} {_fmt(sql):>8} {_fmt(pr):>8} "
                f"{_fmt(_ratio(pg, sql), '{:.2f}'):>10} {_fmt(_ratio(pg, pr), '{:.1f}x'):>13} {_fmt(cpu):>18}"
                f" {_load(row):>9}"
            )
        for row in rows:
            one = row.get("pgjobs_one_process")
            if one:
                pg, sql = one.get("jobs_per_s"), _rate(row, "pgbench")
                lead = f"{row.get('round', 1):>5} " if rounds else ""
                out.append(
                    f"{lead}{'':>7} {_fmt(pg):>8} "
                    f"  <- the same {row['workers']} slots in one process: {_fmt(_ratio(pg, sql), '{:.2f}')}"
                    f" of raw SQL, {_fmt(one.get('worker_cpu_us_per_job_net'))} µs CPU/job"
                )
        out.append("  * CPU (user + system) of the worker processes per job, start-up and exit excluded;")
        out.append("    load = 1-minute load average over the pgjobs and pgbench runs of the row")
        errors = {row.get("procrastinate", {}).get("error") for row in rows} - {None}
        if errors:
            out.append(f"  procrastinate: {errors.pop()}")
        config = results.get("configuration") or {}
        if config.get("durable") and config.get("shared_cpus"):
            out += _shared_target_lines(rows)
            return _rest(results, out)
        by = {row["workers"]: row for row in rows}
        out.append("  targets:")
        if 8 in by:
            r = _ratio(_rate(by[8], "pgjobs"), _rate(by[8], "pgbench"))
            out.append(f"    8 workers ≥ 80% of raw SQL: {_fmt(r, '{:.0%}')} {_verdict(r, 0.8)}")
            r = _ratio(_rate(by[8], "pgjobs"), _rate(by[8], "procrastinate"))
            out.append(f"    8 workers ≥ 5x Procrastinate: {_fmt(r, '{:.1f}x')} {_verdict(r, 5.0)}")
        if 1 in by:
            r = _ratio(_rate(by[1], "pgjobs"), _rate(by[1], "pgbench"))
            # No target: one Python worker against pgbench's C client, shown for information.
            out.append(f"  1 worker: {_fmt(r, '{:.0%}')} of raw SQL with 1 client (no target)")
            loop = by[1].get("store_loop")
            if loop:
                r = _ratio(_rate(by[1], "pgjobs"), loop["jobs_per_s"])
                out.append(
                    f"  Python floor (store loop, 1 connection, no worker): {loop['jobs_per_s']:.0f} jobs/s,"
                    f" {loop['client_cpu_us_per_job']:.0f} µs CPU/job;"
                    f" 1 worker reaches {_fmt(r, '{:.0%}')} of it"
                )
    return _rest(results, out)


def _shared_target_lines(rows: list[dict[str, Any]]) -> list[str]:
    found = shared_targets(rows)
    ratio, cpu = found["ratio_8_vs_sql"], found["cpu_8_vs_1"]
    several = " (median over rounds)" if len({row.get("round", 1) for row in rows}) > 1 else ""
    return [
        f"  targets (shared CPUs, durable server){several}:",
        f"    8 workers ≥ 0.5x raw SQL: {_fmt(ratio, '{:.2f}x')}"
        f" {_verdict(ratio, TARGETS['shared_ratio_8_vs_sql'])}",
        f"    worker CPU per job, 8 workers ≤ 1.3x 1 worker: {_fmt(cpu, '{:.2f}x')}"
        f" {_verdict(cpu, TARGETS['shared_cpu_8_vs_1'], at_most=True)}",
    ]


def _rest(results: dict[str, Any], out: list[str]) -> str:
    """The parts after throughput."""
    for measured in results.get("latency") or []:
        out += [
            "",
            f"Pickup latency, {measured['workers']} idle worker(s),"
            f" {measured['enqueue_to_claimed']['samples']} samples (ms)",
            f"{'':>28} {'p50':>6} {'p95':>6} {'p99':>6} {'max':>6}",
        ]
        for key in ("enqueue_to_claimed", "enqueue_to_task_started", "enqueue_call_to_task_started"):
            p = measured.get(key)
            if p is None:  # results from before this figure existed
                continue
            numbers = " ".join(f"{p[f'{q}_ms']:6.2f}" for q in ("p50", "p95", "p99", "max"))
            line = f"{key.replace('_', ' '):>28} {numbers}"
            if key != "enqueue_call_to_task_started":  # the client's own round trip is not pickup
                p50_ok = _verdict(p["p50_ms"], TARGETS["p50_ms"], at_most=True)
                p99_ok = _verdict(p["p99_ms"], TARGETS["p99_ms"], at_most=True)
                line += f"   p50 {p50_ok}, p99 {p99_ok}"
            out.append(line)
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
    if results.get("scaling"):
        out += ["", scaling_table(results["scaling"])]
    if results.get("coldburst"):
        out += ["", coldburst.table(results["coldburst"])]
    if results.get("isolation"):
        out += ["", isolation.table(results["isolation"])]
    if results.get("kubernetes"):
        out += ["", kubernetes_table(results["kubernetes"])]
    if results.get("cluster"):
        out += ["", cluster_table(results["cluster"])]
    prof = results.get("profile")
    if prof:
        out += ["", profiling.format_profile(prof) if "error" not in prof else f"profile: {prof['error']}"]
    return "\n".join(out)


def scaling_table(scaling: dict[str, Any]) -> str:
    out = [
        f"How cost grows: store loop draining {scaling['drain']} noop jobs from tables of each shape;"
        " x = case / reference (a table of only those jobs, measured just before)",
        f"{'case':<42} {'claim p50':>9} {'p99':>6} {'x p50':>6} {'1 conn/s':>8} {'x':>5} {'4 conn/s':>8}"
        f" {'x':>5} {'plan ms':>8} {'buffers':>7} {'after':>6}",
    ]
    for row in scaling["cases"]:
        one, plan, after = row["one_connection"], row["explain"], row.get("explain_after") or {}
        out.append(
            f"{row['case']:<42} {one['p50_ms']:9.2f} {one['p99_ms']:6.2f} {row['ratio_p50']:6.2f}"
            f" {one['jobs_per_s']:8.0f} {row['ratio_rate_1']:5.2f} {row['four_connections_jobs_per_s']:8.0f}"
            f" {row['ratio_rate_4']:5.2f} {_fmt(plan['execution_ms'], '{:.2f}'):>8}"
            f" {_fmt(plan['index_scan_buffers']):>7} {_fmt(after.get('index_scan_buffers')):>6}"
        )
    out.append(
        "  claim p50/p99 in ms (one connection, complete_and_claim round trip); plan = EXPLAIN ANALYZE of"
        " the bare claim before the drain; buffers = pages its index scan touched (after: at the end)"
    )
    return "\n".join(out)


def cluster_table(c: dict[str, Any]) -> str:
    """The `cluster` part: pods on the single-node cluster, installed by the chart."""
    lat, burst, scale, term = c["apply_to_running"], c["burst"], c["scale_to_claim"], c["sigterm"]
    auto = c["autoscaling"]
    lines = [
        "On real pods (single-node cluster, the image, helm install)",
        (f"  node start {c['node_start_s']:.1f} s; " if "node_start_s" in c else "  node already running; ")
        + f"helm install until every pod Ready {c['helm_install_ready_s']:.1f} s",
        f"  kubectl apply -> Running, 2 idle worker pods: p50 {lat['p50_s'] * 1000:.0f} ms,"
        f" p90 {lat['p90_s'] * 1000:.0f} ms ({lat['jobs']} jobs)",
        f"  {burst['jobs']} noop PgJobs by {burst['worker_pods']} worker pods: {burst['seconds']:.1f} s"
        f" ({burst['jobs_per_s']:.0f} jobs/s)",
        f"  kubectl scale 1 -> 3: a new pod claims after"
        f" {scale['seconds_to_first_claim_on_a_new_pod']:.1f} s",
        f"  worker pod deleted mid-job: the job runs on another pod after"
        f" {term['sigterm_to_running_elsewhere_s']:.1f} s (shutdown grace {term['shutdown_grace_s']} s,"
        f" attempts {term['attempts']})",
        f"  {auto['jobs']} jobs of {auto['job_seconds']} s: HPA drain {auto['hpa']['drain_s']:.0f} s"
        f" (first added pod claims at {auto['hpa']['first_added_pod_claims_s']:.0f} s)"
        f" vs fixed 6 replicas {auto['fixed']['drain_s']:.0f} s",
    ]
    return "\n".join(lines)


def kubernetes_table(k8s: dict[str, Any]) -> str:
    if "latency" not in k8s:
        return f"Kubernetes: {k8s.get('error', 'not run')}"
    out = ["End to end through Kubernetes (local kube-apiserver + etcd, operator and workers as processes)"]
    lat = k8s["latency"]
    a = lat["apply_to_running_ms"]
    out.append(
        f"  a. kubectl apply → status Running, {lat['jobs']} jobs: p50 {a['p50']:.0f} ms,"
        f" p99 {a['p99']:.0f} ms (target p50 ≤ {lat['target_p50_ms']:.0f}:"
        f" {_verdict(a['p50'], lat['target_p50_ms'], at_most=True)});"
        f" from the watch's ADDED: p50 {lat['created_to_running_ms']['p50']:.0f} ms;"
        f" baseline kubectl apply of a ConfigMap: p50 {lat['kubectl_apply_configmap_ms']['p50']:.0f} ms"
    )
    for key, label in (("burst", "default write budget 50/s"), ("burst_budget_1000", "write budget 1000/s")):
        b = k8s.get(key)
        if not b:
            continue
        lag = b.get("status_lag_s") or {}
        w = b["writes_per_job"]
        out.append(
            f"  b. {b['jobs']} PgJobs at once, {b['workers']} workers ({label}): all Completed in"
            f" {b['all_completed_s']:.1f} s (target ≤ {b['target_completed_s']:.0f}:"
            f" {_verdict(b['all_completed_s'], b['target_completed_s'], at_most=True)}); kubectl create"
            f" {b['kubectl_create_s']:.1f} s; rows created → last finished"
            f" {b['rows_created_to_last_finished_s']:.1f} s"
        )
        out.append(
            f"  c.   status lag (finished_at → Completed seen): p50 {_fmt(lag.get('p50'), '{:.2f}')} s,"
            f" p99 {_fmt(lag.get('p99'), '{:.2f}')} s (target ≤ {b['target_lag_p99_s']:.0f}:"
            f" {_verdict(lag.get('p99'), b['target_lag_p99_s'], at_most=True)})"
        )
        out.append(
            f"  d.   API writes by the operator per PgJob: mean {w['mean']:.2f}, max {w['max']}"
            f" ({w['resource_version_bumps_mean']:.2f} resourceVersion bumps + {w['events_mean']:.2f} Events;"
            f" target ≤ {b['target_writes_per_job']:.0f}:"
            f" {_verdict(w['mean'], b['target_writes_per_job'], at_most=True)}"
            f" on mean, {_verdict(w['max'], b['target_writes_per_job'], at_most=True)} on max)"
        )
    m = k8s.get("memory")
    if m:
        idle = k8s.get("operator_idle_rss", m["idle"])
        out.append(
            f"  e. operator RSS: {idle['rss_mb']:.0f} MB with no PgJob, {m['loaded']['rss_mb']:.0f} MB with"
            f" {m['jobs']} more PgJobs (peak {m['loaded']['peak_rss_mb']:.0f} MB;"
            f" target ≤ {m['target_rss_mb']:.0f}:"
            f" {_verdict(m['loaded']['peak_rss_mb'], m['target_rss_mb'], at_most=True)})"
        )
    if k8s.get("error"):
        out.append(f"  error: {k8s['error']}")
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
    written += _latency_plot(plt, results.get("latency") or [], stem)
    written += _scaling_plot(plt, results.get("scaling"), stem)
    return "plots: " + (", ".join(written) if written else "none")


def _latency_plot(plt: Any, runs: list[dict[str, Any]], stem: Path) -> list[str]:
    """Cumulative distribution of the pickup samples, one line per (idle workers, figure)."""
    runs = [run for run in runs if run.get("samples_ms")]
    if not runs:
        return []
    figure, axes = plt.subplots(figsize=(6, 4))
    for run in runs:
        for key, label in (("enqueue_to_claimed", "claimed"), ("enqueue_to_task_started", "task started")):
            values = run["samples_ms"][key]
            if values:
                fractions = [(i + 1) / len(values) for i in range(len(values))]
                axes.step(values, fractions, where="post", label=f"{run['workers']} idle: {label}")
    for target, style in ((TARGETS["p50_ms"], ":"), (TARGETS["p99_ms"], "--")):
        axes.axvline(target, color="grey", linestyle=style, linewidth=1)
    axes.set(xlabel="ms after enqueue", ylabel="fraction of jobs", xscale="log", title="Pickup latency (CDF)")
    axes.legend(fontsize="small")
    path = f"{stem}-latency.png"
    figure.savefig(path, dpi=120, bbox_inches="tight")
    return [path]


def _scaling_plot(plt: Any, scaling: dict[str, Any] | None, stem: Path) -> list[str]:
    """Claim p50 of every table shape relative to its in-run reference (log scale)."""
    if not scaling or not scaling.get("cases"):
        return []
    cases = scaling["cases"]
    figure, axes = plt.subplots(figsize=(7, 0.45 * len(cases) + 1.2))
    axes.barh([row["case"] for row in cases], [row["ratio_p50"] for row in cases])
    axes.axvline(1.0, color="grey", linewidth=1)
    axes.invert_yaxis()
    axes.set(xscale="log", xlabel="claim p50 / reference (a table holding only the drained jobs)",
             title="How claim cost grows with the table")  # fmt: skip
    path = f"{stem}-scaling.png"
    figure.savefig(path, dpi=120, bbox_inches="tight")
    return [path]
