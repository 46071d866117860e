"""Write helm/pgjobs/README.md from the chart's values.yaml and its comments (helm-docs style).

    python tools/chart_readme.py            rewrite the README
    python tools/chart_readme.py --check    exit 1 when it is not current

The comment block right above a key documents it. A map with a comment is a row of its own and
documents its direct children that have none (e.g. `image` for its repository and tag); a map
whose comment says "passed as is" is one entry (a Kubernetes object the chart hands over).
tests/unit/test_chart_readme.py fails when a value has no comment or the README is not current.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

CHART = Path(__file__).resolve().parents[1] / "helm" / "pgjobs"
WHOLE = "passed as is"


@dataclasses.dataclass(frozen=True)
class Value:
    """One documented value: its path, default (as written in values.yaml) and description."""

    path: str
    default: str
    description: str
    #: Undocumented itself, but its map's comment speaks for it.
    by_parent: bool = False

    @property
    def documented(self) -> bool:
        return bool(self.description) or self.by_parent


def values(text: str) -> list[Value]:
    """Every leaf value (and every map passed as is) of a values.yaml, in file order."""
    found: list[Value] = []
    stack: list[tuple[int, str, bool]] = []  # (indent, key, has a comment)
    comment: list[str] = []
    whole_below: int | None = None  # indent of a map passed as is: skip its children
    for line in text.splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if not stripped:
            comment = []
            continue
        if whole_below is not None and indent > whole_below:
            continue
        whole_below = None
        if stripped.startswith("#"):
            comment.append(stripped.lstrip("#").strip())
            continue
        key, _, rest = stripped.partition(":")
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([*(k for _, k, _ in stack), key])
        rest = rest.split(" #", 1)[0].strip()
        description = " ".join(comment)
        comment = []
        by_parent = bool(stack) and stack[-1][2]
        if rest:
            found.append(Value(path, rest, description, by_parent))
        elif WHOLE in description:
            found.append(Value(path, "(see values.yaml)", description))
            whole_below = indent
        else:
            if description:
                found.append(Value(path, "", description))
            stack.append((indent, key, bool(description)))
    return found


def readme(entries: list[Value]) -> str:
    rows = [
        f"| `{v.path}` | {f'`{v.default}`' if v.default else ''} | {v.description.replace('|', '/')} |"
        for v in entries
    ]
    return "\n".join(
        [
            "# pgjobs Helm chart",
            "",
            "Background jobs on Kubernetes, coordinated by PostgreSQL: the PgJob CRD, its operator and",
            "the workers. Installing, upgrading and monitoring: docs/operations.md in the repository.",
            "",
            "<!-- docs-test: skip an installation needs a PostgreSQL of your own;"
            " tests/cluster installs the chart -->",
            "```bash",
            "helm install pgjobs helm/pgjobs -n pgjobs --create-namespace \\",
            "  --set database.url=postgresql://pgjobs@db.example:5432/pgjobs --set database.password=...",
            "helm test pgjobs -n pgjobs",
            "```",
            "",
            "## Values",
            "",
            "Written from values.yaml by `python tools/chart_readme.py`; values.schema.json checks them.",
            "",
            "| value | default | meaning |",
            "|---|---|---|",
            *rows,
            "",
        ]
    )


def main(argv: list[str]) -> int:
    text = readme(values((CHART / "values.yaml").read_text()))
    target = CHART / "README.md"
    if argv[1:] == ["--check"]:
        if not target.exists() or target.read_text() != text:
            print("helm/pgjobs/README.md is not current: run python tools/chart_readme.py", file=sys.stderr)
            return 1
        return 0
    target.write_text(text)
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
