"""How far to trust the judge: each rubric's judge scores against reviewer ratings (1..5)
of the same calls, from the scores and feedback tables.

Spearman's rho on the raw values (rank order), Cohen's kappa (plain and quadratic-
weighted, as ratings are ordinal) on the 1..5 categories, and the confusion table."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from clickhouse_connect.driver.client import Client
from pydantic import BaseModel

from .rubrics import Rubric

RATINGS = [1, 2, 3, 4, 5]  # Feedback.rating's scale

_PAIRS_SQL = """
SELECT s.judge_value, f.reviewer_rating
FROM (
    SELECT event_id, argMax(value, ts) AS judge_value
    FROM scores FINAL
    WHERE name = {name:String} AND source = 'llm_judge' AND evaluator_version = {version:String}
      AND ({evaluator:String} = '' OR evaluator = {evaluator:String})
      AND ts >= {since:DateTime64(3, 'UTC')}
    GROUP BY event_id
) AS s
INNER JOIN (
    SELECT event_id, argMax(rating, ts) AS reviewer_rating
    FROM feedback FINAL
    WHERE source = 'reviewer' AND rating IS NOT NULL
    GROUP BY event_id
) AS f ON s.event_id = f.event_id
"""


class AgreementReport(BaseModel):
    rubric: str
    rubric_version: str
    pairs: int
    spearman: float | None
    spearman_p: float | None
    kappa: float | None
    kappa_quadratic: float | None
    exact_agreement: float | None
    labels: list[int]
    # confusion[i][j]: calls the reviewer rated labels[i] and the judge labels[j].
    confusion: list[list[int]]


def to_rating(value: float) -> int:
    """A judge score (0..1 across the rubric's scale) as the nearest 1..5 rating."""
    return min(5, max(1, round(1 + value * 4)))


def _finite(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def compare(rubric: Rubric, pairs: list[tuple[float, int]]) -> AgreementReport:
    from scipy.stats import spearmanr
    from sklearn.metrics import cohen_kappa_score, confusion_matrix

    judge_values = [v for v, _ in pairs]
    ratings = [int(r) for _, r in pairs]
    judge_ratings = [to_rating(v) for v in judge_values]
    rho = p = kappa = kappa_q = exact = None
    if len(pairs) >= 3 and len(set(judge_values)) > 1 and len(set(ratings)) > 1:
        result = spearmanr(judge_values, ratings)
        rho, p = _finite(result.statistic), _finite(result.pvalue)
    if len(pairs) >= 2 and len(set(judge_ratings) | set(ratings)) > 1:
        kappa = _finite(cohen_kappa_score(ratings, judge_ratings, labels=RATINGS))
        kappa_q = _finite(cohen_kappa_score(ratings, judge_ratings, labels=RATINGS, weights="quadratic"))
    if pairs:
        exact = sum(a == b for a, b in zip(ratings, judge_ratings, strict=True)) / len(pairs)
        table = confusion_matrix(ratings, judge_ratings, labels=RATINGS).tolist()
    else:
        table = [[0] * len(RATINGS) for _ in RATINGS]
    return AgreementReport(
        rubric=rubric.name, rubric_version=rubric.version, pairs=len(pairs), spearman=rho, spearman_p=p,
        kappa=kappa, kappa_quadratic=kappa_q, exact_agreement=exact, labels=RATINGS, confusion=table,
    )


def fetch_pairs(
    client: Client, rubric: Rubric, *, since: datetime | None = None, evaluator: str = ""
) -> list[tuple[float, int]]:
    """(judge value, latest reviewer rating) for each call both rated; the judge's latest
    score from the rubric's current version, optionally one judge model only."""
    since = since or datetime.now(UTC) - timedelta(days=30)
    rows = client.query(
        _PAIRS_SQL,
        parameters={"name": rubric.score_name, "version": rubric.judged_version, "evaluator": evaluator,
                    "since": since},
    ).result_rows
    return [(float(v), int(r)) for v, r in rows]


def agreement(
    client: Client, rubric: Rubric, *, since: datetime | None = None, evaluator: str = ""
) -> AgreementReport:
    return compare(rubric, fetch_pairs(client, rubric, since=since, evaluator=evaluator))
