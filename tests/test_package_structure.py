"""Structure of the data package (issue 12, item 18): no import cycles, one name per meaning."""

from __future__ import annotations

import ast
from pathlib import Path

import ctsurv

SRC = Path(ctsurv.__file__).parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every ctsurv module ``path`` imports, at the top or inside a function."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("ctsurv")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            if base.startswith("ctsurv"):
                out.add(base)
                out |= {f"{base}.{a.name}" for a in node.names}
    return out


def import_graph(package: str) -> dict[str, set[str]]:
    folder = SRC.parent.joinpath(*package.split("."))
    modules = {module_name(p): p for p in folder.rglob("*.py")}
    return {name: {m for m in imports_of(path) if m in modules and m != name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_data_package_has_no_import_cycle():
    graph = import_graph("ctsurv.data")
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))
    assert "ctsurv.data.contract" in graph["ctsurv.data.adapters.manifest"]


def test_one_name_per_table_reader():
    from ctsurv.data import tables
    from ctsurv.survival import cv

    # data.tables.read_table (text + row bookkeeping) and survival.cv.read_table (numbers)
    # were two meanings under one name.
    assert not hasattr(tables, "read_table") and not hasattr(cv, "read_table")
    assert tables.read_source_table and tables.load_table and cv.read_feature_table
