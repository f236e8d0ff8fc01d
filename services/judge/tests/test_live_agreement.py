"""Judge agreement, live: the judge stores, per app, rubric version and judge model, how far
its scores agree with reviewer ratings (judge_agreement), and the dashboards' alert fires
where they disagree.

The pipeline test runs the real path: calls in through the ingest API, the judge scoring
them against a local OpenAI-compatible server (its verdict chosen per call), the sink
storing calls, scores and reviews, reviews produced onto llm.feedback signed as the
feedback service signs them. The store tests put rows in the real schema (chdb) directly."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from ingest_io import post, shared

from lookout.core import kafka, migrations, review_signing, topics
from lookout.core.events import Feedback
from lookout.core.session import Session
from lookout.dashboards import alerts, macros
from lookout.dashboards.settings import DashboardSettings
from lookout.judge.agreement import agreement_of
from lookout.judge.live_agreement import COLUMNS, TABLE, AgreementWriter, rows_for, window_end
from lookout.judge.rubrics import RubricSet
from lookout.judge.scores import score_id
from lookout.judge.service import JudgeService
from lookout.judge.settings import JudgeSettings
from lookout.testing.stack import IngestStack

SECRET = "review-signing-secret-for-tests"
VERSION = RubricSet.load().by_name("relevance").judged_version
JUDGE_SAYS = [1, 2, 4, 5, 1, 2, 4, 5]  # the evaluator's verdict on each call (1..5)


def marker(score: int) -> str:
    return f"[judge:{score}]"


def review(app_id: str, event_id: uuid.UUID, rating: int, *, author: str = "ana", signed: bool = True,
           ts: datetime | None = None) -> Feedback:
    f = Feedback(feedback_id=uuid.uuid4(), event_id=event_id, ts=ts or datetime.now(UTC), app_id=app_id,
                 source="reviewer", author=author, rating=rating)
    return review_signing.signed(SECRET, f) if signed else f


async def produce(stack: IngestStack, records: list[Feedback]) -> None:
    producer = await kafka.start_producer(stack.settings)
    try:
        name = topics.resolve(stack.settings.topic_prefix, topics.FEEDBACK)
        await asyncio.gather(*[await producer.send(name, r.to_bytes(), key=str(r.event_id).encode())
                               for r in records])
    finally:
        await producer.stop()


async def until(stack: IngestStack, sql: str, done, within: float = 90, **params):
    deadline = time.monotonic() + within
    while True:
        rows = (await asyncio.to_thread(stack.client.query, sql, parameters=params)).result_rows
        if done(rows) or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.3)  # the judge runs in this loop


def firing(session, settings: DashboardSettings, at: datetime) -> set[tuple[str, ...]]:
    rule = next(r for r in alerts.RULES if r.uid == "lookout-judge-agreement")
    context = macros.QueryContext(at - timedelta(seconds=rule.window_s), at, interval_s=60)
    result = session.query(macros.expand(rule.render_sql(settings), context))
    if not result.result_rows:
        return set()  # (chdb names no columns for an empty result)
    found = alerts.evaluate(rule, settings, result.column_names, result.result_rows)
    return {tuple(f.labels[c] for c in rule.label_columns) for f in found}


async def test_reviews_of_judged_calls_become_agreement_rows_and_disagreement_fires_the_alert(stack, openai):
    """Two apps store the same event ids (the judge gives both the same verdicts); reviewers
    agree with the judge on `agree` and contradict it on `contra`. A forged review (not
    signed by the feedback service) that would spoil `agree` changes nothing."""
    openai.scores = {marker(n): n for n in set(JUDGE_SAYS)}
    ids = [str(uuid.uuid4()) for _ in JUDGE_SAYS]
    calls = [{"event_id": e, "ts": datetime.now(UTC).isoformat(), "app_id": app, "model": "m", "provider": "openai",
              "input": [{"role": "user", "content": "How do I reset my password?"}],
              "output": f"Open Settings, then Security. {marker(n)}"}
             for app in ("agree", "contra") for e, n in zip(ids, JUDGE_SAYS, strict=True)]
    await asyncio.to_thread(post, stack, calls)
    judge = JudgeService(JudgeSettings(
        **shared(stack), judge_base_url=openai.base_url, judge_model="judge-model", judge_rubrics="relevance",
        judge_input_per_mtok=1, judge_output_per_mtok=1, toxicity_backend="off", judge_batch_ms=20,
        judge_agreement_interval_s=1, review_signing_secret=SECRET))
    await judge.start()
    try:
        stored = "SELECT count() FROM scores FINAL WHERE source = 'llm_judge'"
        assert (await until(stack, stored, lambda r: r[0][0] == 2 * len(ids)))[0][0] == 2 * len(ids)
        reviews = [review("agree", uuid.UUID(e), n) for e, n in zip(ids, JUDGE_SAYS, strict=True)]
        reviews += [review("contra", uuid.UUID(e), 6 - n) for e, n in zip(ids, JUDGE_SAYS, strict=True)]
        # Anyone else writing llm.feedback: a later review of `agree` that flips a verdict.
        forged = review("agree", uuid.UUID(ids[0]), 5, author="mallory", signed=False,
                        ts=datetime.now(UTC) + timedelta(milliseconds=500))
        await produce(stack, [*reviews, forged])
        everything = "SELECT count() FROM feedback WHERE source = 'reviewer'"
        assert (await until(stack, everything, lambda r: r[0][0] == len(reviews) + 1))[0][0] == len(reviews) + 1
        stored_at = datetime.now(UTC)
        # The rows of a window that ended after every review was stored.
        latest = ("SELECT app_id, argMax((pairs, kappa, judge_pass_rate, reviewer_pass_rate, spearman, rubric, "
                  "rubric_version, evaluator), (window_end, computed_at)) FROM judge_agreement "
                  "WHERE window_end > {after:DateTime64(3, 'UTC')} GROUP BY app_id ORDER BY app_id")
        rows = await until(stack, latest, lambda r: len(r) == 2, after=stored_at)
        checks = dict(judge.checks())
    finally:
        await judge.stop()

    got = {app: dict(zip(("pairs", "kappa", "judge_pass", "reviewer_pass", "spearman", "rubric", "version",
                          "evaluator"), values, strict=True)) for app, values in rows}
    assert set(got) == {"agree", "contra"}
    for app in got:
        assert (got[app]["rubric"], got[app]["version"], got[app]["evaluator"]) == ("relevance", VERSION,
                                                                                      "judge-model")
        assert got[app]["pairs"] == len(ids)
        assert got[app]["judge_pass"] == pytest.approx(0.5)  # 4s and 5s pass
    assert got["agree"]["kappa"] == pytest.approx(1.0) and got["agree"]["spearman"] == pytest.approx(1.0)
    assert got["contra"]["kappa"] == pytest.approx(-1.0) and got["contra"]["spearman"] == pytest.approx(-1.0)
    assert got["contra"]["reviewer_pass"] == pytest.approx(0.5)
    assert checks["agreement"]() is None and checks["clickhouse"]() is None

    # The alert, on these rows: `contra` fires; `agree` does not.
    session = Session.of(stack.client)
    settings = DashboardSettings(alert_judge_min_pairs=len(ids))
    assert firing(session, settings, datetime.now(UTC)) == {("contra", "relevance", VERSION, "judge-model")}
    assert firing(session, DashboardSettings(alert_judge_min_pairs=len(ids) + 1), datetime.now(UTC)) == set()


# ---- the rows, from the store -----------------------------------------------------------------

NOW = window_end(datetime.now(UTC), 60)  # recent: stored rows older than the retention are dropped
WEEK = timedelta(days=7)


def seed(session: Session, app_id: str, judged: list[tuple[int, int | None]], *, version: str = VERSION,
         reviewed_at: datetime = NOW - timedelta(hours=1), event_ids: list[uuid.UUID] | None = None,
         evaluator: str = "judge-model", signed: bool = True) -> list[uuid.UUID]:
    """One call per (judge verdict 1..5, reviewer rating or None): its judge score and its review."""
    event_ids = event_ids or [uuid.uuid4() for _ in judged]
    scores, feedback = [], []
    for event, (verdict, rating) in zip(event_ids, judged, strict=True):
        scores.append([score_id(event, "judge.relevance", evaluator, version), event, reviewed_at - timedelta(hours=1),
                       app_id, "m", "judge.relevance", (verdict - 1) / 4, f"{verdict}/5", "llm_judge", evaluator,
                       version, "why", 0.0])
        if rating is not None:
            f = review(app_id, event, rating, ts=reviewed_at, signed=signed)
            feedback.append([f.feedback_id, f.event_id, f.ts, f.app_id, f.source, f.author, None, f.rating, [], "",
                             "", f.signature or ""])
    session.insert("scores", scores, ["score_id", "event_id", "ts", "app_id", "model", "name", "value", "label",
                                      "source", "evaluator", "evaluator_version", "explanation", "cost_usd"])
    session.insert("feedback", feedback, ["feedback_id", "event_id", "ts", "app_id", "source", "author", "thumbs",
                                          "rating", "labels", "corrected_output", "comment", "signature"])
    return event_ids


def by_series(rows) -> dict[tuple[str, str, str, str], object]:
    return {(r.app_id, r.rubric, r.rubric_version, r.evaluator): r for r in rows}


def test_a_row_per_app_rubric_version_and_judge_model_over_the_window(ch):
    session = Session.of(ch)
    ids = seed(session, "shop", [(1, 1), (2, 2), (4, 4), (5, 5), (4, 2), (2, 4)])
    seed(session, "twin", [(1, 5), (2, 5), (4, 1), (5, 1), (4, 1), (2, 5)], event_ids=ids)  # same event ids
    seed(session, "shop", [(5, 5), (5, 4), (1, 1)], version="2+p2")
    seed(session, "shop", [(5, 1), (5, 1)], evaluator="other-model")
    seed(session, "shop", [(5, 1)] * 3, reviewed_at=NOW - WEEK - timedelta(minutes=1))  # reviewed before the window
    seed(session, "shop", [(3, None), (4, None)])  # judged, never reviewed
    rows = by_series(rows_for(session, NOW, WEEK, signing_secret=SECRET, computed_at=NOW))

    assert set(rows) == {("shop", "relevance", VERSION, "judge-model"), ("twin", "relevance", VERSION, "judge-model"),
                         ("shop", "relevance", "2+p2", "judge-model"), ("shop", "relevance", VERSION, "other-model")}
    shop = rows[("shop", "relevance", VERSION, "judge-model")]
    # Pass/fail: judge passes 4, 5, 4 of 6; reviewers 4, 5, 4 of 6; they differ on two calls.
    # p_o = 4/6, p_e = 0.5*0.5 + 0.5*0.5 = 0.5, kappa = (4/6 - 0.5) / 0.5 = 1/3.
    assert (shop.pairs, shop.judge_pass_rate, shop.reviewer_pass_rate) == (6, 0.5, 0.5)
    assert shop.observed_agreement == pytest.approx(4 / 6) and shop.kappa == pytest.approx(1 / 3)
    assert shop.window_start == NOW - WEEK and shop.window_end == NOW
    twin = rows[("twin", "relevance", VERSION, "judge-model")]
    assert twin.pairs == 6 and twin.kappa == pytest.approx(-1.0)  # its reviews never rate shop's calls
    # All three of version 2 pass by the judge, two by reviewers: chance agreement 2/3.
    v2 = rows[("shop", "relevance", "2+p2", "judge-model")]
    assert (v2.pairs, v2.judge_pass_rate, v2.reviewer_pass_rate) == (3, pytest.approx(2 / 3), pytest.approx(2 / 3))
    other = rows[("shop", "relevance", VERSION, "other-model")]
    # The judge passes both, reviewers neither: every pair differs, but one rater never
    # varies, so chance agreement is 0 and kappa 0; Spearman is undefined.
    assert (other.pairs, other.kappa, other.spearman) == (2, 0.0, None)


def test_only_the_latest_signed_review_of_a_call_counts(ch):
    session = Session.of(ch)
    (event,) = seed(session, "shop", [(5, 5)])
    seed(session, "shop", [(1, 1), (5, 5)])
    # A later review by another reviewer changes the rating; a forged one later still does not.
    session.insert("feedback", [[f.feedback_id, f.event_id, f.ts, f.app_id, "reviewer", f.author, None, f.rating, [],
                                 "", "", f.signature or ""] for f in (
        review("shop", event, 1, author="bo", ts=NOW - timedelta(minutes=30)),
        review("shop", event, 5, author="mallory", ts=NOW - timedelta(minutes=10), signed=False))],
        ["feedback_id", "event_id", "ts", "app_id", "source", "author", "thumbs", "rating", "labels",
         "corrected_output", "comment", "signature"])
    (row,) = rows_for(session, NOW, WEEK, signing_secret=SECRET)
    assert (row.pairs, row.reviewer_pass_rate) == (3, pytest.approx(1 / 3))  # bo's 1, not ana's 5 or mallory's
    (unverified,) = rows_for(session, NOW, WEEK, signing_secret=None)  # no secret: every review counts
    assert unverified.reviewer_pass_rate == pytest.approx(2 / 3)


def test_a_window_computed_again_is_the_same_row_and_the_later_computation_wins(ch):
    session = Session.of(ch)
    seed(session, "shop", [(1, 1), (5, 5), (4, 4)])
    first = rows_for(session, NOW, WEEK, signing_secret=SECRET, computed_at=NOW)
    seed(session, "shop", [(5, 1)], reviewed_at=NOW - timedelta(minutes=5))  # arrived (stored) later
    again = rows_for(session, NOW, WEEK, signing_secret=SECRET, computed_at=NOW + timedelta(minutes=1))
    session.insert(TABLE, [r.values() for r in first + again], COLUMNS)
    stored = session.rows(f"SELECT pairs FROM {TABLE} FINAL")
    assert stored == [(4,)]


def test_windows_end_on_multiples_of_the_interval():
    assert window_end(datetime(2026, 3, 2, 12, 7, 31, tzinfo=UTC), 300) == datetime(2026, 3, 2, 12, 5, tzinfo=UTC)
    assert window_end(datetime(2026, 3, 2, 12, 5, tzinfo=UTC), 300) == datetime(2026, 3, 2, 12, 5, tzinfo=UTC)


def test_pass_kappa_is_cohens_with_its_base_rates():
    # judge passes 3 of 4 (0.75), reviewer 2 of 4; p_o = 3/4; p_e = .75*.5 + .25*.5 = .5.
    s = agreement_of([(0.75, 5), (1.0, 4), (0.75, 2), (0.0, 1)])
    assert (s.judge_pass_rate, s.reviewer_pass_rate, s.pass_agreement) == (0.75, 0.5, 0.75)
    assert s.pass_kappa == pytest.approx(0.5)
    # A middle verdict (3 of 1..5, normalised 0.5) does not pass, for the judge or a reviewer.
    assert agreement_of([(0.5, 3), (1.0, 5)]).pass_kappa == pytest.approx(1.0)
    assert agreement_of([(1.0, 5)]).pass_kappa is None  # one pair
    assert agreement_of([(1.0, 5), (0.75, 4)]).pass_kappa is None  # both always pass: chance agreement 1


async def test_a_failed_computation_is_reported_and_the_next_window_tries_again(ch_settings):
    """The writer on a database without the table: readiness names the failure; once the
    migrations are there the next window is written and the problem clears."""
    session = Session.connect(ch_settings)
    clock = [NOW]
    writer = AgreementWriter(lambda: _ready(session), interval_s=1, window=WEEK, signing_secret=SECRET,
                             clock=lambda: clock[0])
    task = asyncio.create_task(writer.run())
    try:
        await _eventually(lambda: writer.problem is not None)
        assert "judge agreement not computed" in writer.problem
        await asyncio.to_thread(session.run, migrations.apply)
        clock[0] = NOW + timedelta(seconds=5)
        await _eventually(lambda: writer.problem is None and writer.last_end == window_end(clock[0], 1))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        session.command(f"DROP DATABASE IF EXISTS {ch_settings.clickhouse_database}")
        session.close()


async def _ready(session: Session) -> Session:
    return session


async def _eventually(condition, within: float = 20) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met"
        await asyncio.sleep(0.05)


async def test_readiness_names_clickhouse_while_it_cannot_be_reached():
    service = JudgeService(JudgeSettings(clickhouse_dsn="http://127.0.0.1:9"))
    opening = asyncio.create_task(service._open_store())
    try:
        assert service.checks()["clickhouse"]() == "not connected to ClickHouse yet"
        await _eventually(lambda: (service.checks()["clickhouse"]() or "").startswith("ClickHouse: "))
        assert service.session is None and service.keys is None
    finally:
        opening.cancel()
        await asyncio.gather(opening, return_exceptions=True)
