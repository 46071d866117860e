"""The worker, wake-up and operator-facing store scenarios of the integration suite, run through
PgBouncer in each setup of conftest.py: jobs drain, nothing hangs, and wake-ups arrive (except
with `--no-listen`, where polling finds the work and the wake-up scenarios are skipped).

Left out: scenarios about the server or the connection settings themselves (a restart, a wrong
password, an unreachable or missing database, concurrent `pgjobs migrate`), which point their
processes at the server on purpose.
"""

from __future__ import annotations

import pytest

from tests.integration import test_store, test_wakeups, test_worker

pytestmark = pytest.mark.integration

#: The fixture the wake-up scenarios LISTEN with (on `database.for_session()`).
listener = test_wakeups.listener

#: Scenarios that watch wake-ups: they need LISTEN.
NEEDS_LISTEN = {
    "test_a_slots_idleness_is_counted_when_it_changes",
    "test_idle_workers_claim_once_per_job_not_once_each",
    "test_a_worker_named_while_busy_passes_the_wake_up_on",
    "test_pgjobs_workers_shows_the_idle_slots",
}


@pytest.fixture(autouse=True)
def _listen_only_where_listening(request: pytest.FixtureRequest, setup: str) -> None:
    if setup == "transaction-poll" and request.node.originalname in NEEDS_LISTEN:
        pytest.skip("polls only (--no-listen): no wake-ups to watch")


SCENARIOS = {
    test_worker: [
        "test_sixteen_workers_claim_each_job_exactly_once",
        "test_failed_attempts_retry_with_backoff_then_succeed",
        "test_job_fails_after_its_last_attempt_with_the_error",
        "test_timeout_fails_the_attempt",
        "test_stop_running_job_then_start_it_again",
        "test_task_ignoring_stop_is_cancelled_after_the_grace",
        "test_restart_of_a_failed_job_runs_it_again",
        "test_killed_worker_job_is_rescued_and_completed_once",
        "test_frozen_worker_comes_back_to_refused_writes",
        "test_sigterm_hands_the_job_back_without_charging_an_attempt",
        "test_progress_writes_are_throttled",
        "test_enqueue_count_and_jobs_json",
        "test_concurrency_runs_several_jobs_in_one_process",
        "test_polling_alone_finds_work_without_listen",
        "test_a_result_json_cannot_hold_fails_the_job_not_the_worker",
        "test_a_claim_whose_answer_was_lost_is_handed_back",
        "test_a_stop_during_a_failing_attempt_wins_over_the_retry",
        "test_a_job_held_but_not_run_is_handed_back_when_the_worker_leaves",
    ],
    test_wakeups: [
        "test_a_slots_idleness_is_counted_when_it_changes",
        "test_one_new_job_names_the_idle_worker_that_heartbeated_last",
        "test_a_batch_or_a_job_no_idle_worker_serves_wakes_everyone",
        "test_idle_workers_claim_once_per_job_not_once_each",
        "test_a_worker_named_while_busy_passes_the_wake_up_on",
        "test_pgjobs_workers_shows_the_idle_slots",
    ],
    test_store: [
        "test_claim_order_is_priority_then_fifo",
        "test_claim_respects_queues_and_run_after",
        "test_complete_and_claim_is_one_round_trip_for_two_jobs",
        "test_stale_lease_writes_are_refused_after_rescue",
        "test_rescue_spares_jobs_of_live_workers",
        "test_stop_start_restart_delete",
        "test_stop_of_running_job_is_seen_in_the_heartbeat",
        "test_release_does_not_charge_an_attempt",
        "test_a_stop_requested_meanwhile_ends_the_job_stopped",
        "test_upsert_resource_is_idempotent",
    ],
}
# The scenarios themselves, as this module's tests: they run with the fixtures of conftest.py.
globals().update({name: getattr(module, name) for module, names in SCENARIOS.items() for name in names})
