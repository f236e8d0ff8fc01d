"""Token-frequency drift: how the distribution of tokens over a tokenizer's vocabulary
moved. Chi-square and Jensen-Shannon distance on pooled token counts, with p-values by
permuting whole documents between the samples.

Why permutation and not the chi-square table: tokens of one answer are not independent
draws, so the textbook p-value over thousands of tokens flags every window. Permuting
documents keeps that dependence and gives an honest p-value for either statistic."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
from scipy import sparse

from .outcome import Outcome, permutation_p_value, permuted_membership

TokenMethod = Literal["chi2", "js"]


def count_matrix(docs: Sequence[np.ndarray], bins: int) -> tuple[sparse.csr_matrix, np.ndarray]:
    """Documents × (top `bins` token ids of the pooled sample + one 'other' column). The
    vocabulary comes from both samples together, so it does not favour either and the
    permutation stays valid."""
    lengths = np.array([len(d) for d in docs])
    flat = np.concatenate([np.asarray(d, dtype=np.int64) for d in docs]) if lengths.sum() else np.zeros(0, np.int64)
    ids, counts = np.unique(flat, return_counts=True)
    vocab = ids[np.argsort(-counts, kind="stable")[:bins]]
    column = {int(t): i for i, t in enumerate(vocab)}
    other = len(vocab)
    rows = np.repeat(np.arange(len(docs)), lengths)
    cols = np.fromiter((column.get(int(t), other) for t in flat), dtype=np.int64, count=flat.size)
    data = np.ones(flat.size)
    matrix = sparse.csr_matrix((data, (rows, cols)), shape=(len(docs), other + 1))
    return matrix, vocab


def _chi2(ref: np.ndarray, cur: np.ndarray) -> np.ndarray:
    # ref, cur: (bins,) or (bins, P) counts. Pearson chi-square of the 2 x bins table.
    total = ref + cur
    n_ref, n_cur = ref.sum(axis=0), cur.sum(axis=0)
    grand = n_ref + n_cur
    with np.errstate(divide="ignore", invalid="ignore"):
        e_ref = total * (n_ref / grand)
        e_cur = total * (n_cur / grand)
        terms = np.where(total > 0, (ref - e_ref) ** 2 / e_ref + (cur - e_cur) ** 2 / e_cur, 0.0)
    return np.nan_to_num(terms).sum(axis=0)


def _js(ref: np.ndarray, cur: np.ndarray) -> np.ndarray:
    p = ref / np.maximum(ref.sum(axis=0), 1)
    q = cur / np.maximum(cur.sum(axis=0), 1)
    mid = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log2(p / mid), 0.0).sum(axis=0)
        kl_q = np.where(q > 0, q * np.log2(q / mid), 0.0).sum(axis=0)
    return np.sqrt(np.maximum((kl_p + kl_q) / 2, 0.0))


def token_frequency_test(
    reference_docs: Sequence[np.ndarray],
    current_docs: Sequence[np.ndarray],
    *,
    method: TokenMethod = "chi2",
    alpha: float = 0.01,
    bins: int = 200,
    permutations: int = 200,
    token_name: Callable[[int], str] = str,
    rng: np.random.Generator | None = None,
) -> Outcome:
    rng = rng or np.random.default_rng(0)
    m, n = len(reference_docs), len(current_docs)
    matrix, vocab = count_matrix([*reference_docs, *current_docs], bins)
    counts = np.asarray(matrix.sum(axis=0)).ravel()
    cur = np.asarray(matrix[m:].sum(axis=0)).ravel()
    ref = counts - cur
    chi2, js = float(_chi2(ref, cur)), float(_js(ref, cur))
    member = permuted_membership(m, n, permutations, rng).astype(float)
    null_cur = np.asarray(matrix.T @ member)
    null_ref = counts[:, None] - null_cur
    statistic, null = (chi2, _chi2(null_ref, null_cur)) if method == "chi2" else (js, _js(null_ref, null_cur))
    p = permutation_p_value(statistic, null)

    ref_share = ref / max(ref.sum(), 1)
    cur_share = cur / max(cur.sum(), 1)
    moved = np.argsort(-np.abs(cur_share - ref_share))[:10]
    top = [
        {"token": token_name(int(vocab[i])) if i < len(vocab) else "<other>",
         "reference_share": round(float(ref_share[i]), 5), "current_share": round(float(cur_share[i]), 5)}
        for i in moved
    ]
    # Per current document: mean log-likelihood ratio of its tokens, current vs reference
    # (smoothed), so the documents made of the tokens that rose rank first.
    smooth = 0.5
    llr = np.log((cur + smooth) / (cur.sum() + smooth * len(cur))) - np.log(
        (ref + smooth) / (ref.sum() + smooth * len(ref))
    )
    cur_rows = matrix[m:]
    lengths = np.maximum(np.asarray(cur_rows.sum(axis=1)).ravel(), 1)
    scores = np.asarray(cur_rows @ llr).ravel() / lengths
    return Outcome(
        method=f"{method}_permutation",
        statistic=statistic,
        p_value=p,
        threshold=alpha,
        crossed=p < alpha,
        example_scores=scores,
        details={"chi2": round(chi2, 3), "js_distance": round(js, 5), "bins": len(vocab), "top_tokens": top,
                 "reference_tokens": int(ref.sum()), "current_tokens": int(cur.sum())},
    )
