"""The layers import one way and no project modules import each other in a circle (docs/architecture.md).

Layers, lowest first: ``operators`` (stream logic, no I/O) <- ``connectors`` (all I/O) <- ``flows``
(wiring) <- ``twinflow`` (CLI, configuration, local stack, simulator, demo). A module may import its
own layer and the layers below it, never one above.

Every ``import`` counts, also those inside functions (a lazy import is still a dependency).
Imports under ``if TYPE_CHECKING:`` count for the layer rule (the dependency on the type is real)
but not for cycles: they never run, so they cannot make Python import a half-initialised module.

The checker is tested on small fixture trees below, so this test can fail.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("operators", "connectors", "flows", "twinflow")  # lowest first
RANK = {name: i for i, name in enumerate(LAYERS)}


@dataclass(frozen=True)
class Edge:
    """``source`` imports ``target`` at ``path:line`` (``typing_only``: under ``if TYPE_CHECKING:``)."""

    source: str
    target: str
    path: str
    line: int
    typing_only: bool


def module_name(root: Path, path: Path) -> str:
    """``connectors/kafka/clients.py`` -> ``connectors.kafka.clients``; a package's ``__init__`` is the package."""
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules(root: Path) -> dict[str, Path]:
    """Every module of the four layers under ``root``."""
    found: dict[str, Path] = {}
    for layer in LAYERS:
        for path in sorted((root / layer).rglob("*.py")):
            found[module_name(root, path)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, typing_only: bool = False) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement anywhere in ``tree`` (functions included), with its TYPE_CHECKING flag."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, typing_only
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                yield from _imports(ast.Module(body=[child], type_ignores=[]), True)
            for child in node.orelse:
                yield from _imports(ast.Module(body=[child], type_ignores=[]), typing_only)
        else:
            yield from _imports(node, typing_only)


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module ``name`` loads: itself, or the nearest enclosing module (``pkg.mod.attr``)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_edges(root: Path) -> list[Edge]:
    """All imports between project modules under ``root``."""
    modules = project_modules(root)
    edges: dict[tuple[str, str, int], Edge] = {}
    for source, path in modules.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(), filename=str(path))
        for node, typing_only in _imports(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    package = source.split(".") if is_package else source.split(".")[:-1]
                    package = package[: len(package) - (node.level - 1)]
                    base = ".".join([*package, base] if base else package)
                # `from pkg import mod` loads pkg.mod when that is a module, else an attribute of pkg.
                targets = [f"{base}.{alias.name}" for alias in node.names]
            for name in targets:
                target = _resolve(name, modules)
                if target is not None and target != source:
                    rel = str(path.relative_to(root))
                    edges[(source, target, node.lineno)] = Edge(source, target, rel, node.lineno, typing_only)
    return list(edges.values())


def layer(module: str) -> str:
    return module.split(".")[0]


def upward_imports(edges: Iterable[Edge]) -> list[Edge]:
    """Imports from a lower layer into a higher one."""
    return [e for e in edges if RANK[layer(e.target)] > RANK[layer(e.source)]]


def cycles(edges: Iterable[Edge]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted; runtime imports only."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        if not e.typing_only:
            graph.setdefault(e.source, set()).add(e.target)
            graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(start: str) -> None:  # iterative: no recursion limit on long chains
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


# ----------------------------------------------------------------------------- the project


def test_no_upward_imports() -> None:
    bad = upward_imports(import_edges(ROOT))
    lines = [f"{e.path}:{e.line}: {e.source} ({layer(e.source)}) imports {e.target} ({layer(e.target)})" for e in bad]
    assert not lines, "imports must point down (operators <- connectors <- flows <- twinflow):\n" + "\n".join(lines)


def test_no_import_cycles() -> None:
    found = cycles(import_edges(ROOT))
    assert not found, "import cycles among project modules:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_checker_sees_the_whole_project() -> None:
    modules = project_modules(ROOT)
    expected = {"operators.records.envelope", "connectors.kafka.clients", "flows.telemetry", "twinflow.cli.main"}
    assert expected <= set(modules)
    assert len(import_edges(ROOT)) > 200


# ----------------------------------------------------------------------------- the checker itself


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for layer_name in LAYERS:
        (tmp_path / layer_name).mkdir(exist_ok=True)
        (tmp_path / layer_name / "__init__.py").touch()
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_an_upward_import_inside_a_function_is_found(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "operators/logic.py": "def f():\n    from twinflow.settings import Settings\n    return Settings\n",
            "twinflow/settings.py": "from operators.logic import f\nSettings = object\n",
        },
    )
    bad = upward_imports(import_edges(root))
    assert [(e.source, e.target, e.line) for e in bad] == [("operators.logic", "twinflow.settings", 2)]
    assert cycles(import_edges(root)) == [["operators.logic", "twinflow.settings"]]


def test_relative_and_from_package_imports_resolve(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "connectors/kafka/__init__.py": "",
            "connectors/kafka/a.py": "from . import b\nfrom .b import thing\n",
            "connectors/kafka/b.py": "from flows import wiring\nthing = 1\n",
            "flows/wiring.py": "import connectors.kafka.a\n",
        },
    )
    edges = import_edges(root)
    assert {(e.source, e.target) for e in edges} == {
        ("connectors.kafka.a", "connectors.kafka.b"),
        ("connectors.kafka.b", "flows.wiring"),
        ("flows.wiring", "connectors.kafka.a"),
    }
    assert [e.source for e in upward_imports(edges)] == ["connectors.kafka.b"]
    assert cycles(edges) == [["connectors.kafka.a", "connectors.kafka.b", "flows.wiring"]]


def test_type_checking_imports_count_for_layers_not_for_cycles(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "connectors/sink.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from connectors.source import S\n"
                "else:\n    import connectors.other\n"
            ),
            "connectors/source.py": "import connectors.sink\nS = 1\n",
            "connectors/other.py": "import flows.x\n",
            "flows/x.py": "",
        },
    )
    edges = import_edges(root)
    assert cycles(edges) == []
    assert [e.target for e in upward_imports(edges)] == ["flows.x"]
    typing_only = {(e.source, e.target) for e in edges if e.typing_only}
    assert typing_only == {("connectors.sink", "connectors.source")}


@pytest.mark.parametrize("size", [2, 5])
def test_cycles_of_any_length_are_found_once(size: int) -> None:
    names = [f"operators.m{i}" for i in range(size)]
    ring = [Edge(a, b, "x.py", 1, False) for a, b in zip(names, names[1:] + names[:1], strict=True)]
    tail = [Edge("operators.m0", "operators.leaf", "x.py", 2, False)]
    assert cycles(ring + tail) == [sorted(names)]
