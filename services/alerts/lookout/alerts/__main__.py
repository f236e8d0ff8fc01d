"""`python -m lookout.alerts`: the alert evaluator, its API and its notifications on
LOOKOUT_HTTP_HOST:LOOKOUT_HTTP_PORT (one replica: two would each notify)."""

from __future__ import annotations

import sys

from lookout.core.serving import run_service

from .service import AlertService
from .settings import AlertSettings


def main() -> None:
    sys.exit(run_service(AlertService, AlertSettings))


if __name__ == "__main__":
    main()
