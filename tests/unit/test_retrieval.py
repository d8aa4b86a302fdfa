"""Retrieval over the whole catalogue: top-k with ties against the positive, the union, ranks after re-ranking."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trsr_utils.method import retrieval

ITEMS = ["a", "b", "c", "d", "e", "f"]


def test_top_k_skips_the_history_and_ranks_the_positive_over_the_rest():
    scores = np.array([0.9, 0.8, 0.1, 0.7, 0.3, 0.2])
    items, top, rank = retrieval.top_k(scores, ITEMS, "e", {"a", "b"}, 2)
    assert items == ["d", "e"] and top == [0.7, 0.3] and rank == 2.0  # a, b are history: not ranked


def test_ties_never_favour_the_positive():
    scores = np.array([0.5, 0.5, 0.5, 0.1, 0.0, 0.0])
    items, _, rank = retrieval.top_k(scores, ITEMS, "b", set(), 2)
    assert "b" not in items and rank == 3.0  # tied with a and c: ranked after both
    # unseen items at -inf (an ID model): a positive there is ranked last among them, and not retrieved
    scores = np.array([-np.inf, 0.2, -np.inf, 0.1, -np.inf, -np.inf])
    items, _, rank = retrieval.top_k(scores, ITEMS, "c", set(), 3)
    assert items[:2] == ["b", "d"] and "c" not in items and rank == 6.0
    with pytest.raises(ValueError, match="not among"):
        retrieval.top_k(scores, ITEMS, "z", set(), 3)


def test_round_robin_union_takes_the_retrievers_in_turn_without_repeats():
    assert retrieval.round_robin([["a", "b", "c"], ["b", "d", "e"]], 4) == ["a", "b", "d", "c"]
    assert retrieval.round_robin([["a"], ["b", "c", "d"]], 10) == ["a", "b", "c", "d"]


def test_list_rank_counts_a_missed_positive_as_a_miss_at_every_cutoff():
    assert retrieval.list_rank(["x", "y", "z"], "y") == 2.0
    assert retrieval.list_rank(["x", "y", "z"], "y", [0.1, 0.9, 0.9]) == 2.0  # tie with z: after it
    assert retrieval.list_rank(["x", "y", "z"], "y", [0.1, 0.9, 0.3]) == 1.0
    assert math.isinf(retrieval.list_rank(["x"], "y", [1.0]))
    m = retrieval.retrieved_metrics([1.0, 12.0, math.inf, 3.0], 20)
    assert m["recall@10"] == 0.5 and m["retrieved@20"] == 0.75
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(4)) / 4)


def test_cosine_retrieval_of_normalised_vectors_is_a_dot_product():
    users = np.array([[1.0, 0.0]])
    items = np.array([[0.6, 0.8], [1.0, 0.0], [0.0, 1.0]])
    assert retrieval.cosine_scores(users, items).tolist() == [[0.6, 1.0, 0.0]]
