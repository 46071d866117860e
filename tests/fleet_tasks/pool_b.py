"""The task only pool B of a mixed fleet runs."""

from __future__ import annotations

import os
from typing import Any

import pgjobs
from tests.sample_tasks import _record


@pgjobs.task("only_b")
async def only_b(context: pgjobs.TaskContext, **ignored: Any) -> dict[str, int]:
    _record(context, "only_b")
    return {"pid": os.getpid()}
