"""What ships: the wheel, installed alone into a fresh virtualenv, imports every module it holds.

Builds from a copy of the package (the checkout stays clean), installs the wheel with its
declared dependencies from the package index, and imports each module from outside the
checkout, so a module that needs something only the dev extra brings fails here.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

IMPORT_ALL = """
import importlib, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
from pgjobs.store import migrating
assert migrating.known_migrations(), "the migrations' SQL is missing"
print(len(sys.argv) - 1)
"""


def build_wheel(workdir: Path) -> Path:
    source = workdir / "source"
    shutil.copytree(ROOT / "pgjobs", source / "pgjobs", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    dist = workdir / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(dist), str(source)],
        check=True,
        cwd=workdir,
    )
    (wheel,) = dist.glob("pgjobs-*.whl")
    return wheel


def shipped_modules(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        files = [name for name in archive.namelist() if name.endswith(".py")]
    return sorted(
        name.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
        for name in files
        if not name.endswith("__main__.py")
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def install(wheel: Path, requirement: str, venv: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", requirement],
        check=True,
        cwd=wheel.parent,
    )
    return venv


def test_the_wheel_ships_the_consoles_templates_and_static_files(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    expected = {
        f"pgjobs/console/{name}"
        for name in (
            "templates/base.html",
            "templates/_jobs.html",
            "static/htmx.min.js",
            "static/console.css",
        )
    }
    assert expected <= names, f"missing from the wheel: {sorted(expected - names)}"


@pytest.fixture(scope="module")
def installed(wheel: Path) -> tuple[Path, list[str]]:
    """The wheel with every extra, as the image installs it."""
    return install(wheel, f"{wheel}[operator,kubectl,console]", wheel.parent / "venv"), shipped_modules(wheel)


@pytest.fixture(scope="module")
def bare(wheel: Path) -> Path:
    """The wheel alone, as a task author installs it to write tasks and build a worker image."""
    return install(wheel, str(wheel), wheel.parent / "bare")


def test_the_wheel_holds_no_development_environment(installed: tuple[Path, list[str]]) -> None:
    _, modules = installed
    assert "pgjobs.worker.running" in modules and "pgjobs.cli.kubectl.watching" in modules
    assert [name for name in modules if name.startswith("pgjobs.devenv")] == []


def test_every_shipped_module_imports_and_finds_its_sql(installed: tuple[Path, list[str]]) -> None:
    venv, modules = installed
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", IMPORT_ALL, *modules],
        cwd=venv,
        capture_output=True,
        text=True,
        env={"PATH": str(venv / "bin")},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(len(modules))


@pytest.mark.parametrize("script", ["pgjobs", "kubectl-pgjobs"])
def test_console_scripts_run(installed: tuple[Path, list[str]], script: str) -> None:
    venv, _ = installed
    result = subprocess.run(
        [str(venv / "bin" / script), "--help"], cwd=venv, capture_output=True, text=True, env={}
    )
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout


OPERATOR_LIBRARIES = ("kopf", "kubernetes", "aiohttp", "rich")


def test_a_task_authors_install_runs_workers_without_the_operators_libraries(bare: Path) -> None:
    check = (
        "import importlib.util, sys\n"
        "import pgjobs, pgjobs.cli.main, pgjobs.worker.running, pgjobs.tasks.builtins\n"
        f"missing = [m for m in {OPERATOR_LIBRARIES!r} if importlib.util.find_spec(m) is None]\n"
        f"assert missing == list({OPERATOR_LIBRARIES!r}), missing\n"
        "print(pgjobs.__version__)"
    )
    result = subprocess.run(
        [str(bare / "bin" / "python"), "-c", check], cwd=bare, capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout.strip(), result.stderr
    worker = subprocess.run(
        [str(bare / "bin" / "pgjobs"), "worker", "--help"], capture_output=True, text=True, env={}
    )
    assert worker.returncode == 0, worker.stderr


@pytest.mark.parametrize(
    ("argv", "extra"),
    [
        (["pgjobs", "operator"], "pgjobs[operator]"),
        (["pgjobs", "console"], "pgjobs[console]"),
        (["kubectl-pgjobs", "watch"], "pgjobs[kubectl]"),
    ],
)
def test_a_command_without_its_extra_names_it_in_one_line(bare: Path, argv: list[str], extra: str) -> None:
    result = subprocess.run(
        [str(bare / "bin" / argv[0]), *argv[1:]],
        cwd=bare,
        capture_output=True,
        text=True,
        env={"HOME": str(bare)},
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert f"pip install '{extra}'" in result.stderr
