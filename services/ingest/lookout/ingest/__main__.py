"""`python -m lookout.ingest`: the HTTP and OTLP intake on LOOKOUT_HTTP_HOST:LOOKOUT_HTTP_PORT,
in LOOKOUT_HTTP_WORKERS processes (validation and PII redaction are CPU-bound Python: more
cores need more processes)."""

from __future__ import annotations

import sys

from lookout.core.serving import run_service

from .service import IngestService
from .settings import IngestSettings


def main() -> None:
    settings = IngestSettings()
    sys.exit(run_service(IngestService, settings, workers=settings.http_workers))


if __name__ == "__main__":
    main()
