"""Ranking metrics over groups of candidates with exactly one positive each.

The positive's rank is *pessimistic*: 1 + the number of negatives scored
higher **or equal**. A model that gives every candidate the same score (or a
float32 tie) therefore never gets credit it did not earn, and a constant
scorer ranks the positive last.

For one positive among ``n`` candidates:

* Recall@K (= HitRate@K) = 1 if rank <= K else 0
* MRR@K = 1/rank if rank <= K else 0
* NDCG@K = 1/log2(rank + 1) if rank <= K else 0 (one relevant item: IDCG = 1)

A random ranker of 21 candidates has expected Recall@K = K/21.

Notebook 07 teaches them.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np

KS = (3, 5, 10)


def positive_rank(scores: Sequence[float], positive: int = 0) -> int:
    """1-based pessimistic rank of ``scores[positive]`` (ties count against it)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or not 0 <= positive < len(s):
        raise ValueError(f"need a 1-d score list with the positive inside it, got shape {s.shape}, positive {positive}")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    others = np.delete(s, positive)
    return 1 + int((others >= s[positive]).sum())


def per_user(ranks: Iterable[int], metric: str) -> np.ndarray:
    """One user's value of ``metric`` (``recall@K``, ``mrr@K`` or ``ndcg@K``) per rank."""
    kind, _, k = metric.partition("@")
    r = np.asarray(list(ranks), dtype=np.float64)
    hit = r <= int(k)
    if kind == "recall":
        return hit.astype(np.float64)
    if kind == "mrr":
        return np.where(hit, 1.0 / r, 0.0)
    if kind == "ndcg":
        return np.where(hit, 1.0 / np.log2(r + 1.0), 0.0)
    raise ValueError(f"unknown metric {metric!r}: expected recall@K, mrr@K or ndcg@K")


def metrics_from_ranks(ranks: Iterable[int], ks: Sequence[int] = KS) -> dict[str, float]:
    """Mean Recall@K, MRR@K and NDCG@K over users, keys like ``recall@5``."""
    r = np.asarray(list(ranks), dtype=np.float64)
    if r.size == 0:
        raise ValueError("no ranks to average")
    return {f"{kind}@{k}": float(per_user(r, f"{kind}@{k}").mean()) for k in ks for kind in ("recall", "mrr", "ndcg")}


def evaluate(score_lists: Iterable[Sequence[float]], positive: int = 0, ks: Sequence[int] = KS) -> dict[str, float]:
    """Metrics for groups whose positive sits at index ``positive`` (our layout: positive first)."""
    return metrics_from_ranks((positive_rank(s, positive) for s in score_lists), ks)


def auc(scores: Sequence[float], positive: int = 0) -> float:
    """One user's AUC: the share of negatives scored below the positive, a tie counting half (1 = the positive
    above every negative, .5 = a coin). Unlike Recall@K it sees every candidate, so it shows whether a model
    separates the user's positive from the negatives at all (``sklearn.metrics.roc_auc_score`` per user)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or len(s) < 2 or not 0 <= positive < len(s):
        raise ValueError(f"need a 1-d score list of >= 2 candidates with the positive inside, got shape {s.shape}")
    others = np.delete(s, positive)
    return float(((others < s[positive]).sum() + 0.5 * (others == s[positive]).sum()) / len(others))


def prior_loss(q: float) -> tuple[str, float]:
    """The cross-entropy of answering Yes with probability ``q`` every time, ``q`` being the positives' share of
    the training candidates: all a model that learned only that prior can reach. Returns its name (``ln 2`` at
    1 positive : 1 negative, else ``H(q)``) and its value (0 where ``q`` is 0 or 1)."""
    value = -(q * math.log(q) + (1 - q) * math.log(1 - q)) if 0 < q < 1 else 0.0
    return ("ln 2" if q == 0.5 else f"H({q:.2f})"), value


def selection_score(m: dict[str, float]) -> float:
    """What the paper selected checkpoints by: Recall@3 + Recall@5 + Recall@10 on validation."""
    return m["recall@3"] + m["recall@5"] + m["recall@10"]


def chosen_checkpoint(records: Sequence[dict[str, Any]], select: str = "best") -> dict[str, Any]:
    """The validation record of the checkpoint ``sft.select`` keeps: the best selection score (ties: the earlier
    step), or with ``"last"`` the last step (a fixed training budget)."""
    if select == "best":
        return max(records, key=lambda r: (r["selection"], -r["step"]))
    return max(records, key=lambda r: r["step"])


def random_expectation(n_candidates: int, ks: Sequence[int] = KS) -> dict[str, float]:
    """Expected metrics of a uniformly random ranking (no ties) of ``n_candidates``."""
    out: dict[str, float] = {}
    for k in ks:
        top = range(1, min(k, n_candidates) + 1)
        out[f"recall@{k}"] = len(top) / n_candidates
        out[f"mrr@{k}"] = sum(1 / r for r in top) / n_candidates
        out[f"ndcg@{k}"] = sum(1 / math.log2(r + 1) for r in top) / n_candidates
    return out
