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
    assert "1 worker: 90% of raw SQL with 1 client (no target)" in text
    assert "MISSED" not in text.split("8 workers ≥ 5x")[1], "no target is set for one worker"


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


def test_the_configuration_names_the_server_and_the_cpu_layout() -> None:
    pinned = report.configuration(durable=False, shared_cpus=False)
    shared = report.configuration(durable=True, shared_cpus=True)
    assert (pinned["name"], shared["name"]) == ("pinned", "shared-durable")
    assert "off" in pinned["server"] and "durable=True" in shared["server"]
    assert report.configuration(durable=True, shared_cpus=False)["name"] == "durable"
    assert report.configuration(durable=False, shared_cpus=True)["name"] == "shared"


def _cpu_row(workers: int, pgjobs: float, pgbench: float, cpu: float, round_: int) -> dict[str, Any]:
    row = _row(workers, pgjobs, pgbench, 100.0)
    row["pgjobs"] |= {"worker_cpu_us_per_job_net": cpu, "load_average": [1.0, 2.5]}
    row["pgbench"]["load_average"] = [2.5, 3.0]
    return row | {"round": round_}


def test_shared_durable_targets_compare_each_round_with_itself_and_judge_the_median() -> None:
    rows = [
        _cpu_row(1, 900.0, 1000.0, 200.0, 1),
        _cpu_row(8, 400.0, 1000.0, 300.0, 1),  # 0.40x, CPU 1.5x
        _cpu_row(1, 900.0, 1000.0, 100.0, 2),
        _cpu_row(8, 600.0, 1000.0, 120.0, 2),  # 0.60x, CPU 1.2x
        _cpu_row(1, 900.0, 1000.0, 100.0, 3),
        _cpu_row(8, 550.0, 1000.0, 125.0, 3),  # 0.55x, CPU 1.25x
    ]
    found = report.shared_targets(rows)
    assert found["ratio_8_vs_sql"] == 0.55 and found["cpu_8_vs_1"] == 1.25
    config = report.configuration(durable=True, shared_cpus=True) | {"worker_log_level": "info"}
    text = report.table(_results(throughput=rows, configuration=config, load_average_start=[3.0, 0, 0]))
    assert "configuration shared-durable: durable server, workers log at info" in text
    assert "8 workers ≥ 0.5x raw SQL: 0.55x ok" in text
    assert "8 workers ≤ 1.3x 1 worker: 1.25x ok" in text
    assert "(median over rounds)" in text and "1.0-3.0" in text  # the load over the row's runs
    assert "80% of raw SQL" not in text  # the pinned configuration's targets are not this one's


def test_a_shared_durable_target_missed_says_so() -> None:
    rows = [_cpu_row(1, 900.0, 1000.0, 200.0, 1), _cpu_row(8, 400.0, 1000.0, 300.0, 1)]
    rows[1]["pgjobs_one_process"] = {"jobs_per_s": 700.0, "worker_cpu_us_per_job_net": 150.0}
    config = report.configuration(durable=True, shared_cpus=True)
    text = report.table(_results(throughput=rows, configuration=config))
    assert "0.40x MISSED" in text and "1.50x MISSED" in text
    assert "the same 8 slots in one process: 0.70 of raw SQL, 150 µs CPU/job" in text
    assert "median" not in text
