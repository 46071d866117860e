-- compatibility: additive
-- (New worker columns with defaults. Older workers leave idle_slots at 0, so they are never
-- woken on a channel of their own: they get the broadcast on `pgjobs_jobs` and poll.)
-- Targeted wake-ups: a single new job wakes one idle worker, not every listener.
--
-- Every listening worker process used to receive every new-job notification and claim; with
-- several idle processes, all woke and all but one claimed nothing, and their claims and their
-- Python ran alongside the winner's (pickup p50 2.8 ms with four idle processes against 2.1 ms
-- with one, bench/README.md). Workers now keep their count of idle slots here, written by the
-- hot statement only when it changes, and set again by every heartbeat.

-- Fail rather than wait: this takes the jobs and workers tables' strongest locks, and waiting
-- behind a long reader would stall every claim and heartbeat behind us. `pgjobs migrate` says so
-- and can simply be run again.
SET LOCAL lock_timeout = '5s';

-- One notification per inserting statement, as before. A statement that adds one job wakes, on
-- its own channel (`pgjobs_wake_<worker id>`), the worker with an idle slot for the job's queue
-- that heartbeated last, among those that missed no more than one heartbeat (so a worker that
-- died stops being chosen within two of its heartbeat intervals). The payload is the job's id,
-- so that several jobs added in one transaction are several notifications (PostgreSQL delivers
-- identical ones once). Other worker processes are not woken at all; a worker woken with no
-- slot waiting passes the wake-up on to every worker. Anything else (a batch, no idle worker)
-- goes to every worker on `pgjobs_jobs`.
CREATE OR REPLACE FUNCTION pgjobs.notify_jobs_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    added bigint;
    job_id bigint;
    queue_name text;
    target uuid;
BEGIN
    SELECT count(*), min(id), min(queue) INTO added, job_id, queue_name
    FROM (SELECT id, queue FROM inserted LIMIT 2) AS first_two;
    IF added = 1 THEN
        SELECT id INTO target FROM pgjobs.workers
        WHERE state = 'alive' AND idle_slots > 0 AND queue_name = ANY(queues)
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

DROP TRIGGER jobs_inserted ON pgjobs.jobs;
CREATE TRIGGER jobs_inserted AFTER INSERT ON pgjobs.jobs
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION pgjobs.notify_jobs_inserted();

ALTER TABLE pgjobs.workers
    ADD COLUMN idle_slots integer NOT NULL DEFAULT 0,
    ADD COLUMN heartbeat_interval float8 NOT NULL DEFAULT 2;
