"""Model versions: the candidates succeeded runs register, and the comparison of a
candidate with the previous version over live traffic (thumbs-down rate, judge scores,
toxicity), each with a significance test.

Tests are written out (normal approximations) rather than taken from scipy: the service
stays light, and at the sample sizes where a decision matters the approximations hold.

The model_versions table is migration 0015's. Each function takes the service's Session
(or a client, whose Session it uses), so its queries take turns with the rest of the
service's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from lookout.core.session import ClientLike, Session

Db = Session | ClientLike

def _norm_sf(z: float) -> float:
    """P(Z > z) for a standard normal."""
    return 0.5 * math.erfc(z / math.sqrt(2))


@dataclass(frozen=True)
class TestResult:
    test: str
    statistic: float
    p_value: float

    def significant(self, alpha: float = 0.05) -> bool:
        return self.p_value < alpha


def two_proportion_z(x1: int, n1: int, x2: int, n2: int) -> TestResult:
    """Two-sided z-test of p1 == p2 with the pooled proportion."""
    if not n1 or not n2:
        return TestResult("two_proportion_z", math.nan, math.nan)
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return TestResult("two_proportion_z", 0.0, 1.0)
    z = (x1 / n1 - x2 / n2) / se
    return TestResult("two_proportion_z", z, 2 * _norm_sf(abs(z)))


def mann_whitney(a: Sequence[float], b: Sequence[float]) -> TestResult:
    """Two-sided Mann-Whitney U (normal approximation with tie correction); the statistic is
    U of `a`, so U > n1*n2/2 means `a` tends to be larger."""
    n1, n2 = len(a), len(b)
    if not n1 or not n2:
        return TestResult("mann_whitney_u", math.nan, math.nan)
    values = sorted([(v, 0) for v in a] + [(v, 1) for v in b])
    ranks = [0.0] * len(values)
    ties = 0.0
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1][0] == values[i][0]:
            j += 1
        rank = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[k] = rank
        t = j - i + 1
        ties += t**3 - t
        i = j + 1
    r1 = sum(r for r, (_, g) in zip(ranks, values, strict=True) if g == 0)
    u1 = r1 - n1 * (n1 + 1) / 2
    n = n1 + n2
    var = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1))) if n > 1 else 0.0
    if var <= 0:
        return TestResult("mann_whitney_u", u1, 1.0)
    z = (u1 - n1 * n2 / 2) / math.sqrt(var)
    return TestResult("mann_whitney_u", u1, min(1.0, 2 * _norm_sf(abs(z))))


def register_candidate(db: Db, *, app_id: str, model: str, model_version: str, run_id: Any,
                       dataset_hash: str = "", rule: str = "", artifact: str = "") -> None:
    Session.of(db).insert("model_versions", [[app_id, model, model_version, run_id, datetime.now(UTC), "candidate",
                                              dataset_hash, rule, artifact]],
                          ["app_id", "model", "model_version", "run_id", "registered_at", "status", "dataset_hash",
                           "rule", "artifact"])


def list_versions(db: Db, app_id: str, model: str) -> list[dict]:
    rows = Session.of(db).rows(
        "SELECT model_version, toString(run_id), registered_at, status, dataset_hash, rule, artifact "
        "FROM model_versions FINAL WHERE app_id = {app:String} AND model = {model:String} ORDER BY registered_at",
        app=app_id, model=model)
    keys = ("model_version", "run_id", "registered_at", "status", "dataset_hash", "rule", "artifact")
    return [dict(zip(keys, r, strict=True)) for r in rows]


def previous_version(db: Db, app_id: str, model: str, candidate: str) -> str | None:
    """The version that served most recently before the candidate's first call."""
    rows = Session.of(db).query(
        "SELECT model_version FROM llm_calls WHERE app_id = {app:String} AND model = {model:String} "
        "AND model_version != {cand:String} AND ts < (SELECT if(count() = 0, now64(3), min(ts)) FROM llm_calls "
        "WHERE app_id = {app:String} AND model = {model:String} AND model_version = {cand:String}) "
        "GROUP BY model_version ORDER BY max(ts) DESC LIMIT 1",
        parameters={"app": app_id, "model": model, "cand": candidate}).result_rows
    return rows[0][0] if rows else None


@dataclass(frozen=True)
class Side:
    n: int
    value: float  # rate, share or mean


def _side(n: int, value: float) -> dict:
    return asdict(Side(int(n), float(value) if n else math.nan))


def _rate(k: int, n: int) -> dict:
    return _side(n, k / n if n else 0.0)


_CALLS = ("SELECT event_id, any(model_version) AS v FROM llm_calls WHERE app_id = {app:String} "
          "AND model = {model:String} AND model_version IN ({cand:String}, {base:String}) GROUP BY event_id")


def compare(store: Db, app_id: str, model: str, candidate: str, baseline: str | None = None,
            toxic_above: float = 0.5, max_values: int = 100_000) -> dict[str, Any]:
    """Candidate vs baseline (default: the previous version) on live traffic."""
    session = Session.of(store)
    baseline = baseline or previous_version(session, app_id, model, candidate)
    if baseline is None:
        raise LookupError(f"no earlier model_version of {app_id}/{model} to compare {candidate!r} with")
    p = {"app": app_id, "model": model, "cand": candidate, "base": baseline}
    out: dict[str, Any] = {"app_id": app_id, "model": model, "candidate": candidate, "baseline": baseline}

    thumbs = {v: (n, down) for v, n, down in session.query(
        f"SELECT c.v, count(), countIf(f.vote = -1) FROM (SELECT event_id, argMax(thumbs, ts) AS vote "
        f"FROM feedback FINAL WHERE app_id = {{app:String}} AND thumbs IS NOT NULL GROUP BY event_id) AS f "
        f"INNER JOIN ({_CALLS}) AS c ON c.event_id = f.event_id GROUP BY c.v", parameters=p).result_rows}
    (nc, dc), (nb, db) = thumbs.get(candidate, (0, 0)), thumbs.get(baseline, (0, 0))
    out["thumbs_down_rate"] = {"candidate": _rate(dc, nc), "baseline": _rate(db, nb),
                               **asdict(two_proportion_z(dc, nc, db, nb))}

    tox = {v: (n, k) for v, n, k in session.query(
        f"SELECT c.v, count(), countIf(s.worst > {{tox:Float64}}) FROM (SELECT event_id, max(value) AS worst "
        f"FROM scores FINAL WHERE app_id = {{app:String}} AND name LIKE 'toxicity%' GROUP BY event_id) AS s "
        f"INNER JOIN ({_CALLS}) AS c ON c.event_id = s.event_id GROUP BY c.v",
        parameters={**p, "tox": toxic_above}).result_rows}
    (nc, kc), (nb, kb) = tox.get(candidate, (0, 0)), tox.get(baseline, (0, 0))
    out["toxicity_share"] = {"candidate": _rate(kc, nc), "baseline": _rate(kb, nb),
                             "above": toxic_above, **asdict(two_proportion_z(kc, nc, kb, nb))}

    judge: dict[str, dict[str, list[float]]] = {}
    for name, v, values in session.query(
        f"SELECT s.name, c.v, groupArray({max_values})(s.value) FROM (SELECT event_id, name, value FROM scores FINAL "
        f"WHERE app_id = {{app:String}} AND name LIKE 'judge.%') AS s "
        f"INNER JOIN ({_CALLS}) AS c ON c.event_id = s.event_id GROUP BY s.name, c.v", parameters=p).result_rows:
        judge.setdefault(name, {})[v] = list(values)
    out["judge"] = {}
    for name, by_v in sorted(judge.items()):
        a, b = by_v.get(candidate, []), by_v.get(baseline, [])
        out["judge"][name] = {"candidate": _side(len(a), sum(a) / len(a) if a else 0),
                              "baseline": _side(len(b), sum(b) / len(b) if b else 0), **asdict(mann_whitney(a, b))}
    return out
