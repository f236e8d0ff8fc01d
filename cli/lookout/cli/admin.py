"""`lookout keys`, `lookout migrate`, `lookout settings`: the admin commands, against the
ClickHouse of LOOKOUT_CLICKHOUSE_DSN (a server in production), or the embedded store of a
`lookout up` data dir with --data-dir (needs chdb: `pip install 'lookout-core[chdb]'`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .errors import CliError, explain, safe_dsn

EPILOG = "Every setting can also come from a LOOKOUT_* environment variable: see `lookout settings`."
SCOPES = ["ingest", "read", "feedback", "review", "admin"]
DATA_DIR_HELP = ("the data dir of an embedded store (`lookout up --data-dir`, default there: .lookout); "
                 "without it, the ClickHouse of LOOKOUT_CLICKHOUSE_DSN")


def connect(data_dir: str | None) -> Any:
    """A client on the schema, migrations applied; CliError saying where and why if not."""
    from lookout.core import clickhouse, migrations
    from lookout.core.settings import CommonSettings

    settings = CommonSettings()
    if data_dir:
        settings = settings.model_copy(update={"clickhouse_dsn": f"chdb://{Path(data_dir, 'chdb').resolve()}"})
    try:
        client = clickhouse.connect(settings)
        migrations.apply(client, settings.retention_days)
    except clickhouse.ClickHouseConfigError:
        raise
    except Exception as exc:
        message, _ = explain(exc)
        raise CliError(f"cannot use ClickHouse at {safe_dsn(settings.clickhouse_dsn)}: {message}. Set "
                       "LOOKOUT_CLICKHOUSE_DSN (http(s)://user:password@host:8123) or --data-dir") from exc
    return client


def _keys(args: argparse.Namespace) -> int:
    from lookout.core.auth import ApiKeyStore

    store = ApiKeyStore(connect(args.data_dir))
    if args.keys_command == "create":
        try:
            key, plaintext = store.create(args.app, args.scope or ["ingest"], name=args.name)
        except ValueError as exc:
            raise CliError(str(exc), status=2) from None
        print(f"key id {key.key_id} for app {key.app_id}, scopes {', '.join(sorted(key.scopes))}")
        print(plaintext)
        print("Store it now: only its hash is kept.", file=sys.stderr)
    elif args.keys_command == "list":
        for key in store.list(args.app):
            state = "revoked" if key.revoked else "active"
            print(f"{key.key_id}  {key.app_id:<20} {','.join(sorted(key.scopes)):<30} {state:<8} {key.name}")
    elif args.keys_command == "revoke":
        if not store.revoke(args.key_id):
            raise CliError(f"unknown key id {args.key_id!r}: nothing revoked (`lookout keys list` shows the ids)")
        print(f"revoked {args.key_id}")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from lookout.core import migrations

    client = connect(args.data_dir)
    applied = migrations.apply(client)  # connect() applied them; this says how many were new
    print(f"schema up to date ({len(migrations.load())} migrations, {len(applied)} applied just now)")
    return 0


def _settings(args: argparse.Namespace) -> int:
    from .settings_table import markdown_table, render_into

    if args.write:
        path = Path(args.write)
        path.write_text(render_into(path.read_text()))
        print(f"settings table written into {path}")
    else:
        print(markdown_table())
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    keys = sub.add_parser("keys", help="create, list or revoke API keys", epilog=EPILOG,
                          description="Manage API keys in the ClickHouse of LOOKOUT_CLICKHOUSE_DSN (or --data-dir). "
                                      "Only a key's hash is stored.")
    keys.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    ksub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    create = ksub.add_parser("create", help="create a key and print it once", epilog=EPILOG)
    create.add_argument("--app", required=True, help="app id the key is bound to ('*' for all apps)")
    create.add_argument("--scope", action="append", choices=SCOPES,
                        help="a scope to grant (repeatable; default ingest)")
    create.add_argument("--name", default="", help="a label for the key")
    lst = ksub.add_parser("list", help="list keys (never their secrets)", epilog=EPILOG)
    lst.add_argument("--app", default=None, help="only keys of this app")
    revoke = ksub.add_parser("revoke", help="revoke a key by id", epilog=EPILOG)
    revoke.add_argument("key_id", help="the key id (the part after lk_)")
    keys.set_defaults(func=_keys)

    migrate = sub.add_parser("migrate", help="apply the ClickHouse schema migrations", epilog=EPILOG,
                             description="Apply the numbered migrations to the ClickHouse of LOOKOUT_CLICKHOUSE_DSN "
                                         "(or --data-dir); safe to run again.")
    migrate.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    migrate.set_defaults(func=_migrate)

    table = sub.add_parser("settings", help="print every LOOKOUT_* setting as a markdown table",
                           description="Every LOOKOUT_* setting of the installed services, with its default.")
    table.add_argument("--write", metavar="README", default=None,
                       help="write the table between the settings-table markers of this file instead")
    table.set_defaults(func=_settings)
