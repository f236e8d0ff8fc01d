"""A test's own database with the whole schema, in about half the time the migrations take.

Running every migration on a new database is ~120 statements (tables, then the later
migrations' ALTERs and backfills, each one recorded): ~1.2 s on chdb, and the suite makes a
few hundred databases. A database migrated once per process is the template: a new one gets
its tables' CREATE statements as ClickHouse reports them (every ALTER already folded in), the
rows its tables hold (the applied versions, backfill marks), then its views, which read
nothing yet. The schema is the migrations' own, so `migrations.apply` on the copy finds every
version applied and does nothing; tests/test_fresh_schema.py checks the copy statement by
statement against a migrated database. chdb only: on a ClickHouse server (the `docker`
group) the migrations run as they are.
"""

from __future__ import annotations

import threading

from clickhouse_connect.driver.client import Client

from lookout.core import clickhouse, migrations
from lookout.core.settings import CommonSettings

_VIEWS = ("MaterializedView", "View")
_templates: dict[tuple[str, int], str] = {}
_lock = threading.Lock()


def create_migrated(settings: CommonSettings) -> Client:
    """A client on `settings.clickhouse_database`, with every migration applied: copied from
    the template where the database is new, by the migrations where it exists already."""
    new = settings.clickhouse_dsn.startswith("chdb:") and not _exists(settings)
    template = _template(settings) if new else ""
    client = clickhouse.connect(settings)  # creates the database
    if new:
        copy_schema(client, template, settings.clickhouse_database)
    else:
        migrations.apply(client, settings.retention_days)
    return client


def _exists(settings: CommonSettings) -> bool:
    client = clickhouse.connect(settings.model_copy(update={"clickhouse_database": "system"}))
    return bool(client.query("SELECT count() FROM system.databases WHERE name = {db:String}",
                             parameters={"db": settings.clickhouse_database}).result_rows[0][0])


def _template(settings: CommonSettings) -> str:
    key = (settings.clickhouse_dsn, settings.retention_days)
    with _lock:
        if key not in _templates:
            name = f"lookout_template_r{settings.retention_days}"
            client = clickhouse.connect(settings.model_copy(update={"clickhouse_database": name}))
            migrations.apply(client, settings.retention_days)
            _templates[key] = name
        return _templates[key]


def copy_schema(client: Client, source: str, target: str) -> None:
    """Every table of `source` into `target` (an empty database), with its rows; views last."""
    tables = client.query(
        "SELECT name, engine, create_table_query, total_rows FROM system.tables "
        "WHERE database = {db:String} AND NOT startsWith(name, '.') ORDER BY metadata_modification_time, name",
        parameters={"db": source},
    ).result_rows
    qualified = f"{source}."
    views = []
    for name, engine, create, rows in tables:
        # ClickHouse names every table and source as database.name in what it reports.
        statement = create.replace(qualified, f"{target}.")
        if engine in _VIEWS:
            views.append(statement)
            continue
        client.command(statement)
        if rows:
            client.command(f"INSERT INTO {target}.`{name}` SELECT * FROM {source}.`{name}`")
    for statement in views:
        client.command(statement)
