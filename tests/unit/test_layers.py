"""The packages of pgjobs import one way: states ← store ← tasks/worker/operator ← cli ← devenv.

Read from the source with `ast`, so an import inside a function counts as much as one at the
top of a module.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "pgjobs"

#: What each part of pgjobs may import besides itself. `pgjobs` is the package's own
#: `__init__` (the task authors' API), `crd` the PgJob resource's name, `probes` where probe
#: endpoints listen, `build` the version.
ALLOWED: dict[str, set[str]] = {
    "states": set(),
    "crd": set(),
    "probes": set(),
    "build": set(),
    "producer": {"states", "store"},
    "store": {"states"},
    "tasks": {"states", "store"},
    "worker": {"states", "store", "tasks", "probes", "build"},
    "operator": {"states", "crd", "store", "probes", "build"},
    # cli runs the console (`pgjobs console`), which acts on PgJobs through the plugin's own
    # Kubernetes access (pgjobs.cli.kubectl): the two meet only there, checked below.
    "cli": {"states", "crd", "store", "tasks", "worker", "operator", "build", "console"},
    "console": {"states", "crd", "store", "build", "cli"},
    "devenv": {"states", "crd", "store", "tasks", "worker", "operator", "cli"},
    "pgjobs": {"tasks", "build", "producer"},
}


def part_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    if relative == Path("__init__.py"):
        return "pgjobs"
    return relative.parts[0].removesuffix(".py")


def imported_parts(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, part) for every import of a pgjobs module in `tree`."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "pgjobs":
                names = [f"pgjobs.{alias.name}" for alias in node.names]
            else:
                names = [node.module]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] != "pgjobs":
                continue
            target = parts[1] if len(parts) > 1 else "pgjobs"
            known = (PACKAGE / target).is_dir() or (PACKAGE / f"{target}.py").is_file()
            yield node.lineno, target if known else "pgjobs"


def test_no_relative_imports() -> None:
    relative = [
        f"{path.relative_to(PACKAGE)}:{node.lineno}"
        for path in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.level
    ]
    assert relative == [], "the layer check reads absolute imports only"


def test_every_part_has_a_layer() -> None:
    parts = {part_of(path) for path in PACKAGE.rglob("*.py")}
    assert parts <= set(ALLOWED), f"add {sorted(parts - set(ALLOWED))} to ALLOWED"


def test_imports_point_down_the_layers() -> None:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = part_of(path)
        for line, imported in imported_parts(ast.parse(path.read_text())):
            if imported != importer and imported not in ALLOWED[importer]:
                wrong.append(f"{path.relative_to(PACKAGE)}:{line} ({importer}) imports pgjobs.{imported}")
    assert wrong == []


def test_the_dev_environment_runs_the_kubectl_plugin_as_users_do() -> None:
    """devenv may use the CLI's parts, but the plugin only as a command (pgjobs.devenv.progress):
    the demos then show what `kubectl pgjobs watch` shows, and the plugin stays free to change."""
    importers = [
        f"{path.relative_to(PACKAGE)}:{node.lineno}"
        for path in sorted((PACKAGE / "devenv").rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if (isinstance(node, ast.ImportFrom) and node.module and (
            node.module.startswith("pgjobs.cli.kubectl")
            or (node.module == "pgjobs.cli" and any(alias.name == "kubectl" for alias in node.names))))
        or (isinstance(node, ast.Import) and any(a.name.startswith("pgjobs.cli.kubectl") for a in node.names))
    ]  # fmt: skip
    assert importers == []


def module_imports(root: Path, package: str) -> dict[str, set[str]]:
    """Module name -> the modules of `package` it imports (anywhere in its body)."""
    graph: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        relative = path.relative_to(root.parent).with_suffix("")
        name = ".".join(relative.parts[:-1] if relative.name == "__init__" else relative.parts)
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets |= {f"{node.module}.{alias.name}" for alias in node.names} | {node.module}
        graph[name] = {t for t in targets if t.split(".")[0] == package and t != name}
    return {name: {t for t in targets if t in graph and t != name} for name, targets in graph.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import circles between two modules or more (a package importing its own modules is none)."""
    found = []
    for start in sorted(graph):
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for target in sorted(graph[node]):
                if target == start and len(path) > 1 and min(path) == start:
                    found.append([*path, start])
                elif target not in path and target > start:
                    stack.append((target, [*path, target]))
    return [circle for circle in found if not within_one_package(circle)]


def within_one_package(circle: list[str]) -> bool:
    """A package and its own modules importing each other (an `__init__` re-export) is no circle."""
    return all(a.startswith(b + ".") or b.startswith(a + ".") for a, b in itertools.pairwise(circle))


def test_no_import_circles() -> None:
    """A circle makes import order matter and hides which module is the lower one."""
    root = PACKAGE.parent
    for package in ("pgjobs", "bench"):
        assert cycles(module_imports(root / package, package)) == [], package


def test_the_circle_check_finds_a_circle() -> None:
    assert cycles({"a.x": {"a.y"}, "a.y": {"a.x"}, "a.z": set()}) == [["a.x", "a.y", "a.x"]]


def test_the_console_uses_only_the_plugins_kubernetes_access_of_cli() -> None:
    """The console imports cli's kubectl plugin modules only, and cli imports the console only
    where `pgjobs console` is defined: no cycle between the modules themselves."""
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        part = part_of(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom | ast.Import):
                continue
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            for name in names:
                if (
                    part == "console"
                    and name.startswith("pgjobs.cli")
                    and not name.startswith("pgjobs.cli.kubectl")
                ):
                    wrong.append(f"{path.relative_to(PACKAGE)}:{node.lineno} imports {name}")
                console_user = path.relative_to(PACKAGE) == Path("cli/console.py")
                if part == "cli" and name.startswith("pgjobs.console") and not console_user:
                    wrong.append(f"{path.relative_to(PACKAGE)}:{node.lineno} imports {name}")
    assert wrong == []
