"""The summary audit and the summary controls, on hand-made histories and summaries with known answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from trsr_utils.method import audit, significance

CATALOG = {
    "a1": {"title": "Alien Planet", "genres": "Sci-Fi, Horror"},
    "a2": {"title": "Star Road", "genres": "Sci-Fi, Adventure"},
    "a3": {"title": "Deep Space", "genres": "Sci-Fi"},
    "c1": {"title": "Funny Farm", "genres": "Comedy"},
    "c2": {"title": "Laugh Line", "genres": "Comedy, Romance"},
    "c3": {"title": "Love Boat", "genres": "Romance"},
    "d1": {"title": "Dark Water", "genres": "Drama"},
}
HISTORIES = {"u1": ["a1", "a2", "a3"], "u2": ["c1", "c2", "c3"], "u3": ["a1", "c1", "d1"]}


def lines(item: str) -> str:
    return f"title: {CATALOG[item]['title']}; genres: {CATALOG[item]['genres']}"


def test_attributes_and_dominant_ties_by_name():
    counts = audit.history_attributes(HISTORIES["u1"], CATALOG)
    assert counts == {"Sci-Fi": 3, "Horror": 1, "Adventure": 1}
    assert audit.dominant(counts, 3) == ["Sci-Fi", "Adventure", "Horror"]  # 1-1 tie: by name
    assert audit.vocabulary(CATALOG, ["c1", "c3"]) == ["Comedy", "Romance"]


def test_faithfulness_coverage_and_invented():
    named = audit.named_attributes("This user loves science fiction and comedies.", ["Sci-Fi", "Comedy", "Drama"])
    assert named == {"Sci-Fi", "Comedy"}
    m = audit.measures(named, audit.history_attributes(HISTORIES["u1"], CATALOG), k=3)
    assert m["faithfulness"] == 0.5  # Sci-Fi is in the history, Comedy is not
    assert m["coverage"] == pytest.approx(1 / 3)  # of Sci-Fi, Adventure, Horror
    assert math.isnan(audit.measures(set(), audit.history_attributes(["a1"], CATALOG))["faithfulness"])


def test_coverage_does_not_depend_on_how_ties_are_ordered():
    from collections import Counter

    counts = Counter({"A": 10, "B": 2, "C": 2, "D": 2, "E": 2})  # top 3: A, then two of the four tied at 2
    assert audit.coverage({"A", "D", "E"}, counts, 3) == 1.0  # any two of the tied fill the two places
    assert audit.coverage({"B", "C", "D"}, counts, 3) == pytest.approx(2 / 3)  # missing A is not made up by a third
    assert audit.coverage({"A"}, counts, 1) == 1.0 and audit.coverage({"B"}, counts, 1) == 0.0
    assert math.isnan(audit.coverage({"A"}, Counter(), 3))


def test_audit_table_and_specificity():
    summaries = {"good": {"u1": "This user watches sci-fi adventures and horror.",
                          "u2": "This user likes comedy and romance.",
                          "u3": "This user mixes comedy, drama and sci-fi."},
                 "generic": {u: "This user likes drama." for u in HISTORIES}}
    table = audit.audit(summaries, HISTORIES, CATALOG, lines, k=3, fallbacks={"generic": {"u2"}})
    assert list(table[table["method"] == "generic"]["fallback"]) == [False, True, False]
    good = table[table["method"] == "good"].set_index("user_id")
    assert good.loc["u1", "coverage"] == 1.0 and good.loc["u1", "invented"] == 0
    # u1's summary against u2's and u3's histories: none of u2's top 3; u3's four attributes are tied (once each),
    # so naming two of them (Sci-Fi, Horror) fills two of its three places
    assert good.loc["u1", "coverage_others"] == pytest.approx((0 + 2 / 3) / 2)
    generic = table[table["method"] == "generic"].set_index("user_id")
    assert generic.loc["u1", "invented"] == 1 and generic.loc["u1", "invented_names"] == "Drama"
    spec = audit.specificity(table, n_resamples=999)
    cov = spec[spec["measure"] == "coverage"].set_index("method")
    assert cov.loc["good", "diff"] > 0 and cov.loc["generic", "diff"] <= 0
    assert not cov.loc["generic", "specific"]
    summary = audit.summary_table(table)
    assert summary.loc["generic", "named"] == 1 and summary.loc["good", "invented"] == 0
    assert summary.loc["generic", "fallbacks"] == 1 and summary.loc["good", "fallbacks"] == 0
    assert any("good" in line for line in audit.reading(summary, spec, 3))


def test_audit_samples_other_users_beyond_max_others():
    full = audit.audit({"m": {u: "This user likes sci-fi." for u in HISTORIES}}, HISTORIES, CATALOG, lines)
    sampled = audit.audit({"m": {u: "This user likes sci-fi." for u in HISTORIES}}, HISTORIES, CATALOG, lines,
                          max_others=1)
    # u1 against one other user (u2: 0 or u3: 1/3 of its tied places), not the mean of both
    assert sampled.set_index("user_id").loc["u1", "coverage_others"] in (0.0, pytest.approx(1 / 3))
    assert full.set_index("user_id").loc["u1", "coverage_others"] == pytest.approx((0 + 1 / 3) / 2)


def test_audit_counts_invented_titles_and_needs_two_users():
    table = audit.audit({"m": {"u1": 'This user liked "Alien Planet" and "Moon Walk".', "u2": "x", "u3": "y"}},
                        HISTORIES, CATALOG, lines)
    assert table.set_index("user_id").loc["u1", "invented_titles"] == 1  # "Moon Walk" is in no history line
    with pytest.raises(ValueError, match="at least 2 users"):
        audit.audit({"m": {"u1": "x"}}, {"u1": ["a1"]}, CATALOG, lines)
    with pytest.raises(ValueError, match="no summary"):
        audit.audit({"m": {"u1": "x"}}, HISTORIES, CATALOG, lines)


def test_drift_per_step():
    blocks = pd.DataFrame({"user_id": ["u"] * 3, "block": [0, 1, 2],
                           "item_ids": [["a1", "a2"], ["c1", "c2"], ["c3"]]})
    steps = pd.DataFrame({"user_id": ["u"] * 3, "level": [0, 1, 2],
                          "summary": ["This user likes sci-fi.", "This user likes sci-fi.",
                                      "This user likes sci-fi, comedy and romance."]})
    d = audit.drift(steps, blocks, CATALOG, k=2).set_index("step")
    assert bool(d.loc[1, "unchanged"]) and d.loc[1, "new_block_coverage"] == 0 and d.loc[1, "took_new"] == 0
    assert d.loc[1, "kept"] == 1.0 and d.loc[1, "previous_coverage"] == 0  # block 1 (Comedy, Romance) not named before
    assert d.loc[2, "previous_coverage"] == 0  # step 1's summary (sci-fi only) named none of block 2's Romance
    # step 2's block brings only Romance, which block 1 already had: nothing new to take in
    assert not d.loc[2, "unchanged"] and d.loc[2, "new_block_coverage"] == 1.0 and math.isnan(d.loc[2, "took_new"])
    by = audit.drift_by_step(d.reset_index())
    assert list(by.index) == [1, 2] and by.loc[1, "unchanged"] == 1.0 and list(by["brings_new"]) == [1, 0]
    text = " ".join(audit.drift_reading(d.reset_index()))
    assert "50.0% of 2 updates" in text and "Of the 1 updates that changed" in text and "0 of the 1 updates" in text
    assert "(step 1: 100% of 1, step 2: 0% of 1)" in text  # every step, with its number of updates
    many = pd.DataFrame({"user_id": "u", "step": range(1, 11), "unchanged": [False] * 4 + [True] + [False] * 5,
                         "overlap_with_previous": 0.5,
                         "new_block_coverage": 0.5, "previous_coverage": 0.5, "took_new": np.nan, "kept": 0.5})
    assert "(step 1: 0% of 1, step 5: 100% of 1, step 10: 0% of 1; 10 steps in the table)" in \
        audit.drift_reading(many)[0]  # past eight steps: the first, the highest, the last
    one_step = audit.drift_reading(d.reset_index().query("step == 1"))  # two-block histories: one update each
    assert "(each user's only update is step 1)" in one_step[0] and one_step[0].count("step 1") == 1


def test_query_ranks_and_kept_share():
    cands = {"u": np.eye(3)}  # candidate 0 (the positive) along x
    queries = {"right": {"u": np.array([1.0, 0, 0])}, "wrong": {"u": np.array([0.5, 1.0, 0])},
               "blind": {"u": np.zeros(3)}}
    ranks = audit.query_ranks(queries, cands).set_index("system")["rank"]
    assert ranks["right"] == 1 and ranks["wrong"] == 2 and ranks["blind"] == 3  # ties count against the positive
    assert audit.centroid(np.eye(2)) == pytest.approx(np.array([1, 1]) / np.sqrt(2))
    assert audit.kept_share(0.6, 0.8, 0.4) == pytest.approx(0.5)
    assert math.isnan(audit.kept_share(0.6, 0.4, 0.4))


@pytest.mark.parametrize("n", [2, 3, 7, 50])
def test_derangement_never_maps_a_user_to_itself(n):
    users = [f"u{i}" for i in range(n)]
    for seed in range(20):
        d = audit.derangement(users, seed)
        assert sorted(d) == sorted(users) and sorted(d.values()) == sorted(users)
        assert all(d[u] != u for u in users)
    assert audit.derangement(users, 1) == audit.derangement(users, 1)
    with pytest.raises(ValueError):
        audit.derangement(["u"], 0)


def test_replaced_summaries():
    s = {"u1": "one", "u2": "two", "u3": "three"}
    other = audit.replaced(s, list(s), "other_user", 0)
    assert all(other[u] != s[u] for u in s) and sorted(other.values()) == sorted(s.values())
    assert audit.replaced(s, list(s), "empty", 0) == {u: "" for u in s}
    assert audit.replaced(s, ["u1"], "template", 0, {"u1": "t"}) == {"u1": "t"}
    with pytest.raises(ValueError, match="unknown"):
        audit.replaced(s, list(s), "nonsense", 0)


def test_oracle_is_refused_outside_its_control():
    samples = pd.DataFrame({"user_id": ["u1"], "positive": ["c2"]})
    with pytest.raises(audit.OracleRefused):
        audit.oracle_summaries(samples, CATALOG, "movies")
    with pytest.raises(audit.OracleRefused):
        audit.oracle_summaries(samples, CATALOG, "movies", control="oracle")
    out = audit.oracle_summaries(samples, CATALOG, "movies", control=audit.ORACLE)
    assert out == {"u1": "This user most often chose Comedy and Romance movies."}


def test_equivalence_by_hand_and_against_scipy():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2, 200).astype(float)
    b = np.where(rng.random(200) < 0.9, a, 1 - a)  # 10% of users flip: a small, noisy difference
    res = significance.equivalence(a, b, 0.1)
    d = a - b
    low = stats.ttest_1samp(d, -0.1, alternative="greater").pvalue
    high = stats.ttest_1samp(d, 0.1, alternative="less").pvalue
    assert res["p_lower"] == pytest.approx(low) and res["p_upper"] == pytest.approx(high)
    assert res["p"] == pytest.approx(max(low, high))
    assert res["equivalent"] == (-0.1 < res["low"] and res["high"] < 0.1)  # the 90% interval inside the margin
    far = significance.equivalence(np.ones(30), np.r_[np.zeros(15), np.ones(15)], 0.05)
    assert not far["equivalent"]  # a difference of .5 is not within .05
    # no user changed: 5 users cannot bound the share of users that change below .05; 100 can (rule of three)
    few = significance.equivalence(np.ones(5), np.ones(5), 0.05)
    assert not few["equivalent"] and few["p"] == pytest.approx(0.95 ** 5) and few["high"] == pytest.approx(1 - 0.05 ** 0.2)
    many = significance.equivalence(np.ones(100), np.ones(100), 0.05)
    assert many["equivalent"] and many["p"] == pytest.approx(0.95 ** 100) and many["high"] < 0.05
    with pytest.raises(ValueError):
        significance.equivalence([1.0], [1.0], 0.05)


def test_users_needed_for_equivalence_and_decision():
    n = significance.users_needed_equivalence(0.4, 0.05)
    # ((1.645 + 1.282) * 0.4 / 0.05)^2 = 548.1 -> 549 users
    assert n == 549 == math.ceil(((stats.norm.ppf(0.95) + stats.norm.ppf(0.9)) * 0.4 / 0.05) ** 2)
    assert significance.users_needed_equivalence(0.4, 0.05, 0.06) is None
    assert significance.users_needed_equivalence(0.0, 0.05) == 59  # .95^59 = .049 < .05 <= .95^58
    tost = {"margin": 0.05, "users": 20, "equivalent": False, "p": 0.4, "low": -0.1, "high": 0.2, "sd": 0.4}
    assert significance.decision({"diff": 0.05, "p": 0.5}, tost).startswith("undecided")
    assert "about 549 would bound" in significance.decision({"diff": 0.05, "p": 0.5}, tost)
    assert f"about {significance.users_needed(0.4, 0.05)} users would detect" in significance.decision(
        {"diff": 0.05, "p": 0.5}, tost)
    assert significance.decision({"diff": 0.2, "p": 0.01, "p_holm": 0.02}, tost).startswith("shown")
    assert significance.decision({"diff": 0.0, "p": 1.0}, {**tost, "equivalent": True}).startswith("bounded")
    # a permutation p is never 0: below .001 the sentence says so instead of printing 0.000
    assert "(Holm p < 0.001)" in significance.decision({"diff": 0.2, "p": 0.0001, "p_holm": 0.0004}, tost)
    assert "(p = 0.500; TOST p = 0.400," in significance.decision({"diff": 0.05, "p": 0.5}, tost)
    # the Holm p beside the raw one where there is one (course-long-all's recurrent row: p .037, Holm .073)
    assert "(p = 0.037, Holm p = 0.073; TOST p = 0.400," in significance.decision(
        {"diff": -0.053, "p": 0.037, "p_holm": 0.073}, tost)
    # a bound says how far inside the margin it lies, in users (course-long-all: -.047 on 546 users)
    bounded = significance.decision({"diff": -0.007, "p": 0.85}, {**tost, "users": 546, "equivalent": True,
                                                                  "low": -0.047, "high": 0.033, "p": 0.039})
    assert "lies 0.003 inside the margin, about 1.6 users' hits" in bounded
    assert significance.p_text(0.0009, "Holm") == "Holm < 0.001" and significance.p_text(0.001) == "p = 0.001"


def test_the_oracle_is_refused_as_a_setting_outside_its_control_cell(tmp_path):
    from trsr_utils import stages
    from trsr_utils.core.config import ConfigError, resolve_config, with_overrides

    with pytest.raises(ConfigError, match="leaks the answer"):
        resolve_config("smoke", tmp_path, {"sft.summary": "oracle"})
    cfg = resolve_config("smoke", tmp_path)
    with pytest.raises(ConfigError, match="leaks the answer"):
        with_overrides(cfg, {"sft.summary": "oracle"})
    oracle = stages.sft.adapter_config(cfg, "oracle")  # the positive-control cell's adapter settings
    assert oracle.sft.summary == "oracle"
    assert with_overrides(oracle, {"sft.validate_zero_shot": False}).sft.summary == "oracle"  # stays its own
    assert "01_data" in stages.inputs(oracle, "06_sft")  # its summaries come from the held-out positives
    assert resolve_config("smoke", tmp_path, {"sft.summary": "template"}).sft.summary == "template"
    with pytest.raises(ConfigError, match="reliance_controls"):
        resolve_config("smoke", tmp_path, {"eval.reliance_controls": ["oracle"]})
