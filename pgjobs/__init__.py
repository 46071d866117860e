"""pgjobs: background jobs on Kubernetes, coordinated by PostgreSQL.

Task authors need only this module: `@pgjobs.task("name")` registers a function, which is
called with a `pgjobs.TaskContext` and the job's args as keyword arguments.
"""

from pgjobs.build import VERSION as __version__
from pgjobs.tasks.context import JobStopped, TaskContext
from pgjobs.tasks.registry import task

__all__ = ["JobStopped", "TaskContext", "__version__", "task"]
