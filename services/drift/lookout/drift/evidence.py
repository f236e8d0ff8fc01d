"""Sequential drift evidence of one stream, on every signal, since its reference was set.

Per signal, a score function fixed when the reference is set (stats/conformal.py explains
why it must be fixed):

- prompt/response_embedding: 1 - mean cosine to its k nearest neighbours in the
  reference's training part (grid linear on [0, 1.5]);
- prompt/response_tokens and _chars: the count itself (geometric grid);
- prompt/response_token_frequency: mean surprise (-log p) of its tokens under the training
  part's unigram model (linear on [0, 20]);
- response_empty_or_refused: 0 or 1.

Every later event's score gets a conformal p-value against all scores before it (the
reference's calibration part, then the stream), which sequential.py turns into evidence.
The reference is split by a hash of the event id: the score functions are fitted on one
part (80 %), the rest calibrates. Scores that need no fitting (lengths, the flag) use all of it.

Embedding signals observe the events that were embedded (a uniform sample under load);
every other signal observes every event. One false-alarm budget covers all signals.

Examples and the shift share are computed when a window is reported (`explain`): scores of
the window's events since the estimated change point against the reference's."""

from __future__ import annotations

import hashlib
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .features import Sample
from .stats.conformal import Grid, ScorePool, uniform_from_hash
from .stats.mixture import ShareEstimate, classifier_scores, mixture_share, ratio_scores, typical_of_new
from .stats.sequential import Budget, SequentialTest

EMBEDDING_SIGNALS = {"prompt_embedding": "prompt_embedding", "response_embedding": "response_embedding"}
LENGTH_SIGNALS = {"prompt_tokens": "prompt_tokens", "response_tokens": "response_tokens",
                  "prompt_chars": "prompt_chars", "response_chars": "response_chars"}
TOKEN_SIGNALS = {"prompt_token_frequency": "prompt_token_ids", "response_token_frequency": "response_token_ids"}
SHARE_SIGNAL = "response_empty_or_refused"
ALL_SIGNALS = (*EMBEDDING_SIGNALS, *LENGTH_SIGNALS, *TOKEN_SIGNALS, SHARE_SIGNAL)

VOCAB = 1 << 15  # covers WordPiece's 30,522 ids; larger ids share the last slot
EMBEDDING_GRID = Grid.linear(0.0, 1.5, 300)
SURPRISE_GRID = Grid.linear(0.0, 20.0, 400)
LENGTH_GRID = Grid.geometric(2_000_000, 1.03)
FLAG_GRID = Grid((0.5,))
# Fewest reference items a signal needs on each side of the split.
MIN_HALF = 10


@dataclass(frozen=True)
class EvidenceConfig:
    alpha: float = 0.01
    horizon: float = 1e7
    neighbours: int = 3
    # Share of the reference that fits the score functions; the rest starts the pool.
    train_share: float = 0.8
    bet_memory: float = 2000.0
    bet_prior: float = 200.0
    share_method: str = "classifier"  # embeddings: classifier | novelty (the kNN score, binned)
    share_min_events: int = 30
    bootstrap: int = 200
    examples: int = 5
    seed: int = 0


@dataclass(frozen=True)
class SignalStatus:
    """One signal's evidence at one event (a window's last)."""

    signal: str
    log_sr: float  # natural log of the Shiryaev-Roberts statistic
    peak: float  # its highest value since the previous report
    log_threshold: float
    p_value: float
    observed: int  # events this signal has observed since the reference
    change_seq: int  # estimated first event of the change (CUSUM), in stream sequence numbers

    @property
    def drifted(self) -> bool:
        """At or over the threshold at some event since the previous report."""
        return self.peak >= self.log_threshold


@dataclass
class Path:
    """What an `observe` call did, event by event (for cutting windows at any event, the
    same whatever the batches were): per signal, the log statistic, the change-point
    estimate and the signal's observation count after each event (carried forward over
    events the signal skipped)."""

    log_sr: dict[str, np.ndarray]
    change: dict[str, np.ndarray]
    observed: dict[str, np.ndarray]
    crossed: np.ndarray  # per event: some signal reached its threshold there, from below


@dataclass(frozen=True)
class Explanation:
    share: ShareEstimate | None
    examples: list[uuid.UUID]
    since_seq: int  # first event of the part of the window the estimate used


def event_hash(event_id: uuid.UUID, salt: str) -> int:
    return int.from_bytes(hashlib.blake2b(event_id.bytes, digest_size=8, key=salt.encode()[:64]).digest())


def split_reference(reference: Sequence[Sample], seed: int, share: float) -> tuple[list[Sample], list[Sample]]:
    """(training part, calibration part) by a hash of the event id, so the same reference
    splits the same way in any order; the calibration part keeps at least MIN_HALF."""
    order = sorted(reference, key=lambda s: event_hash(s.event_id, f"split/{seed}"))
    n_train = max(0, min(round(share * len(order)), len(order) - MIN_HALF))
    return order[:n_train], order[n_train:]


class _Scorer:
    """The fixed score function of one signal, and its grid."""

    grid: Grid
    fitted: bool  # True: fitted on the training part, calibrated on the rest

    def scores(self, samples: Sequence[Sample]) -> tuple[np.ndarray, np.ndarray]:
        """(scores, mask of samples this signal observes)."""
        raise NotImplementedError


class _Novelty(_Scorer):
    grid, fitted = EMBEDDING_GRID, True

    def __init__(self, attr: str, train: Sequence[Sample], k: int):
        self.attr = attr
        vectors = [getattr(s, attr) for s in train if getattr(s, attr) is not None]
        self.train = np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, 1), np.float32)
        self.k = max(1, min(k, len(self.train)))

    def ok(self) -> bool:
        return len(self.train) >= MIN_HALF

    def scores(self, samples):
        mask = np.array([getattr(s, self.attr) is not None for s in samples], dtype=bool)
        out = np.zeros(len(samples))
        if mask.any() and len(self.train):
            x = np.stack([getattr(s, self.attr) for s, m in zip(samples, mask, strict=True) if m])
            sims = x.astype(np.float32) @ self.train.T
            top = np.partition(sims, sims.shape[1] - self.k, axis=1)[:, -self.k:]
            out[mask] = 1.0 - top.mean(axis=1)
        return out, mask


class _Length(_Scorer):
    grid, fitted = LENGTH_GRID, False

    def __init__(self, attr: str):
        self.attr = attr

    def ok(self) -> bool:
        return True

    def scores(self, samples):
        return np.array([float(getattr(s, self.attr)) for s in samples]), np.ones(len(samples), dtype=bool)


class _Surprise(_Scorer):
    grid, fitted = SURPRISE_GRID, True

    def __init__(self, attr: str, train: Sequence[Sample]):
        self.attr = attr
        ids = [np.minimum(getattr(s, attr).astype(np.int64), VOCAB - 1) for s in train]
        flat = np.concatenate(ids) if ids else np.zeros(0, np.int64)
        counts = np.bincount(flat, minlength=VOCAB).astype(float)
        self.tokens = int(flat.size)
        # Add-half smoothing: an unseen token costs about log(2 * tokens) nats, not infinity.
        self.surprise = -np.log((counts + 0.5) / (counts.sum() + 0.5 * VOCAB))

    def ok(self) -> bool:
        return self.tokens > 0

    def scores(self, samples):
        docs = [getattr(s, self.attr) for s in samples]
        lengths = np.array([len(d) for d in docs])
        out = np.zeros(len(samples))
        if lengths.sum():
            flat = np.minimum(np.concatenate(docs).astype(np.int64), VOCAB - 1)
            starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
            full = lengths > 0
            sums = np.add.reduceat(self.surprise[flat], starts[full])
            out[full] = sums / lengths[full]
        return out, np.ones(len(samples), dtype=bool)


class _Flag(_Scorer):
    grid, fitted = FLAG_GRID, False

    def ok(self) -> bool:
        return True

    def scores(self, samples):
        return np.array([float(s.empty_or_refused) for s in samples]), np.ones(len(samples), dtype=bool)


@dataclass
class _Signal:
    scorer: _Scorer
    pool: ScorePool
    test: SequentialTest
    calibration: np.ndarray  # reference scores the pool started from (for explaining windows)


@dataclass
class StreamEvidence:
    config: EvidenceConfig
    reference: list[Sample]
    seq: int = 0  # stream events observed since the reference
    signals: dict[str, _Signal] = field(default_factory=dict)

    def __post_init__(self) -> None:
        c = self.config
        self.budget = Budget.equal(c.alpha, c.horizon, ALL_SIGNALS)
        train, calibrate = split_reference(self.reference, c.seed, c.train_share)
        for signal in ALL_SIGNALS:
            if signal in EMBEDDING_SIGNALS:
                scorer: _Scorer = _Novelty(EMBEDDING_SIGNALS[signal], train, c.neighbours)
            elif signal in LENGTH_SIGNALS:
                scorer = _Length(LENGTH_SIGNALS[signal])
            elif signal in TOKEN_SIGNALS:
                scorer = _Surprise(TOKEN_SIGNALS[signal], train)
            else:
                scorer = _Flag()
            base = calibrate if scorer.fitted else self.reference
            scores, mask = scorer.scores(base)
            if not scorer.ok() or mask.sum() < MIN_HALF:
                continue  # e.g. no response embeddings in the reference: the signal sits out
            pool = ScorePool(scorer.grid.bins)
            pool.add(scorer.grid.index(scores[mask]))
            self.signals[signal] = _Signal(scorer, pool, SequentialTest(_bet(c)), scores[mask])

    # --- per event --------------------------------------------------------------------
    def observe(self, samples: Sequence[Sample]) -> Path:
        """Events in arrival order; every signal scores the events it observes, ranks each
        against all scores before it and bets on the p-value."""
        n = len(samples)
        path = Path({}, {}, {}, np.zeros(n, dtype=bool))
        if not n:
            return path
        first = self.seq
        salt = f"{self.config.seed}".encode()
        base = np.array([int.from_bytes(hashlib.blake2b(s.event_id.bytes, digest_size=8, key=salt).digest())
                         for s in samples], dtype=np.uint64)
        for signal, sig in self.signals.items():
            before, observed_before = sig.test.log_sr, sig.test.evidence.observed
            change_before = sig.test.evidence.change_start
            scores, mask = sig.scorer.scores(samples)
            idx = np.flatnonzero(mask)
            log_sr = np.full(n, before)
            change = np.full(n, change_before, dtype=np.int64)
            observed = np.full(n, observed_before, dtype=np.int64)
            if len(idx):
                p = sig.pool.observe_many(sig.scorer.grid.index(scores[idx]), self._tie_breaks(base[idx], signal))
                values, starts = sig.test.observe(p, first + idx)
                # Carry each observed value forward over the events this signal skipped.
                last = np.maximum.accumulate(np.where(mask, np.arange(n), -1))
                seen = last >= 0
                pos = np.searchsorted(idx, last[seen])
                log_sr[seen], change[seen] = values[pos], starts[pos]
                observed[seen] = observed_before + pos + 1
            threshold = self.budget.log_threshold(signal)
            previous = np.concatenate([[before], log_sr[:-1]])
            path.crossed |= (log_sr >= threshold) & (previous < threshold)
            path.log_sr[signal], path.change[signal], path.observed[signal] = log_sr, change, observed
        self.seq += n
        return path

    def _tie_breaks(self, base: np.ndarray, signal: str) -> np.ndarray:
        """Per-signal uniforms from one hash per event, mixed with the signal's index."""
        salt = np.uint64(((ALL_SIGNALS.index(signal) + 1) * 0x9E3779B97F4A7C15) % (1 << 64))
        return uniform_from_hash(_splitmix(base ^ salt))

    # --- reporting --------------------------------------------------------------------
    def status(self, signal: str, log_sr: float, peak: float, observed: int, change_seq: int) -> SignalStatus:
        return SignalStatus(signal, log_sr, max(peak, log_sr), self.budget.log_threshold(signal),
                            self.budget.p_value(signal, log_sr), observed, change_seq)

    def current(self, signal: str) -> SignalStatus | None:
        """The signal's evidence now (after the last observed event)."""
        sig = self.signals.get(signal)
        if sig is None:
            return None
        ev = sig.test.evidence
        return self.status(signal, sig.test.log_sr, sig.test.log_sr, ev.observed, ev.change_start)

    def explain(self, signal: str, current: Sequence[Sample], first_seq: int, change_seq: int) -> Explanation:
        """Shift share and examples from the window's events since the estimated change.
        The share needs `share_min_events` of them (else the whole window is used); the
        examples always come from after the change when there are any, since that is where
        the new part is."""
        sig = self.signals.get(signal)
        if sig is None:
            return Explanation(None, [], first_seq)
        since = min(max(0, change_seq - first_seq), len(current))
        start = since if len(current) - since >= self.config.share_min_events else 0
        part = list(current[start:])
        rng = np.random.default_rng(zlib.crc32(f"{self.config.seed}/{signal}/{first_seq}".encode()))
        if signal in EMBEDDING_SIGNALS and self.config.share_method == "classifier":
            attr = EMBEDDING_SIGNALS[signal]
            ref = [s for s in self.reference if getattr(s, attr) is not None]
            kept = [i for i, s in enumerate(part) if getattr(s, attr) is not None]
            if len(ref) < MIN_HALF or len(kept) < MIN_HALF:
                return Explanation(None, [], first_seq + start)
            ref_scores, cur_scores = classifier_scores(np.stack([getattr(s, attr) for s in ref]),
                                                       np.stack([getattr(part[i], attr) for i in kept]), rng)
        else:
            scores, mask = sig.scorer.scores(part)
            kept = [int(i) for i in np.flatnonzero(mask)]
            if len(kept) < MIN_HALF:
                return Explanation(None, [], first_seq + start)
            ref_scores, cur_scores = ratio_scores(sig.calibration, scores[mask], rng)
        share = mixture_share(ref_scores, cur_scores, bootstrap=self.config.bootstrap, rng=rng)
        after = np.array([start + i >= since for i in kept])
        ranked = np.where(after if after.any() else True, cur_scores, -np.inf)
        picks = typical_of_new(ranked, min(self.config.examples, int(after.sum()) or self.config.examples))
        return Explanation(share, [part[kept[i]].event_id for i in picks], first_seq + start)

    # --- state ------------------------------------------------------------------------
    def dump(self) -> dict[str, Any]:
        return {"seq": self.seq, "signals": {
            name: {"pool": _sparse(sig.pool.counts), "test": sig.test.dump()} for name, sig in self.signals.items()}}

    @classmethod
    def load(cls, config: EvidenceConfig, reference: list[Sample], data: dict[str, Any]) -> StreamEvidence:
        """Rebuilds the score functions from the reference (deterministic) and takes pools,
        bets and evidence from the stored state."""
        ev = cls(config, reference)
        ev.seq = data["seq"]
        for name, stored in data["signals"].items():
            sig = ev.signals.get(name)
            if sig is None:
                continue
            sig.pool = ScorePool(sig.scorer.grid.bins, _dense(stored["pool"], sig.scorer.grid.bins))
            sig.test = SequentialTest.load(stored["test"], config.bet_memory, config.bet_prior)
        return ev


def _splitmix(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def _bet(c: EvidenceConfig):
    from .stats.sequential import PluginBet

    return PluginBet(c.bet_memory, c.bet_prior)


def _sparse(counts: np.ndarray) -> list[list[int]]:
    nz = np.flatnonzero(counts)
    return [[int(i), int(counts[i])] for i in nz]


def _dense(pairs: list[list[int]], bins: int) -> np.ndarray:
    out = np.zeros(bins, dtype=np.int64)
    for i, c in pairs:
        out[i] = c
    return out
