"""Non-LLM baselines that score exactly the candidates the LLM scores.

Every scorer gets the same inputs: the *training sequences* (what any model may
learn from: each training user's history and positive, and the validation and
test users' histories, which the LLM sees in its prompt too; never a
validation or test positive), the item texts, and the evaluation samples. It
returns one score array per sample, in the sample's candidate order (the
positive first, then the negatives). Higher is better; ties are broken against
the positive by :mod:`trsr_utils.method.metrics`, so a scorer that knows nothing about
an item gives it the lowest score without gaining anything.

* ``random``: seeded uniform scores (the floor: Recall@K = K/21 on average).
* ``popularity``: how often the item occurs in the training sequences.
* ``item_cf``: item-to-item collaborative filtering: the cosine similarity of
  the candidate's and each history item's user sets, summed over the history.
* ``tfidf`` / ``embedding``: content-based: the cosine similarity of the
  candidate's text to the mean of the history items' texts, as TF-IDF vectors
  or as all-MiniLM-L6-v2 sentence embeddings (see :mod:`.embeddings`).
* RecBole models (``SASRec``, ``GRU4Rec``, ...): see :mod:`.recbole_models`.

Those that learn from interactions can also be trained on every interaction outside the evaluation users'
held-out positives (:func:`all_interaction_sequences`; notebook 07's ``<name>+all`` rows).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from trsr_utils.baselines.embeddings import embed


def candidates(samples: pd.DataFrame) -> list[list[str]]:
    """Each sample's candidates: the positive first, then its negatives."""
    return [[s.positive, *s.negatives] for s in samples.itertuples(index=False)]


def training_sequences(samples: pd.DataFrame) -> dict[str, list[str]]:
    """user -> the items a model may learn from, oldest first (no validation or test positive)."""
    out: dict[str, list[str]] = {}
    for s in samples.itertuples(index=False):
        seq = list(s.history) + ([s.positive] if s.split == "train" else [])
        out[s.user_id] = seq
    return out


def all_interaction_sequences(sequences: Sequence[Any], samples: pd.DataFrame) -> dict[str, list[str]]:
    """user -> every interaction a model may learn from in the second training regime: each loaded user's whole
    sequence (``sequences``: the loader's ``UserSequence`` list), except that a validation or test user's last
    item, their held-out positive, is removed. Users the filter dropped (too few or too many interactions) count
    too. Leave-one-out, as the sampled protocol: other users' interactions are not cut at the test time."""
    held_out = {s.user_id: s.positive for s in samples.itertuples(index=False) if s.split != "train"}
    out: dict[str, list[str]] = {}
    for seq in sequences:
        items = list(seq.items)
        if seq.user_id in held_out:
            if not items or items[-1] != held_out[seq.user_id]:
                raise ValueError(f"user {seq.user_id}: the sample's positive {held_out[seq.user_id]!r} is not the "
                                 "last item of the loaded sequence; the data stage and the raw files disagree")
            items = items[:-1]
        if items:
            out[seq.user_id] = items
    missing = sorted(set(held_out) - set(out))
    if missing:
        raise ValueError(f"{len(missing)} evaluation users are not in the loaded sequences, e.g. {missing[:3]}")
    return out


def random_scores(eval_samples: pd.DataFrame, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.random(len(c)) for c in candidates(eval_samples)]


def popularity_scores(train: dict[str, list[str]], eval_samples: pd.DataFrame) -> list[np.ndarray]:
    counts = Counter(i for seq in train.values() for i in seq)
    return [np.array([counts.get(i, 0) for i in c], dtype=float) for c in candidates(eval_samples)]


def item_cf_scores(train: dict[str, list[str]], eval_samples: pd.DataFrame) -> list[np.ndarray]:
    """Sum over the history of cosine(user set of history item, user set of candidate)."""
    from scipy import sparse

    items = sorted({i for seq in train.values() for i in seq})
    index = {item: k for k, item in enumerate(items)}
    rows, cols = [], []
    for u, seq in enumerate(train.values()):
        for item in set(seq):
            rows.append(u)
            cols.append(index[item])
    m = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(train), len(items)))
    co = (m.T @ m).tocsr()  # item x item co-occurrence counts
    norms = np.sqrt(np.asarray(co.diagonal(), dtype=float))
    out = []
    for s, cands in zip(eval_samples.itertuples(index=False), candidates(eval_samples)):
        hist = [index[i] for i in s.history if i in index]
        scores = np.zeros(len(cands))
        if hist:
            sub = co[hist].toarray()  # [history, items]
            for k, c in enumerate(cands):
                j = index.get(c)
                if j is not None:
                    scores[k] = float((sub[:, j] / (norms[hist] * norms[j])).sum())
        out.append(scores)
    return out


def profile_similarity(vectors: Callable[[Sequence[str]], np.ndarray], eval_samples: pd.DataFrame) -> list[np.ndarray]:
    """cosine(candidate vector, mean of the history vectors); ``vectors`` maps item ids to L2-normalised rows."""
    out = []
    for s, cands in zip(eval_samples.itertuples(index=False), candidates(eval_samples)):
        profile = vectors(list(s.history)).mean(axis=0)
        norm = np.linalg.norm(profile)
        profile = profile / norm if norm > 0 else profile
        out.append(vectors(cands) @ profile)
    return out


def tfidf_scores(item_texts: dict[str, str], eval_samples: pd.DataFrame) -> list[np.ndarray]:
    """Content-based with TF-IDF over the item texts (word unigrams and bigrams, fitted on the catalogue)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    ids = list(item_texts)
    index = {item: k for k, item in enumerate(ids)}
    matrix = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True).fit_transform(
        [item_texts[i] for i in ids])  # rows are L2-normalised

    def vectors(items: Sequence[str]) -> np.ndarray:
        return matrix[[index[i] for i in items]].toarray()

    return profile_similarity(vectors, eval_samples)


def embedding_scores(item_texts: dict[str, str], eval_samples: pd.DataFrame, device: str = "cpu",
                     progress: Any = None) -> list[np.ndarray]:
    """Content-based with all-MiniLM-L6-v2 sentence embeddings of the item texts."""
    needed = sorted({i for s in eval_samples.itertuples(index=False) for i in [*s.history, s.positive, *s.negatives]})
    matrix = embed([item_texts[i] for i in needed], device=device, progress=progress)
    index = {item: k for k, item in enumerate(needed)}
    return profile_similarity(lambda items: matrix[[index[i] for i in items]], eval_samples)
