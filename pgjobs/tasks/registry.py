"""The task registry: `@pgjobs.task("name")` and the loading of task modules.

Modules are loaded from `--tasks MODULE` and from the `pgjobs.tasks` entry-point group, so a
worker image is the pgjobs image plus a package that declares its tasks there.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import logging
from collections.abc import Callable, Iterable
from importlib import metadata
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "pgjobs.tasks"
#: Sets of argument names remembered per task as fitting (a bound on memory, not a limit on use).
MAX_REMEMBERED_ARG_SETS = 64
TaskFunction = TypeVar("TaskFunction", bound=Callable[..., Any])


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    function: Callable[..., Any]
    #: Runs arbitrary code from its args: refused unless the worker was started to allow it.
    unsafe: bool = False

    @functools.cached_property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.function)

    def check_args(self, args: dict[str, Any]) -> None:
        """Raise TypeError, naming the argument, if the args do not fit the function."""
        # Whether keyword args bind depends on their names only: a set of names that fit once
        # always fits, and binding costs more than the rest of a short job's bookkeeping.
        names = frozenset(args)
        if names in self._fitting_names:
            return
        self._signature.bind(None, **args)
        if len(self._fitting_names) < MAX_REMEMBERED_ARG_SETS:
            self._fitting_names.add(names)

    @functools.cached_property
    def _signature(self) -> inspect.Signature:
        return inspect.signature(self.function)

    @functools.cached_property
    def _fitting_names(self) -> set[frozenset[str]]:
        return set()


_tasks: dict[str, Task] = {}


def task(name: str, *, unsafe: bool = False) -> Callable[[TaskFunction], TaskFunction]:
    """Register a function as the task `name`. It is called as `function(context, **args)`."""

    def register(function: TaskFunction) -> TaskFunction:
        existing = _tasks.get(name)
        if existing and existing.function is not function:
            raise ValueError(f"task {name!r} is already registered by {existing.function.__module__}")
        _tasks[name] = Task(name, function, unsafe)
        return function

    return register


def get(name: str) -> Task | None:
    return _tasks.get(name)


def names() -> list[str]:
    return sorted(_tasks)


def load(modules: Iterable[str] = (), *, entry_points: bool = True) -> None:
    """Import the given modules and every module of the entry-point group (which registers them)."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise ImportError(f"cannot load task module {module!r}: {error}") from error
    if entry_points:
        for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
            logger.debug("Loading tasks from entry point %s", entry_point.value)
            entry_point.load()
