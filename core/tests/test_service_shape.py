"""The shape of the whole tree: every table and view comes from a numbered migration.

DDL in code is found as a string literal (f-strings included) that begins with CREATE
TABLE / VIEW / MATERIALIZED VIEW / DICTIONARY, in the packages that ship (tests, fixtures
and benchmarks may make scratch tables), and in any .sql file outside the migrations.
The migration ledger itself (schema_migrations, in migrations.py) is the one exception.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS = ROOT / "core" / "lookout" / "core" / "migrations"
SHIPPED = ["core", "services", "stack", "jobs", "dashboards", "sdk"]
NOT_SHIPPED = {"tests", "bench", "testing", ".venv", "node_modules", "vendor", "__pycache__", "build"}
ALLOWED = {("core/lookout/core/migrations.py", "schema_migrations")}

DDL = re.compile(
    r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?(?:TEMPORARY\s+)?(TABLE|MATERIALIZED\s+VIEW|VIEW|DICTIONARY)\s+"
    r"(?:IF\s+NOT\s+EXISTS\s+)?([`\"\w.{}]+)",
    re.IGNORECASE,
)

def _literal_texts(tree: ast.AST) -> list[str]:
    """Each string literal's text; an f-string's placeholders as {name}."""
    texts = []
    parts = {id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in parts:
            texts.append(node.value)
        elif isinstance(node, ast.JoinedStr):
            texts.append("".join(str(v.value) if isinstance(v, ast.Constant) else "{" + ast.unparse(v.value) + "}"
                                 for v in node.values if isinstance(v, ast.Constant | ast.FormattedValue)))
    return texts


@functools.cache
def ddl_outside_migrations() -> frozenset[tuple[str, str]]:
    found = set()
    for top in SHIPPED:
        for path in sorted([*(ROOT / top).rglob("*.py"), *(ROOT / top).rglob("*.sql")]):
            rel = path.relative_to(ROOT)
            if NOT_SHIPPED & set(rel.parts) or path.is_relative_to(MIGRATIONS) or not path.is_file():
                continue
            if path.suffix == ".py":
                texts = _literal_texts(ast.parse(path.read_text(), str(rel)))
            elif path.suffix == ".sql":
                texts = re.split(r";\s*\n", path.read_text())
            else:
                continue
            for text in texts:
                m = DDL.match(text)
                if m:
                    found.add((rel.as_posix(), m.group(2).strip("`\"")))
    return frozenset(found - ALLOWED)


def test_the_scan_finds_ddl_in_literals_and_f_strings_but_not_in_prose():
    tree = ast.parse('TABLE = "t"\n'
                     'a = f"CREATE TABLE IF NOT EXISTS {TABLE} (x UInt8) ENGINE = Memory"\n'
                     'b = """\n    create materialized view if not exists mv TO t AS SELECT 1"""\n'
                     'c = "the tables are made by CREATE TABLE statements in migrations"\n')
    names = [m.group(2) for m in map(DDL.match, _literal_texts(tree)) if m]
    assert sorted(names) == ["mv", "{TABLE}"]


def test_every_table_and_view_is_created_by_a_numbered_migration():
    found = ddl_outside_migrations()
    assert not found, f"tables/views created outside a numbered migration: {sorted(found)}; add a migration instead"
