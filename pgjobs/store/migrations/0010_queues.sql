-- compatibility: additive
-- Queues shaped by their PgQueue resource: paused, or capped in how many of their jobs run at once.
--
-- The operator copies each PgQueue's spec here (Kubernetes owns the intent, as for PgJobs); the
-- claim (job_complete_and_claim) reads it. A queue without a row is neither paused nor capped.
-- Code from before this migration does not read the table: during a rolling upgrade its workers
-- neither pause nor respect a cap.
CREATE TABLE pgjobs.queues (
    name text PRIMARY KEY
        CONSTRAINT queue_name CHECK (name ~ '^[a-z0-9]([a-z0-9_.-]{0,61}[a-z0-9])?$'),
    paused boolean NOT NULL DEFAULT false,
    max_running integer CONSTRAINT max_running_range CHECK (max_running >= 0),
    -- The PgQueue this row copies (its metadata.uid), so that a sweep can drop rows of deleted ones.
    resource_uid text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Whether a capped queue may start one more job: called by the claim for each capped queue it
-- serves. The transaction-scoped advisory lock makes the claims of one capped queue take turns
-- until each commits, and the count, run after the lock is granted, sees every job the claims
-- before it started (in READ COMMITTED a VOLATILE function's queries take a fresh snapshot; the
-- claim's own statement snapshot is older). So concurrent claimers can never start more than
-- max_running jobs of the queue, however many workers and pods there are. The lock key is the
-- two-integer form ('pgjq', the queue's hash), apart from the bigint keys pgjobs takes elsewhere. Workers pass their
-- queues sorted, so that two claims serving the same capped queues lock them in the same order.
CREATE FUNCTION pgjobs.queue_has_room(queue_name text, max_running integer) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(1885825649, hashtext(queue_name));
    RETURN (SELECT count(*) FROM pgjobs.jobs WHERE queue = queue_name AND state = 'running') < max_running;
END;
$$;
