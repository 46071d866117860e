"""The task only pool A of a mixed fleet runs."""

from __future__ import annotations

import os
from typing import Any

import pgjobs
from tests.sample_tasks import _record


@pgjobs.task("only_a")
async def only_a(context: pgjobs.TaskContext, **ignored: Any) -> dict[str, int]:
    _record(context, "only_a")
    return {"pid": os.getpid()}
