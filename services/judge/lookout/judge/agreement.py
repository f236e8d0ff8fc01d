"""How far to trust the judge: judge scores against reviewer ratings (1..5) of the same
calls, from the scores and feedback tables. A call is its (app_id, event_id): two apps may
store the same event id, and one app's review never rates another app's judgment.

Which review counts: per call, the latest reviewer rating. When the review signing secret
is set (LOOKOUT_REVIEW_SIGNING_SECRET, the feedback service's), only reviews whose
signature verifies count, chosen as the datasets choose them (`core.datasets.latest_verified`):
a row written onto llm.feedback by anyone but the feedback service cannot move the figures.
A call counts in a window [since, until) when the review that counts was made in it.

The statistics (`agreement_of`):
- Spearman's rho of the judge's raw values and the ratings (rank order);
- Cohen's kappa, plain and quadratic-weighted (ratings are ordinal), on the 1..5
  categories, the judge's value mapped to the nearest rating (`to_rating`), with the
  confusion table;
- Cohen's kappa of the pass/fail call, with its base rates: a judgment passes when it is
  above the middle of its scale (a normalised value over 0.5: 4 or 5 of 1..5), a review
  when its rating is (4 or 5, the ratings the datasets take as approval). Kappa corrects
  the share of calls both decide alike for the share they would by chance, and that
  chance term depends on how often each passes (pj·pr + (1-pj)(1-pr)): with base rates
  near 0 or 1 a kappa is low even when they mostly agree, so the rates travel with it.
"""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from lookout.core import datasets
from lookout.core.session import Session

from .rubrics import Rubric

RATINGS = [1, 2, 3, 4, 5]  # Feedback.rating's scale
MIDDLE = 0.5  # the middle of every rubric's scale, as scores are normalised to 0..1

Key = tuple[str, uuid.UUID]  # (app_id, event_id)


def to_rating(value: float) -> int:
    """A judge score (0..1 across the rubric's scale) as the nearest 1..5 rating."""
    return min(5, max(1, round(1 + value * 4)))


def judge_passes(value: float) -> bool:
    return value > MIDDLE


def reviewer_passes(rating: int) -> bool:
    return (rating - 1) / 4 > MIDDLE


def _finite(x: float | None) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


@dataclass(frozen=True)
class Statistics:
    pairs: int
    spearman: float | None = None
    spearman_p: float | None = None
    kappa: float | None = None  # 1..5, unweighted
    kappa_quadratic: float | None = None
    exact_agreement: float | None = None
    pass_kappa: float | None = None
    pass_agreement: float | None = None  # share of calls both pass or both fail
    judge_pass_rate: float | None = None
    reviewer_pass_rate: float | None = None
    confusion: tuple[tuple[int, ...], ...] = ()


def agreement_of(pairs: list[tuple[float, int]]) -> Statistics:
    """The agreement of (judge value, reviewer rating) pairs; None where undefined (too few
    pairs, or a rater that never varies)."""
    from scipy.stats import spearmanr
    from sklearn.metrics import cohen_kappa_score, confusion_matrix

    judge_values = [v for v, _ in pairs]
    ratings = [int(r) for _, r in pairs]
    judge_ratings = [to_rating(v) for v in judge_values]
    rho = p = kappa = kappa_q = exact = None
    if len(pairs) >= 3 and len(set(judge_values)) > 1 and len(set(ratings)) > 1:
        result: Any = spearmanr(judge_values, ratings)
        rho, p = _finite(result.statistic), _finite(result.pvalue)
    if len(pairs) >= 2 and len(set(judge_ratings) | set(ratings)) > 1:
        kappa = _finite(cohen_kappa_score(ratings, judge_ratings, labels=RATINGS))
        kappa_q = _finite(cohen_kappa_score(ratings, judge_ratings, labels=RATINGS, weights="quadratic"))
    if not pairs:
        return Statistics(0, confusion=tuple(tuple(0 for _ in RATINGS) for _ in RATINGS))
    exact = sum(a == b for a, b in zip(ratings, judge_ratings, strict=True)) / len(pairs)
    table = confusion_matrix(ratings, judge_ratings, labels=RATINGS).tolist()
    judge_pass = [judge_passes(v) for v in judge_values]
    reviewer_pass = [reviewer_passes(r) for r in ratings]
    n = len(pairs)
    pj, pr = sum(judge_pass) / n, sum(reviewer_pass) / n
    observed = sum(a == b for a, b in zip(judge_pass, reviewer_pass, strict=True)) / n
    chance = pj * pr + (1 - pj) * (1 - pr)
    # One pair, or both raters deciding every call alike (chance agreement 1): no kappa.
    pass_kappa = (observed - chance) / (1 - chance) if n >= 2 and chance < 1 else None
    return Statistics(
        pairs=n, spearman=rho, spearman_p=p, kappa=kappa, kappa_quadratic=kappa_q, exact_agreement=exact,
        pass_kappa=_finite(pass_kappa), pass_agreement=observed, judge_pass_rate=pj, reviewer_pass_rate=pr,
        confusion=tuple(tuple(int(c) for c in row) for row in table),
    )


class AgreementReport(BaseModel):
    rubric: str
    rubric_version: str
    app_id: str | None = None  # None: every app's calls pooled
    pairs: int
    spearman: float | None
    spearman_p: float | None
    kappa: float | None
    kappa_quadratic: float | None
    exact_agreement: float | None
    # Pass/fail (above the middle of the scale) and the base rates its kappa depends on.
    pass_kappa: float | None = None
    pass_agreement: float | None = None
    judge_pass_rate: float | None = None
    reviewer_pass_rate: float | None = None
    labels: list[int]
    # confusion[i][j]: calls the reviewer rated labels[i] and the judge labels[j].
    confusion: list[list[int]]


def compare(rubric: Rubric, pairs: list[tuple[float, int]], app_id: str | None = None) -> AgreementReport:
    s = agreement_of(pairs)
    return AgreementReport(
        rubric=rubric.name, rubric_version=rubric.version, app_id=app_id, pairs=s.pairs, spearman=s.spearman,
        spearman_p=s.spearman_p, kappa=s.kappa, kappa_quadratic=s.kappa_quadratic, exact_agreement=s.exact_agreement,
        pass_kappa=s.pass_kappa, pass_agreement=s.pass_agreement, judge_pass_rate=s.judge_pass_rate,
        reviewer_pass_rate=s.reviewer_pass_rate, labels=RATINGS, confusion=[list(row) for row in s.confusion],
    )


# -- pairs from the store ------------------------------------------------------------------

# Most reviews one computation reads (the latest first): a bound on the rows (corrected
# answers included, for the signatures) held in memory at once.
MAX_REVIEWS = 20_000

# Templates: `{app}`, `{filters}` and `{reviewed}` are filled with fixed text (sql());
# values only ever travel as query parameters ({name:Type}).
_APP = " AND app_id = {app_id:String}"
_REVIEWED = ("SELECT app_id, event_id FROM feedback WHERE source = 'reviewer' AND rating IS NOT NULL "
             "AND ts >= {since:DateTime64(3, 'UTC')} AND ts < {until:DateTime64(3, 'UTC')}{app}")

# Every rated review of the calls reviewed in the window, up to its end: which one counts
# is decided after the signatures are checked. The call columns latest_verified expects
# are left empty (the judge needs no text).
_REVIEWS_SQL = """
SELECT feedback_id, event_id, app_id, source, author, ts, thumbs, rating, labels, corrected_output, comment,
       signature, '' AS input, '' AS prompt, '' AS output
FROM feedback
WHERE source = 'reviewer' AND rating IS NOT NULL AND ts < {until:DateTime64(3, 'UTC')}{app}
  AND (app_id, event_id) IN ({reviewed})
ORDER BY ts DESC
LIMIT {limit:UInt32}
"""

# Without the secret: the latest rated review of each call, unverified.
_LATEST_RATINGS_SQL = """
SELECT app_id, event_id, argMax(rating, (ts, feedback_id)) AS latest_rating, max(ts) AS reviewed
FROM feedback
WHERE source = 'reviewer' AND rating IS NOT NULL AND ts < {until:DateTime64(3, 'UTC')}{app}
  AND (app_id, event_id) IN ({reviewed})
GROUP BY app_id, event_id
ORDER BY reviewed DESC
LIMIT {limit:UInt32}
"""

# Each judgment of those calls once (a replayed score row has the same id and value).
_SCORES_SQL = """
SELECT app_id, event_id, name, evaluator, evaluator_version, any(value) AS judge_value
FROM scores
WHERE source = 'llm_judge' AND startsWith(name, 'judge.'){app}{filters}
  AND (app_id, event_id) IN ({reviewed})
GROUP BY app_id, event_id, name, evaluator, evaluator_version
LIMIT {limit:UInt32}
"""


def sql(template: str, **parts: str) -> str:
    for name, text in parts.items():
        template = template.replace("{" + name + "}", text)
    return template


@dataclass(frozen=True)
class Pair:
    app_id: str
    rubric: str  # the rubric's name (the score's name without `judge.`)
    version: str  # the score's evaluator_version: rubric version + prompt framing
    evaluator: str  # the judge model
    value: float
    rating: int


@dataclass(frozen=True)
class Ratings:
    by_call: dict[Key, int]
    unverified: int = 0  # reviewer rows left out: their signature did not verify
    truncated: bool = False  # MAX_REVIEWS was reached: the oldest reviews were left out


def _utc(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def ratings(
    session: Session, *, since: datetime, until: datetime, signing_secret: str | None, app_id: str | None = None,
    limit: int = MAX_REVIEWS,
) -> Ratings:
    """The rating that counts of each call reviewed in [since, until) (blocking)."""
    app = _APP if app_id else ""
    params: dict[str, Any] = {"since": since, "until": until, "limit": limit, **({"app_id": app_id} if app_id else {})}
    reviewed = sql(_REVIEWED, app=app)
    if signing_secret is None:
        rows = session.rows(sql(_LATEST_RATINGS_SQL, app=app, reviewed=reviewed), **params)
        return Ratings({(a, e): int(r) for a, e, r, _ in rows}, truncated=len(rows) >= limit)
    rows = session.rows(sql(_REVIEWS_SQL, app=app, reviewed=reviewed), **params)
    reviews, unverified = datasets.latest_verified(rows, signing_secret)
    found = {(r.content.app_id, r.content.event_id): int(r.content.rating) for r in reviews
             if r.content.rating is not None and _utc(r.content.ts) >= since}
    return Ratings(found, unverified=unverified, truncated=len(rows) >= limit)


def fetch_pairs_by(
    session: Session, *, since: datetime, until: datetime, signing_secret: str | None, app_id: str | None = None,
    names: Iterable[str] = (), version: str | None = None, evaluator: str = "", limit: int = MAX_REVIEWS,
) -> tuple[list[Pair], Ratings]:
    """(judge score, counting review) pairs of the calls reviewed in [since, until): every
    judgment of each call, optionally of some score names, one evaluator_version and one
    judge model only (blocking)."""
    found = ratings(session, since=since, until=until, signing_secret=signing_secret, app_id=app_id, limit=limit)
    if not found.by_call:
        return [], found
    app = _APP if app_id else ""
    filters, params = "", {"since": since, "until": until, "limit": limit * 32,
                           **({"app_id": app_id} if app_id else {})}
    names = list(names)
    if names:
        filters += " AND name IN {names:Array(String)}"
        params["names"] = names
    if version is not None:
        filters += " AND evaluator_version = {version:String}"
        params["version"] = version
    if evaluator:
        filters += " AND evaluator = {evaluator:String}"
        params["evaluator"] = evaluator
    rows = session.rows(sql(_SCORES_SQL, app=app, filters=filters, reviewed=sql(_REVIEWED, app=app)), **params)
    pairs = []
    for a, e, name, judge_model, judged_version, value in rows:
        rating = found.by_call.get((a, e))
        if rating is not None:
            pairs.append(Pair(a, name.removeprefix("judge."), judged_version, judge_model, float(value), rating))
    return pairs, found


def agreement(
    session: Session, rubric: Rubric, *, since: datetime | None = None, until: datetime | None = None,
    evaluator: str = "", app_id: str | None = None, signing_secret: str | None = None,
) -> AgreementReport:
    """One rubric's agreement on the reviews of [since, until) (default: the last 30 days),
    the judgments from its current version (and prompt framing) only (blocking)."""
    until = until or datetime.now(UTC)
    since = since or until - timedelta(days=30)
    pairs, _ = fetch_pairs_by(Session.of(session), since=since, until=until, signing_secret=signing_secret,
                              app_id=app_id, names=[rubric.score_name], version=rubric.judged_version,
                              evaluator=evaluator)
    return compare(rubric, [(p.value, p.rating) for p in pairs], app_id)


def grouped(pairs: Iterable[Pair]) -> dict[tuple[str, str, str, str], list[tuple[float, int]]]:
    """Pairs by (app_id, rubric, rubric version, evaluator): the series a stored row is of."""
    out: dict[tuple[str, str, str, str], list[tuple[float, int]]] = defaultdict(list)
    for p in pairs:
        out[(p.app_id, p.rubric, p.version, p.evaluator)].append((p.value, p.rating))
    return out
