"""Every command README.md and docs/ show is checked: verbs and flags parse, targets and files exist.

Nothing runs here (tests/e2e/test_user_path.py runs the blocks marked `run demo`); a renamed
verb, flag, make target, module, chart value or file breaks this test. See tests/docs_blocks.py
for the markers every shell block carries.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import itertools
import re
from collections.abc import Callable

import pytest
import yaml

from pgjobs.cli.kubectl.arguments import parse_command_line
from pgjobs.cli.main import build_parser
from tests import docs_blocks
from tests.docs_blocks import ROOT, argv_of, split_commands

MAKE_TARGETS = frozenset(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))
CHART_VALUES = yaml.safe_load((ROOT / "helm" / "pgjobs" / "values.yaml").read_text())


def parses(parse: Callable[[list[str]], object], argv: list[str]) -> str | None:
    """None when argparse accepts argv (or prints help), else its error."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            parse(argv)
        except SystemExit as exit_:
            if exit_.code not in (0, None):
                return err.getvalue().strip().splitlines()[-1]
    return None


def chart_value_exists(key: str) -> bool:
    node: object = CHART_VALUES
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def problem_of(argv: list[str]) -> str | None:
    """What is wrong with one documented command, or None."""
    program, *rest = argv
    if argv[:2] == ["kubectl", "pgjobs"]:
        return parses(parse_command_line, argv[2:])
    if program == "pgjobs":
        return parses(build_parser().parse_args, rest)
    if program == "make":
        unknown = [t for t in rest if "=" not in t and not t.startswith("-") and t not in MAKE_TARGETS]
        return f"no make target {unknown}" if unknown else None
    if program == "python" and rest[:1] == ["-m"]:
        module = rest[1]
        return None if importlib.util.find_spec(module) else f"no module {module}"
    if program == "python" and rest and rest[0].endswith(".py"):
        return None if (ROOT / rest[0]).exists() else f"no script {rest[0]}"
    if program in ("kubectl", "helm"):
        return files_and_values_problem(rest)
    return None


def files_and_values_problem(words: list[str]) -> str | None:
    for flag, value in itertools.pairwise(words):
        written_by_reader = value.endswith(("bad.yaml", "job.yaml"))  # files the docs ask for
        is_file_flag = flag in ("-f", "--filename", "--values") and value != "-"
        if is_file_flag and not written_by_reader and not (ROOT / value).exists():
            return f"no file {value}"
        if flag == "--set":
            for assignment in value.split(","):
                key = assignment.split("=", 1)[0]
                if not chart_value_exists(key):
                    return f"the chart has no value {key}"
    charts = [w for w in words if w.startswith("helm/")]
    missing = [c for c in charts if not (ROOT / c).exists()]
    return f"no chart {missing}" if missing else None


#: Prose names commands and flags without their arguments (`pgjobs enqueue`, `migrate --wait`);
#: inline, only a missing argument is forgiven, never an unknown verb or flag.
INCOMPLETE = ("the following arguments are required", "expected one argument")


def documented_commands() -> list[tuple[str, str, bool]]:
    """(where, command, whether it is complete) of every documented command."""
    found = []
    for block in docs_blocks.all_blocks():
        if block.is_shell:
            found += [
                (block.where, command, True) for line in block.commands() for command in split_commands(line)
            ]
    for path in docs_blocks.DOCUMENTS:
        found += [(where, command, False) for where, command in docs_blocks.inline_commands(path)]
    found += [(where, command, True) for where, command in printed_by_pgjobs()]
    return [(where, command, complete) for where, command, complete in found if "…" not in command]


#: What pgjobs itself prints for users to run: the chart's NOTES.txt and the alerts' descriptions.
PRINTED = (ROOT / "helm/pgjobs/templates/NOTES.txt", ROOT / "deploy/prometheus/pgjobs-rules.yaml")


def printed_by_pgjobs() -> list[tuple[str, str]]:
    """Commands in NOTES.txt (its indented lines) and in backticks of the alert descriptions."""
    found = []
    for path in PRINTED:
        text = re.sub(r"\{\{[^}]*\}\}", "x", path.read_text())  # a template value: any word
        for number, line in enumerate(text.splitlines(), 1):
            where = f"{path.relative_to(ROOT)}:{number}"
            if line.startswith("  kubectl ") and not line.rstrip().endswith("\\"):
                found.append((where, line.strip()))
            found += [(where, m) for m in re.findall(r"`((?:kubectl pgjobs|pgjobs|make) [^`]+)`", line)]
    return found


def test_commands_pgjobs_prints_are_found() -> None:
    printed = [command for _, command in printed_by_pgjobs()]
    assert "kubectl pgjobs stop hello -n x" in printed and "pgjobs rescue" in printed, printed


def test_every_shell_block_is_marked_run_output_or_skip_with_a_reason() -> None:
    unmarked = [b.where for b in docs_blocks.all_blocks() if b.is_shell and b.marker is None]
    assert unmarked == [], "mark these blocks (see tests/docs_blocks.py)"
    for block in docs_blocks.all_blocks():
        if block.marker and block.marker.startswith("skip"):
            assert len(block.marker) > len("skip ") + 10, f"{block.where}: say why it cannot run here"


@pytest.mark.parametrize(("where", "command", "complete"), documented_commands())
def test_documented_command_parses(where: str, command: str, complete: bool) -> None:
    problem = problem_of(argv_of(command))
    if problem and not complete and any(text in problem for text in INCOMPLETE):
        problem = None
    assert problem is None, f"{where}: `{command}`: {problem}"


@pytest.mark.parametrize(
    "command",
    [
        "kubectl pgjobs rescue",
        "kubectl pgjobs stop NAME --no-such-flag",
        "pgjobs list",
        "make kind-upp",
        "python -m pgjobs.no_such_module",
        "python deploy/examples/no_such_app.py",
        "helm install pgjobs helm/pgjobs --set worker.noSuchValue=1",
        "kubectl apply -f deploy/examples/no-such-file.yaml",
    ],
)
def test_the_check_catches_each_kind_of_drift(command: str) -> None:
    assert problem_of(argv_of(command)) is not None


def test_every_worker_and_operator_option_reads_its_environment_variable() -> None:
    """docs/user-guide.md promises PGJOBS_<OPTION> for each of them."""
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name in ("worker", "operator"):
        for action in commands.choices[name]._actions:
            if action.option_strings and "--help" not in action.option_strings:
                assert "[env PGJOBS_" in (action.help or ""), f"pgjobs {name} {action.option_strings[0]}"
