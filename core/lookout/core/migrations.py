"""Numbered SQL migrations, applied at start, idempotently.

Files are `NNNN_name.sql` in this package's migrations/ folder; statements end with `;`
at the end of a line. `{retention_days}` is filled from settings. Applied versions are
recorded in `schema_migrations`, and every statement is written to be safe to re-run
(IF NOT EXISTS), so two services starting at once cannot break each other.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

from clickhouse_connect.driver.client import Client

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    def statements(self, retention_days: int) -> list[str]:
        body = "\n".join(line for line in self.sql.splitlines() if not line.strip().startswith("--"))
        body = body.replace("{retention_days}", str(int(retention_days)))
        return [s.strip() for s in re.split(r";\s*(?:\n|$)", body) if s.strip()]


def load() -> list[Migration]:
    found = []
    for entry in resources.files("lookout.core").joinpath("migrations").iterdir():
        m = _NAME.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration numbers: {versions}")
    return found


def apply(client: Client, retention_days: int = 90) -> list[int]:
    """Apply every migration not yet recorded; returns the versions applied now."""
    client.command(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = ReplacingMergeTree ORDER BY version"
    )
    done = {row[0] for row in client.query("SELECT version FROM schema_migrations FINAL").result_rows}
    applied = []
    for migration in load():
        if migration.version in done:
            continue
        for statement in migration.statements(retention_days):
            client.command(statement)
        client.insert("schema_migrations", [[migration.version, migration.name]], column_names=["version", "name"])
        applied.append(migration.version)
        log.info("applied migration %04d_%s", migration.version, migration.name)
    return applied
