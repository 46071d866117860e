-- compatibility: additive
-- (New columns, nullable or with a default, that older code does not use.)
-- What the operator needs to write PgJob status and Events from the row alone.
--
-- observed_generation: the PgJob metadata.generation the operator last applied to the row
-- (copied to status.observedGeneration). synced_state / synced_attempt: the state and attempt
-- last copied to Kubernetes, so that the status sync can tell transitions (Started, Completed,
-- Requeued, ...) from progress updates and post one Event per transition, without reading
-- the PgJob back from the API server.

ALTER TABLE pgjobs.jobs
    ADD COLUMN observed_generation bigint,
    ADD COLUMN synced_state pgjobs.job_state,
    ADD COLUMN synced_attempt integer NOT NULL DEFAULT 0;
