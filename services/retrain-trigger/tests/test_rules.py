"""Rule evaluation as a pure function of the evidence: windows, minimum samples,
hysteresis, cooldown, dedup of replayed records."""

from __future__ import annotations

import itertools
import textwrap

import pytest

from lookout.retrain_trigger import policies
from lookout.retrain_trigger.rules import Observation, RuleEngine, StreamWindow

APP, MODEL = "bot", "m1"
_ids = itertools.count()


def engine(rules: str, cooldown: str = "1h") -> RuleEngine:
    text = f"""
        version: 1
        policies:
          - name: p
            match: {{app: bot}}
            cooldown: {cooldown}
            rules:
{textwrap.indent(textwrap.dedent(rules).strip(), " " * 14)}
    """
    return RuleEngine(policies.parse(textwrap.dedent(text)))


def thumbs(ts: float, down: bool, event: str | None = None, voter: str | None = None) -> Observation:
    i = next(_ids)
    return Observation(ts, f"f{i}", "thumbs", "thumbs", 1.0 if down else 0.0, event or f"e{i}", voter or f"u{i}")


def score(ts: float, name: str, value: float, event: str | None = None) -> Observation:
    i = next(_ids)
    return Observation(ts, f"s{i}", "score", name, value, event or f"e{i}")


def drift(ts: float, drifted: bool, signal: str = "embedding") -> Observation:
    return Observation(ts, f"d{next(_ids)}", "drift", signal, 1.0 if drifted else 0.0)


def feed(e: RuleEngine, obs: list[Observation]) -> list:
    """Observe one record at a time, evaluating after each, like the service does per batch."""
    fired = []
    for o in obs:
        e.observe(APP, MODEL, [o])
        fired += e.evaluate(APP, MODEL)
    return fired


THUMBS = "- {name: thumbs, kind: thumbs_down_rate, window: 10m, min_samples: 10, fire_above: 0.3, clear_below: 0.1}"


def test_thumbs_down_rate_fires_once_with_evidence():
    e = engine(THUMBS)
    good = [thumbs(t, t % 10 == 0) for t in range(20)]  # 10% down
    assert feed(e, good) == []
    bad = [thumbs(20 + t, True) for t in range(10)]  # ends at 40% down
    fired = feed(e, bad)
    assert len(fired) == 1
    f = fired[0]
    assert (f.rule, f.app_id, f.model) == ("p/thumbs", APP, MODEL)
    (ev,) = f.evidence["rules"]
    assert ev["kind"] == "thumbs_down_rate" and ev["samples"] > 10 and ev["statistic"] > 0.3
    assert ev["threshold"] == 0.3 and ev["examples"]


def test_too_few_samples_never_fire():
    e = engine(THUMBS)
    assert feed(e, [thumbs(t, True) for t in range(9)]) == []
    assert len(feed(e, [thumbs(9, True)])) == 1


def test_hysteresis_needs_the_rate_to_clear_before_firing_again():
    e = engine(THUMBS, cooldown="1s")
    assert len(feed(e, [thumbs(t, True) for t in range(10)])) == 1
    # Still bad much later (cooldown long over): latched, no second firing.
    assert feed(e, [thumbs(1000 + t, True) for t in range(20)]) == []
    # Between the levels (20%): not cleared, still latched.
    assert feed(e, [thumbs(2000 + t, t % 5 == 0) for t in range(40)]) == []
    # Below the clear level, then bad again: fires again.
    assert feed(e, [thumbs(3000 + t, False) for t in range(40)]) == []
    assert len(feed(e, [thumbs(3040 + t, True) for t in range(30)])) == 1


def test_cooldown_blocks_a_second_firing_of_the_policy():
    e = engine(THUMBS + "\n- {name: rel, kind: judge, score: judge.relevance, window: 10m, min_samples: 5,"
                        " fire_below: 0.5}", cooldown="1h")
    assert len(feed(e, [thumbs(t, True) for t in range(10)])) == 1
    # Another rule of the same policy trips inside the cooldown: nothing.
    assert feed(e, [score(100 + t, "judge.relevance", 0.1) for t in range(5)]) == []
    # After the cooldown the judge rule (never latched) fires, if still bad.
    fired = feed(e, [score(3700 + t, "judge.relevance", 0.1) for t in range(5)])
    assert [f.rule for f in fired] == ["p/rel"]


def test_window_slides_by_event_time():
    e = engine(THUMBS)
    assert feed(e, [thumbs(t, True) for t in range(9)]) == []
    # The first nine fall out of the 10-minute window before the tenth arrives.
    assert feed(e, [thumbs(700, True)]) == []
    assert e.windows[(APP, MODEL)].since(0)[0].ts >= 700 - 86400


def test_replayed_records_count_once():
    e = engine(THUMBS)
    batch = [thumbs(t, True) for t in range(9)]
    e.observe(APP, MODEL, batch)
    assert e.observe(APP, MODEL, batch) == 0
    assert e.evaluate(APP, MODEL) == []  # still 9 samples, not 18


def test_sixty_thumbs_down_of_one_voter_on_one_call_are_one_vote():
    e = engine(THUMBS)
    # One end user re-posts the same call's thumbs down 60 times (each with a new comment,
    # so each is its own record): the rule sees one vote, far below min_samples.
    flood = [thumbs(t, True, event="e-attacked", voter="u-attacker") for t in range(60)]
    assert feed(e, flood) == []
    w = e.windows[(APP, MODEL)]
    assert [o.obs_id for o in w.items] == [flood[-1].obs_id]
    # Replays of the superseded records change nothing, in any order.
    assert e.observe(APP, MODEL, list(reversed(flood))) == 0 and len(w.items) == 1
    # Ten different voters on ten calls still fire (the rule is not blunted).
    fired = feed(e, [thumbs(100 + i, True) for i in range(10)])
    assert fired and fired[0].evidence["rules"][0]["samples"] == 10


def test_a_voters_latest_vote_on_a_call_is_the_one_counted():
    e = engine(THUMBS)
    e.observe(APP, MODEL, [thumbs(1, True, "e1", "u1"), thumbs(5, False, "e1", "u1"),
                           thumbs(3, True, "e1", "u1")])  # arrives late, older than the thumbs up
    (only,) = e.windows[(APP, MODEL)].items
    assert only.ts == 5 and only.value == 0.0
    # Another voter on the same call, and the same voter on another call, are votes of their own.
    e.observe(APP, MODEL, [thumbs(6, True, "e1", "u2"), thumbs(7, True, "e2", "u1")])
    assert len(e.windows[(APP, MODEL)].items) == 3


def test_toxicity_share_counts_answers_not_scores():
    e = engine("- {name: tox, kind: toxicity_share, score: 'toxicity.*', value_above: 0.5, window: 1h,"
               " min_samples: 10, fire_above: 0.2}")
    obs = []
    for i in range(10):
        # Three scores per answer; only answer 0 and 1 are toxic (any label above 0.5).
        obs += [score(i, "toxicity.insult", 0.9 if i < 2 else 0.1, f"a{i}"),
                score(i, "toxicity.threat", 0.1, f"a{i}"), score(i, "judge.relevance", 0.0, f"a{i}")]
    assert feed(e, obs) == []  # 20%, not above
    fired = feed(e, [score(11, "toxicity.threat", 0.7, "a2")])
    assert fired and fired[0].evidence["rules"][0]["statistic"] == pytest.approx(0.3)
    assert set(fired[0].evidence["rules"][0]["examples"]) == {"a0", "a1", "a2"}


def test_judge_quantile():
    e = engine("- {name: q, kind: judge, score: judge.relevance, stat: quantile, quantile: 0.2, window: 1h,"
               " min_samples: 10, fire_below: 0.3}")
    # Mean is high, but the worst fifth is bad.
    obs = [score(t, "judge.relevance", 0.9) for t in range(7)] + [score(7 + t, "judge.relevance", 0.0)
                                                                   for t in range(3)]
    fired = feed(e, obs)
    assert len(fired) == 1 and fired[0].evidence["rules"][0]["statistic"] == pytest.approx(0.0)


def test_drift_sustained_for_n_windows():
    e = engine("- {name: drift, kind: drift, signal: embedding, windows: 3}")
    assert feed(e, [drift(0, True), drift(60, True), drift(120, False), drift(180, True), drift(240, True)]) == []
    assert feed(e, [drift(250, True, "prompt_tokens")]) == []  # another signal does not count
    fired = feed(e, [drift(300, True)])
    assert len(fired) == 1 and fired[0].evidence["rules"][0]["statistic"] == 3.0


def test_restore_keeps_cooldown_and_latch_after_restart():
    e = engine(THUMBS, cooldown="1h")
    e.restore("p", "p/thumbs", APP, MODEL, fired_at=5.0)
    assert feed(e, [thumbs(t, True) for t in range(10, 30)]) == []


def test_other_apps_are_not_matched():
    e = engine(THUMBS)
    e.observe("other", MODEL, [thumbs(t, True) for t in range(20)])
    assert e.evaluate("other", MODEL) == []


def test_stream_window_drops_records_older_than_the_horizon():
    w = StreamWindow(horizon=100)
    assert w.add(thumbs(1000, True))
    assert not w.add(thumbs(10, True))
    assert w.add(thumbs(950, True))
    w.add(thumbs(1100, True))
    w.prune()
    assert [o.ts for o in w.items] == [1000, 1100]
