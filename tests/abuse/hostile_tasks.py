"""Tasks that return or raise what a hostile task author would: deep, large, odd.

Loaded by the abuse suite's workers next to tests.sample_tasks.
"""

from __future__ import annotations

from typing import Any

import pgjobs


def nested(depth: int, container: str = "object") -> Any:
    """A value `depth` containers deep, built without recursion."""
    value: Any = 1
    for _ in range(depth):
        value = {"a": value} if container == "object" else [value]
    return value


@pgjobs.task("deep_result")
async def deep_result(context: pgjobs.TaskContext, depth: int = 2000, container: str = "object") -> Any:
    return nested(depth, container)


@pgjobs.task("big_result")
async def big_result(context: pgjobs.TaskContext, size: int = 1_000_000) -> Any:
    return {"blob": "x" * size}


@pgjobs.task("looped_result")
async def looped_result(context: pgjobs.TaskContext) -> Any:
    """A list that contains itself: no JSON at all, at any depth."""
    loop: list[Any] = []
    loop.append(loop)
    return {"loop": loop}


@pgjobs.task("deep_error")
async def deep_error(context: pgjobs.TaskContext, depth: int = 2000) -> Any:
    """Fails with an exception whose message is a deep value's text."""
    raise RuntimeError(nested(depth))
