-- compatibility: additive
-- transaction: none
-- Claims that no backlog elsewhere can slow: one index range per (queue, priority).
--
-- The claim used to walk jobs_pending_idx (priority DESC, id) from its head and filter queue,
-- task and run_after row by row, so that 100,000 High jobs waiting in a queue nobody served, of
-- a task no worker had, or out a retry's backoff, slowed every claim everywhere twentyfold
-- (docs/benchmarks.md, "Isolation"). The claim (job_complete_and_claim) now reads, for each
-- queue it serves and each priority, the range of due rows of this index.
--
-- Rows that no live worker can run (no_worker_since set by the leader) are left out, so that a
-- backlog of them costs nothing once marked; a worker that can run them clears the mark when it
-- registers (job_unmark_runnable), and the leader when it sees one alive.
--
-- Built CONCURRENTLY, outside a transaction, so that claims and enqueues go on while it is built
-- over a large table (a plain CREATE INDEX would hold them for the whole build). A build that
-- failed halfway leaves an invalid index, which the next `pgjobs migrate` drops and builds again.
-- jobs_pending_idx stays for workers of older code during a rolling upgrade, whose claim reads it.
DROP INDEX CONCURRENTLY IF EXISTS pgjobs.jobs_claim_idx;
CREATE INDEX CONCURRENTLY jobs_claim_idx ON pgjobs.jobs (queue, priority DESC, run_after, id)
    WHERE state = 'pending' AND no_worker_since IS NULL;
-- The running jobs of a queue, counted by the claim of a queue with a cap (PgQueue maxRunning,
-- migration 0010): a read of that queue's running rows alone.
DROP INDEX CONCURRENTLY IF EXISTS pgjobs.jobs_running_queue_idx;
CREATE INDEX CONCURRENTLY jobs_running_queue_idx ON pgjobs.jobs (queue) WHERE state = 'running';
