-- compatibility: additive
-- The status sync's turns (resource_list_unsynced): namespaces with waiting changes are served in
-- turn, state changes before progress. Each namespace's next row is one probe of this index, so
-- a read costs a few index entries however many rows one namespace floods it with (on 221,000
-- rows with 20,000 changing in one namespace: 96 entries, 0.5 ms; 1.5 s without it). Older code
-- reads through jobs_unsynced_idx, which stays.

-- Building it holds the jobs table's write lock for one scan: fail rather than queue every claim
-- behind a long reader (as 0004; `pgjobs migrate` says so and can be run again).
SET LOCAL lock_timeout = '5s';

CREATE INDEX jobs_unsynced_turns_idx ON pgjobs.jobs
    (resource_namespace, (CASE WHEN state = synced_state AND attempt = synced_attempt THEN 1 ELSE 0 END), id)
    WHERE change_count <> synced_count AND resource_uid IS NOT NULL;
