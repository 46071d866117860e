"""The commands that README.md and docs/*.md show, as the docs tests read them.

Every fenced block that is shell (```bash, ```sh, ```console) or has no language carries a marker
on the line before it, so that nothing a user may copy goes unchecked by accident:

    <!-- docs-test: run demo -->        run, as printed, in the environment `make demo KEEP=1` prints
    <!-- docs-test: output -->          output shown as an example; its `$ ` lines are commands
    <!-- docs-test: skip REASON -->     not runnable here, with the reason (a managed cloud, a diagram)

Every command of every block, and every inline `kubectl pgjobs …`, `pgjobs …`, `make …` or
`python -m …` in the prose, is also checked without running it: its verbs and flags must parse
with the real parsers and its make targets and files must exist (tests/unit/test_docs_commands.py).
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = (
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    # The examples' READMEs tell users what to run, too.
    *sorted((ROOT / "deploy" / "examples").glob("*/README.md")),
)
SHELL_LANGUAGES = frozenset({"", "bash", "sh", "shell", "console"})
PROGRAMS = ("kubectl", "pgjobs", "make", "helm", "python", "export", "cat", "curl")

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
_MARKER = re.compile(r"<!-- docs-test: (run demo|output|skip (?P<reason>.+?)) -->\s*$")
_INLINE = re.compile(r"(?<!`)`((?:kubectl pgjobs|pgjobs|make|python -m) [^`]+)`(?!`)")

#: Values for the placeholders the docs use in commands.
PLACEHOLDERS = {
    "NAME": "demo-high-1",
    "ID": "1",
    "NS": "default",
    "SECONDS": "5",
    "N": "2",
    "S": "5",
    "DURATION": "1m",
    "TASK": "sleep",
    "QUEUE": "default",
    "SEL": "app.kubernetes.io/part-of=pgjobs-demo",
    "SELECTOR": "app.kubernetes.io/part-of=pgjobs-demo",
    "FILE": "job.yaml",
    "COMMAND": "jobs",
}


@dataclasses.dataclass(frozen=True)
class Block:
    """One fenced block of a document."""

    path: Path
    line: int
    language: str
    text: str
    marker: str | None  # "run demo", "output", "skip …" or None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def is_shell(self) -> bool:
        return self.language in SHELL_LANGUAGES

    def commands(self) -> list[str]:
        """The commands of the block: `$ ` lines of output, else every logical line."""
        lines = logical_lines(self.text)
        if self.marker == "output" or any(line.startswith("$ ") for line in lines):
            return [line[2:] for line in lines if line.startswith("$ ")]
        return [line for line in lines if line.split(maxsplit=1)[0] in PROGRAMS]


def logical_lines(text: str) -> list[str]:
    """Lines with backslash continuations joined and comments after ` # ` removed."""
    joined = re.sub(r"\\\n\s*", " ", text)
    lines = []
    for raw in joined.splitlines():
        line = raw.split(" # ", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if line:
            lines.append(line)
    return lines


def blocks(path: Path) -> Iterator[Block]:
    text = path.read_text()
    for match in _FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = _MARKER.search(before)
        yield Block(
            path=path,
            line=text[: match.start()].count("\n") + 1,
            language=match.group(1),
            text=match.group(2),
            marker=marker.group(1) if marker else None,
        )


def all_blocks() -> list[Block]:
    return [block for path in DOCUMENTS for block in blocks(path)]


def inline_commands(path: Path) -> Iterator[tuple[str, str]]:
    """(where, command) of the commands quoted inline in prose (outside fenced blocks)."""
    text = _FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), path.read_text())
    for match in _INLINE.finditer(text):
        line = text[: match.start()].count("\n") + 1
        yield f"{path.relative_to(ROOT)}:{line}", match.group(1)


def split_commands(line: str) -> list[str]:
    """One shell line into its commands (split at `;`, `&&`, `||` and pipes)."""
    return [part.strip() for part in re.split(r";|&&|\|\||(?<![|])\|(?![|])", line) if part.strip()]


def argv_of(command: str) -> list[str]:
    """The words of a command with the placeholders filled in and synopsis syntax resolved.

    `[--wait SECONDS]` becomes `--wait SECONDS` (an optional part must parse too), and
    `stop|start|restart` takes its first alternative.
    """
    words = shlex.split(command.replace("[", " ").replace("]", " ").replace("…", ""))
    return [_filled(word) for word in words]


def _filled(word: str) -> str:
    """A placeholder's sample value; a shell variable (`$job`, set by the line before) stands
    for a job id; of `a|b`, the first alternative."""
    if word.startswith("$"):
        return "1"
    return PLACEHOLDERS.get(word, word.split("|")[0] if "|" in word else word)
