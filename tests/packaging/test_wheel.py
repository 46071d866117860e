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
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    workdir = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(workdir)
    venv = workdir / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)], check=True, cwd=workdir
    )
    return venv, shipped_modules(wheel)


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
