"""pgjobs: background jobs on Kubernetes, coordinated by PostgreSQL.

Task authors need only this module: `@pgjobs.task("name")` registers a function, which is
called with a `pgjobs.TaskContext` and the job's args as keyword arguments. Application code
enqueues jobs with `pgjobs.enqueue(conn, "name", args=...)` inside its own transaction.
"""

from pgjobs.build import VERSION as __version__
from pgjobs.producer import InvalidJob, enqueue, enqueue_async, enqueue_many
from pgjobs.tasks.context import JobStopped, TaskContext
from pgjobs.tasks.registry import task

__all__ = [
    "InvalidJob",
    "JobStopped",
    "TaskContext",
    "__version__",
    "enqueue",
    "enqueue_async",
    "enqueue_many",
    "task",
]
