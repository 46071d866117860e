"""Misconfigurations a person makes when setting pgjobs up: each one line, never a traceback.

Real processes against the real PostgreSQL of the suite; the Kubernetes side is a kubeconfig
that points at a closed port (no API server), as a wrong --kubeconfig or server address does.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.processes import pgjobs

pytestmark = pytest.mark.integration


def unreachable_kubeconfig(path: Path) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def test_an_operator_without_an_api_server_says_so_in_one_line(
    database_env: dict[str, str], tmp_path: Path
) -> None:
    kubeconfig = unreachable_kubeconfig(tmp_path / "kubeconfig")
    argv = ["operator", "--kubeconfig", str(kubeconfig), "--liveness-port", "0", "--metrics-port", "0"]
    result = pgjobs(database_env, *argv)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr, result.stderr
    assert lines[-1].startswith(
        "pgjobs: error: cannot reach the Kubernetes API server at https://127.0.0.1:1"
    )
    assert len([line for line in lines if "error" in line.lower()]) == 1, result.stderr
