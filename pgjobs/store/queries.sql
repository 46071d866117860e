-- Every SQL statement pgjobs runs, by name (entity_verb). Loaded by pgjobs/store/queries.py.
-- Parameters use psycopg's %(name)s style.

-- name: job_insert
-- run_at: not claimed before it (NULL: now). A unique key an unfinished job of the queue holds
-- already writes nothing (no row returned; job_holding_key finds the holder).
INSERT INTO pgjobs.jobs (task, args, priority, queue, max_attempts, backoff_seconds, timeout_seconds,
                         run_after, unique_key)
SELECT %(task)s, %(args)s, %(priority)s, %(queue)s, %(max_attempts)s, %(backoff_seconds)s,
       %(timeout_seconds)s, coalesce(%(run_at)s::timestamptz, now()), %(unique_key)s
FROM generate_series(1, %(count)s)
ON CONFLICT (queue, unique_key) WHERE unique_key IS NOT NULL AND state IN ('pending', 'running')
DO NOTHING
RETURNING id;

-- name: job_holding_key
-- The unfinished job that holds a unique key in a queue, and its PgJob if it has one.
SELECT id, resource_namespace, resource_name
FROM pgjobs.jobs
WHERE queue = %(queue)s AND unique_key = %(unique_key)s AND state IN ('pending', 'running');

-- name: job_complete_and_claim
-- The hot path: finish one job and claim the next in a single round trip. With a NULL job id it
-- only claims (the claim lives in this one statement, so there is one claim to get right).
-- was_idle: whether the calling slot is counted idle in its worker's row (see idleness).
WITH completed AS (
    UPDATE pgjobs.jobs
    SET state = 'completed', progress = 100, result = %(result)s, message = %(message)s,
        finished_at = now(), stop_requested = false, change_count = change_count + 1
    WHERE id = %(job_id)s AND lease = %(lease)s AND state = 'running'
    RETURNING id
), claimed AS (
    UPDATE pgjobs.jobs
    SET state = 'running', worker_id = %(worker_id)s, attempt = attempt + 1,
        lease = nextval('pgjobs.lease_seq'), started_at = now(), finished_at = NULL, progress = 0,
        message = NULL, result = NULL, change_count = change_count + 1
    WHERE id = (
        -- The first due job of the worker's queues, by priority (highest first), then by how long
        -- it has been due (run_after), then by id. Each (queue, priority) is one range of
        -- jobs_claim_idx (queue, priority DESC, run_after, id), read to its first row: rows of
        -- other queues, of other priorities and not yet due (a retry's backoff, a runAt) lie
        -- outside the range, so no backlog there costs this claim anything; rows no live worker
        -- can run are marked by the leader (job_mark_no_worker) and leave the index. Priorities
        -- are tried highest first and the first level with a job ends the search (the Limit
        -- stops the nested loop), so a claim of Regular work reads two short ranges.
        -- Within a level, each served queue offers its head, locked (SKIP LOCKED steps over the
        -- rows other claims hold), and the oldest head wins; the other heads stay locked only
        -- until this statement commits.
        -- The plan must be these index ranges whatever the statistics say (a table analyzed
        -- empty, or before a burst, makes queue = ... look as if almost nothing matched), so the
        -- task filter is hidden in a CASE, whose estimate is fixed (nearly all rows): the first
        -- match always looks a step away. tests/integration/test_claim_plan.py checks the plan
        -- in every statistics state and for every backlog.
        SELECT best.id
        FROM (VALUES (2), (1), (0)) AS level (priority)
        CROSS JOIN LATERAL (
            -- Heads in order; a rate-limited queue's head is taken only with a start from its
            -- bucket (queue_take_start), tried in this order, so a start another claim took
            -- meanwhile passes the turn to the next head, not to a lower priority. OFFSET 0 keeps
            -- PostgreSQL from pushing that filter into the subquery, where it would take a start
            -- for every served queue before its head is even found.
            SELECT ordered.id
            FROM (
                SELECT head.id, head.run_after, served.queue, shaped.max_per_second
                FROM unnest(%(queues)s::text[]) AS served (queue)
                -- A paused queue offers nothing; a capped one only while it has room (PgQueue,
                -- migration 0010: queue_has_room makes the claims of a capped queue take turns);
                -- a rate-limited one only while its bucket looks to have a start (migration 0014).
                LEFT JOIN pgjobs.queues AS shaped ON shaped.name = served.queue
                CROSS JOIN LATERAL (
                    SELECT id, run_after FROM pgjobs.jobs
                    WHERE state = 'pending' AND no_worker_since IS NULL
                      AND queue = served.queue AND priority = level.priority AND run_after <= now()
                      -- Only the tasks the worker can run (NULL: any): in a mixed fleet, a job of
                      -- a task this worker lacks waits for one that has it (stepped over meanwhile).
                      AND (CASE WHEN task = ANY(%(tasks)s::text[]) OR %(tasks)s::text[] IS NULL
                                THEN true END) IS NOT NULL
                    ORDER BY run_after, id
                    LIMIT 1
                    FOR UPDATE SKIP LOCKED
                ) AS head
                WHERE shaped.name IS NULL
                   OR (NOT shaped.paused
                       AND (shaped.max_per_second IS NULL
                            OR pgjobs.queue_tokens(shaped, clock_timestamp()) >= 1)
                       AND (shaped.max_running IS NULL
                            OR ((SELECT count(*) FROM completed) >= 0
                                AND pgjobs.queue_has_room(served.queue, shaped.max_running))))
                ORDER BY head.run_after, head.id
                OFFSET 0
            ) AS ordered
            WHERE ordered.max_per_second IS NULL
               OR ((SELECT count(*) FROM completed) >= 0 AND pgjobs.queue_take_start(ordered.queue))
            LIMIT 1
        ) AS best
        -- `(SELECT count(*) FROM completed) >= 0` above: the completion runs before a capped
        -- queue's turn or a rate-limited queue's row is taken (PostgreSQL runs an InitPlan at
        -- its first use, and would run the completion after the claim): a completion may wait
        -- for a row another claim holds, and must not while holding what other claims wait
        -- for, or they deadlock. Not before the whole search: then other claims wait for the
        -- completed row for the whole statement, which cost a no-op drain an eighth of its rate.
        LIMIT 1
    )
    RETURNING id, task, args, attempt, max_attempts, backoff_seconds, timeout_seconds, lease,
              created_at, started_at
), idleness AS (
    -- The worker's idle slots, for the enqueue trigger's targeted wake-up: written only when
    -- this slot's idleness changes (it was idle and found work, or was busy and found none), so
    -- a draining worker never writes here.
    -- SKIP LOCKED: never wait for the row (a heartbeat, a rescue sweep marking it dead; and a
    -- sweep takes the row before this statement's jobs, the other order). A change skipped
    -- is set right by the next heartbeat.
    UPDATE pgjobs.workers
    SET idle_slots = least(greatest(idle_slots + CASE WHEN %(was_idle)s THEN -1 ELSE 1 END, 0), concurrency)
    WHERE id = (SELECT id FROM pgjobs.workers WHERE id = %(worker_id)s FOR UPDATE SKIP LOCKED)
      AND %(was_idle)s = EXISTS (SELECT FROM claimed)
)
SELECT (SELECT count(*) FROM completed) AS completed, claimed.*,
       -- Found nothing: when a rate-limited queue of the worker's has a start again, if one is
       -- held back (the worker claims again then, not after its poll interval).
       CASE WHEN claimed.id IS NULL THEN pgjobs.queues_throttled_for(%(queues)s::text[]) END
           AS throttled_for
FROM (VALUES (1)) AS one (x) LEFT JOIN claimed ON true;

-- name: job_announce
-- Wake every worker: a worker named by a targeted wake-up with no slot free passes it on.
SELECT pg_notify('pgjobs_jobs', '');

-- name: job_complete
UPDATE pgjobs.jobs
SET state = 'completed', progress = 100, result = %(result)s, message = %(message)s,
    finished_at = now(), stop_requested = false, change_count = change_count + 1
WHERE id = %(job_id)s AND lease = %(lease)s AND state = 'running'
RETURNING id;

-- name: job_fail
-- A failed attempt: back to pending after %(retry_in)s seconds, or failed when retry_in is NULL.
-- A stop requested meanwhile wins over a retry: the job ends stopped (%(stopped_message)s).
UPDATE pgjobs.jobs
SET state = CASE WHEN stop_requested THEN 'stopped'
                 WHEN %(retry_in)s::float8 IS NULL THEN 'failed'
                 ELSE 'pending' END::pgjobs.job_state,
    run_after = now() + make_interval(secs => coalesce(%(retry_in)s::float8, 0)),
    worker_id = CASE WHEN stop_requested OR %(retry_in)s::float8 IS NULL THEN worker_id END,
    finished_at = CASE WHEN stop_requested OR %(retry_in)s::float8 IS NULL THEN now() END,
    message = CASE WHEN stop_requested THEN %(stopped_message)s ELSE %(message)s END,
    stop_requested = false, change_count = change_count + 1
WHERE id = %(job_id)s AND lease = %(lease)s AND state = 'running'
RETURNING state;

-- name: job_stop_acknowledge
-- The worker gave up a job it was told to stop (or, with --on-shutdown stop, while shutting down).
UPDATE pgjobs.jobs
SET state = 'stopped', finished_at = now(), message = %(message)s, stop_requested = false,
    change_count = change_count + 1
WHERE id = %(job_id)s AND lease = %(lease)s AND state = 'running'
RETURNING id;

-- name: job_release
-- A worker hands jobs it holds back without charging the attempt: when it shuts down, and when
-- it holds a job none of its slots runs (a claim committed but its answer was lost with the
-- connection, so the slot claimed again; an outcome it gave up writing); %(leases)s NULL: all
-- of them (a worker leaving with every slot done). A stop requested meanwhile is honoured: the
-- job ends stopped.
UPDATE pgjobs.jobs
SET state = CASE WHEN stop_requested THEN 'stopped' ELSE 'pending' END::pgjobs.job_state,
    attempt = CASE WHEN stop_requested THEN attempt ELSE greatest(attempt - 1, 0) END,
    worker_id = CASE WHEN stop_requested THEN worker_id END,
    lease = NULL, run_after = now(),
    started_at = CASE WHEN stop_requested THEN started_at END,
    finished_at = CASE WHEN stop_requested THEN now() END,
    progress = CASE WHEN stop_requested THEN progress ELSE 0 END,
    message = CASE WHEN stop_requested THEN 'stopped on request' ELSE %(message)s END,
    stop_requested = false, change_count = change_count + 1
WHERE worker_id = %(worker_id)s AND state = 'running'
  AND (%(leases)s::bigint[] IS NULL OR lease = ANY(%(leases)s::bigint[]))
RETURNING id, state, CASE WHEN state = 'pending' THEN pg_notify('pgjobs_jobs', '') END AS notified;

-- name: job_progress
UPDATE pgjobs.jobs
SET progress = %(progress)s, message = coalesce(%(message)s, message),
    change_count = change_count + 1
WHERE id = %(job_id)s AND lease = %(lease)s AND state = 'running'
RETURNING stop_requested;

-- name: job_stop
-- A pending job stops at once; a running one is flagged, and its worker is woken to see the flag.
UPDATE pgjobs.jobs
SET state = CASE WHEN state = 'pending' THEN 'stopped' ELSE state END::pgjobs.job_state,
    stop_requested = (state = 'running'),
    finished_at = CASE WHEN state = 'pending' THEN now() ELSE finished_at END,
    message = CASE WHEN state = 'pending' THEN 'stopped before it started'
                   ELSE 'stop requested' END,
    change_count = change_count + 1
WHERE id = %(job_id)s AND (state = 'pending' OR (state = 'running' AND NOT stop_requested))
RETURNING id, state,
          CASE WHEN state = 'running' THEN pg_notify('pgjobs_control', worker_id::text) END;

-- name: job_start
-- Start a stopped job again (a fresh set of attempts), or withdraw a stop not yet acted on.
UPDATE pgjobs.jobs
SET state = 'pending', stop_requested = false, run_after = now(),
    attempt = CASE WHEN state = 'stopped' THEN 0 ELSE attempt END,
    finished_at = NULL, message = NULL, change_count = change_count + 1
WHERE id = %(job_id)s AND state = 'stopped'
RETURNING id, pg_notify('pgjobs_jobs', '');

-- name: job_unstop
UPDATE pgjobs.jobs
SET stop_requested = false, message = NULL, change_count = change_count + 1
WHERE id = %(job_id)s AND state = 'running' AND stop_requested
RETURNING id;

-- name: job_restart
-- A new run of a finished job; %(restarts)s is the restart request it answers (NULL: one more).
-- Its attempts count from 1 again, so the old run's log lines go (migration 0011).
WITH restarted AS (
    UPDATE pgjobs.jobs
    SET state = 'pending', attempt = 0, progress = 0, message = NULL, result = NULL,
        worker_id = NULL, lease = NULL, stop_requested = false, run_after = now(),
        started_at = NULL, finished_at = NULL,
        restarts = coalesce(%(restarts)s, restarts + 1), change_count = change_count + 1
    WHERE id = %(job_id)s AND state IN ('completed', 'failed', 'stopped')
    RETURNING id
), cleared AS (
    DELETE FROM pgjobs.job_logs WHERE job_id IN (SELECT id FROM restarted)
)
SELECT id, pg_notify('pgjobs_jobs', '') FROM restarted;

-- name: job_record_restarts
-- Remember a restart request that found the job unfinished, so it is not acted on later.
UPDATE pgjobs.jobs
SET restarts = %(restarts)s, change_count = change_count + 1
WHERE id = %(job_id)s AND restarts < %(restarts)s
RETURNING id;

-- name: job_delete
DELETE FROM pgjobs.jobs
WHERE id = %(job_id)s AND (state <> 'running' OR %(force)s)
RETURNING id;

-- name: job_delete_resource
-- A PgJob deleted: its row goes, and a late create of it makes none (migration 0012).
SELECT id, state FROM pgjobs.forget_resources(ARRAY[%(resource_uid)s]::text[]);

-- name: job_get
SELECT j.*, w.hostname AS worker_name
FROM pgjobs.jobs j LEFT JOIN pgjobs.workers w ON w.id = j.worker_id
WHERE j.id = %(job_id)s;

-- name: job_list
SELECT j.*, w.hostname AS worker_name
FROM pgjobs.jobs j LEFT JOIN pgjobs.workers w ON w.id = j.worker_id
WHERE (%(states)s::pgjobs.job_state[] IS NULL OR j.state = ANY(%(states)s::pgjobs.job_state[]))
ORDER BY j.id DESC
LIMIT %(limit)s;

-- name: job_page_older
-- The console's job listing: a page of jobs matching a filter (a NULL leaves that filter out), newest
-- first, older than the keyset cursor `before` (NULL: the newest). Walking the primary key backwards
-- keeps every page as cheap as the first at any table size, where OFFSET would read all the pages
-- before it. `args_like` is an ILIKE pattern over the args' JSON text.
SELECT j.id, j.task, j.queue, j.priority, j.state, j.progress, j.attempt, j.max_attempts, j.message,
       j.stop_requested, j.created_at, j.started_at, j.finished_at, j.resource_namespace,
       j.resource_name, j.resource_uid, w.hostname AS worker_name
FROM pgjobs.jobs j LEFT JOIN pgjobs.workers w ON w.id = j.worker_id
WHERE (%(namespace)s::text IS NULL OR j.resource_namespace = %(namespace)s::text)
  AND (%(queue)s::text IS NULL OR j.queue = %(queue)s::text)
  AND (%(task)s::text IS NULL OR j.task = %(task)s::text)
  AND (%(state)s::pgjobs.job_state IS NULL OR j.state = %(state)s::pgjobs.job_state)
  AND (%(args_like)s::text IS NULL OR j.args::text ILIKE %(args_like)s::text)
  AND (%(since)s::timestamptz IS NULL OR j.created_at >= %(since)s::timestamptz)
  AND (%(cursor)s::bigint IS NULL OR j.id < %(cursor)s::bigint)
ORDER BY j.id DESC
LIMIT %(limit)s;

-- name: job_list_running
-- Every Running job with its worker (through jobs_running_idx): the console's workers page.
SELECT id, task, queue, progress, worker_id, resource_namespace, resource_name
FROM pgjobs.jobs WHERE state = 'running'
ORDER BY id;

-- name: job_delete_resources
SELECT id FROM pgjobs.forget_resources(%(resource_uids)s::text[]);

-- name: resource_forget_deleted
-- Deleted PgJobs recorded more than a day ago: no handler of theirs is still in flight.
WITH gone AS (DELETE FROM pgjobs.deleted_resources WHERE deleted_at < now() - interval '1 day' RETURNING 1)
SELECT count(*) AS forgotten FROM gone;

-- name: job_list_expired
-- Finished jobs of PgJobs whose ttlSecondsAfterFinished has passed, once their final status has
-- reached Kubernetes (like the Job TTL controller, which acts only on a status showing the end):
-- otherwise a short TTL under a busy status sync would delete a PgJob before anyone saw how it ended.
-- `restarts` lets the deleter keep a PgJob restarted since (its spec asks for more).
SELECT id, resource_uid, resource_namespace, resource_name, restarts
FROM pgjobs.jobs
WHERE state IN ('completed', 'failed', 'stopped') AND ttl_seconds_after_finished IS NOT NULL
  AND finished_at + make_interval(secs => ttl_seconds_after_finished) <= now()
  AND change_count = synced_count
ORDER BY finished_at
LIMIT %(limit)s;

-- name: job_prune_finished
-- Finished jobs without a PgJob past their retention, oldest first, a batch at a time (through
-- jobs_finished_idx); a PgJob's row follows the PgJob (its finalizer, its TTL) instead.
DELETE FROM pgjobs.jobs
WHERE id IN (
    SELECT id FROM pgjobs.jobs
    WHERE state IN ('completed', 'failed', 'stopped') AND resource_uid IS NULL
      AND finished_at < now() - make_interval(secs => %(retention_seconds)s)
    ORDER BY finished_at
    LIMIT %(limit)s
)
RETURNING id;

-- name: job_count_by_state
SELECT state, priority, queue, count(*) AS jobs
FROM pgjobs.jobs
GROUP BY state, priority, queue;

-- name: job_oldest_due_by_queue
-- Per queue, how long its oldest due Pending job has waited (seconds since it became runnable):
-- a queue whose oldest job keeps ageing is starved, whatever its depth.
SELECT queue, extract(epoch FROM now() - min(run_after))::float8 AS seconds
FROM pgjobs.jobs
WHERE state = 'pending' AND run_after <= now()
GROUP BY queue;

-- name: job_count_backlog
-- Per queue, the jobs that want a worker now: Pending and due, or Running. The worker HPA's
-- metric (pgjobs.operator.externalmetrics): one slot per such job is the right fleet size.
-- A paused queue (PgQueue) wants none, so that its workers can scale in.
SELECT queue, count(*) AS jobs
FROM pgjobs.jobs
WHERE (state = 'running' OR (state = 'pending' AND run_after <= now()))
  AND NOT EXISTS (SELECT FROM pgjobs.queues WHERE queues.name = jobs.queue AND queues.paused)
GROUP BY queue;

-- name: job_rescue_many
-- Idempotent: any process may run it, at any time. Running jobs whose worker has not
-- heartbeated within its stall timeout (the one it registered with, migration 0005) go back to
-- pending (attempts left) or fail; a stop request pending on such a job ends it Stopped. The
-- started_at guard keeps a job that a live worker claimed a moment ago from being taken,
-- however the snapshots interleave; %(stall_seconds)s stands in for a worker with no row.
WITH silent_workers AS (
    UPDATE pgjobs.workers
    SET state = 'dead'
    WHERE state = 'alive' AND heartbeat_at < now() - make_interval(secs => stall_timeout)
    RETURNING id
), rescued AS (
    UPDATE pgjobs.jobs AS j
    SET state = CASE WHEN j.stop_requested THEN 'stopped'
                     WHEN j.attempt < j.max_attempts THEN 'pending'
                     ELSE 'failed' END::pgjobs.job_state,
        run_after = now() + make_interval(
            secs => least(j.backoff_seconds * power(2, greatest(j.attempt - 1, 0)), 86400)),
        finished_at = CASE WHEN j.stop_requested OR j.attempt >= j.max_attempts THEN now() END,
        message = format('worker stopped heartbeating during attempt %%s/%%s', j.attempt,
                         j.max_attempts),
        worker_id = NULL, lease = NULL, stop_requested = false,
        change_count = j.change_count + 1
    WHERE j.state = 'running'
      AND j.started_at < now() - make_interval(secs => coalesce(
          (SELECT w.stall_timeout FROM pgjobs.workers w WHERE w.id = j.worker_id), %(stall_seconds)s))
      AND NOT EXISTS (
          SELECT 1 FROM pgjobs.workers w
          WHERE w.id = j.worker_id AND w.state = 'alive'
            AND w.heartbeat_at >= now() - make_interval(secs => w.stall_timeout))
    RETURNING j.id, j.state, j.attempt, j.max_attempts
)
SELECT id, state, attempt, max_attempts, (SELECT count(*) FROM silent_workers) AS dead_workers,
       -- wakes idle workers for jobs that may run at once (backoff 0); polling covers the rest
       CASE WHEN state = 'pending' THEN pg_notify('pgjobs_jobs', '') END AS notified
FROM rescued;

-- name: job_mark_no_worker
-- Idempotent (the leading operator runs it). Marks the pending jobs that no worker can run
-- (none serves the job's queue with its task: tasks NULL is a worker of older code, which claims
-- any) and that have waited %(after_seconds)s since they became due, with no such worker seen
-- alive meanwhile (a fleet restarting is not "no worker"); clears the mark once a live worker
-- can run the job, or the job is no longer pending. A mark shown or cleared bumps change_count,
-- so the status sync copies it. The (queue, task) pairs of unmarked pending jobs are read by
-- skipping through jobs_pending_kind_idx (a probe per pair); only unserved pairs' rows are visited.
WITH RECURSIVE kinds AS (
    (SELECT queue, task FROM pgjobs.jobs
     WHERE state = 'pending' AND no_worker_since IS NULL
     ORDER BY queue, task LIMIT 1)
    UNION ALL
    SELECT next.queue, next.task
    FROM kinds, LATERAL (SELECT queue, task FROM pgjobs.jobs
                         WHERE state = 'pending' AND no_worker_since IS NULL
                           AND (queue, task) > (kinds.queue, kinds.task)
                         ORDER BY queue, task LIMIT 1) AS next
), able AS (
    SELECT queues, tasks,
           state = 'alive' AND heartbeat_at >= now() - make_interval(secs => stall_timeout) AS live
    FROM pgjobs.workers
    WHERE (state = 'alive' AND heartbeat_at >= now() - make_interval(secs => stall_timeout))
       OR heartbeat_at >= now() - make_interval(secs => %(after_seconds)s)
), unserved AS (
    SELECT kinds.queue, kinds.task
    FROM kinds
    WHERE NOT EXISTS (SELECT FROM able
                      WHERE kinds.queue = ANY(able.queues)
                        AND (able.tasks IS NULL OR kinds.task = ANY(able.tasks)))
), marked AS (
    UPDATE pgjobs.jobs AS j
    SET no_worker_since = now(), change_count = j.change_count + 1
    FROM unserved
    WHERE j.state = 'pending' AND j.queue = unserved.queue AND j.task = unserved.task
      AND j.no_worker_since IS NULL
      AND j.run_after <= now() - make_interval(secs => %(after_seconds)s)
    RETURNING j.id
), cleared AS (
    UPDATE pgjobs.jobs AS j
    SET no_worker_since = NULL,
        change_count = j.change_count + CASE WHEN j.state = 'pending' THEN 1 ELSE 0 END
    WHERE j.no_worker_since IS NOT NULL
      AND (j.state <> 'pending'
           OR EXISTS (SELECT FROM able
                      WHERE able.live AND j.queue = ANY(able.queues)
                        AND (able.tasks IS NULL OR j.task = ANY(able.tasks))))
    RETURNING j.id
)
SELECT (SELECT count(*) FROM marked) AS marked, (SELECT count(*) FROM cleared) AS cleared;

-- name: worker_register
-- tasks: the task names the worker can run (the claim filters on the worker's own copy).
-- Pending jobs the leader marked as runnable by no worker (job_mark_no_worker), which this
-- worker can run, lose the mark here: the claim skips marked rows, and they are claimable at
-- once rather than at the leader's next round.
WITH runnable AS (
    UPDATE pgjobs.jobs
    SET no_worker_since = NULL, change_count = change_count + 1
    WHERE no_worker_since IS NOT NULL AND state = 'pending' AND queue = ANY(%(queues)s::text[])
      AND (%(tasks)s::text[] IS NULL OR task = ANY(%(tasks)s::text[]))
)
INSERT INTO pgjobs.workers (id, hostname, pid, queues, concurrency, heartbeat_interval, stall_timeout,
                            tasks)
VALUES (%(worker_id)s, %(hostname)s, %(pid)s, %(queues)s, %(concurrency)s, %(heartbeat_interval)s,
        %(stall_timeout)s, %(tasks)s)
ON CONFLICT (id) DO UPDATE SET state = 'alive', heartbeat_at = now(), stopped_at = NULL;

-- name: worker_heartbeat
-- The answer tells the worker which of its jobs were asked to stop and which it still holds
-- (a job it runs but no longer holds was rescued, restarted or deleted: it must let go).
-- It also sets the worker's idle slots as the worker counts them (NULL: leave as is), which
-- mends any drift in what the hot statement keeps there (an answer lost with its connection).
WITH previous AS (
    SELECT state FROM pgjobs.workers WHERE id = %(worker_id)s FOR UPDATE
), beat AS (
    UPDATE pgjobs.workers
    SET heartbeat_at = now(), state = 'alive', stopped_at = NULL,
        idle_slots = coalesce(%(idle_slots)s, idle_slots)
    WHERE id = %(worker_id)s
    RETURNING id
)
SELECT (SELECT state FROM previous) AS previous_state,
       ARRAY(SELECT id FROM pgjobs.jobs
             WHERE worker_id = %(worker_id)s AND state = 'running' AND stop_requested)
           AS stop_requested,
       ARRAY(SELECT lease FROM pgjobs.jobs
             WHERE worker_id = %(worker_id)s AND state = 'running') AS held_leases;

-- name: worker_deregister
UPDATE pgjobs.workers SET state = 'stopped', stopped_at = now() WHERE id = %(worker_id)s;

-- name: worker_list
SELECT w.*, (SELECT count(*) FROM pgjobs.jobs j
             WHERE j.worker_id = w.id AND j.state = 'running') AS running_jobs
FROM pgjobs.workers w
WHERE %(include_gone)s OR w.state = 'alive'
ORDER BY w.started_at DESC;

-- name: worker_prune
DELETE FROM pgjobs.workers
WHERE state <> 'alive' AND coalesce(stopped_at, heartbeat_at) < now() - make_interval(secs => %(older_than_seconds)s)
RETURNING id;

-- name: worker_count_alive
SELECT count(*) AS alive FROM pgjobs.workers
WHERE state = 'alive' AND heartbeat_at >= now() - make_interval(secs => stall_timeout);

-- name: schema_state_labels
SELECT enumlabel FROM pg_enum WHERE enumtypid = 'pgjobs.job_state'::regtype ORDER BY enumsortorder;

-- Operator queries

-- name: resource_upsert
-- The operator's create/resume/update: idempotent, keyed by the PgJob uid. Only settings that may
-- change after creation are updated; priority only while the job still waits. A new row records
-- the PgJob generation it was made from (its insert applies the whole spec), which saves a round
-- trip per new PgJob.
-- An existing row's generation is recorded by resource_observe_generation once stopped and
-- restarts are applied too. spec.runAt moves a job that has not started yet (a later spec
-- without runAt leaves the time as it was: set a past time to run it now).
-- A PgJob whose deletion has removed its row gets none back (migration 0012): no row returned.
INSERT INTO pgjobs.jobs AS j (task, args, priority, queue, max_attempts, backoff_seconds,
                              timeout_seconds, ttl_seconds_after_finished, restarts, state,
                              finished_at, resource_uid, resource_namespace, resource_name,
                              observed_generation, run_after, unique_key)
SELECT %(task)s, %(args)s, %(priority)s, %(queue)s, %(max_attempts)s, %(backoff_seconds)s,
       %(timeout_seconds)s, %(ttl_seconds_after_finished)s, %(restarts)s,
       CASE WHEN %(stopped)s THEN 'stopped' ELSE 'pending' END::pgjobs.job_state,
       CASE WHEN %(stopped)s THEN now() END,
       %(resource_uid)s, %(resource_namespace)s, %(resource_name)s, %(generation)s,
       coalesce(%(run_at)s::timestamptz, now()), %(unique_key)s
WHERE NOT pgjobs.resource_was_deleted(%(resource_uid)s)
ON CONFLICT (resource_uid) DO UPDATE SET
    priority = CASE WHEN j.state = 'pending' THEN excluded.priority ELSE j.priority END,
    run_after = CASE WHEN j.state = 'pending' AND j.attempt = 0 AND %(run_at)s::timestamptz IS NOT NULL
                     THEN excluded.run_after ELSE j.run_after END,
    max_attempts = excluded.max_attempts,
    backoff_seconds = excluded.backoff_seconds,
    timeout_seconds = excluded.timeout_seconds,
    ttl_seconds_after_finished = excluded.ttl_seconds_after_finished,
    change_count = j.change_count
        + CASE WHEN j.priority <> excluded.priority
                 OR (j.state = 'pending' AND j.attempt = 0 AND %(run_at)s::timestamptz IS NOT NULL
                     AND j.run_after <> excluded.run_after)
               THEN 1 ELSE 0 END
RETURNING j.id, (xmax = 0) AS inserted;

-- name: resource_observe_generation
-- The operator applied this spec generation to the row; a newer one shows in the status.
UPDATE pgjobs.jobs
SET observed_generation = %(generation)s, change_count = change_count + 1
WHERE resource_uid = %(resource_uid)s
  AND observed_generation IS DISTINCT FROM %(generation)s
  AND coalesce(observed_generation, 0) <= %(generation)s
RETURNING id;

-- name: resource_list_unsynced
-- Rows whose latest change has not been copied to their PgJob's status, with what was copied
-- last (to derive the Events of the transitions in between), except those being copied now.
-- Fair: namespaces take turns, so a namespace with thousands of changing rows delays another
-- namespace's row by one write per namespace with changes, not by its own backlog. The turn
-- goes on after %(after_namespace)s (the namespace served last; it wraps around), one row per
-- namespace and turn. Within a namespace, state changes (a new PgJob, Started, Completed,
-- Failed, Stopped, Requeued: state or attempt differ from what was copied) come first, oldest
-- row first; then progress-only changes from the row after the one copied last
-- (%(cursor_namespaces)s / %(cursor_ids)s), wrapping around, so every row's progress is copied
-- in turn. Each step is a short read of jobs_unsynced_turns_idx: the distinct namespaces are
-- found one index probe each, never by reading every changed row.
WITH RECURSIVE later (namespace, place) AS (
    SELECT min(resource_namespace), 1 FROM pgjobs.jobs
    WHERE change_count <> synced_count AND resource_uid IS NOT NULL
      AND resource_namespace > %(after_namespace)s
    UNION ALL
    SELECT (SELECT min(resource_namespace) FROM pgjobs.jobs
            WHERE change_count <> synced_count AND resource_uid IS NOT NULL
              AND resource_namespace > later.namespace),
           later.place + 1
    FROM later WHERE later.namespace IS NOT NULL AND later.place < %(limit)s::integer
), earlier (namespace, place) AS (
    SELECT min(resource_namespace), %(limit)s::integer + 1 FROM pgjobs.jobs
    WHERE change_count <> synced_count AND resource_uid IS NOT NULL
    UNION ALL
    SELECT (SELECT min(resource_namespace) FROM pgjobs.jobs
            WHERE change_count <> synced_count AND resource_uid IS NOT NULL
              AND resource_namespace > earlier.namespace),
           earlier.place + 1
    FROM earlier
    WHERE earlier.namespace < %(after_namespace)s AND earlier.place < 2 * %(limit)s::integer
), turns AS (
    SELECT t.namespace, t.place,
           coalesce((SELECT max(c.id)
                     FROM unnest(%(cursor_namespaces)s::text[], %(cursor_ids)s::bigint[]) AS c (namespace, id)
                     WHERE c.namespace = t.namespace), 0) AS after_id
    FROM (SELECT namespace, place FROM later WHERE namespace IS NOT NULL
          UNION ALL
          SELECT namespace, place FROM earlier
          WHERE namespace IS NOT NULL AND namespace <= %(after_namespace)s
          ORDER BY place
          LIMIT %(limit)s) AS t
), picked AS (
    -- Per namespace three ranges of the index, in this order: state changes (progress_only 0),
    -- then progress-only changes after the cursor, then those up to it (the round wraps).
    SELECT turns.place, mine.id,
           row_number() OVER (PARTITION BY turns.place ORDER BY pass.number, mine.id) AS turn
    FROM turns
    CROSS JOIN LATERAL (VALUES (0, 0, 0::bigint, 9223372036854775807::bigint),
                               (1, 1, turns.after_id, 9223372036854775807),
                               (2, 1, 0, turns.after_id)) AS pass (number, progress_only, above, upto)
    CROSS JOIN LATERAL (
        SELECT id FROM pgjobs.jobs
        WHERE change_count <> synced_count AND resource_uid IS NOT NULL
          AND resource_namespace = turns.namespace
          AND (CASE WHEN state = synced_state AND attempt = synced_attempt THEN 1 ELSE 0 END)
              = pass.progress_only
          AND id > pass.above AND id <= pass.upto
          AND id <> ALL (%(busy)s::bigint[])
        ORDER BY id
        LIMIT %(limit)s
    ) AS mine
    ORDER BY turn, turns.place
    LIMIT %(limit)s
)
SELECT j.id, j.task, j.priority, j.queue, j.state, j.attempt, j.max_attempts, j.progress,
       j.message, j.result, j.restarts, j.run_after, j.created_at, j.started_at, j.finished_at,
       j.resource_uid, j.resource_namespace, j.resource_name, j.change_count,
       j.observed_generation, j.synced_state, j.synced_attempt, j.no_worker_since,
       w.hostname AS worker_name
FROM picked JOIN pgjobs.jobs j ON j.id = picked.id
LEFT JOIN pgjobs.workers w ON w.id = j.worker_id
ORDER BY picked.turn, picked.place;

-- name: resource_mark_synced
-- Record what was copied; a row that changed again meanwhile keeps a differing change_count.
-- Only a copy of what the row is or was: a failover that lost the last commits takes a row back
-- to an older state and count, and a copy made before it (recorded after, on the new primary)
-- must not mark the older row as copied, or its next changes up to that count are never copied.
UPDATE pgjobs.jobs AS j
SET synced_count = copied.change_count, synced_state = copied.state,
    synced_attempt = copied.attempt
FROM unnest(%(job_ids)s::bigint[], %(change_counts)s::bigint[],
            %(states)s::pgjobs.job_state[], %(attempts)s::integer[])
     AS copied (id, change_count, state, attempt)
WHERE j.id = copied.id AND j.synced_count < copied.change_count
  AND (j.change_count > copied.change_count
       OR (j.change_count = copied.change_count AND j.state = copied.state
           AND j.attempt = copied.attempt));

-- name: resource_list_keys
-- Every PgJob uid with a row, for the clean-up of rows whose PgJob vanished.
SELECT resource_uid, resource_namespace FROM pgjobs.jobs WHERE resource_uid IS NOT NULL;

-- name: resource_get_state
SELECT id, state, stop_requested FROM pgjobs.jobs WHERE resource_uid = %(resource_uid)s;

-- name: resource_count_unsynced
SELECT count(*) AS unsynced FROM pgjobs.jobs
WHERE change_count <> synced_count AND resource_uid IS NOT NULL;

-- name: resource_lock_namespace
-- Taken before counting a namespace's unfinished rows and adding one, until the transaction
-- ends, so that PgJobs created at once cannot all pass a per-namespace limit. The two-key form
-- never meets the one-key locks of leadership and migrations.
SELECT pg_advisory_xact_lock(%(key)s::integer, hashtext(%(namespace)s))::text AS locked;

-- name: resource_count_unfinished
-- Pending or Running rows of one namespace's PgJobs, counted up to the limit (the partial
-- indexes of pending and running rows bound the scan by the backlog, not the table).
SELECT count(*) AS unfinished FROM (
    SELECT 1 FROM pgjobs.jobs
    WHERE (state = 'pending' OR state = 'running') AND resource_namespace = %(namespace)s
    LIMIT %(limit)s
) AS unfinished_rows;

-- name: leader_try_lock
SELECT pg_try_advisory_lock(%(key)s) AS acquired;

-- name: leader_acquire
-- Take the lease (migration 0005) with a new term, or nothing. With the advisory lock %(key)s
-- (so no replica of older code, which knows only the lock, leads): when there is no lease yet,
-- when it ran out, or when its holder's session is gone (a leader that died: no need to wait).
-- Without the lock: only when the lease ran out and its holder is the one holding the lock,
-- i.e. a leader of this code that stopped responding but kept its session.
WITH lock_holder AS (
    SELECT pid FROM pg_locks
    WHERE locktype = 'advisory' AND granted AND objsubid = 1
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND ((classid::bigint << 32) | objid::bigint) = %(key)s
), me AS (
    SELECT pid, backend_start, pid IN (SELECT pid FROM lock_holder) AS locked
    FROM pg_stat_activity WHERE pid = pg_backend_pid()
)
INSERT INTO pgjobs.leadership AS l (term, holder, holder_pid, holder_backend_start, expires_at)
SELECT 1, %(holder)s, me.pid, me.backend_start, now() + make_interval(secs => %(lease_seconds)s)
FROM me
WHERE me.locked OR EXISTS (SELECT 1 FROM pgjobs.leadership)
ON CONFLICT (singleton) DO UPDATE
SET term = l.term + 1, holder = excluded.holder, holder_pid = excluded.holder_pid,
    holder_backend_start = excluded.holder_backend_start, expires_at = excluded.expires_at
WHERE CASE WHEN (SELECT locked FROM me)
           -- another role's session shows no backend_start: then only the lease's end counts
           THEN l.expires_at < now() OR NOT EXISTS (
               SELECT 1 FROM pg_stat_activity a
               WHERE a.pid = l.holder_pid
                 AND (a.backend_start IS NULL OR a.backend_start = l.holder_backend_start))
           ELSE l.expires_at < now() AND l.holder_pid IN (SELECT pid FROM lock_holder)
      END
RETURNING term;

-- name: leader_renew
-- Extend the lease of term %(term)s; no row: another replica took it (the term changed).
UPDATE pgjobs.leadership SET expires_at = now() + make_interval(secs => %(lease_seconds)s)
WHERE term = %(term)s
RETURNING term;

-- name: leader_release
-- A leader that stops on purpose ends its lease, so a standby need not wait for it to run out.
UPDATE pgjobs.leadership SET expires_at = now() - interval '1 microsecond' WHERE term = %(term)s;

-- name: leader_show
SELECT term, holder, expires_at - now() AS remaining FROM pgjobs.leadership;

-- name: oldest_snapshot
-- The oldest open transaction in this database that holds a snapshot or a transaction id: VACUUM
-- keeps every row version it might still see, so while it stays open no job finished after it
-- began can be cleaned up, and claims slow down as dead index entries pile up (bench/README.md,
-- "How cost grows"). VACUUMs themselves do not hold cleanup back and are left out. Sessions of
-- other roles show their transactions only to members of pg_read_all_stats (pg_monitor).
SELECT coalesce(extract(epoch FROM max(now() - xact_start)), 0)::float8 AS age_seconds,
       current_user AS role,
       pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') AS sees_all_sessions
FROM pg_stat_activity
WHERE datname = current_database()
  AND pid <> pg_backend_pid()
  AND backend_type = 'client backend'
  AND (backend_xmin IS NOT NULL OR backend_xid IS NOT NULL)
  AND NOT (state = 'active' AND query ~* '^\s*vacuum\M');

-- name: queue_apply
-- A PgQueue's spec, as the operator reads it (Kubernetes owns it: the last write wins).
-- A changed rate keeps the bucket's tokens (at most the new rate's second's worth).
INSERT INTO pgjobs.queues (name, paused, max_running, max_per_second, resource_uid)
VALUES (%(name)s, %(paused)s, %(max_running)s, %(max_per_second)s, %(resource_uid)s)
ON CONFLICT (name) DO UPDATE
SET paused = excluded.paused, max_running = excluded.max_running,
    max_per_second = excluded.max_per_second, resource_uid = excluded.resource_uid, updated_at = now()
WHERE (queues.paused, queues.max_running, queues.max_per_second, queues.resource_uid)
      IS DISTINCT FROM (excluded.paused, excluded.max_running, excluded.max_per_second, excluded.resource_uid);

-- name: queue_remove
DELETE FROM pgjobs.queues WHERE resource_uid = %(resource_uid)s;

-- name: queue_remove_others
-- The leader's sweep: rows of PgQueues that no longer exist (deleted while no operator ran) go,
-- so that a deleted PgQueue never leaves its queue paused, capped or rate-limited.
DELETE FROM pgjobs.queues WHERE NOT (resource_uid = ANY(%(resource_uids)s::text[]))
RETURNING name;

-- name: queue_list_stats
-- Every queue that has unfinished jobs, a live worker serving it, or a row: its due Pending and
-- Running jobs, the live workers that serve it, and since when its oldest due job has waited.
-- Reads the pending and running rows (the claim's and the running index) and the workers, never
-- the finished history.
WITH pending AS (
    SELECT queue, count(*) AS pending, min(run_after) AS oldest_due_since
    FROM pgjobs.jobs WHERE state = 'pending' AND run_after <= now()
    GROUP BY queue
), running AS (
    SELECT queue, count(*) AS running FROM pgjobs.jobs WHERE state = 'running' GROUP BY queue
), serving AS (
    SELECT queue, count(*) AS workers
    FROM pgjobs.workers, unnest(queues) AS served (queue)
    WHERE state = 'alive' AND heartbeat_at >= now() - make_interval(secs => stall_timeout)
    GROUP BY queue
), named AS (
    SELECT queue FROM pending UNION SELECT queue FROM running UNION SELECT queue FROM serving
    UNION SELECT name FROM pgjobs.queues
)
SELECT named.queue, coalesce(pending.pending, 0) AS pending, coalesce(running.running, 0) AS running,
       coalesce(serving.workers, 0) AS workers, pending.oldest_due_since,
       coalesce(queues.paused, false) AS paused, queues.max_running, queues.max_per_second
FROM named
LEFT JOIN pending ON pending.queue = named.queue
LEFT JOIN running ON running.queue = named.queue
LEFT JOIN serving ON serving.queue = named.queue
LEFT JOIN pgjobs.queues ON queues.name = named.queue
ORDER BY named.queue;

-- name: job_log_write
-- A batch of one attempt's lines (pgjobs.worker.capture), numbered on from the attempt's last
-- line: an attempt handed back by a shutting-down worker is claimed again under the same number
-- and its log goes on. Lines of a job deleted meanwhile are not written (the join finds none).
INSERT INTO pgjobs.job_logs (job_id, attempt, seq, at, level, message)
SELECT j.id, %(attempt)s,
       coalesce((SELECT max(seq) FROM pgjobs.job_logs
                 WHERE job_id = %(job_id)s AND attempt = %(attempt)s), 0) + line.n,
       line.at, line.level, line.message
FROM pgjobs.jobs AS j
CROSS JOIN unnest(%(ats)s::timestamptz[], %(levels)s::text[], %(messages)s::text[])
    WITH ORDINALITY AS line (at, level, message, n)
WHERE j.id = %(job_id)s
ON CONFLICT (job_id, attempt, seq) DO NOTHING;

-- name: job_log_read
-- One job's lines in order (attempt, then seq), after a position, optionally of one attempt.
SELECT attempt, seq, at, level, message
FROM pgjobs.job_logs
WHERE job_id = %(job_id)s
  AND (%(attempt)s::integer IS NULL OR attempt = %(attempt)s::integer)
  AND (attempt, seq) > (%(after_attempt)s::integer, %(after_seq)s::integer)
ORDER BY attempt, seq
LIMIT %(limit)s;

-- name: job_find_resource
-- The job of the PgJob NAME in NAMESPACE (its logs are asked for by name).
SELECT id, state FROM pgjobs.jobs
WHERE resource_namespace = %(namespace)s AND resource_name = %(name)s
ORDER BY id DESC
LIMIT 1;
