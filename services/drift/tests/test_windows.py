"""Window, reference, alerting and sampling rules, without a broker or a model."""

import uuid
from datetime import UTC, datetime, timedelta

from lookout.drift.alerting import Streak
from lookout.drift.features import Sample
from lookout.drift.sampling import EncoderBudget, uniform_subset
from lookout.drift.windows import StreamKey, StreamState, WindowConfig

T0 = datetime(2026, 1, 1, tzinfo=UTC)
KEY = StreamKey("app", "gpt")


def sample(i: int, seconds: float | None = None) -> Sample:
    ts = T0 + timedelta(seconds=i if seconds is None else seconds)
    return Sample(uuid.uuid4(), ts, 10, 10, 3, 3, False)


def feed(state: StreamState, samples):
    return [w for w in (state.admit(s) for s in samples) if w is not None]


def test_first_n_reference_then_a_test_every_k_events_on_the_last_n():
    state = StreamState(KEY, WindowConfig(reference_size=10, window_size=8, test_every_events=4, min_window_events=8))
    windows = feed(state, [sample(i) for i in range(30)])
    assert len(state.reference) == 10
    # Windows are due at 8 events, then every 4: after events 18, 22, 26 (0-based 17, 21, 25, 29).
    assert [w.index for w in windows] == [0, 1, 2, 3]
    assert all(len(w.current) == 8 and len(w.reference) == 10 for w in windows)
    assert windows[1].current[-1].ts == T0 + timedelta(seconds=21)
    assert {w.reference_id for w in windows} == {state.reference_id}


def test_time_bound_window_and_event_time_trigger():
    cfg = WindowConfig(reference_size=5, window_size=100, window_minutes=1, test_every_events=1000,
                       test_every_seconds=30, min_window_events=5)
    state = StreamState(KEY, cfg)
    feed(state, [sample(i) for i in range(5)])
    windows = feed(state, [sample(i, seconds=5 + 2 * i) for i in range(60)])
    # One test per 30 s of event time, never by count (K is 1000).
    assert len(windows) == 3
    assert all((w.end - w.start) <= timedelta(minutes=1) for w in windows)


def test_previous_period_windows_tumble_and_each_becomes_the_next_reference():
    cfg = WindowConfig(policy="previous_period", reference_size=6, window_size=6, test_every_events=6,
                       min_window_events=6)
    state = StreamState(KEY, cfg, policy="previous_period")
    samples = [sample(i) for i in range(24)]
    windows = feed(state, samples)
    assert len(windows) == 3
    assert [s.event_id for s in windows[1].reference] == [s.event_id for s in windows[0].current]
    assert len({w.reference_id for w in windows}) == 3
    assert not set(s.event_id for s in windows[1].current) & set(s.event_id for s in windows[1].reference)


def test_reset_starts_a_new_reference_with_a_new_id():
    state = StreamState(KEY, WindowConfig(reference_size=5, window_size=5, test_every_events=5, min_window_events=5))
    feed(state, [sample(i) for i in range(12)])
    old = state.reference_id
    state.reset("first_n", version=7)
    assert state.reference_id != old and state.collecting and not state.current and state.index == 0
    pinned = [sample(100 + i) for i in range(4)]
    state.reset("pinned", pinned, version=8)
    assert state.policy == "pinned" and not state.collecting and len(state.reference) == 4
    state.reset("pinned", [], version=9)  # an empty pinned set: collect from the stream instead
    assert state.collecting


def test_drifted_only_after_m_consecutive_crossed_windows():
    streak = Streak(needed=3)
    history, s = [], 0
    for crossed in [True, True, False, True, True, True, True]:
        s, drifted = streak.step(s, crossed)
        history.append(drifted)
    assert history == [False, False, False, False, False, True, True]


def test_uniform_subset_is_deterministic_and_unbiased():
    ids = [uuid.uuid4() for _ in range(10_000)]
    keep = uniform_subset(ids, 1000, seed=1)
    assert keep == uniform_subset(ids, 1000, seed=1) and len(keep) == 1000
    # Uniform over positions: each tenth of the batch holds about a tenth of the subset.
    per_tenth = [sum(1 for i in keep if lo <= i < lo + 1000) for lo in range(0, 10_000, 1000)]
    assert all(60 <= c <= 140 for c in per_tenth)
    assert uniform_subset(ids[:10], 50) == list(range(10))


def test_encoder_budget_follows_elapsed_time_and_capacity():
    budget = EncoderBudget()
    assert budget.texts_for(1.0, measured_texts_per_s=0) == 200  # until measured: about 2 CPU cores
    assert budget.texts_for(1.0, measured_texts_per_s=500) == 500
    assert budget.texts_for(60.0, measured_texts_per_s=100) == 500  # a quiet spell does not bank budget
    assert EncoderBudget(fixed=50).texts_for(2.0, measured_texts_per_s=500) == 100
