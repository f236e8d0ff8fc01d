"""Judge-vs-reviewer agreement over the scores and feedback tables (chdb, real schema)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from served import app_of

from lookout.core.auth import ApiKeyStore
from lookout.core.session import Session
from lookout.judge.agreement import agreement, compare
from lookout.judge.rubrics import RubricSet
from lookout.judge.scores import score_id
from lookout.judge.service import JudgeService
from lookout.judge.settings import JudgeSettings

RELEVANCE = RubricSet.load().by_name("relevance")


def store(ch, pairs: list[tuple[int | None, int | None]], *, version: str = RELEVANCE.judged_version) -> None:
    """One call per pair: the judge's 1..5 verdict (None: not judged) and the reviewer's rating."""
    now = datetime.now(UTC) - timedelta(hours=1)
    scores, feedback = [], []
    for judge, rating in pairs:
        event = uuid.uuid4()
        if judge is not None:
            scores.append([score_id(event, "judge.relevance", "judge-model", version), event, now, "shop", "m",
                           "judge.relevance", RELEVANCE.normalise(judge), f"{judge}/5", "llm_judge", "judge-model",
                           version, "why", 0.0])
        if rating is not None:
            feedback.append([uuid.uuid4(), event, now, "shop", "reviewer", "ana", None, rating, [], "", ""])
    if scores:
        ch.insert("scores", scores, column_names=[
            "score_id", "event_id", "ts", "app_id", "model", "name", "value", "label", "source", "evaluator",
            "evaluator_version", "explanation", "cost_usd"])
    if feedback:
        ch.insert("feedback", feedback, column_names=[
            "feedback_id", "event_id", "ts", "app_id", "source", "author", "thumbs", "rating", "labels",
            "corrected_output", "comment"])


def test_perfect_agreement(ch):
    store(ch, [(r, r) for r in (1, 2, 3, 4, 5, 5)])
    report = agreement(ch, RELEVANCE)
    assert report.pairs == 6
    assert report.spearman == pytest.approx(1.0)
    assert report.kappa == pytest.approx(1.0) and report.kappa_quadratic == pytest.approx(1.0)
    assert report.exact_agreement == 1.0
    assert [report.confusion[i][i] for i in range(5)] == [1, 1, 1, 1, 2]


def test_known_disagreement_matches_hand_computed_kappa_and_table(ch):
    # reviewer 1,2,3,4,5,5 vs judge 1,2,3,4,5,4: p_o = 5/6; p_e = (1+1+1+2+2)/36 = 7/36.
    store(ch, [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (4, 5)])
    store(ch, [(3, None), (None, 2)])  # judged only or rated only: not a pair
    store(ch, [(1, 5)], version=RELEVANCE.version)  # asked in the older prompt framing: not compared
    report = agreement(ch, RELEVANCE)

    assert report.pairs == 6
    assert report.kappa == pytest.approx((5 / 6 - 7 / 36) / (1 - 7 / 36))
    assert report.exact_agreement == pytest.approx(5 / 6)
    assert report.confusion[4] == [0, 0, 0, 1, 1]  # reviewer said 5: judge said 4 once, 5 once
    assert report.spearman > 0.9


def test_too_few_pairs_give_no_statistics():
    report = compare(RELEVANCE, [(0.75, 4)])
    assert (report.pairs, report.spearman, report.kappa) == (1, None, None)
    assert compare(RELEVANCE, []).confusion == [[0] * 5 for _ in range(5)]


async def test_agreement_endpoint(ch):
    store(ch, [(r, r) for r in (1, 3, 5)])
    service = JudgeService(JudgeSettings(), session=Session.of(ch))
    keys = ApiKeyStore(ch)
    _, reader = keys.create("*", ["read"])
    _, one_app = keys.create("shop", ["read"])
    _, writer = keys.create("*", ["ingest"])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app_of(service)), base_url="http://j",
                                 headers={"Authorization": f"Bearer {reader}"}) as http:
        ok = await http.get("/v1/judge/agreement/relevance", params={"days": 7})
        missing = await http.get("/v1/judge/agreement/nonsense")
        anonymous = await http.get("/v1/judge/agreement/relevance", headers={"Authorization": ""})
        narrow = await http.get("/v1/judge/agreement/relevance", headers={"Authorization": f"Bearer {one_app}"})
        wrong_scope = await http.get("/v1/judge/agreement/relevance", headers={"Authorization": f"Bearer {writer}"})
    assert ok.status_code == 200 and ok.json()["pairs"] == 3 and ok.json()["kappa"] == pytest.approx(1.0)
    assert missing.status_code == 404
    # The report mixes every app, so only an all-apps reader may see it.
    assert (anonymous.status_code, narrow.status_code, wrong_scope.status_code) == (401, 403, 403)
