"""The SDK's modules form layers: no import cycle, a leaf context module, one network seam.

Read from the source with ast, so an import inside a function or under `if TYPE_CHECKING:`
counts as much as one at the top: each is a dependency a reader has to follow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import lookout_sdk

PACKAGE = Path(lookout_sdk.__file__).parent


def sdk_imports(source: str, package: str = "lookout_sdk") -> set[str]:
    """The modules of the package that `source` imports (`__init__` for the package itself)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 or (node.level == 0 and (node.module or "").split(".")[0] == package):
                parts = (node.module or "").split(".")
                inner = parts[1:] if node.level == 0 else parts
                if inner and inner[0]:
                    found.add(inner[0])
                else:  # `from . import x`: x is a module, or a name of the package itself
                    found.update(a.name if (PACKAGE / f"{a.name}.py").exists() else "__init__" for a in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == package:
                    found.add(parts[1] if len(parts) > 1 else "__init__")
    return found


def external_imports(source: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
    return found


def graph(directory: Path) -> dict[str, set[str]]:
    return {path.stem: sdk_imports(path.read_text()) for path in sorted(directory.glob("*.py"))}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" after
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        path.append(module)
        for target in sorted(edges.get(module, ())):
            if state.get(target) == "open":
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[module] = "done"
        return None

    for module in sorted(edges):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def test_the_cycle_finder_sees_imports_in_functions_and_type_checking_blocks():
    edges = {
        "_a": sdk_imports("from ._b import x\n"),
        "_b": sdk_imports("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ._a import y\n"),
        "_c": sdk_imports("def f():\n    import lookout_sdk._a\n"),
    }
    assert find_cycle(edges) == ["_a", "_b", "_a"]
    assert find_cycle({**edges, "_b": set()}) is None
    assert edges["_c"] == {"_a"}
    assert sdk_imports("from . import _lifecycle, uuid7\n") == {"_lifecycle", "__init__"}


def test_the_sdk_has_no_import_cycle():
    edges = graph(PACKAGE)
    assert {"_caller", "_client", "_observe", "_context"} <= edges.keys()  # it read the package
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_context_module_is_a_leaf():
    # Everything reads the ambient context (log_call on its hot path), so it imports nothing back.
    assert graph(PACKAGE)["_context"] == set()


def test_only_the_transport_talks_to_the_network():
    # The delivery rules stay I/O-free plans; one module performs them with httpx.
    talking = {
        module
        for module, path in ((p.stem, p) for p in PACKAGE.glob("*.py"))
        if external_imports(path.read_text()) & {"httpx", "socket", "http", "urllib"}
    }
    assert talking == {"_transport"}
