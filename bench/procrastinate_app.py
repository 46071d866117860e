"""The Procrastinate baseline: one no-op task. Imported only by bench/.venv-baseline's python.

`throughput.PROCRASTINATE_SETUP` applies Procrastinate's schema and defers the jobs in one
batch; workers are `procrastinate --app=bench.procrastinate_app.app worker --one-shot`.
"""

from __future__ import annotations

import os

import procrastinate

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(conninfo=os.environ.get("BENCH_DATABASE_URL", ""))
)


@app.task(name="noop")
async def noop() -> None:
    """Does nothing, like pgjobs' noop."""


async def setup(count: int) -> None:
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        await noop.batch_defer_async(*({} for _ in range(count)))
