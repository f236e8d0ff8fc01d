"""Judge agreement, live: for each app, rubric, rubric version and judge model, how far the
judge's scores agree with reviewer ratings over a rolling window (agreement.py), stored as
one row of `judge_agreement` (migration 0014) every LOOKOUT_JUDGE_AGREEMENT_INTERVAL_S, for
the dashboard's agreement panels and the agreement alert.

The judge writes the table itself, through its Session, rather than producing the rows to a
topic for the sink. The rows are derived from two stored tables (a reviewer's rating and the
judge's score of the same call meet nowhere else: they arrive on different topics, minutes
to days apart, and the rating must be checked against its signature), so computing them
means reading ClickHouse anyway; no service consumes them; and the judge is the table's
only writer, as the sink is of the tables it fills. A topic would add a wire schema and a
sink mapping for rows nobody but the dashboards reads.

A window ends on a multiple of the interval (UTC) and covers the reviews of the
`window_days` before it. A row's key is (app, rubric, version, evaluator, window_end), so
judge replicas, a restart or a rerun of a window write the same row again and the table
(ReplacingMergeTree(computed_at)) keeps the latest. Series without a review in the window
get no row: their last row stays the last word.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from prometheus_client import Counter, Gauge

from lookout.core.session import Session

from .agreement import MAX_REVIEWS, agreement_of, fetch_pairs_by, grouped

log = logging.getLogger(__name__)

TABLE = "judge_agreement"
COLUMNS = ["window_end", "window_start", "app_id", "rubric", "rubric_version", "evaluator", "pairs", "kappa",
           "observed_agreement", "judge_pass_rate", "reviewer_pass_rate", "kappa_quadratic", "spearman",
           "spearman_p", "computed_at"]

RUNS = Counter("lookout_judge_agreement_runs_total", "Agreement computations, by outcome", ["outcome"])
ROWS = Counter("lookout_judge_agreement_rows_total", "judge_agreement rows written")
UNVERIFIED = Gauge("lookout_judge_agreement_unverified_reviews",
                   "Reviewer rows of the latest window left out because their signature did not verify")


@dataclass(frozen=True)
class AgreementRow:
    window_end: datetime
    window_start: datetime
    app_id: str
    rubric: str
    rubric_version: str
    evaluator: str
    pairs: int
    kappa: float | None  # pass/fail (above the middle of the scale)
    observed_agreement: float | None
    judge_pass_rate: float | None  # the kappa's base rates
    reviewer_pass_rate: float | None
    kappa_quadratic: float | None  # 1..5, quadratic weights
    spearman: float | None
    spearman_p: float | None
    computed_at: datetime

    def values(self) -> list:
        return [getattr(self, c) for c in COLUMNS]


def window_end(now: datetime, interval_s: int) -> datetime:
    """The latest multiple of the interval at or before `now` (UTC)."""
    epoch = int(now.timestamp()) // interval_s * interval_s
    return datetime.fromtimestamp(epoch, tz=UTC)


def rows_for(
    session: Session, end: datetime, window: timedelta, *, signing_secret: str | None, limit: int = MAX_REVIEWS,
    computed_at: datetime | None = None,
) -> list[AgreementRow]:
    """The rows of the window ending at `end` (blocking)."""
    start = end - window
    pairs, found = fetch_pairs_by(session, since=start, until=end, signing_secret=signing_secret, limit=limit)
    UNVERIFIED.set(found.unverified)
    if found.truncated:
        log.warning("judge agreement: more than %d reviews in the window ending %s; the oldest were left out",
                    limit, end.isoformat())
    computed_at = computed_at or datetime.now(UTC)
    out = []
    for (app_id, rubric, version, evaluator), values in sorted(grouped(pairs).items()):
        s = agreement_of(values)
        out.append(AgreementRow(
            window_end=end, window_start=start, app_id=app_id, rubric=rubric, rubric_version=version,
            evaluator=evaluator, pairs=s.pairs, kappa=s.pass_kappa, observed_agreement=s.pass_agreement,
            judge_pass_rate=s.judge_pass_rate, reviewer_pass_rate=s.reviewer_pass_rate,
            kappa_quadratic=s.kappa_quadratic, spearman=s.spearman, spearman_p=s.spearman_p,
            computed_at=computed_at,
        ))
    return out


class AgreementWriter:
    """The loop: compute the window that just ended, store its rows, wait for the next."""

    def __init__(self, session: Callable[[], Awaitable[Session]], *, interval_s: int, window: timedelta,
                 signing_secret: str | None, clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.session, self.interval_s, self.window = session, interval_s, window
        self.signing_secret, self.clock = signing_secret, clock
        self.problem: str | None = None
        self.last_end: datetime | None = None

    async def write(self, end: datetime) -> list[AgreementRow]:
        session = await self.session()
        rows = await asyncio.to_thread(rows_for, session, end, self.window, signing_secret=self.signing_secret)
        await session.ainsert(TABLE, [r.values() for r in rows], COLUMNS)
        ROWS.inc(len(rows))
        self.last_end = end
        return rows

    async def run(self) -> None:
        while True:
            end = window_end(self.clock(), self.interval_s)
            try:
                rows = await self.write(end)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                RUNS.labels("failed").inc()
                self.problem = f"judge agreement not computed: {type(exc).__name__}: {exc}"
                log.exception("judge agreement for the window ending %s failed; next try at the next window",
                              end.isoformat())
            else:
                RUNS.labels("written").inc()
                self.problem = None
                log.debug("judge agreement: %d row(s) for the window ending %s", len(rows), end.isoformat())
            wait = (end + timedelta(seconds=self.interval_s) - self.clock()).total_seconds()
            await asyncio.sleep(max(wait, 0.05))
