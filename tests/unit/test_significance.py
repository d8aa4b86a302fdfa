"""Paired comparisons: the numbers a reader uses to say which differences between systems are real."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trsr_utils.method import significance as sg


def test_holm_matches_the_step_down_rule_worked_by_hand():
    # sorted: .005*4 = .02, .01*3 = .03, .03*2 = .06, .04*1 = .04 -> running max keeps .06
    assert sg.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert sg.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert sg.holm([0.01]) == pytest.approx([0.01])


def test_no_difference_gives_p_one_and_a_zero_interval():
    a = np.array([1, 0, 1, 1, 0, 0, 1, 0], dtype=float)
    out = sg.paired_difference(a, a.copy())
    assert out["diff"] == 0 and out["low"] == out["high"] == 0 and out["p"] == 1.0


def test_a_clear_difference_is_found_and_its_interval_excludes_zero():
    rng = np.random.default_rng(0)
    b = rng.random(60)
    a = b + 0.3 + rng.normal(0, 0.05, 60)
    out = sg.paired_difference(a, b, n_resamples=2000)
    assert out["diff"] == pytest.approx(np.mean(a - b))
    assert 0 < out["low"] < out["diff"] < out["high"] and out["p"] < 0.001


def test_pairing_matters_an_unpaired_view_would_miss_it():
    """Each user's two values move together: the paired test sees the small consistent gain."""
    rng = np.random.default_rng(1)
    b = rng.random(40)  # large spread between users
    a = b + 0.05  # small gain, the same for everyone but one
    a[0] = b[0]
    out = sg.paired_difference(a, b, n_resamples=2000)
    assert out["p"] < 0.001 and out["low"] > 0


def test_sign_flip_p_value_is_exact_on_a_tiny_sample():
    # differences +1, +1, +1: of the 2^3 sign flips, 2 are as extreme (all + or all -): p = 2/8
    out = sg.paired_difference([1.0, 1.0, 1.0], [0.0, 0.0, 0.0])
    assert out["p"] == pytest.approx(0.25) and out["low"] == out["high"] == 1.0


def test_users_needed_follows_the_normal_approximation():
    # z_.975 + z_.8 = 1.95996 + 0.84162 = 2.80158; (2.80158 * 0.5 / 0.1)^2 = 196.2 -> 197
    assert sg.users_needed(0.5, 0.1) == 197
    assert sg.users_needed(0.5, -0.1) == 197
    assert sg.users_needed(0.5, 0.0) is None


def ranks_frame(**systems):
    return pd.DataFrame([{"system": s, "user_id": f"u{i}", "rank": r} for s, ranks in systems.items()
                         for i, r in enumerate(ranks)])


def test_compare_pairs_users_by_id_and_corrects_per_metric():
    ranks = ranks_frame(good=[1, 1, 2, 1, 3, 1, 1, 2], bad=[15, 20, 12, 18, 21, 14, 11, 19], same=[1, 1, 2, 1, 3, 1, 1, 2])
    # the same users in another order: pairing is by id, not by position
    ranks = pd.concat([ranks[ranks.system != "bad"], ranks[ranks.system == "bad"].iloc[::-1]])
    table = sg.compare(ranks, [("good", "bad"), ("good", "same")], n_resamples=999)
    assert set(table["metric"]) == set(sg.METRICS) and len(table) == 6
    gb = table[(table.b == "bad") & (table.metric == "recall@10")].iloc[0]
    assert gb["diff"] == 1.0 and gb["mean_a"] == 1.0 and gb["mean_b"] == 0.0 and gb["significant"]
    gs = table[(table.b == "same")]
    assert (gs["diff"] == 0).all() and (gs["p_holm"] == 1).all() and not gs["significant"].any()
    for _, family in table.groupby("metric"):
        assert family["p_holm"].to_numpy() == pytest.approx(sg.holm(family["p"]))
    lines = sg.reading(table)
    assert "1 of 2 comparisons on recall@10 survive" in lines[2]
    # the other metrics of the forest plot are said too, each with its own Holm family
    sig = table[(table.metric == "mrr@10") & table.significant]
    assert f"On mrr@10 (the forest plot's other panels, Holm within mrr@10): {len(sig)} of 2 survive" in "\n".join(lines)
    # an interval that excludes 0 beside a p of .05 or more is explained, not left to contradict the test
    odd = table.assign(low=0.01, high=0.2, p=0.125)
    assert "intervals exclude 0 while the sign-flip test's p is .05 or more" in sg.reading(odd)[-1]
    assert not any("intervals exclude 0" in line for line in sg.reading(table.assign(low=-0.1, high=0.2, p=0.5)))


def test_one_rule_names_the_best_row_ties_broken_by_mrr():
    table = pd.DataFrame({"system": ["random", "popularity", "item_cf", "hierarchical"],
                          "recall@10": [0.9, 0.8, 0.8, 0.95], "mrr@10": [0.5, 0.30, 0.35, 0.4]})
    assert sg.best_row(table, ["random", "hierarchical"]) == "item_cf"
    assert sg.best_row(table) == "hierarchical" and sg.best_row(table, list(table["system"])) is None


def test_compare_refuses_systems_that_ranked_different_users():
    ranks = ranks_frame(a=[1, 2, 3], b=[1, 2, 3])
    ranks.loc[ranks.index[-1], "user_id"] = "someone else"
    with pytest.raises(ValueError, match="different users"):
        sg.compare(ranks, [("a", "b")])
    with pytest.raises(KeyError, match="no ranks for system 'c'"):
        sg.compare(ranks, [("a", "c")])


def test_evaluation_pairs_are_the_papers_questions():
    table = pd.DataFrame({"system": ["random", "popularity", "tfidf", "zero_shot", "tallrec", "hierarchical",
                                     "recurrent"],
                          "recall@10": [0.48, 0.6, 0.85, 0.65, 0.5, 0.5, 0.75],
                          "mrr@10": [0.1, 0.2, 0.5, 0.3, 0.2, 0.2, 0.3]})
    pairs = sg.evaluation_pairs(table["system"], table)
    assert pairs == [("hierarchical", "tallrec"), ("hierarchical", "zero_shot"), ("hierarchical", "tfidf"),
                     ("recurrent", "tallrec"), ("recurrent", "zero_shot"), ("recurrent", "tfidf"),
                     ("hierarchical", "recurrent")]


def test_sign_flip_is_exact_when_few_users_differ():
    # 20 users, one of whom differs: the only other sign pattern is the mirror image, as extreme: p = 1 exactly
    a, b = np.zeros(20), np.zeros(20)
    a[3] = 1.0
    assert sg.paired_difference(a, b)["p"] == 1.0
    # three users differ, all the same way (the other 17 tie): 2 of the 2^3 patterns are as extreme, p = .25
    a[[5, 9]] = 1.0
    assert sg.paired_difference(a, b)["p"] == pytest.approx(0.25)
