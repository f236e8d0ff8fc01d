"""Sampling for the evaluator LLM is keyed by a server-side secret: a client that chooses
its event ids cannot raise the share of its calls that get judged, while every replay of
a call (on any replica with the same secret) decides the same."""

from __future__ import annotations

import hashlib
import math
import random
import uuid

import pytest

from lookout.judge.sampling import Sampler, SamplingError
from lookout.judge.service import JudgeService
from lookout.judge.settings import JudgeSettings

SECRET = b"server-side-sampling-secret-0123"
RATE = 0.1
CHOSEN = 3000  # ids each attacker sends


def judged_share(sampler: Sampler, ids: list[uuid.UUID]) -> float:
    return sum(sampler.wants("shop", i) for i in ids) / len(ids)


def within_chance(share: float, n: int, rate: float = RATE) -> bool:
    """Within 4.5 standard deviations of what a fair coin of `rate` gives on n ids
    (false alarm about 1 in 150 000 per check)."""
    return abs(share - rate) <= 4.5 * math.sqrt(rate * (1 - rate) / n)


def _public_unit(event_id: uuid.UUID) -> float:
    # The old decision: a plain hash of the id, which anyone can compute.
    return int.from_bytes(hashlib.blake2b(event_id.bytes, digest_size=8).digest(), "big") / 2**64


def attacks(rnd: random.Random) -> dict[str, list[uuid.UUID]]:
    """Ids a client could pick to be judged more often."""
    candidates = (uuid.UUID(int=rnd.getrandbits(128)) for _ in range(10**9))
    public = []
    for c in candidates:  # ids the unkeyed hash would always judge at RATE
        if _public_unit(c) < RATE:
            public.append(c)
            if len(public) == CHOSEN:
                break
    attacker_secret = Sampler(RATE, secret=b"the-attackers-own-guess-of-it")
    own = []
    while len(own) < CHOSEN:  # ids judged under a secret the attacker set up themselves
        c = uuid.UUID(int=rnd.getrandbits(128))
        if attacker_secret.wants("shop", c):
            own.append(c)
    base = rnd.getrandbits(128) & ~0xFFFF
    return {
        "public_hash_winners": public,
        "own_secret_winners": own,
        "sequential": [uuid.UUID(int=base + i) for i in range(CHOSEN)],
        "one_bit_apart": [uuid.UUID(int=1 << (i % 128) | (i // 128)) for i in range(CHOSEN)],
        "zeros_and_constants": [uuid.UUID(int=i * 0x0101010101010101) for i in range(CHOSEN)],
    }


def test_ids_a_client_picks_are_judged_at_the_configured_rate_and_no_more():
    sampler = Sampler(RATE, secret=SECRET)
    for name, ids in attacks(random.Random(7)).items():
        share = judged_share(sampler, ids)
        assert within_chance(share, len(ids)), f"{name}: {share:.3f} of chosen ids judged at rate {RATE}"


def test_without_the_secret_the_same_attack_wins_every_time():
    # What the check above guards against: against a public function of the id, the
    # attacker's picks are all judged.
    picks = attacks(random.Random(7))["public_hash_winners"]
    assert sum(_public_unit(i) < RATE for i in picks) == CHOSEN


def test_random_ids_are_judged_at_each_apps_rate():
    sampler = Sampler(0.25, {"quiet": 0.05, "all": 1.0, "none": 0.0}, secret=SECRET)
    rnd = random.Random(3)
    ids = [uuid.UUID(int=rnd.getrandbits(128)) for _ in range(8000)]
    for app, rate in (("shop", 0.25), ("quiet", 0.05)):
        share = sum(sampler.wants(app, i) for i in ids) / len(ids)
        assert within_chance(share, len(ids), rate), (app, share)
    assert all(sampler.wants("all", i) for i in ids)
    assert not any(sampler.wants("none", i) for i in ids)
    assert all(sampler.wants("none", i, flagged=True) for i in ids[:10])  # toxic calls always


def test_a_decision_is_fixed_per_id_and_secret_so_replays_and_replicas_agree():
    rnd = random.Random(5)
    ids = [uuid.UUID(int=rnd.getrandbits(128)) for _ in range(2000)]
    one, replica = Sampler(0.5, secret=SECRET), Sampler(0.5, secret=bytes(SECRET))
    assert [one.wants("shop", i) for i in ids] == [replica.wants("shop", i) for i in ids]
    other = Sampler(0.5, secret=b"another-installation-secret-xyz")
    disagree = sum(one.wants("shop", i) != other.wants("shop", i) for i in ids)
    assert 800 < disagree < 1200  # another secret decides independently (half the ids differ)


@pytest.mark.parametrize("rates", [dict(default_rate=0.5), dict(app_rates={"shop": 0.01})])
def test_a_fractional_rate_without_a_secret_is_refused(rates):
    with pytest.raises(SamplingError, match="LOOKOUT_JUDGE_SAMPLING_SECRET"):
        Sampler(**rates)
    with pytest.raises(SamplingError):
        Sampler(**rates, secret=b"too-short")


def test_rates_of_zero_and_one_need_no_secret():
    Sampler(1.0, {"quiet": 0.0})


async def test_the_judge_does_not_start_with_a_fractional_rate_and_no_secret():
    settings = JudgeSettings(judge_base_url="http://127.0.0.1:9/v1", judge_sample_rates="shop=0.2",
                             toxicity_backend="off")
    with pytest.raises(SamplingError):
        await JudgeService(settings, toxicity_model=None).start()
