"""The pgjobs operator: PgJob objects in, PostgreSQL rows out, live status back.

Every replica runs the kopf handlers (`handlers`), which turn PgJob specs into rows
idempotently. One replica at a time, the leader (`leadership`), also copies execution state
from the database into PgJob status within a write budget (`syncing`) and runs the
maintenance sweeps: rescue, TTL deletion, worker pruning, orphan clean-up (`maintenance`), and
creates the PgJobs of PgCronJobs at their scheduled times (`cronjobs`, deciding with the pure
functions of `schedules`; `jobtemplates` turns a template into a PgJob).
`running` wires it together with the liveness endpoint and the metrics (`metrics`), from the
typed `settings` the CLI hands over.
"""
