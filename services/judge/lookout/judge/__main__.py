"""`python -m lookout.judge`: the judge service and its HTTP server on
LOOKOUT_HTTP_HOST:LOOKOUT_HTTP_PORT. `python -m lookout.judge agreement RUBRIC` prints
the judge-vs-reviewer agreement of one rubric as JSON."""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import UTC, datetime, timedelta

from .settings import JudgeSettings

log = logging.getLogger("lookout.judge")


def _serve(settings: JudgeSettings) -> int:
    from lookout.core.serving import run_service

    from .service import JudgeService

    return run_service(JudgeService, settings)


def _agreement(settings: JudgeSettings, rubric_name: str, days: int, evaluator: str, app_id: str | None) -> None:
    from lookout.core.session import Session

    from .agreement import agreement
    from .rubrics import RubricSet

    rubric = RubricSet.load(settings.judge_rubrics_path).by_name(rubric_name)
    secret = settings.review_signing_secret.get_secret_value() if settings.review_signing_secret else None
    session = Session.connect(settings)
    try:
        report = agreement(session, rubric, since=datetime.now(UTC) - timedelta(days=days), evaluator=evaluator,
                           app_id=app_id, signing_secret=secret)
    finally:
        session.close()
    print(report.model_dump_json(indent=2))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lookout.judge", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    agree = sub.add_parser("agreement", help="judge scores vs reviewer ratings for one rubric")
    agree.add_argument("rubric")
    agree.add_argument("--days", type=int, default=30)
    agree.add_argument("--evaluator", default="", help="one judge model only")
    agree.add_argument("--app", default=None, help="one app's calls only (default: every app's, pooled)")
    args = parser.parse_args(argv)
    settings = JudgeSettings()
    if args.command == "agreement":
        logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        _agreement(settings, args.rubric, args.days, args.evaluator, args.app)
    else:
        sys.exit(_serve(settings))


if __name__ == "__main__":
    main()
