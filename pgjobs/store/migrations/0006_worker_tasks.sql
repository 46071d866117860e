-- compatibility: additive
-- Mixed worker fleets: a worker claims only jobs whose task it can run.
--
-- A worker that did not know a job's task failed it at once ("unknown task"), even when other
-- workers of the same queue knew it: a fleet mid-rollout, or pools with different task modules
-- on one queue, failed jobs that could run. Workers now record the tasks they can run, the claim
-- filters on them (job_complete_and_claim), and the enqueue trigger wakes only a worker that can
-- run the new job. NULL tasks: a worker of code from before this migration, which claims any
-- task (and fails those it does not know, as it always did).
ALTER TABLE pgjobs.workers ADD COLUMN tasks text[];

-- When the leading operator found that no live worker can run this pending job (none serves its
-- queue with its task), for longer than its delay; NULL otherwise. The status sync shows it as
-- the PgJob's condition Runnable=False (reason NoWorkerForTask), `pgjobs jobs` as a note.
ALTER TABLE pgjobs.jobs ADD COLUMN no_worker_since timestamptz;

-- Takes the jobs table's strongest lock, briefly (see 0004).
SET LOCAL lock_timeout = '5s';

-- The marked rows, so that clearing them reads a handful of entries, not the table. Only that
-- statement writes the column, so no other update gains or loses an entry here.
CREATE INDEX jobs_no_worker_idx ON pgjobs.jobs (id) WHERE no_worker_since IS NOT NULL;
-- The (queue, task) pairs of pending jobs not marked yet, read by skipping from one pair to the
-- next, so that the look for jobs no worker can run costs an index probe per pair, not a read of
-- every pending row (630 ms at 1M pending without it). An enqueue adds one entry here; a claim
-- adds none (its row is no longer pending), so the claim's cost is unchanged. The predicate is
-- more than `state = 'pending'` on purpose: the claim's WHERE does not imply it, so the claim
-- can never be planned on this index (a scan and sort of it, under statistics that say nothing
-- is pending) instead of reading jobs_pending_idx in order.
CREATE INDEX jobs_pending_kind_idx ON pgjobs.jobs (queue, task)
    WHERE state = 'pending' AND no_worker_since IS NULL;

-- 0004's trigger, choosing only among workers that can run the job's task: a targeted wake-up
-- sent to a worker that cannot run the task would leave the job waiting for a poll.
CREATE OR REPLACE FUNCTION pgjobs.notify_jobs_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    added bigint;
    job_id bigint;
    queue_name text;
    task_name text;
    target uuid;
BEGIN
    SELECT count(*), min(id), min(queue), min(task) INTO added, job_id, queue_name, task_name
    FROM (SELECT id, queue, task FROM inserted LIMIT 2) AS first_two;
    IF added = 1 THEN
        SELECT id INTO target FROM pgjobs.workers
        WHERE state = 'alive' AND idle_slots > 0 AND queue_name = ANY(queues)
          AND (tasks IS NULL OR task_name = ANY(tasks))
          AND heartbeat_at >= now() - make_interval(secs => 2 * heartbeat_interval)
        ORDER BY heartbeat_at DESC
        LIMIT 1;
    END IF;
    IF target IS NULL THEN
        PERFORM pg_notify('pgjobs_jobs', '');
    ELSE
        PERFORM pg_notify('pgjobs_wake_' || target, job_id::text);
    END IF;
    RETURN NULL;
END;
$$;
