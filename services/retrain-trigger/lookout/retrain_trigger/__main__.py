"""`python -m lookout.retrain_trigger`: the consumer, the watchdog and the HTTP API on
LOOKOUT_HTTP_HOST:LOOKOUT_HTTP_PORT. `--check-policies [PATH]` validates a policy file and exits."""

from __future__ import annotations

import sys

from lookout.core.serving import run_service

from . import policies
from .service import RetrainService
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
    return run_service(RetrainService, settings)


if __name__ == "__main__":
    sys.exit(main())
