"""The layout's rules, read from the imports themselves (``ast``): see docs/architecture.md.

An import points only down ``LAYERS``; entries on one layer do not import each other; inside a folder any
direction is allowed but no circle, and there is no circle anywhere; nobody imports another module's
``_private`` name; no module grows past ``MAX_LINES``. Every import counts, including those inside
functions and under ``TYPE_CHECKING``: a late import is still a dependency.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("listserv", "digests")
MAX_LINES = 400

# Top to bottom: an entry may import only entries on a lower line (a higher index).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("listserv.__main__",),
    ("listserv.cli",),
    ("listserv.forum",),
    ("listserv.intake", "listserv.web", "listserv.scheduler", "listserv.admin"),
    ("listserv.membership",),
    ("listserv.moderation", "digests"),
    ("listserv.weekly",),
    ("listserv.outgoing",),
    ("listserv.archive",),
    ("listserv.store",),
    ("listserv.config",),
    (
        "listserv.mail",
        "listserv.background",
        "listserv.config_errors",
        "listserv",
    ),  # ``listserv``: the package's own __init__
)
LAYER_OF = {entry: depth for depth, entries in enumerate(LAYERS) for entry in entries}


@dataclass(frozen=True)
class Import:
    source: str  # importing module, dotted
    target: str  # imported module, dotted (a package's names resolve to the package)
    names: tuple[str, ...]
    line: int


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path = ROOT) -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (root / package).rglob("*.py"):
            if "migrations" not in path.parts:  # Alembic's scripts: loaded by Alembic, not imported
                found[module_name(path, root)] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> list[Import]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [Import(name, alias.name, (), node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = tuple(alias.name for alias in node.names)
            submodules = [f"{node.module}.{n}" for n in names if f"{node.module}.{n}" in known]
            found += [Import(name, sub, (), node.lineno) for sub in submodules]
            rest = tuple(n for n in names if f"{node.module}.{n}" not in known)
            if rest or not submodules:
                found.append(Import(name, node.module, rest, node.lineno))
    return [i for i in found if i.target.split(".")[0] in PACKAGES]


def entry_of(module: str) -> str:
    """The top-level entry a module belongs to: ``listserv.moderation.queue`` -> ``listserv.moderation``."""
    parts = module.split(".")
    return parts[0] if parts[0] != "listserv" else ".".join(parts[:2])


def all_imports(root: Path = ROOT) -> list[Import]:
    found = modules(root)
    return [i for name, path in sorted(found.items()) for i in imports_of(name, path, set(found))]


def wrong_way(imports: list[Import]) -> list[str]:
    problems = []
    for i in imports:
        source, target = entry_of(i.source), entry_of(i.target)
        if source == target:
            continue
        if source not in LAYER_OF or target not in LAYER_OF:
            problems.append(f"{i.source}:{i.line} imports {i.target}: an entry missing from LAYERS")
        elif LAYER_OF[target] <= LAYER_OF[source]:
            problems.append(f"{i.source}:{i.line} imports {i.target}, which is not below it")
    return problems


def circles(imports: list[Import]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iteratively small)."""
    graph: dict[str, set[str]] = {}
    for i in imports:
        if i.source != i.target and not i.source.startswith(i.target + "."):
            graph.setdefault(i.source, set()).add(i.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def private_reaches(imports: list[Import]) -> list[str]:
    return [
        f"{i.source}:{i.line} imports {name} from {i.target}"
        for i in imports
        for name in i.names
        if name.startswith("_") and not name.startswith("__") and i.source != i.target
    ]


def test_imports_point_down_the_layers() -> None:
    assert wrong_way(all_imports()) == []


def test_no_circle_anywhere() -> None:
    assert circles(all_imports()) == []


def test_no_private_name_crosses_a_module() -> None:
    assert private_reaches(all_imports()) == []


def test_no_module_over_the_size_limit() -> None:
    sizes = {name: len(path.read_text().splitlines()) for name, path in modules().items()}
    long = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert long == {}


def test_every_entry_has_a_layer() -> None:
    assert {entry_of(name) for name in modules()} <= set(LAYER_OF)


@pytest.mark.parametrize(
    ("planted", "finds"),
    [
        ("from listserv.forum import Forum\n", wrong_way),  # the store reaching up to the root
        ("from listserv.store.db import _private_helper\n", private_reaches),
        ("import listserv.store.keys\n", circles),  # keys -> models -> keys
    ],
)
def test_the_rules_catch_a_planted_import(tmp_path: Path, planted: str, finds: object) -> None:
    """Plant a wrong import in a copy of the tree: each rule must object to it."""
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            copy = tmp_path / path.relative_to(ROOT)
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_text(path.read_text())
    models = tmp_path / "listserv" / "store" / "models.py"
    models.write_text(models.read_text() + planted)
    keys = tmp_path / "listserv" / "store" / "keys.py"
    keys.write_text(keys.read_text() + "import listserv.store.models\n")
    assert finds(all_imports(tmp_path))  # type: ignore[operator]
