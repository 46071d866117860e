-- compatibility: additive
-- (Storage parameters only: no query changes.)
-- Vacuum the jobs table by the number of dead rows, not by its size. Every claimed job leaves a
-- dead entry at the start of the pending index, where every claim begins to read; with the
-- default (20% of the table dead) a table that keeps a million finished rows would go about
-- 200,000 jobs between vacuums, each claim stepping over more dead entries (measured in
-- bench/README.md: 13x slower claims after draining a million jobs, back to normal after VACUUM).
ALTER TABLE pgjobs.jobs SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 10000,
    autovacuum_vacuum_insert_scale_factor = 0,
    autovacuum_vacuum_insert_threshold = 10000,
    autovacuum_analyze_scale_factor = 0,
    autovacuum_analyze_threshold = 10000,
    autovacuum_vacuum_cost_delay = 0
);
ALTER TABLE pgjobs.workers SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);
