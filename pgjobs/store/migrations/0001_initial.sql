-- compatibility: breaking
-- (It creates the schema: there is no code from before it.)
-- The job queue: jobs, workers, and the lease sequence that fences workers' writes.

CREATE TYPE pgjobs.job_state AS ENUM ('pending', 'running', 'completed', 'failed', 'stopped');

-- Every claim takes a fresh lease number; a worker's writes name it, so a worker whose
-- attempt was taken away (rescued, restarted, deleted) can never change the job again.
CREATE SEQUENCE pgjobs.lease_seq;

CREATE TABLE pgjobs.jobs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task text NOT NULL CONSTRAINT task_name CHECK (task ~ '^[A-Za-z_][A-Za-z0-9_.:-]{0,127}$'),
    args jsonb NOT NULL DEFAULT '{}'
        CONSTRAINT args_object CHECK (jsonb_typeof(args) = 'object'),
    priority smallint NOT NULL DEFAULT 1 CONSTRAINT priority_range CHECK (priority BETWEEN 0 AND 2),
    queue text NOT NULL DEFAULT 'default'
        CONSTRAINT queue_name CHECK (queue ~ '^[a-z0-9]([a-z0-9_.-]{0,61}[a-z0-9])?$'),
    state pgjobs.job_state NOT NULL DEFAULT 'pending',
    attempt integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL DEFAULT 3
        CONSTRAINT max_attempts_range CHECK (max_attempts BETWEEN 1 AND 100),
    backoff_seconds integer NOT NULL DEFAULT 10
        CONSTRAINT backoff_range CHECK (backoff_seconds BETWEEN 0 AND 86400),
    timeout_seconds integer CONSTRAINT timeout_range CHECK (timeout_seconds BETWEEN 1 AND 604800),
    run_after timestamptz NOT NULL DEFAULT now(),
    worker_id uuid,
    lease bigint,
    stop_requested boolean NOT NULL DEFAULT false,
    progress smallint NOT NULL DEFAULT 0 CONSTRAINT progress_range CHECK (progress BETWEEN 0 AND 100),
    message text,
    result jsonb,
    restarts integer NOT NULL DEFAULT 0,
    -- The PgJob this row belongs to (NULL for jobs enqueued without Kubernetes).
    resource_uid text UNIQUE,
    resource_namespace text,
    resource_name text,
    ttl_seconds_after_finished integer,
    -- Bumped by every change worth showing; the status syncer copies rows where it differs
    -- from synced_count, then records the count it copied.
    change_count bigint NOT NULL DEFAULT 1,
    synced_count bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz
);

-- The claim reads only this: small, and ordered the way jobs are claimed.
CREATE INDEX jobs_pending_idx ON pgjobs.jobs (priority DESC, id) WHERE state = 'pending';
CREATE INDEX jobs_running_idx ON pgjobs.jobs (worker_id) WHERE state = 'running';
CREATE INDEX jobs_unsynced_idx ON pgjobs.jobs (id)
    WHERE change_count <> synced_count AND resource_uid IS NOT NULL;
CREATE INDEX jobs_finished_idx ON pgjobs.jobs (finished_at)
    WHERE state IN ('completed', 'failed', 'stopped');

CREATE TABLE pgjobs.workers (
    id uuid PRIMARY KEY,
    hostname text NOT NULL,
    pid integer NOT NULL,
    queues text[] NOT NULL,
    concurrency integer NOT NULL,
    state text NOT NULL DEFAULT 'alive' CONSTRAINT worker_state CHECK (state IN ('alive', 'dead', 'stopped')),
    started_at timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    stopped_at timestamptz
);

CREATE INDEX workers_alive_idx ON pgjobs.workers (heartbeat_at) WHERE state = 'alive';

-- One wake-up per inserting statement, however many rows it adds: NOTIFY takes a global
-- lock at commit, so one per row would serialise bulk enqueues.
CREATE FUNCTION pgjobs.notify_jobs_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('pgjobs_jobs', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER jobs_inserted AFTER INSERT ON pgjobs.jobs
    FOR EACH STATEMENT EXECUTE FUNCTION pgjobs.notify_jobs_inserted();
