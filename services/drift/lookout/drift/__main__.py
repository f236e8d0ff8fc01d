"""`python -m lookout.drift`: the drift worker and its HTTP API on LOOKOUT_HTTP_HOST:PORT."""

from __future__ import annotations

import logging

import uvicorn

from .api import create_app
from .service import DriftService
from .settings import DriftSettings


def main() -> None:
    settings = DriftSettings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(DriftService(settings)), host=settings.http_host, port=settings.http_port, log_level="info")


if __name__ == "__main__":
    main()
