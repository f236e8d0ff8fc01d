"""`python -m lookout.retrain_trigger`: the consumer, the watchdog and the HTTP API on
LOOKOUT_HTTP_HOST:LOOKOUT_HTTP_PORT. `--check-policies [PATH]` validates a policy file and exits."""

from __future__ import annotations

import logging
import sys

import uvicorn

from . import policies
from .app import create_app
from .settings import RetrainSettings


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    settings = RetrainSettings()
    if argv[:1] == ["--check-policies"]:
        path = argv[1] if len(argv) > 1 else settings.retrain_policies
        try:
            pf = policies.load(path)
        except policies.PolicyError as exc:
            print(exc, file=sys.stderr)
            return 2
        print(f"ok: {len(pf.policies)} policies, {sum(len(p.rules) for p in pf.policies)} rules")
        return 0
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    policies.load(settings.retrain_policies)  # fail before binding the port on a bad file
    uvicorn.run(create_app(settings), host=settings.http_host, port=settings.http_port, log_level="info")
    return 0


if __name__ == "__main__":
    sys.exit(main())
