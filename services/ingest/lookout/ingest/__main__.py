"""`python -m lookout.ingest`: the HTTP intake on LOOKOUT_HTTP_HOST:LOOKOUT_HTTP_PORT."""

from __future__ import annotations

import logging

import uvicorn

from .app import create_app
from .settings import IngestSettings


def main() -> None:
    settings = IngestSettings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.http_workers > 1:
        # Validation and PII redaction are CPU-bound Python: more cores need more processes.
        uvicorn.run("lookout.ingest.app:create_app", factory=True, workers=settings.http_workers,
                    host=settings.http_host, port=settings.http_port, log_level="info")
    else:
        uvicorn.run(create_app(settings), host=settings.http_host, port=settings.http_port, log_level="info")


if __name__ == "__main__":
    main()
