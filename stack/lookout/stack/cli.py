"""`lookout up`: the embedded stack's subcommand of the `lookout` command (lookout-command
adds it through the `lookout.commands` entry point; keys, migrate and settings live there)."""

from __future__ import annotations

import argparse
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
        # log_config=None: uvicorn's lines go through the `lookout` logging set-up (text or json).
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning", log_config=None)
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


def register(sub: argparse._SubParsersAction) -> None:
    """`lookout up`, for the `lookout` command of lookout-command (entry point `lookout.commands`)."""
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


def main(argv: list[str] | None = None) -> int:
    """`python -m lookout.stack.cli ...`: the `lookout` command."""
    from lookout.cli.main import main as lookout

    return lookout(argv)


if __name__ == "__main__":
    sys.exit(main())
