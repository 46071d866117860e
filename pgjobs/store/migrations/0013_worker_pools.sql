-- compatibility: additive
-- Row scoping for worker logins: a login given a pool (`pgjobs migrate --pool LOGIN=QUEUE,...`)
-- reads and changes only the jobs of its pool's queues (and their log lines), and changes only
-- the worker rows it registered itself. So one tenant's workers cannot read another's args,
-- forge its results, or mark its workers dead, whatever SQL they send.
--
-- Row-level security binds every role but the tables' owner (the login that migrates) and
-- superusers. A login without a pool, like the operator's, sees and changes every row, as
-- before: the policies below let it through on a check made once per statement (an InitPlan),
-- and for a pooled login the per-row check is one array membership test.
-- Enabling row-level security and adding a column take the tables' strongest lock for a moment,
-- and a lock request waits behind a long transaction while claims queue behind it: give up after a
-- second instead (`pgjobs migrate` says so, and `--wait` tries again).
SET LOCAL lock_timeout = '1s';

CREATE TABLE pgjobs.worker_pools (
    login name PRIMARY KEY,
    queues text[] NOT NULL CONSTRAINT pool_has_queues CHECK (cardinality(queues) > 0)
);

-- The queues of the current login's pool; NULL: the login has none (every row is its).
CREATE FUNCTION pgjobs.pool_of_login() RETURNS text[]
LANGUAGE sql STABLE AS $$
    SELECT queues FROM pgjobs.worker_pools WHERE login = current_user
$$;

-- Who registered each worker: a pooled login changes only its own workers' rows.
ALTER TABLE pgjobs.workers ADD COLUMN login name NOT NULL DEFAULT current_user;

CREATE POLICY pool_queues ON pgjobs.jobs
    USING ((SELECT pgjobs.pool_of_login()) IS NULL OR queue = ANY ((SELECT pgjobs.pool_of_login())::text[]));
ALTER TABLE pgjobs.jobs ENABLE ROW LEVEL SECURITY;

CREATE POLICY read_every_worker ON pgjobs.workers FOR SELECT USING (true);
CREATE POLICY register_as_oneself ON pgjobs.workers FOR INSERT
    WITH CHECK ((SELECT pgjobs.pool_of_login()) IS NULL OR login = current_user);
CREATE POLICY change_own_workers ON pgjobs.workers FOR UPDATE
    USING ((SELECT pgjobs.pool_of_login()) IS NULL OR login = current_user);
CREATE POLICY remove_own_workers ON pgjobs.workers FOR DELETE
    USING ((SELECT pgjobs.pool_of_login()) IS NULL OR login = current_user);
ALTER TABLE pgjobs.workers ENABLE ROW LEVEL SECURITY;

-- A log line belongs to a job the login may see (the subquery is itself scoped by pool_queues).
CREATE POLICY lines_of_pool_jobs ON pgjobs.job_logs
    USING ((SELECT pgjobs.pool_of_login()) IS NULL
           OR EXISTS (SELECT FROM pgjobs.jobs j WHERE j.id = job_logs.job_id));
ALTER TABLE pgjobs.job_logs ENABLE ROW LEVEL SECURITY;
