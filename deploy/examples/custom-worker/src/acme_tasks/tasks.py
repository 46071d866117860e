"""The `acme.wordcount` task: counts the words of a text, reporting progress per line."""

from __future__ import annotations

from typing import Any

from pgjobs.tasks.context import JobStopped, TaskContext
from pgjobs.tasks.registry import task


@task("acme.wordcount")
async def wordcount(context: TaskContext, text: str, **ignored: Any) -> dict[str, int]:
    lines = text.splitlines() or [""]
    words = 0
    for number, line in enumerate(lines, start=1):
        if not await context.asleep(0):
            raise JobStopped("stopped")
        words += len(line.split())
        context.progress(100 * number / len(lines))
    return {"words": words, "lines": len(lines)}
