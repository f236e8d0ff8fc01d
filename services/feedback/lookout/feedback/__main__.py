"""`python -m lookout.feedback`: thumbs API, review UI and dataset export on LOOKOUT_HTTP_HOST:LOOKOUT_HTTP_PORT."""

from __future__ import annotations

import sys

from lookout.core.serving import run_service

from .app import FeedbackService
from .settings import FeedbackSettings


def main() -> None:
    sys.exit(run_service(FeedbackService, FeedbackSettings))


if __name__ == "__main__":
    main()
