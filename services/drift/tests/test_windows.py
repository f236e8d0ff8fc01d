"""Window, reference, evidence and sampling rules, without a broker or a model."""

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np

from lookout.drift.features import Sample
from lookout.drift.sampling import LagSampler, uniform_subset
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


def test_uniform_subset_is_deterministic_and_unbiased():
    ids = [uuid.uuid4() for _ in range(10_000)]
    keep = uniform_subset(ids, 1000, seed=1)
    assert keep == uniform_subset(ids, 1000, seed=1) and len(keep) == 1000
    # Uniform over positions: each tenth of the batch holds about a tenth of the subset.
    per_tenth = [sum(1 for i in keep if lo <= i < lo + 1000) for lo in range(0, 10_000, 1000)]
    assert all(60 <= c <= 140 for c in per_tenth)
    assert uniform_subset(ids[:10], 50) == list(range(10))


def test_everything_is_embedded_under_the_lag_budget_and_sampled_to_capacity_beyond_it():
    sampler = LagSampler(budget_s=60)
    assert sampler.plan(1000, lag_s=59, span_s=1, texts_per_event=2, measured_texts_per_s=10) == 1000
    # Over budget: what the encoder does in 80 % of the time the batch took to arrive.
    assert sampler.plan(1000, lag_s=61, span_s=5, texts_per_event=2, measured_texts_per_s=100) == 200
    assert sampler.plan(1000, lag_s=61, span_s=5, texts_per_event=2, measured_texts_per_s=0) == 200  # initial 100/s
    assert LagSampler(60, fixed_texts_per_s=50).plan(1000, 120, 5, 2, 500) == 100
    assert sampler.plan(1000, lag_s=600, span_s=0, texts_per_event=2, measured_texts_per_s=1) == 1  # never zero


def lengths(i: int, long: bool, rng) -> Sample:
    n = int(rng.integers(200, 400) if long else rng.integers(20, 60))
    return Sample(uuid.UUID(int=int(rng.integers(1 << 62)) << 64 | i), T0 + timedelta(seconds=i), n * 5, n * 5, n, n,
                  False, np.arange(n, dtype=np.uint32) % 50, np.arange(n, dtype=np.uint32) % 50)


def test_a_window_is_reported_as_soon_as_evidence_crosses_not_at_the_next_scheduled_test():
    rng = np.random.default_rng(0)
    cfg = WindowConfig(reference_size=200, window_size=200, test_every_events=10_000, min_window_events=10)
    state = StreamState(KEY, cfg)
    state.admit_many([lengths(i, False, rng) for i in range(200 + 500)])
    assert state.index == 0  # nothing scheduled, nothing crossed
    windows = state.admit_many([lengths(700 + i, True, rng) for i in range(300)])
    assert windows and windows[0].cause == "evidence"
    first = windows[0]
    assert first.statuses["prompt_tokens"].drifted
    # Reported within a few dozen long prompts, long before 10,000 events were due.
    assert first.end < T0 + timedelta(seconds=700 + 50)
    # The change-point estimate points at the first long prompt (event 700, the 500th
    # observed by the evidence), give or take a few events.
    assert abs(first.statuses["prompt_tokens"].change_seq - 500) <= 5


def test_evidence_and_windows_do_not_depend_on_how_events_were_batched():
    rng = np.random.default_rng(1)
    events = [lengths(i, i >= 600 and i % 2 == 0, rng) for i in range(1200)]
    cfg = WindowConfig(reference_size=100, window_size=100, test_every_events=50, min_window_events=10)

    def run(sizes):
        state, out, i = StreamState(KEY, cfg), [], 0
        while i < len(events):
            n = int(sizes.integers(1, 90))
            out.extend(state.admit_many(events[i: i + n]))
            i += n
        return [(w.index, w.cause, len(w.current), {k: round(v.log_sr, 9) for k, v in w.statuses.items()})
                for w in out]

    assert run(np.random.default_rng(2)) == run(np.random.default_rng(3))


def test_previous_period_restarts_the_evidence_with_each_new_reference():
    rng = np.random.default_rng(4)
    cfg = WindowConfig(policy="previous_period", reference_size=50, window_size=50, test_every_events=50,
                       min_window_events=50)
    state = StreamState(KEY, cfg, policy="previous_period")
    windows = state.admit_many([lengths(i, False, rng) for i in range(250)])
    assert len(windows) == 4
    assert all(max(st.observed for st in w.statuses.values()) <= 50 for w in windows)
    assert windows[1].evidence is not windows[0].evidence
