"""The chart's README documents every value of values.yaml and is current (tools/chart_readme.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

TOOL = Path(__file__).resolve().parents[2] / "tools" / "chart_readme.py"


def tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chart_readme", TOOL)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["chart_readme"] = module
    spec.loader.exec_module(module)
    return module


def test_every_value_has_a_comment() -> None:
    chart_readme = tool()
    found = chart_readme.values((chart_readme.CHART / "values.yaml").read_text())
    assert len(found) > 100
    assert [v.path for v in found if not v.documented] == []


def test_the_readme_is_current() -> None:
    assert tool().main(["chart_readme.py", "--check"]) == 0, "run: python tools/chart_readme.py"


def test_an_undocumented_value_is_found() -> None:
    chart_readme = tool()
    found = chart_readme.values("a:\n  # documented\n  b: 1\n  c: 2\n# the group\nd:\n  e: 3\n")
    assert [(v.path, v.documented) for v in found] == [
        ("a.b", True),
        ("a.c", False),
        ("d", True),
        ("d.e", True),
    ]
