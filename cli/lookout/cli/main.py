"""The `lookout` command: `keys`, `migrate` and `settings` work against any ClickHouse
(LOOKOUT_CLICKHOUSE_DSN, or an embedded data dir); `up` runs the embedded stack when
lookout-stack is installed.

Other distributions add subcommands through the entry-point group `lookout.commands`:
each entry point names a function `register(subparsers)` that adds its subparser and sets
`func` (a function of the parsed args returning the exit status). lookout-stack registers
`up`. In a source checkout whose metadata predates the entry point, the known plugin
modules are imported directly.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable
from importlib.metadata import entry_points

from .errors import CliError, explain

EPILOG = "Every setting can also come from a LOOKOUT_* environment variable: see `lookout settings`."
GROUP = "lookout.commands"
# Commands other distributions provide: (module with register(), distribution, help).
KNOWN = {"up": ("lookout.stack.cli", "lookout-stack", "run the embedded stack on this machine")}

Register = Callable[[argparse._SubParsersAction], None]
log = logging.getLogger("lookout.cli")


def plugins() -> dict[str, Register]:
    """name -> register, from the entry points, then the known modules that import."""
    found: dict[str, Register] = {}
    for ep in entry_points(group=GROUP):
        try:
            found[ep.name] = ep.load()
        except ImportError as exc:  # installed metadata, package gone or broken: say so at use
            log.debug("lookout command %s not loaded: %s", ep.name, exc)
    for name, (module, _, _) in KNOWN.items():
        if name not in found:
            try:
                found[name] = importlib.import_module(module).register
            except (ImportError, AttributeError):
                continue
    return found


def _missing(name: str) -> Callable[[argparse.Namespace], int]:
    _, dist, _ = KNOWN[name]

    def run(_: argparse.Namespace) -> int:
        raise CliError(
            f"`lookout {name}` comes with {dist}, which is not installed here. Install it from the "
            f"repository (`pip install ./core ./cli ./services/* ./jobs/finetune ./dashboards ./stack`, or `make "
            f"setup`); in production run each service on its own (`python -m lookout.ingest`, ...: see the README)."
        )

    return run


def parser() -> argparse.ArgumentParser:
    from . import admin

    p = argparse.ArgumentParser(prog="lookout", description="Lookout: watch LLM applications in production.",
                                epilog=EPILOG)
    p.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level and show tracebacks")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    found = plugins()
    for name in KNOWN:
        if name in found:
            found[name](sub)
        else:
            # prefix_chars: no options, so `lookout up --demo` reaches the message, not an argparse error.
            stub = sub.add_parser(name, help=f"{KNOWN[name][2]} (needs {KNOWN[name][1]})", add_help=False,
                                  prefix_chars="\0")
            stub.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
            stub.set_defaults(func=_missing(name))
    admin.register(sub)
    for name, register in found.items():
        if name not in KNOWN:
            register(sub)
    return p


def _configure_logging(verbose: bool) -> None:
    from lookout.core.logs import configure_logging

    level = "DEBUG" if verbose else os.environ.get("LOOKOUT_LOG_LEVEL", "INFO")
    try:
        configure_logging(level, os.environ.get("LOOKOUT_LOG_FORMAT", "text"))
    except ValueError as exc:
        raise CliError(str(exc), status=2) from None


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if not getattr(args, "func", None):
        p.print_help()
        return 2
    command = f"lookout {args.command}"
    try:
        _configure_logging(args.verbose)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `lookout settings | head`: the reader left, nothing went wrong
        sys.stdout = open(os.devnull, "w")  # so the interpreter's final flush is quiet
        return 0
    except SystemExit:
        raise
    except Exception as exc:
        if args.verbose:
            raise
        message, status = explain(exc)
        print(f"{command}: {message}", file=sys.stderr)
        if not isinstance(exc, CliError):
            print("(run with -v for the whole traceback)", file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
