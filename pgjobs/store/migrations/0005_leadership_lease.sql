-- compatibility: additive
-- Leadership by lease, each worker's own stall timeout, and range checks for PgJob-only fields.
--
-- Leadership was a session advisory lock alone: a leader that stopped responding but kept its
-- connection (a paused or CPU-starved process, a hung node whose kernel still answers) kept the
-- lock, and a standby took over only when TCP gave up on it (38 s measured, unbounded). The
-- leader now also holds a lease here, renewed every second; a standby takes it once it has run
-- out. Each takeover raises the term, which fences the old leader: its renewal names its term
-- and fails, and it writes nothing once its lease has run out by its own clock. The advisory
-- lock stays, so that during a rolling update a replica of the code before this migration
-- (which knows only the lock) and a newer one never lead at once (see the leader_acquire
-- statement).
CREATE TABLE pgjobs.leadership (
    singleton boolean PRIMARY KEY DEFAULT true CONSTRAINT one_row CHECK (singleton),
    term bigint NOT NULL,
    -- who leads, for people reading the table: "<host> pid <pid>"
    holder text NOT NULL,
    -- the leader's database session, so that a standby can tell a dead leader (its session is
    -- gone: take over at once) from a silent one (wait for the lease)
    holder_pid integer NOT NULL,
    holder_backend_start timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);

-- The stall timeout a worker was started with: the rescue sweep judges each worker by its own,
-- as it does the heartbeat interval, instead of by whatever the process sweeping was given.
-- The default is the code's default (pgjobs.states.STALL_TIMEOUT), for workers of older code.
ALTER TABLE pgjobs.workers ADD COLUMN stall_timeout float8 NOT NULL DEFAULT 15
    CONSTRAINT stall_timeout_positive CHECK (stall_timeout > 0);

-- The bounds pgjobs.store.validation checks (RANGES), kept by the database too. Checking the
-- existing rows holds the jobs table's lock for one scan: fail rather than queue every claim
-- behind a long reader (as 0004; `pgjobs migrate` says so and can be run again).
SET LOCAL lock_timeout = '5s';
ALTER TABLE pgjobs.jobs
    ADD CONSTRAINT restarts_range CHECK (restarts >= 0),
    ADD CONSTRAINT ttl_range CHECK (ttl_seconds_after_finished BETWEEN 0 AND 31536000);
