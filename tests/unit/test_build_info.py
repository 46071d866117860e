"""One version, from pyproject.toml, in `pgjobs --version`, `kubectl pgjobs version` and
`pgjobs_build_info`."""

from __future__ import annotations

import platform
import tomllib
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

import pgjobs
from pgjobs import build
from pgjobs.cli import kubectl
from pgjobs.cli.main import main

PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())


def test_every_place_reports_pyprojects_version(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    version = PYPROJECT["project"]["version"]
    assert build.VERSION == pgjobs.__version__ == version
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out == f"pgjobs {version}\n"
    kubectl.main(["version", "--kubeconfig", str(tmp_path / "none")])
    assert capsys.readouterr().out.splitlines()[0] == f"kubectl-pgjobs {version}"


def test_build_info_is_one_series_per_process() -> None:
    build.publish_build_info("worker")
    build.publish_build_info("worker")  # once: a second call registers nothing
    labels = {"version": build.VERSION, "component": "worker", "python": platform.python_version()}
    assert REGISTRY.get_sample_value("pgjobs_build_info", labels) == 1
