"""Retrieval over the whole catalogue, and the LLM as its re-ranker (notebook 09).

* *Intent localization* (LLM4SBR): the LLM's account of what a user wants (the
  preference summary) is mapped back onto real items: the summary and every
  catalogue item are embedded with the shipped all-MiniLM-L6-v2 model
  (:mod:`.baselines.embeddings`), and the items nearest the summary (cosine)
  are retrieved. A retriever built on the summary: no item it returns is
  invented.
* *Two-stage ranking* (LlamaRec): a cheap retriever picks the top ``k`` of the
  whole catalogue (SASRec, the summary retriever, or their union), and the LLM
  re-ranks only those. Full-catalogue Recall@10 / NDCG@10 count a user as a hit
  only when the retriever found the positive *and* the re-ranking put it in the
  top 10; a positive the retriever missed is a miss whatever the LLM would do.

Every retriever ranks the items the user has not interacted with (the
full-ranking protocol of notebook 07), the positive among them; ties never
favour the positive, as in :mod:`.metrics`.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from trsr_utils.method import metrics
from trsr_utils.baselines.embeddings import embed

MISSED = float("inf")  # the rank of a positive that is not in a retrieved list


def summary_vectors(summaries: Sequence[str], model: Any = None) -> np.ndarray:
    """L2-normalised MiniLM embeddings of the users' summaries, one row each."""
    return embed(list(summaries), model=model)


def cosine_scores(user_vectors: np.ndarray, item_vectors: np.ndarray) -> np.ndarray:
    """[users, items] cosine similarities of L2-normalised rows (a dot product)."""
    return np.asarray(user_vectors, dtype=np.float64) @ np.asarray(item_vectors, dtype=np.float64).T


def top_k(scores: np.ndarray, items: Sequence[str], positive: str, exclude: set[str], k: int) -> tuple[list[str], list[float], float]:
    """(the ``k`` best items, their scores, the positive's full rank) for one user, over every item not in
    ``exclude`` (the user's history). Ties are ordered against the positive: among equal scores it comes last,
    so it is neither retrieved nor ranked on a tie it did not win."""
    items = list(items)
    keep = np.array([i not in exclude or i == positive for i in items])
    idx = np.flatnonzero(keep)
    s = np.asarray(scores, dtype=np.float64)[idx]
    is_positive = np.array([items[i] == positive for i in idx])
    if not is_positive.any():
        raise ValueError(f"the positive {positive!r} is not among the ranked items")
    order = np.lexsort((is_positive, -s))  # by score (descending), the positive after its ties
    chosen = idx[order[:k]]
    rank = float(metrics.positive_rank(np.concatenate([s[is_positive], s[~is_positive]])))
    return [items[i] for i in chosen], [float(scores[i]) for i in chosen], rank


def round_robin(lists: Sequence[Sequence[str]], k: int) -> list[str]:
    """The union of several rankings at a fixed budget: their items taken in turn (first of each, second of
    each, ...), each once, until ``k``."""
    out: list[str] = []
    seen: set[str] = set()
    for depth in range(max(map(len, lists), default=0)):
        for ranked in lists:
            if depth < len(ranked) and ranked[depth] not in seen:
                seen.add(ranked[depth])
                out.append(ranked[depth])
                if len(out) == k:
                    return out
    return out


def list_rank(items: Sequence[str], positive: str, scores: Sequence[float] | None = None) -> float:
    """The positive's rank in a retrieved list: its place (``scores`` None), or its pessimistic rank by
    ``scores`` (an LLM's re-ranking); :data:`MISSED` when it was not retrieved."""
    items = list(items)
    if positive not in items:
        return MISSED
    at = items.index(positive)
    return float(at + 1) if scores is None else float(metrics.positive_rank(scores, at))


def retrieved_metrics(ranks: Sequence[float], k: int) -> dict[str, float]:
    """Recall@10 and NDCG@10 over the whole catalogue from positive ranks (``inf`` = not retrieved), and the
    share of users whose positive was retrieved at all (Recall@k of the retriever)."""
    r = np.asarray(ranks, dtype=np.float64)
    return {"recall@10": float(metrics.per_user(r, "recall@10").mean()),
            "ndcg@10": float(metrics.per_user(r, "ndcg@10").mean()),
            f"retrieved@{k}": float((r <= k).mean())}


def frame(user_ids: Sequence[str], lists: Sequence[Sequence[str]], scores: Sequence[Sequence[float]],
          ranks: Sequence[float], seconds: float) -> pd.DataFrame:
    """A retriever's (or re-ranker's) result: per user the retrieved items, their scores and the positive's rank:
    in the retriever's ranking of the whole catalogue (SASRec, summary), or in the list (the union, a re-ranking;
    ``inf`` when the positive is not in it). Recall@10 and NDCG@10 read both alike."""
    return pd.DataFrame({"user_id": list(user_ids), "items": [list(x) for x in lists],
                         "scores": [[float(v) for v in s] for s in scores], "rank": [float(r) for r in ranks],
                         "seconds": seconds})
