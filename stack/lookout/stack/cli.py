"""The `lookout` command: `lookout up` runs the embedded stack; `lookout keys` manages API
keys; `lookout migrate` applies the schema; `lookout settings` prints the settings table."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

EPILOG = "Every setting can also come from a LOOKOUT_* environment variable: see `lookout settings`."


def _up(args: argparse.Namespace) -> int:
    import uvicorn

    from . import quiet_logs
    from .embedded import EmbeddedStack

    quiet_logs.install()
    if args.speed <= 0:
        raise SystemExit("lookout up: --speed must be greater than 0")
    stack = EmbeddedStack(
        data_dir=Path(args.data_dir), port=args.port, host=args.host, kafka_port=args.kafka_port, broker=args.broker,
        demo=args.demo, demo_speed=args.speed, demo_traffic=args.demo_traffic,
    )
    try:
        app = stack.build()
    except Exception as exc:
        stack.stop_broker()
        raise SystemExit(f"lookout up: could not start: {exc}") from exc
    key_file = Path(args.data_dir) / "dev-api-key"
    if stack.dev_key:
        key_lines = (f"  development API key: {stack.dev_key}\n"
                     f"  (stored as a hash; the key is in {key_file}, mode 0600)\n")
    else:
        key_lines = f"  no development API key: {stack.dev_key_note}\n"
    print(
        f"\n  Lookout (embedded) on http://{args.host}:{args.port}\n"
        f"  broker: {stack.broker_summary()}\n"
        f"{key_lines}"
        f"  reviewer UI: http://{args.host}:{args.port}/review  (user admin, password in "
        f"{Path(args.data_dir) / 'review-admin-password'})\n"
        f"  Ctrl-C stops it cleanly.\n",
        flush=True,
    )
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        stack.stop_broker()
    return 0


def _broker_choice(value: str) -> str:
    from pydantic import ValidationError

    from .broker import EmbeddedSettings

    try:
        EmbeddedSettings(embedded_broker=value)
    except ValidationError:
        raise argparse.ArgumentTypeError(f"expected auto, kafka, tansu or host:port[,host:port], got {value!r}") \
            from None
    return value


def _client(args: argparse.Namespace):
    from lookout.core import clickhouse, migrations
    from lookout.core.settings import CommonSettings

    settings = CommonSettings()
    if args.data_dir:
        settings = settings.model_copy(update={"clickhouse_dsn": f"chdb://{Path(args.data_dir, 'chdb').resolve()}"})
    client = clickhouse.connect(settings)
    migrations.apply(client, settings.retention_days)
    return client


def _keys(args: argparse.Namespace) -> int:
    from lookout.core.auth import ApiKeyStore

    store = ApiKeyStore(_client(args))
    if args.keys_command == "create":
        key, plaintext = store.create(args.app, args.scope or ["ingest"], name=args.name)
        print(f"key id {key.key_id} for app {key.app_id}, scopes {', '.join(sorted(key.scopes))}")
        print(plaintext)
        print("Store it now: only its hash is kept.", file=sys.stderr)
    elif args.keys_command == "list":
        for key in store.list(args.app):
            state = "revoked" if key.revoked else "active"
            print(f"{key.key_id}  {key.app_id:<20} {','.join(sorted(key.scopes)):<30} {state:<8} {key.name}")
    elif args.keys_command == "revoke":
        if not store.revoke(args.key_id):
            print(f"unknown key id {args.key_id!r}: nothing revoked (`lookout keys list` shows the ids)",
                  file=sys.stderr)
            return 1
        print(f"revoked {args.key_id}")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from lookout.core import migrations

    client = _client(args)
    applied = migrations.apply(client)
    print(f"schema up to date ({len(migrations.load())} migrations, {len(applied)} applied just now)")
    return 0


def _settings(_: argparse.Namespace) -> int:
    from .settings_table import markdown_table

    print(markdown_table())
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lookout", description="Lookout: watch LLM applications in production.", epilog=EPILOG
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    up = sub.add_parser("up", help="run the embedded stack on this machine", epilog=EPILOG,
                        description="Start a Kafka-protocol broker (Apache Kafka where Java 17+ is installed, else "
                                    "Tansu, in memory), an embedded ClickHouse (chdb) and every service in one "
                                    "process.")
    up.add_argument("--demo", action="store_true",
                    help="also run the demo until stopped: simulated traffic and reviews, and the retrain loop "
                         "(demo policy, local fine-tuning of a tiny model on CPU)")
    up.add_argument("--speed", type=float, default=1.0, help="demo time compression factor (default 1)")
    up.add_argument("--demo-traffic", action=argparse.BooleanOptionalAction, default=True,
                    help="with --demo: run the traffic simulator here (default); --no-demo-traffic sets the stack "
                         "up for the demo (retrain policy at --speed, tiny base model) for a simulator run elsewhere")
    up.add_argument("--port", type=int, default=8000, help="HTTP port for every API and the UI (default 8000)")
    up.add_argument("--host", default="127.0.0.1", help="HTTP address (default 127.0.0.1)")
    up.add_argument("--data-dir", default=".lookout", help="where chdb and the dev key live (default .lookout)")
    up.add_argument("--kafka-port", type=int, default=0,
                    help="port for the embedded broker (default: the last start's if free, else any free one)")
    up.add_argument("--broker", type=_broker_choice, default=None, metavar="auto|kafka|tansu|HOST:PORT",
                    help="the broker: auto (Apache Kafka when Java 17+ is there, else Tansu), kafka, tansu, or the "
                         "bootstrap servers of an external cluster (default: LOOKOUT_EMBEDDED_BROKER, else auto)")
    up.set_defaults(func=_up)

    keys = sub.add_parser("keys", help="create, list or revoke API keys", epilog=EPILOG)
    keys.add_argument("--data-dir", default=None, help="embedded data dir (default: LOOKOUT_CLICKHOUSE_DSN)")
    ksub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    create = ksub.add_parser("create", help="create a key and print it once")
    create.add_argument("--app", required=True, help="app id the key is bound to ('*' for all apps)")
    create.add_argument("--scope", action="append", choices=["ingest", "read", "feedback", "review", "admin"],
                        help="a scope to grant (repeatable; default ingest)")
    create.add_argument("--name", default="", help="a label for the key")
    lst = ksub.add_parser("list", help="list keys (never their secrets)")
    lst.add_argument("--app", default=None, help="only keys of this app")
    revoke = ksub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id", help="the key id (the part after lk_)")
    keys.set_defaults(func=_keys)

    migrate = sub.add_parser("migrate", help="apply the ClickHouse schema migrations", epilog=EPILOG)
    migrate.add_argument("--data-dir", default=None, help="embedded data dir (default: LOOKOUT_CLICKHOUSE_DSN)")
    migrate.set_defaults(func=_migrate)

    table = sub.add_parser("settings", help="print every LOOKOUT_* setting as a markdown table")
    table.set_defaults(func=_settings)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser().print_help()
        return 2
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
