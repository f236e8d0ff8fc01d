"""Dataset snapshots from stored reviews, and the candidate-vs-previous comparison with its
significance tests, on the real schema in chdb."""

from __future__ import annotations

import json
import math
import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from lookout.core import review_signing, topics
from lookout.core.events import Feedback, LlmCall, Message, Score
from lookout.feedback.datasets import export_dataset
from lookout.ingest.rows import TABLES
from lookout.retrain_trigger import versions
from lookout.retrain_trigger.dataset import ClickHouseSnapshot, DatasetFilters, content_hash

# Recent: rows older than the retention TTL would be dropped on insert.
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
SECRET = "review-signing-secret-0123"


def store(ch, topic: str, events: list) -> None:
    spec = TABLES[topic]
    rows = [spec.to_row(e) for e in events]
    cols = list(rows[0])
    ch.insert(spec.table, [[r[c] for c in cols] for r in rows], column_names=cols)


def call(i: int, model: str = "m1", version: str = "v1", output: str = "bad answer", **kw) -> LlmCall:
    values = dict(event_id=uuid.UUID(int=i + 1), ts=T0 + timedelta(seconds=i), app_id="shop", model=model,
                  model_version=version, input=[Message(role="system", content="be nice"),
                                                Message(role="user", content=f"question {i}")], output=output)
    return LlmCall(**{**values, **kw})


def review(c: LlmCall, at: int, *, signed: bool = True, **kw) -> Feedback:
    """A reviewer row as the feedback service produces it (signed), or as anyone else could."""
    f = Feedback(feedback_id=uuid.uuid4(), event_id=c.event_id, ts=T0 + timedelta(seconds=at), app_id=c.app_id,
                 source="reviewer", author=kw.pop("author", "r"), **kw)
    return review_signing.signed(SECRET, f) if signed else f


def lines(path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_snapshot_turns_reviews_into_sft_and_preference_lines(ch, tmp_path):
    calls = [call(i) for i in range(6)] + [call(6, model="m2"), call(7, prompt="plain prompt", input=[])]
    store(ch, topics.EVENTS, calls)
    store(ch, topics.FEEDBACK, [
        review(calls[0], 10, corrected_output="good answer 0"),
        review(calls[1], 10, rating=5),                                   # kept as it was
        review(calls[2], 10, rating=2),                                   # bad, no fix: nothing to learn
        review(calls[3], 10, corrected_output="first fix"),
        review(calls[3], 20, corrected_output="second fix"),              # the latest review wins
        review(calls[6], 10, corrected_output="other model"),             # another model
        review(calls[7], 10, corrected_output="fixed plain"),
        Feedback(feedback_id=uuid.uuid4(), event_id=calls[4].event_id, ts=T0, app_id="shop", source="end_user",
                 author="u", thumbs=-1),                                  # thumbs are not training data
    ])
    src = ClickHouseSnapshot(ch, SECRET)
    v = src.snapshot(DatasetFilters("shop", "m1"), tmp_path / "a")
    assert v.counts == {"sft": 4, "preference": 3}
    sft = lines(tmp_path / "a" / "sft.jsonl")
    assert [x["completion"] for x in sft] == ["good answer 0", "bad answer", "second fix", "fixed plain"]
    assert sft[0]["messages"] == [{"role": "system", "content": "be nice"}, {"role": "user", "content": "question 0"}]
    assert sft[0]["event_id"] == str(calls[0].event_id)
    assert sft[3]["messages"] == [{"role": "user", "content": "plain prompt"}]
    pref = lines(tmp_path / "a" / "preference.jsonl")
    assert pref[0] == {"messages": sft[0]["messages"], "chosen": "good answer 0", "rejected": "bad answer",
                       "event_id": str(calls[0].event_id)}
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["sha256"] == v.sha256 == content_hash(tmp_path / "a") and manifest["counts"] == v.counts

    # The feedback service's export with the same filters is the same dataset: one implementation.
    exported = export_dataset(ch, DatasetFilters("shop", "m1"), tmp_path / "exports", SECRET)
    assert exported.sha256 == v.sha256
    for name in ("sft.jsonl", "preference.jsonl"):
        assert (tmp_path / "exports" / exported.dataset_id / name).read_bytes() == (tmp_path / "a" / name).read_bytes()

    # Same feedback, same bytes, same hash; new feedback, new hash.
    assert src.snapshot(DatasetFilters("shop", "m1"), tmp_path / "b").sha256 == v.sha256
    store(ch, topics.FEEDBACK, [review(calls[5], 30, rating=4)])
    assert src.snapshot(DatasetFilters("shop", "m1"), tmp_path / "c").sha256 != v.sha256


def test_only_reviews_whose_signature_verifies_become_training_data(ch, tmp_path):
    calls = [call(i) for i in range(4)]
    store(ch, topics.EVENTS, calls)
    signed_fix = review(calls[0], 10, corrected_output="a fix the feedback service signed")
    tampered = review(calls[1], 10, corrected_output="the reviewer's fix")
    tampered = tampered.model_copy(update={"corrected_output": "text an attacker swapped in"})
    store(ch, topics.FEEDBACK, [
        signed_fix,
        review(calls[0], 20, signed=False, corrected_output="a later forged fix"),  # must not win by being later
        tampered,
        review(calls[2], 10, signed=False, rating=5),  # forged approval
        review(calls[3], 10, rating=5).model_copy(update={"app_id": "shop", "author": "someone-else"}),
    ])
    src = ClickHouseSnapshot(ch, SECRET)
    v = src.snapshot(DatasetFilters("shop"), tmp_path / "a")
    sft = lines(tmp_path / "a" / "sft.jsonl")
    assert [x["completion"] for x in sft] == ["a fix the feedback service signed"]
    assert v.counts == {"sft": 1, "preference": 1}
    assert json.loads((tmp_path / "a" / "manifest.json").read_text())["unverified_reviews"] == 4
    # Every row is still stored: the forgery is evidence, it just trains nothing.
    assert ch.query("SELECT count() FROM feedback WHERE source = 'reviewer'").result_rows[0][0] == 5
    # Another secret verifies nothing.
    assert ClickHouseSnapshot(ch, "another-secret-0123456789").snapshot(
        DatasetFilters("shop"), tmp_path / "b").counts == {"sft": 0, "preference": 0}
    with pytest.raises(ValueError, match="LOOKOUT_REVIEW_SIGNING_SECRET"):
        ClickHouseSnapshot(ch, "").snapshot(DatasetFilters("shop"), tmp_path / "c")


def test_a_dataset_takes_its_own_apps_reviews_when_two_apps_share_an_event_id(ch, tmp_path):
    shared = uuid.UUID(int=77)
    a = call(0, event_id=shared, app_id="app-a", output="answer of a")
    b = call(0, event_id=shared, app_id="app-b", output="answer of b")
    store(ch, topics.EVENTS, [a])
    store(ch, topics.EVENTS, [b])
    store(ch, topics.FEEDBACK, [review(a, 10, corrected_output="fix for a"),
                                review(b, 20, corrected_output="fix for b")])  # later, but app b's
    for app, fix, answer in (("app-a", "fix for a", "answer of a"), ("app-b", "fix for b", "answer of b")):
        ClickHouseSnapshot(ch, SECRET).snapshot(DatasetFilters(app), tmp_path / app)
        assert [x["completion"] for x in lines(tmp_path / app / "sft.jsonl")] == [fix]
        assert [x["rejected"] for x in lines(tmp_path / app / "preference.jsonl")] == [answer]
    # Without an app filter each app's call still gets its own review: two lines, never crossed.
    ClickHouseSnapshot(ch, SECRET).snapshot(DatasetFilters(), tmp_path / "all")
    pairs = {(x["chosen"], x["rejected"]) for x in lines(tmp_path / "all" / "preference.jsonl")}
    assert pairs == {("fix for a", "answer of a"), ("fix for b", "answer of b")}


def test_two_proportion_z_matches_the_textbook():
    r = versions.two_proportion_z(30, 100, 15, 100)
    assert r.statistic == pytest.approx(2.5400, abs=1e-4) and r.p_value == pytest.approx(0.011085, abs=1e-6)
    assert versions.two_proportion_z(0, 10, 0, 10).p_value == 1.0
    assert math.isnan(versions.two_proportion_z(1, 0, 1, 10).p_value)


def test_mann_whitney_matches_scipy_on_ties():
    a = [1, 2, 2, 3, 4, 5, 5, 5, 6, 7]
    b = [3, 4, 4, 5, 6, 7, 7, 8, 8, 9, 9]
    r = versions.mann_whitney(a, b)
    # scipy.stats.mannwhitneyu(a, b, method="asymptotic", use_continuity=False)
    assert r.statistic == 23.5 and r.p_value == pytest.approx(0.0254229115, abs=1e-9)
    assert versions.mann_whitney([1, 1], [1, 1]).p_value == 1.0


def test_compare_candidate_with_previous_version(ch):
    rng = random.Random(1)
    old = [call(i, version="v1") for i in range(200)]
    new = [LlmCall(**{**call(1000 + i, version="v2").model_dump(), "ts": T0 + timedelta(hours=1, seconds=i)})
           for i in range(200)]
    store(ch, topics.EVENTS, old + new)
    votes, scores = [], []
    for c, p_down, judge_mu, p_toxic in [(c, 0.4, 0.5, 0.2) for c in old] + [(c, 0.1, 0.8, 0.02) for c in new]:
        votes.append(Feedback(feedback_id=uuid.uuid4(), event_id=c.event_id, ts=c.ts, app_id="shop",
                              source="end_user", author="u", thumbs=-1 if rng.random() < p_down else 1))
        scores.append(Score(score_id=uuid.uuid4(), event_id=c.event_id, ts=c.ts, app_id="shop", model="m1",
                            name="judge.relevance", value=min(1, max(0, rng.gauss(judge_mu, 0.15))),
                            source="llm_judge", evaluator="t"))
        for label in ("toxicity.insult", "toxicity.threat"):
            scores.append(Score(score_id=uuid.uuid4(), event_id=c.event_id, ts=c.ts, app_id="shop", model="m1",
                                name=label, value=0.9 if rng.random() < p_toxic / 2 else 0.05, source="model",
                                evaluator="detoxify"))
    store(ch, topics.FEEDBACK, votes)
    store(ch, topics.SCORES, scores)

    assert versions.previous_version(ch, "shop", "m1", "v2") == "v1"
    out = versions.compare(ch, "shop", "m1", "v2")
    assert out["baseline"] == "v1"
    t = out["thumbs_down_rate"]
    assert t["candidate"]["n"] == 200 and t["baseline"]["n"] == 200
    assert t["candidate"]["value"] < t["baseline"]["value"] and t["p_value"] < 0.001 and t["statistic"] < 0
    j = out["judge"]["judge.relevance"]
    assert j["candidate"]["value"] > j["baseline"]["value"] and j["p_value"] < 0.001 and j["test"] == "mann_whitney_u"
    x = out["toxicity_share"]
    assert x["candidate"]["n"] == 200 and x["candidate"]["value"] < x["baseline"]["value"] and x["p_value"] < 0.01

    # No earlier version: a clear error (the API answers 404).
    with pytest.raises(LookupError, match="no earlier model_version"):
        versions.compare(ch, "shop", "m1", "v1")


def test_candidates_are_registered_once(ch):
    run = uuid.uuid4()  # model_versions is migration 0015's
    for _ in range(2):  # a replayed succeeded event
        versions.register_candidate(ch, app_id="shop", model="m1", model_version="m1+lora-1", run_id=run,
                                    dataset_hash="h", rule="p/r", artifact="/runs/x/adapter")
    (v,) = versions.list_versions(ch, "shop", "m1")
    assert (v["model_version"], v["run_id"], v["status"], v["artifact"]) == ("m1+lora-1", str(run), "candidate",
                                                                           "/runs/x/adapter")
