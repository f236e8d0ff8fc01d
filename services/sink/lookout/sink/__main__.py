"""`python -m lookout.sink`: the sink and its /healthz, /readyz, /metrics on
LOOKOUT_HTTP_HOST:LOOKOUT_HTTP_PORT."""

from __future__ import annotations

import sys

from lookout.core.serving import run_service

from .service import SinkService
from .settings import SinkSettings


def main() -> None:
    sys.exit(run_service(SinkService, SinkSettings))


if __name__ == "__main__":
    main()
