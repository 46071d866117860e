"""Profile of a draining worker: py-spy (from bench/.venv-baseline) samples one `--burst` worker.

py-spy records on-CPU samples only (idle waits in the event loop are left out), in its raw
"collapsed stacks" format; we sum them by leaf frame (self time) and by function anywhere on
the stack (inclusive time), and keep the raw file in bench/results/ for flame graphs.
"""

from __future__ import annotations

import collections
import re
import time
from pathlib import Path
from typing import Any

from bench import baseline, environment
from pgjobs.devenv.postgres import PostgresServer
from pgjobs.store.records import NewJob

_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
TOP = 20


def run(server: PostgresServer, jobs_count: int, output: Path) -> dict[str, Any]:
    database = environment.pgjobs_database(server, "profile")
    environment.enqueue(database, NewJob("noop"), jobs_count)
    command = [
        baseline.tool("py-spy"),
        "record",
        "--format",
        "raw",
        "--rate",
        "500",
        "--nonblocking",
        "-o",
        str(output),
        "--",
    ]
    started = time.perf_counter()
    (process,) = environment.start_workers(database, 1, ["--burst"], prefix=command)
    code = process.wait()
    wall = time.perf_counter() - started
    if code != 0 or not output.exists():
        raise RuntimeError(f"py-spy exited with {code} (it needs ptrace: run as root or allow ptrace)")
    return {"jobs": jobs_count, "wall_s": wall, "raw": output.name, **summarize(output.read_text())}


def _name(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        path = path.split("/work/main/", 1)[-1]
    return f"{match['function']} ({path})"


def summarize(raw: str) -> dict[str, Any]:
    self_time: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = drain = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_name(frame) for frame in stack.split(";")]
        total += count
        if not any("pgjobs/worker/slots.py" in frame for frame in frames):
            continue  # start-up (imports, connect, migrate check) and shutdown
        drain += count
        self_time[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    return {
        "samples": total,
        "drain_samples": drain,
        "self": [(name, count, 100 * count / drain) for name, count in self_time.most_common(TOP)],
        "inclusive": [(name, count, 100 * count / drain) for name, count in inclusive.most_common(TOP * 2)],
    }


def format_profile(profile: dict[str, Any]) -> str:
    lines = [
        f"py-spy: {profile['samples']} on-CPU samples, {profile['drain_samples']} in the claim/run loop "
        f"({profile['jobs']} noop jobs, one worker)",
        "  self time (leaf frame):",
    ]
    lines += [f"    {share:5.1f}%  {name}" for name, _, share in profile["self"][:15]]
    lines.append("  inclusive time (anywhere on the stack):")
    lines += [f"    {share:5.1f}%  {name}" for name, _, share in profile["inclusive"][:30]]
    return "\n".join(lines)


def rerun_summary(path: Path) -> None:  # pragma: no cover - a helper for reading old raw files
    print(format_profile({"jobs": "?", **summarize(path.read_text())}))


if __name__ == "__main__":  # pragma: no cover
    import sys

    rerun_summary(Path(sys.argv[1]))
