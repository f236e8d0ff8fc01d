"""`python -m lookout.judge`: the judge service and its HTTP server on
LOOKOUT_HTTP_HOST:LOOKOUT_HTTP_PORT. `python -m lookout.judge agreement RUBRIC` prints
the judge-vs-reviewer agreement of one rubric as JSON."""

from __future__ import annotations

import argparse
import asyncio
import logging
from datetime import UTC, datetime, timedelta

from .settings import JudgeSettings

log = logging.getLogger("lookout.judge")


async def _serve(settings: JudgeSettings) -> None:
    from lookout.core.ops import serve_until_signal

    from .app import create_app
    from .service import JudgeService

    service = JudgeService(settings)
    await service.start()
    await serve_until_signal(create_app(service), settings.http_host, settings.http_port, service)


def _agreement(settings: JudgeSettings, rubric_name: str, days: int, evaluator: str) -> None:
    from lookout.core import clickhouse

    from .agreement import agreement
    from .rubrics import RubricSet

    rubric = RubricSet.load(settings.judge_rubrics_path).by_name(rubric_name)
    report = agreement(clickhouse.connect(settings), rubric, since=datetime.now(UTC) - timedelta(days=days),
                       evaluator=evaluator)
    print(report.model_dump_json(indent=2))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lookout.judge", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    agree = sub.add_parser("agreement", help="judge scores vs reviewer ratings for one rubric")
    agree.add_argument("rubric")
    agree.add_argument("--days", type=int, default=30)
    agree.add_argument("--evaluator", default="", help="one judge model only")
    args = parser.parse_args(argv)
    settings = JudgeSettings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per judge request otherwise
    if args.command == "agreement":
        _agreement(settings, args.rubric, args.days, args.evaluator)
    else:
        asyncio.run(_serve(settings))


if __name__ == "__main__":
    main()
