"""The task only pool C of a mixed fleet runs."""

from __future__ import annotations

import os
from typing import Any

import pgjobs
from tests.sample_tasks import _record


@pgjobs.task("only_c")
async def only_c(context: pgjobs.TaskContext, **ignored: Any) -> dict[str, int]:
    _record(context, "only_c")
    return {"pid": os.getpid()}
