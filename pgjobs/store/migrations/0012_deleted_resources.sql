-- compatibility: additive
-- Deleted PgJobs stay deleted: a create or update handled late (by another operator replica, or
-- a retry) never gives a row back to a PgJob whose deletion already removed its row.
--
-- Every operator replica runs the PgJob handlers. Without this, replica A could read a PgJob,
-- replica B handle its deletion (row removed, finalizer removed), and A's insert commit after
-- that: a row without a PgJob, which a worker would run until the orphan sweep removed it.
-- Deletion records the uid here and creation refuses a recorded uid; both take the same
-- transaction-scoped advisory lock per uid first, so whichever comes second sees what the first
-- committed (the check runs in a VOLATILE function, whose query takes a snapshot after the lock;
-- the calling statement's own snapshot is older). Kubernetes never reuses a uid.
-- The leader forgets entries after a day (pgjobs.operator.maintenance): no handler of a PgJob
-- deleted that long ago is still in flight. Code from before this migration neither records nor
-- checks: during a rolling upgrade the orphan sweep remains the safety net.
CREATE TABLE pgjobs.deleted_resources (
    resource_uid text PRIMARY KEY,
    deleted_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deleted_resources_age_idx ON pgjobs.deleted_resources (deleted_at);

-- The lock key is the two-integer form ('pgjd', the uid's hash), apart from the bigint keys and
-- the queues' ('pgjq') that pgjobs takes elsewhere.
CREATE FUNCTION pgjobs.resource_was_deleted(uid text) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(1885825636, hashtext(uid));
    RETURN EXISTS (SELECT FROM pgjobs.deleted_resources WHERE resource_uid = uid);
END;
$$;

-- Delete the rows of these PgJobs and record them as deleted; returns the rows removed. Locks
-- are taken in uid order, so two deletions of overlapping sets cannot deadlock.
CREATE FUNCTION pgjobs.forget_resources(uids text[])
RETURNS TABLE (id bigint, state pgjobs.job_state)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(1885825636, hashtext(u))
    FROM (SELECT DISTINCT unnest(uids) AS u ORDER BY 1) AS sorted;
    INSERT INTO pgjobs.deleted_resources (resource_uid)
    SELECT DISTINCT unnest(uids) ON CONFLICT DO NOTHING;
    RETURN QUERY DELETE FROM pgjobs.jobs j WHERE j.resource_uid = ANY(uids) RETURNING j.id, j.state;
END;
$$;
