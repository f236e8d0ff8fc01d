"""The sequential statistics on their own: conformal p-values, evidence, the false-alarm
budget and the shift-share estimate (no broker, no model)."""

import math

import numpy as np
from scipy.stats import kstest

from lookout.drift.stats.conformal import Grid, ScorePool
from lookout.drift.stats.mixture import classifier_scores, mixture_share, ratio_scores, typical_of_new
from lookout.drift.stats.sequential import BETS, Budget, Evidence, SequentialTest, log_fixed_bets


def test_conformal_p_values_are_uniform_under_exchangeability_even_with_ties():
    rng = np.random.default_rng(0)
    grid = Grid.geometric(1000)
    pool = ScorePool(grid.bins)
    pool.add(grid.index(rng.poisson(20, 100)))  # integer scores: many ties
    p = pool.observe_many(grid.index(rng.poisson(20, 20_000)), rng.random(20_000))
    assert kstest(p, "uniform").pvalue > 0.01
    # ... and independent: neighbouring p-values are uncorrelated.
    assert abs(np.corrcoef(p[:-1], p[1:])[0, 1]) < 0.03


def test_vectorised_pool_equals_one_at_a_time():
    rng = np.random.default_rng(1)
    grid = Grid.linear(0, 1, 50)
    a, b = ScorePool(grid.bins), ScorePool(grid.bins)
    bins, u = grid.index(rng.random(700)), rng.random(700)
    one = [a.observe(int(x), float(v)) for x, v in zip(bins, u, strict=True)]
    assert np.allclose(b.observe_many(bins, u, chunk=128), one)
    assert np.array_equal(a.counts, b.counts)


def test_novel_scores_get_small_p_values():
    grid = Grid.linear(0, 1, 100)
    pool = ScorePool(grid.bins)
    pool.add(grid.index(np.random.default_rng(2).random(1000) * 0.5))
    assert pool.observe(int(grid.index([0.9])[0]), 0.5) < 0.002


def test_vectorised_shiryaev_roberts_and_cusum_equal_their_recursions():
    rng = np.random.default_rng(3)
    log_e = rng.normal(-0.05, 0.5, (300, len(BETS) + 1))
    ev = Evidence()
    # Split at an arbitrary point: the carried-over state must continue exactly.
    first, _ = ev.update(log_e[:123], np.arange(123))
    second, starts = ev.update(log_e[123:], np.arange(123, 300))
    log_r = np.full(log_e.shape[1], -np.inf)
    cusum, start = np.zeros(log_e.shape[1]), np.zeros(log_e.shape[1], dtype=int)
    combined, change = [], []
    for t, row in enumerate(log_e):
        log_r = np.logaddexp(log_r, 0.0) + row  # R_t = (1 + R_(t-1)) e_t
        restart = cusum <= 0
        cusum[restart], start[restart] = 0.0, t
        cusum += row
        combined.append(np.logaddexp.reduce(log_r) - math.log(len(log_r)))
        change.append(start[int(np.argmax(log_r))])
    assert np.allclose(np.concatenate([first, second]), combined)
    assert list(starts) == change[123:]
    # The stored CUSUM is clipped at zero (a run at or below zero restarts either way).
    open_runs = cusum > 0
    assert np.allclose(ev.cusum, np.maximum(cusum, 0))
    assert list(ev.cusum_start[open_runs]) == list(start[open_runs])


def test_every_fixed_bet_is_a_fair_bet_under_no_drift():
    # E[e] = 1 for uniform p: integrate each bet's density numerically (midpoints, with the
    # singular ends handled by a fine grid).
    p = (np.arange(2_000_000) + 0.5) / 2_000_000
    means = np.exp(log_fixed_bets(p)).mean(axis=0)
    assert np.allclose(means, 1.0, atol=2e-3)


def test_false_alarms_stay_within_the_bound_over_the_horizon():
    """Under no drift (independent uniform p-values), P(alarm within H) <= H / c. With
    c = 1e5 and H = 10,000, at most 10 % of streams may alarm; the bound is loose, so far
    fewer do."""
    rng = np.random.default_rng(4)
    horizon, threshold = 10_000, math.log(1e5)
    alarms = 0
    for _ in range(60):
        test = SequentialTest()
        path, _ = test.observe(rng.random(horizon), np.arange(horizon))
        alarms += bool((path >= threshold).any())
    assert alarms / 60 <= 0.1


def test_evidence_grows_with_every_event_of_a_persistent_shift():
    rng = np.random.default_rng(5)
    test = SequentialTest()
    test.observe(rng.random(2000), np.arange(2000))
    null_level = test.log_sr
    # 20 % of p-values now come from novel items (small p), the rest stay uniform.
    shifted = np.where(rng.random(3000) < 0.2, rng.beta(0.3, 3, 3000), rng.random(3000))
    path, change = test.observe(shifted, np.arange(2000, 5000))
    assert path[999] > null_level + 5 and path[-1] > path[999] + 10
    assert abs(int(np.median(change[-500:])) - 2000) < 300  # where the shift began


def test_state_round_trip_continues_exactly():
    rng = np.random.default_rng(6)
    p = rng.random(600)
    whole = SequentialTest()
    expected, _ = whole.observe(p, np.arange(600))
    first = SequentialTest()
    first.observe(p[:250], np.arange(250))
    resumed = SequentialTest.load(first.dump(), first.bet.memory, first.bet.prior)
    rest, _ = resumed.observe(p[250:], np.arange(250, 600))
    assert np.allclose(rest, expected[250:])


def test_a_stream_budget_is_split_over_its_signals_and_its_p_value_matches_the_threshold():
    budget = Budget.equal(0.01, 1e7, ("a", "b", "c", "d"))
    threshold = budget.log_threshold("a")
    assert math.isclose(threshold, math.log(1e7 * 4 / 0.01))
    assert budget.p_value("a", threshold) <= 0.01 + 1e-12 < budget.p_value("a", threshold - 0.01)
    assert budget.p_value("a", -math.inf) == 1.0


def test_share_estimate_recovers_the_new_part_and_its_interval_covers_it():
    rng = np.random.default_rng(7)
    ref = rng.normal(0, 1, (500, 8))
    for share in (0.0, 0.2, 0.5):
        k = int(400 * share)
        cur = np.vstack([rng.normal(0, 1, (400 - k, 8)), rng.normal(2.5, 1, (k, 8))])
        rs, cs = classifier_scores(ref, cur, rng)
        est = mixture_share(rs, cs, rng=rng)
        assert abs(est.share - share) <= 0.1, (share, est)
        assert est.low <= share + 0.02 and est.high >= share - 0.02
        if k:
            picks = typical_of_new(cs, 5)
            assert all(i >= 400 - k for i in picks)  # every example from the new part


def test_share_of_a_one_dimensional_signal_in_either_direction():
    rng = np.random.default_rng(8)
    ref = rng.normal(100, 10, 500)
    for direction in (1, -1):
        cur = np.concatenate([rng.normal(100, 10, 250), rng.normal(100 + direction * 60, 10, 250)])
        rs, cs = ratio_scores(ref, cur, rng)
        assert abs(mixture_share(rs, cs, rng=rng).share - 0.5) <= 0.1
