"""`python -m lookout.drift`: the drift worker and its HTTP API on LOOKOUT_HTTP_HOST:PORT."""

from __future__ import annotations

import sys

from lookout.core.serving import run_service

from .service import DriftService
from .settings import DriftSettings


def main() -> None:
    sys.exit(run_service(DriftService, DriftSettings))


if __name__ == "__main__":
    main()
