"""Every distribution declares what it imports: each module a package's code imports (at
import time or lazily, outside a `try` that handles its absence) is the standard library,
the distribution itself, or a declared dependency: its own, one of its extras' (code that
only that extra's feature runs), or one that a Lookout distribution it depends on declares
(lookout-core guarantees aiokafka to every service). So `pip install ./stack`, or any one
service's Dockerfile, gets everything its code imports."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DISTS = sorted(p.parent for p in [*ROOT.glob("*/pyproject.toml"), *ROOT.glob("services/*/pyproject.toml"),
                                  *ROOT.glob("jobs/*/pyproject.toml")])


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _project(folder: Path) -> dict:
    return tomllib.loads((folder / "pyproject.toml").read_text())["project"]


def _own_modules() -> dict[str, str]:
    """`lookout.core` -> lookout-core, ... (our distributions, by their package folders)."""
    found: dict[str, str] = {}
    for folder in DISTS:
        name = _norm(_project(folder)["name"])
        for init in folder.glob("lookout/*/__init__.py"):
            found[f"lookout.{init.parent.name}"] = name
        for init in folder.glob("*/__init__.py"):
            if init.parent.name not in ("lookout", "tests"):
                found[init.parent.name] = name
    return found


def _guarded(tree: ast.AST) -> set[int]:
    """Line numbers of imports inside a `try` that catches ImportError (optional imports)."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            h.type is None or "ImportError" in ast.unparse(h.type) or "ModuleNotFoundError" in ast.unparse(h.type)
            for h in node.handlers
        ):
            lines |= {n.lineno for stmt in node.body for n in ast.walk(stmt)
                      if isinstance(n, ast.Import | ast.ImportFrom)}
    return lines


def _imports(folder: Path) -> set[str]:
    names: set[str] = set()
    for path in folder.rglob("*.py"):
        rel = path.relative_to(folder).parts
        if "tests" in rel or "vendor" in rel or rel[0] in ("build", ".venv"):
            continue
        tree = ast.parse(path.read_text(), str(path))
        skip = _guarded(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import) and node.lineno not in skip:
                names |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.lineno not in skip:
                names.add(node.module)
    return names


def _names(requirements: list[str]) -> set[str]:
    return {_norm(re.split(r"[\s<>=!~;\[]", d, maxsplit=1)[0]) for d in requirements}


def _closure(folder: Path) -> set[str]:
    """The distribution's dependencies and extras, and, through each Lookout distribution
    among them, that one's dependencies (and the extras asked for, like lookout-core[chdb])."""
    by_name = {_norm(_project(f)["name"]): f for f in DISTS}
    project = _project(folder)
    extras = project.get("optional-dependencies", {}).values()
    todo = [*project.get("dependencies", []), *(d for e in extras for d in e)]
    seen: set[str] = set()
    while todo:
        requirement = todo.pop()
        name = next(iter(_names([requirement])))
        extras = re.findall(r"\[([^\]]+)\]", requirement)
        if name in seen and not extras:
            continue
        seen.add(name)
        if name in by_name:
            inner = _project(by_name[name])
            todo += inner.get("dependencies", [])
            for extra in (x.strip() for group in extras for x in group.split(",")):
                todo += inner.get("optional-dependencies", {}).get(extra, [])
    return seen


@pytest.mark.parametrize("folder", DISTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_import_is_the_standard_library_the_package_itself_or_a_declared_dependency(folder):
    project = _project(folder)
    me = _norm(project["name"])
    declared = _closure(folder)
    own, third_party = _own_modules(), packages_distributions()
    missing: dict[str, str] = {}
    for module in sorted(_imports(folder)):
        top = module.split(".")[0]
        if top in sys.stdlib_module_names or top == "__future__":
            continue
        if top == "lookout":
            dist = own.get(".".join(module.split(".")[:2]))
            if dist is None:
                continue  # `import lookout` itself: the namespace
            candidates = {dist}
        elif top in own:
            candidates = {own[top]}
        else:
            candidates = {_norm(d) for d in third_party.get(top, [])}
            if not candidates:
                missing[module] = "(not installed: no distribution provides it)"
                continue
        if not candidates & (declared | {me}):
            missing[module] = " or ".join(sorted(candidates))
    assert not missing, f"{project['name']} imports without declaring: {missing}"
