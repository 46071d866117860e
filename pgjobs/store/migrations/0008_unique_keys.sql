-- compatibility: additive
-- Unique jobs (spec.uniqueKey, `pgjobs enqueue --unique-key`, pgjobs.enqueue(unique_key=...)):
-- while an unfinished (Pending or Running) job holds a key in its queue, no second job with
-- that key can be written. The database enforces it, not a check-then-insert, so PgJobs created
-- at once by twenty clients still give one row. A finished job frees its key. Code from before
-- this migration writes no key (NULL), which the index leaves out.
ALTER TABLE pgjobs.jobs ADD COLUMN unique_key text;

-- Takes the jobs table's strongest lock, briefly (see 0004).
SET LOCAL lock_timeout = '5s';

CREATE UNIQUE INDEX jobs_unique_key_idx ON pgjobs.jobs (queue, unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('pending', 'running');
