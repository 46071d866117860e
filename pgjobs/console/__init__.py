"""The web console, `pgjobs console`: queues, jobs, a job's page and workers, live, with actions.

A client like the cli: it reads through the store, and acts on a job with a PgJob through the
Kubernetes API exactly as `kubectl pgjobs` does (pgjobs.cli.kubectl.patching), on a job without
one through the store. It has no login of its own: put it behind an authenticating proxy or
reach it with `kubectl port-forward` (docs/console.md).
"""
