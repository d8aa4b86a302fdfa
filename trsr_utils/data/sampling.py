"""User-level splits and negative sampling, deterministic for a given seed.

Each user's negatives come from a random generator seeded by (seed, user id),
so a user's candidates do not change when the split sizes or other users
change. Unlike the original LLM-TRSR release, negatives never include the
user's own history or positive (``negative_source: upstream`` draws as the
release does, the seed kept).

Notebook 01 teaches it; notebook 07 compares its negatives with the official code's.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

from trsr_utils.data.core import UserSequence

SPLITS = ("train", "valid", "test")


def user_rng(seed: int, user_id: str) -> np.random.Generator:
    """A generator that depends only on the run seed and the user id."""
    return np.random.default_rng([seed, zlib.crc32(user_id.encode("utf-8"))])


def split_users(user_ids: Sequence[str], sizes: dict[str, int], seed: int) -> dict[str, list[str]]:
    """Shuffle users with ``seed`` and cut the order into train/valid/test."""
    needed = sum(sizes.get(s, 0) for s in SPLITS)
    if needed > len(user_ids):
        raise ValueError(
            f"the profile asks for {needed} users ({', '.join(f'{s}={sizes.get(s, 0)}' for s in SPLITS)}) "
            f"but only {len(user_ids)} users remain after filtering: lower data.n_train/n_valid/n_test "
            "or widen data.min_interactions/max_interactions"
        )
    order = np.random.default_rng(seed).permutation(sorted(user_ids))
    out, start = {}, 0
    for split in SPLITS:
        n = sizes.get(split, 0)
        out[split] = [str(u) for u in order[start:start + n]]
        start += n
    return out


def draw_negatives(
    rng: np.random.Generator,
    catalog_ids: np.ndarray,
    exclude: set[str],
    n: int,
    preferred: Sequence[str] | None = None,
) -> tuple[list[str], int]:
    """``n`` distinct items not in ``exclude``.

    Drawn from ``preferred`` first (e.g. MIND's non-clicked impression news),
    then uniformly from ``catalog_ids``. Returns the negatives and how many
    came from the uniform top-up.
    """
    chosen: list[str] = []
    taken = set(exclude)
    if preferred:
        pool = [i for i in dict.fromkeys(preferred) if i not in taken]
        for idx in rng.permutation(len(pool))[:n]:
            chosen.append(pool[idx])
            taken.add(pool[idx])
    from_pref = len(chosen)
    # Loaders guarantee every excluded id is in the catalogue, so this count is exact.
    available = len(catalog_ids) - len(taken)
    if available < n - len(chosen):
        raise ValueError(f"cannot draw {n} negatives: only {available} catalogue items are not excluded")
    # Rejection sampling: cheap because the exclusions are tiny next to the catalogue.
    while len(chosen) < n:
        item = str(catalog_ids[rng.integers(len(catalog_ids))])
        if item not in taken:
            taken.add(item)
            chosen.append(item)
    return chosen, len(chosen) - from_pref


def upstream_negatives(rng: np.random.Generator, catalog_ids: np.ndarray, n: int) -> list[str]:
    """``n`` distinct items drawn uniformly from the whole catalogue, nothing excluded: the official LLM-TRSR
    code's ``df_products['id'].sample(n=20)``, so a negative can be an item of the user's history or the
    positive itself (then the same item is a candidate twice, once as a negative)."""
    if n > len(catalog_ids):
        raise ValueError(f"cannot draw {n} negatives from a catalogue of {len(catalog_ids)} items")
    return [str(catalog_ids[i]) for i in rng.choice(len(catalog_ids), size=n, replace=False)]


def collisions(samples: pd.DataFrame) -> dict[str, int]:
    """How often a sample's negatives are the user's own items: negatives that lie in the history, users with at
    least one, and users whose positive is among its negatives (impossible under our draws)."""
    in_history = [len(set(n) & set(h)) for n, h in zip(samples["negatives"], samples["history"])]
    return {"negatives_in_history": int(sum(in_history)), "users_with_history_negative": int(sum(map(bool, in_history))),
            "users_with_positive_negative": int(sum(p in set(n) for p, n in zip(samples["positive"],
                                                                                samples["negatives"])))}


def build_samples(
    sequences: list[UserSequence],
    catalog_ids: Sequence[str],
    sizes: dict[str, int],
    train_negatives: int,
    eval_negatives: int,
    seed: int,
    negative_source: str = "uniform",
) -> tuple[pd.DataFrame, dict[str, int]]:
    """One sample per selected user: history = all but the last item, positive = the last.

    Returns the samples (columns: user_id, split, history, positive, negatives)
    and counters (``negatives_topped_up``: impression negatives that had to be
    completed uniformly; with ``negative_source="upstream"`` the :func:`collisions`
    of the draw).
    """
    by_user = {s.user_id: s for s in sequences}
    splits = split_users(list(by_user), sizes, seed)
    ids = np.array(sorted(set(catalog_ids)))
    rows, topped_up = [], 0
    for split in SPLITS:
        n_neg = train_negatives if split == "train" else eval_negatives
        for user_id in splits[split]:
            seq = by_user[user_id]
            history, positive = list(seq.items[:-1]), seq.items[-1]
            if negative_source == "upstream":
                negatives = upstream_negatives(user_rng(seed, user_id), ids, n_neg)
            else:
                preferred = seq.impression_negatives if negative_source == "impressions" else None
                negatives, extra = draw_negatives(user_rng(seed, user_id), ids, set(seq.items), n_neg, preferred)
                if preferred is not None:
                    topped_up += extra
            rows.append({"user_id": user_id, "split": split, "history": history, "positive": positive,
                         "negatives": negatives})
    frame = pd.DataFrame(rows, columns=["user_id", "split", "history", "positive", "negatives"])
    return frame, {"negatives_topped_up": topped_up, **(collisions(frame) if negative_source == "upstream" else {})}
