"""A test's database copied from the migrated template (lookout.testing.schema) is the
database the migrations make: the same tables and views, created by the same statements,
holding the same rows, and the migrations find nothing left to apply."""

from __future__ import annotations

import uuid

from lookout.core import clickhouse, migrations
from lookout.core.settings import CommonSettings
from lookout.testing import schema


def _tables(client, database: str) -> dict[str, tuple[str, str]]:
    rows = client.query("SELECT name, engine, create_table_query FROM system.tables WHERE database = {db:String}",
                        parameters={"db": database}).result_rows
    return {name: (engine, create.replace(f"{database}.", "DB.")) for name, engine, create in rows}


def _rows(client, database: str, table: str) -> list[tuple]:
    """The table's rows without their times (when each was written differs)."""
    columns = [name for name, kind in client.query(
        "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = {t:String} ORDER BY position",
        parameters={"db": database, "t": table}).result_rows if "DateTime" not in kind]
    return sorted(client.query(f"SELECT {', '.join(columns)} FROM {database}.{table}").result_rows)


def test_a_copied_database_is_the_migrated_one_statement_by_statement(chdb_path):
    def settings(name: str) -> CommonSettings:
        database = f"{name}_{uuid.uuid4().hex[:8]}"
        return CommonSettings(clickhouse_dsn=f"chdb://{chdb_path}", clickhouse_database=database)

    migrated_settings, copied_settings = settings("migrated"), settings("copied")
    migrated = clickhouse.connect(migrated_settings)
    migrations.apply(migrated, migrated_settings.retention_days)
    copied = schema.create_migrated(copied_settings)
    a, b = migrated_settings.clickhouse_database, copied_settings.clickhouse_database
    try:
        assert _tables(migrated, a) == _tables(copied, b)
        assert len(_tables(copied, b)) > 40
        for table in ("schema_migrations", "call_previews_backfill"):
            assert _rows(copied, b, table) == _rows(migrated, a, table) != []
        assert migrations.apply(copied, copied_settings.retention_days) == []
        # A database that exists already is migrated, not copied over.
        again = schema.create_migrated(copied_settings)
        assert _tables(again, b) == _tables(migrated, a)
    finally:
        for db in (a, b):
            migrated.command(f"DROP DATABASE IF EXISTS {db}")
