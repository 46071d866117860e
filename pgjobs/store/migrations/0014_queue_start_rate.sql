-- compatibility: additive
-- Start-rate limits per queue (PgQueue spec.maxPerSecond), kept in the queue's own row: no
-- process keeps a limiter, so the limit holds across every worker and pod.
--
-- A token bucket: a start takes one token from `start_tokens`, which refills at max_per_second
-- up to one second's worth (at least one token), as of `tokens_at` (NULL: full). So a queue
-- idle for a while may start one second's worth at once, and no more than that plus
-- max_per_second per second after.
--
-- Code from before this migration neither reads nor takes tokens: during a rolling upgrade its
-- workers do not respect the limit. A lock request waits behind a long transaction while claims
-- queue behind it: give up after a second instead (`pgjobs migrate --wait` tries again).
SET LOCAL lock_timeout = '1s';

ALTER TABLE pgjobs.queues
    ADD COLUMN max_per_second double precision CONSTRAINT max_per_second_range CHECK (max_per_second > 0),
    ADD COLUMN start_tokens double precision NOT NULL DEFAULT 0,
    ADD COLUMN tokens_at timestamptz;

-- The tokens of a queue's bucket at `at` (NULL for a queue without a limit). One expression, so
-- that PostgreSQL inlines it into the claim.
CREATE FUNCTION pgjobs.queue_tokens(queue pgjobs.queues, at timestamptz) RETURNS double precision
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN queue.max_per_second IS NULL THEN NULL
        WHEN queue.tokens_at IS NULL THEN greatest(queue.max_per_second, 1)
        ELSE least(greatest(queue.max_per_second, 1),
                   queue.start_tokens
                   + queue.max_per_second * greatest(extract(epoch FROM at - queue.tokens_at), 0))
    END
$$;

-- Take one start from a rate-limited queue's bucket: whether the queue may start a job now (a
-- start was taken, or the queue has no limit any more). The claim calls it for the head it is
-- about to take, and only then. The row lock makes the claims of one rate-limited queue take
-- turns until each commits, and in READ COMMITTED the UPDATE re-reads the row as the claim
-- before it committed it, so two claims never take the same start (clock_timestamp() is read
-- after the lock is granted).
CREATE FUNCTION pgjobs.queue_take_start(queue_name text) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    UPDATE pgjobs.queues
    SET start_tokens = pgjobs.queue_tokens(queues, clock_timestamp()) - 1, tokens_at = clock_timestamp()
    WHERE name = queue_name AND pgjobs.queue_tokens(queues, clock_timestamp()) >= 1;
    IF FOUND THEN
        RETURN true;
    END IF;
    -- Its limit lifted (or its PgQueue deleted) while this claim ran: nothing holds it back.
    RETURN NOT EXISTS (SELECT FROM pgjobs.queues WHERE name = queue_name AND max_per_second IS NOT NULL);
END;
$$;

-- For a claim that found nothing: in how many seconds the first of these queues whose bucket is
-- empty has a token again (NULL: none of them is held back by its limit), so that the worker
-- claims again then instead of after its poll interval. VOLATILE: its query takes a snapshot
-- of its own, which sees the tokens a concurrent claim took while this one waited for the row.
CREATE FUNCTION pgjobs.queues_throttled_for(queue_names text[]) RETURNS double precision
LANGUAGE sql VOLATILE AS $$
    SELECT min((1 - pgjobs.queue_tokens(queues, clock_timestamp())) / queues.max_per_second)
    FROM pgjobs.queues
    WHERE name = ANY(queue_names) AND max_per_second IS NOT NULL AND NOT paused
      AND pgjobs.queue_tokens(queues, clock_timestamp()) < 1
$$;

-- Worker logins take tokens: they may change the bucket's two columns (roles.py grants them),
-- and a login with a pool (migration 0013) only of its pool's queues.
CREATE POLICY pool_queues ON pgjobs.queues
    USING ((SELECT pgjobs.pool_of_login()) IS NULL OR name = ANY ((SELECT pgjobs.pool_of_login())::text[]));
ALTER TABLE pgjobs.queues ENABLE ROW LEVEL SECURITY;
