"""The benchmark report's arithmetic: which targets it calls met, and the pgbench script it builds."""

from __future__ import annotations

from typing import Any

from bench import latency, report, throughput


def _row(workers: int, pgjobs: float, pgbench: float, procrastinate: float) -> dict[str, Any]:
    return {
        "workers": workers,
        "jobs": 1000,
        "pgjobs": {"jobs_per_s": pgjobs, "worker_cpu_us_per_job_net": 250.0},
        "pgbench": {"jobs_per_s": pgbench},
        "procrastinate": {"jobs_per_s": procrastinate},
    }


def _results(**parts: Any) -> dict[str, Any]:
    return {"name": "t", "machine": {"cpus": 2}, "server_version": "15", **parts}


def test_throughput_targets_are_judged_against_the_baselines_of_the_same_row() -> None:
    text = report.table(_results(throughput=[_row(1, 900.0, 1000.0, 100.0), _row(8, 790.0, 1000.0, 150.0)]))
    assert "8 workers ≥ 80% of raw SQL: 79% MISSED" in text
    assert "8 workers ≥ 5x Procrastinate: 5.3x ok" in text
    assert "1 worker ≥ raw SQL with 1 client: 90% MISSED" in text


def test_latency_targets_are_upper_bounds() -> None:
    def figure(p50: float, p99: float) -> dict[str, float]:
        return {"p50_ms": p50, "p95_ms": p99, "p99_ms": p99, "max_ms": p99, "samples": 10}

    part = {
        "workers": 1,
        "enqueue_to_claimed": figure(1.2, 2.0),
        "enqueue_to_task_started": figure(2.1, 6.5),
    }
    text = report.table(_results(latency=[part]))
    assert "enqueue to claimed" in text and "p50 ok, p99 ok" in text
    assert "p50 MISSED, p99 MISSED" in text
    assert latency.summary(part) == (
        "enqueue to claimed p50 1.20 ms, p99 2.00 ms; enqueue to task started p50 2.10 ms, p99 6.50 ms"
    )


def test_percentiles_pick_the_nearest_rank() -> None:
    values = [i / 1000 for i in range(1, 101)]  # 1 … 100 ms
    found = latency.percentiles(values)
    assert (found["p50_ms"], found["p99_ms"], found["max_ms"]) == (51.0, 99.0, 100.0)


def test_the_pgbench_script_is_the_workers_statement_with_every_parameter_bound() -> None:
    script = throughput.pgbench_script()
    assert "%(" not in script and "%%" not in script
    for variable in (":next_id", ":next_lease", ":worker_id", ":queues"):
        assert variable in script
    assert "AS next_id" in script and "AS drained" in script
    assert script.startswith("\\if :drained = 0\n") and script.endswith("\\gset\n\\endif\n")
    assert "FOR UPDATE SKIP LOCKED" in script
