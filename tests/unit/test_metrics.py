"""Ranking metrics: hand-computed cases, pessimistic ties, random-ranker expectations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trsr_utils.method import metrics


def test_pessimistic_rank():
    assert metrics.positive_rank([0.9, 0.1, 0.5]) == 1
    assert metrics.positive_rank([0.5, 0.9, 0.5, 0.1]) == 3  # one higher, one tie: the tie counts against it
    assert metrics.positive_rank([0.2] * 21) == 21  # a constant scorer ranks the positive last
    assert metrics.positive_rank([0.1, 0.3, 0.2], positive=2) == 2
    with pytest.raises(ValueError, match="NaN"):
        metrics.positive_rank([float("nan"), 0.1])


def test_hand_computed():
    m = metrics.metrics_from_ranks([1, 4, 11], ks=(3, 5, 10))
    assert m["recall@3"] == pytest.approx(1 / 3)
    assert m["recall@5"] == pytest.approx(2 / 3)
    assert m["recall@10"] == pytest.approx(2 / 3)
    assert m["mrr@3"] == pytest.approx(1 / 3)
    assert m["mrr@5"] == pytest.approx((1 + 1 / 4) / 3)
    assert m["ndcg@5"] == pytest.approx((1 + 1 / math.log2(5)) / 3)
    assert metrics.selection_score(m) == pytest.approx(1 / 3 + 2 / 3 + 2 / 3)


def test_random_ranker_matches_expectation():
    rng = np.random.default_rng(0)
    scores = rng.random((20000, 21))
    m = metrics.evaluate(scores)
    expected = metrics.random_expectation(21)
    for k in metrics.KS:
        assert expected[f"recall@{k}"] == pytest.approx(k / 21)
        assert m[f"recall@{k}"] == pytest.approx(k / 21, abs=0.01)
        assert m[f"mrr@{k}"] == pytest.approx(expected[f"mrr@{k}"], abs=0.01)
        assert m[f"ndcg@{k}"] == pytest.approx(expected[f"ndcg@{k}"], abs=0.01)


def test_auc_counts_negatives_below_the_positive_ties_half():
    from sklearn.metrics import roc_auc_score

    scores = [0.5, 0.9, 0.5, 0.1, 0.2]  # positive first: 2 below, 1 tie, 1 above -> (2 + .5) / 4
    assert metrics.auc(scores) == pytest.approx(0.625)
    assert metrics.auc(scores) == pytest.approx(roc_auc_score([1, 0, 0, 0, 0], scores))
    assert metrics.auc([0.3, 0.3, 0.3]) == 0.5 and metrics.auc([0.1, 0.2], positive=1) == 1.0
    with pytest.raises(ValueError):
        metrics.auc([1.0])


def test_prior_loss_is_the_entropy_of_the_positive_share():
    assert metrics.prior_loss(0.5) == ("ln 2", pytest.approx(math.log(2)))
    name, value = metrics.prior_loss(0.25)
    assert name == "H(0.25)" and value == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)))
    assert metrics.prior_loss(1.0)[1] == 0.0
