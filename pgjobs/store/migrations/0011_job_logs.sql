-- compatibility: additive
-- What tasks logged, per job and attempt, so that it outlives the worker pod that ran them.
--
-- Workers insert lines in batches (pgjobs.worker.capture); `pgjobs logs`, the operator's logs API
-- and the console read one job's lines in order through the primary key. The lines go with their
-- job (ON DELETE CASCADE): the retention prune, the TTL deletion and `kubectl delete pgjob`
-- remove them, and a restart (a new run, whose attempts count from 1 again) clears them. Code
-- from before this migration writes no lines.
CREATE TABLE pgjobs.job_logs (
    job_id bigint NOT NULL REFERENCES pgjobs.jobs (id) ON DELETE CASCADE,
    attempt integer NOT NULL,
    -- The line's number within its attempt, from 1 (job_log_write numbers a batch on).
    seq integer NOT NULL,
    at timestamptz NOT NULL,
    level text NOT NULL,
    message text NOT NULL,
    PRIMARY KEY (job_id, attempt, seq)
);
