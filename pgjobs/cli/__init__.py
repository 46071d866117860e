"""Command-line entry points: `pgjobs` (queue admin, worker, operator) and the `kubectl-pgjobs` plugin."""
