"""`python -m lookout.feedback`: thumbs API, review UI and dataset export on LOOKOUT_HTTP_HOST:LOOKOUT_HTTP_PORT."""

from __future__ import annotations

import logging

import uvicorn

from .app import create_app
from .settings import FeedbackSettings


def main() -> None:
    settings = FeedbackSettings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(settings), host=settings.http_host, port=settings.http_port, log_level="info")


if __name__ == "__main__":
    main()
