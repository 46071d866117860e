"""Command-line entry points: `pgjobs` (queue admin, worker, operator) and the `kubectl-pgjobs` plugin.

The CLI only parses: `main` builds the `pgjobs` parser from `services` (migrate, worker,
operator, release-pgjobs), which hands `WorkerSettings` / `OperatorSettings` to the packages it
starts, and `queue` (the PostgreSQL-level commands, printed by `listings`); `kubectl` is the
plugin, a package of its own.
"""
