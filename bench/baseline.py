"""The baseline virtualenv (bench/.venv-baseline): Procrastinate, py-spy and pyinstrument.

Kept apart from the project's venv so that none of them becomes a pgjobs dependency. Created
on first use with `python -m venv` and `pip install` from PyPI (pinned majors below).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench import environment

VENV = Path(__file__).resolve().parent / ".venv-baseline"
PACKAGES = ["procrastinate>=3,<4", "py-spy>=0.4,<0.5"]


class BaselineUnavailable(RuntimeError):
    pass


def python() -> str:
    ensure()
    return str(VENV / "bin" / "python")


def tool(name: str) -> str:
    ensure()
    return str(VENV / "bin" / name)


def ensure() -> None:
    marker = VENV / ".bench-installed"
    if marker.exists():
        return
    try:
        if not (VENV / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, capture_output=True)
        subprocess.run(
            [str(VENV / "bin" / "pip"), "install", "--quiet", *PACKAGES], check=True, capture_output=True
        )
    except subprocess.CalledProcessError as error:
        output = (error.stderr or b"").decode(errors="replace")[-2000:]
        raise BaselineUnavailable(f"cannot install {PACKAGES} into {VENV}: {output}") from error
    marker.write_text(" ".join(PACKAGES) + "\n")


def procrastinate_env(database: environment.Database) -> dict[str, str]:
    env = database.worker_env()
    env["BENCH_DATABASE_URL"] = database.url
    return env
