"""Evaluation plumbing: cached scores, the results table, bootstrap intervals and the paper's numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trsr_utils.stages import evaluation
from trsr_utils.stages import protocols, table_rows
from trsr_utils.method import metrics, score_store
from trsr_utils.core.config import resolve_config
from trsr_utils.store import stages


def _samples(n: int = 4) -> pd.DataFrame:
    return pd.DataFrame({"user_id": [f"u{i}" for i in range(n)], "split": "test",
                         "history": [["1", "2"]] * n, "positive": ["3"] * n,
                         "negatives": [["4", "5"]] * n})


def test_scores_are_cached_for_the_same_users_and_candidates_only(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return [np.array([0.9, 0.1, 0.5])] * 4

    path = tmp_path / "scores" / "x.parquet"
    first = score_store.cached(path, _samples(), compute, log=lambda *_: None)
    again = score_store.cached(path, _samples(), compute, log=lambda *_: None)
    assert len(calls) == 1 and again["rank"].tolist() == first["rank"].tolist() == [1] * 4
    changed = _samples()
    changed.at[0, "negatives"] = ["4", "6"]
    score_store.cached(path, changed, compute, log=lambda *_: None)
    assert len(calls) == 2  # other candidates: scored again, never a stale row


def test_a_scorer_with_the_wrong_number_of_scores_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="user u0: 2 scores for 3 candidates"):
        score_store.cached(tmp_path / "x.parquet", _samples(1), lambda: [np.array([1.0, 0.0])])


def test_results_table_recomputes_metrics_from_ranks():
    frames = {"a": pd.DataFrame({"user_id": ["u0", "u1"], "rank": [1, 4], "seconds": 2.0}),
              "b": pd.DataFrame({"user_id": ["u0", "u1"], "rank": [21, 11], "seconds": 1.0})}
    table = evaluation.results_table(frames, bootstrap=200).set_index("system")
    assert table.loc["a", "recall@3"] == 0.5 and table.loc["a", "recall@5"] == 1.0
    assert table.loc["a", "mrr@5"] == pytest.approx((1 + 1 / 4) / 2)
    assert table.loc["b", "recall@10"] == 0.0 and table.loc["b", "mrr@10"] == 0.0
    assert table.loc["a", "label"] == "a" and table.loc["a", "users"] == 2


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_more_users():
    rng = np.random.default_rng(0)
    small = rng.integers(1, 22, size=20)
    large = rng.integers(1, 22, size=2000)
    lo_s, hi_s = evaluation.bootstrap_interval(small, "recall@10", 500)
    lo_l, hi_l = evaluation.bootstrap_interval(large, "recall@10", 500)
    assert lo_s <= (small <= 10).mean() <= hi_s and lo_l <= (large <= 10).mean() <= hi_l
    assert hi_l - lo_l < (hi_s - lo_s) / 3
    assert evaluation.bootstrap_interval(np.array([1, 5, 30]), "mrr@10", 100)[0] >= 0
    assert np.isnan(evaluation.bootstrap_interval(np.array([1]), "recall@10", 100)[0])


def test_paper_table_holds_table_2():
    paper = evaluation.paper_table()
    assert len(paper) == 20 and set(paper["dataset"]) == {"Amazon-M2 (paper)", "MIND (paper)"}
    row = paper[(paper.system == "SASRec") & (paper.dataset == "MIND (paper)")].iloc[0]
    assert (row["recall@3"], row["mrr@10"]) == (0.842, 0.7636)
    row = paper[(paper.system == "recurrent") & (paper.dataset == "Amazon-M2 (paper)")].iloc[0]
    assert row["recall@10"] == 0.957
    ours = pd.DataFrame([{"system": "SASRec", "label": "SASRec", **{c: 0.1 for c in evaluation.COLUMNS}}])
    both = evaluation.with_paper(ours, "ml (ours)")
    assert list(both["dataset"]) == ["ml (ours)", "Amazon-M2 (paper)", "MIND (paper)"]


def test_missing_notebook_06_adapter_is_a_clear_error(tmp_path):
    from trsr_utils import stages

    cfg = resolve_config("smoke", tmp_path, {})
    with pytest.raises(FileNotFoundError, match="run notebook 06_lora_sft first"):
        table_rows.ensure_adapter(cfg, "hierarchical")
    assert stages.sft.adapter_config(cfg, "none").sft.summary == "none" and cfg.sft.summary == "hierarchical"


def test_unknown_systems_fail_at_configuration_time(tmp_path):
    from trsr_utils.core.config import ConfigError

    with pytest.raises(ConfigError, match="eval.llm: unknown"):
        resolve_config("smoke", tmp_path, {"eval.llm": ["gpt"]})


def test_reading_says_what_the_table_can_and_cannot_show():
    rows = [{"system": "tfidf", "label": "TF-IDF", "recall@10": 0.7, "recall@10_low": 0.5, "recall@10_high": 0.9},
            {"system": "hierarchical", "label": "LLM-TRSR hierarchical", "recall@10": 0.75, "recall@10_low": 0.55,
             "recall@10_high": 0.95},
            {"system": "popularity", "label": "Popularity", "recall@10": 0.5, "recall@10_low": 0.3,
             "recall@10_high": 0.7}]
    lines = evaluation.reading(pd.DataFrame(rows), 20, 21, unseen=10)
    text = "\n".join(lines)
    assert "one user moves a Recall@K by 0.050" in text and "0.40 wide" in text
    assert "wholly above a random ranker's 0.476: TF-IDF, LLM-TRSR hierarchical." in text
    assert "caps their Recall@10 at 0.50" in text
    assert "Their intervals overlap, which alone does not decide it: see the paired comparison below." in text
    assert "shows the machinery, not a result" in text
    assert "shows the machinery" not in "\n".join(evaluation.reading(pd.DataFrame(rows), 1000, 21, unseen=0))
    # fine-tuned rows below zero-shot are said, not left for a reader to find
    rows += [{"system": "zero_shot", "label": "LLM zero-shot", "recall@10": 0.8, "recall@10_low": 0.6,
              "recall@10_high": 0.95}]
    text = "\n".join(evaluation.reading(pd.DataFrame(rows), 20, 21, unseen=10))
    assert "Fine-tuning against zero-shot (0.800 Recall@10): 0 of 1 fine-tuned rows at or above it, below it: " \
           "LLM-TRSR hierarchical" in text
    assert "Best LLM row: LLM zero-shot (Recall@10 0.800); best other row: TF-IDF (0.700)" in text
    assert "tied on Recall@10" not in text
    rows += [{"system": "item_cf", "label": "Item-CF", "recall@10": 0.7, "recall@10_low": 0.5, "recall@10_high": 0.9}]
    text = "\n".join(evaluation.reading(pd.DataFrame(rows), 20, 21, unseen=10))
    assert "best other row: TF-IDF (0.700, tied on Recall@10 with Item-CF and chosen by MRR@10)" in text


def test_the_papers_table_2_has_impossible_rows_and_they_are_said():
    """Amazon-M2 CORE: Recall@5 .4632 below Recall@3 .5230 (a recall can only grow with K); and two MRR@10 - MRR@5
    gaps below what the users entering the top 10 add (1/10 each at least): MIND's hierarchical row grows MRR by
    .0008 while .028 of its users sit at ranks 6-10 (at least .0028)."""
    found = evaluation.impossible_rows(evaluation.paper_table())
    assert found == ["CORE, Amazon-M2 (paper): recall@5 0.4632 is below recall@3 0.5230, which cannot be right "
                     "for a recall",
                     "CORE, Amazon-M2 (paper): mrr@10 - mrr@5 = 0.0096, but the 0.1818 of users ranked 6-10 "
                     "(recall@10 - recall@5) add between 0.0182 and 0.0303, which cannot be right",
                     "LLM-TRSR hierarchical, MIND (paper): mrr@10 - mrr@5 = 0.0008, but the 0.0280 of users ranked "
                     "6-10 (recall@10 - recall@5) add between 0.0028 and 0.0047, which cannot be right"]
    import pandas as pd

    ok = pd.DataFrame([{"label": "x", "dataset": "d", "recall@3": 0.2, "recall@5": 0.2, "recall@10": 0.3,
                        "mrr@3": 0.1, "mrr@5": 0.09, "mrr@10": 0.1}])
    assert evaluation.impossible_rows(ok) == ["x, d: mrr@5 0.0900 is below mrr@3 0.1000, which cannot be right for a mrr"]
    # every row our own metrics compute from ranks passes: the bounds hold for any ranks
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = metrics.metrics_from_ranks(rng.integers(1, 22, size=rng.integers(1, 40)))
        assert evaluation.impossible_rows(pd.DataFrame([{"label": "ours", "dataset": "d", **m}]), tolerance=1e-12) == []
    high = pd.DataFrame([{"label": "y", "dataset": "d", "recall@3": 0.2, "recall@5": 0.3, "recall@10": 0.4,
                          "mrr@3": 0.25, "mrr@5": 0.27, "mrr@10": 0.28}])
    assert any("mrr@3 0.2500 is above recall@3 0.2000" in line for line in evaluation.impossible_rows(high))


def test_full_catalogue_candidates_are_every_item_the_user_has_not_seen():
    samples = _samples(2)
    full = protocols.full_catalogue_samples(samples, ["1", "2", "3", "4", "5", "6", "7"])
    assert list(full.columns) == list(samples.columns) and list(full["user_id"]) == ["u0", "u1"]
    assert full.iloc[0]["positive"] == "3" and full.iloc[0]["negatives"] == ["4", "5", "6", "7"]  # no 1, 2 or 3


def test_full_catalogue_ranks_are_stored_once_and_compared_with_the_sampled_protocol(tmp_path):
    from types import SimpleNamespace

    cfg = resolve_config("smoke", tmp_path, {"eval.baselines": ["popularity"]})
    train = pd.DataFrame({"user_id": ["t0", "t1", "t2"], "split": "train", "history": [["6", "7"], ["6"], ["6"]],
                          "positive": ["7", "7", "3"], "negatives": [["1"], ["1"], ["1"]]})
    samples = _samples(2)
    prepared = SimpleNamespace(samples=pd.concat([train, samples], ignore_index=True),
                               catalog={str(i): {"title": f"item {i}"} for i in range(1, 8)})
    # sampled: 3 occurs once, 4 and 5 never -> rank 1 of 3; whole catalogue: 6 (3x) and 7 (3x) beat it -> rank 3
    table = pd.DataFrame({"system": ["popularity"], "recall@10": [1.0], "ndcg@10": [1.0]})
    messages = []
    full = protocols.full_catalogue(cfg, prepared, samples, table, log=messages.append, whole=prepared)
    row = full.iloc[0]
    assert row["full median rank"] == 3 and row["candidates (mean)"] == 5
    assert row["full ndcg@10"] == pytest.approx(1 / np.log2(4)) and row["full recall@10"] == 1.0
    assert len(messages) == 1
    again = protocols.full_catalogue(cfg, prepared, samples, table, log=messages.append, whole=prepared)
    assert len(messages) == 1 and again.equals(full)  # the stored ranks, not a second ranking
    tau = protocols.protocol_agreement(pd.DataFrame({"sampled recall@10": [0.1, 0.5, 0.3],
                                                      "full recall@10": [0.01, 0.02, 0.05],
                                                      "sampled ndcg@10": [0.1, 0.2, 0.3],
                                                      "full ndcg@10": [0.1, 0.2, 0.3]}))
    assert tau["ndcg@10"] == pytest.approx(1.0) and tau["recall@10"] == pytest.approx(1 / 3)  # 2 of 3 pairs in the same order


def test_a_baseline_trained_on_every_interaction_is_its_own_labelled_row(tmp_path):
    cfg = resolve_config("smoke", tmp_path, {"eval.baselines": ["popularity", "SASRec"],
                                             "eval.all_interactions": ["SASRec", "item_cf"]})
    # only baselines of the table get a second row (item_cf is not among them)
    assert table_rows.systems(cfg)[:3] == ["popularity", "SASRec", "SASRec+all"] and len(table_rows.systems(cfg)) == 7
    assert table_rows.label("SASRec+all") == "SASRec (all users)"
    # a separate store entry: the two regimes never share scores; each has its own epochs
    one, both = table_rows.baseline_key(cfg, "SASRec"), table_rows.baseline_key(cfg, "SASRec+all")
    assert one != both and both["training"].startswith("every interaction")
    assert "eval.recbole_epochs" in one and "eval.recbole_epochs_all" in both and "eval.recbole_epochs" not in both
    rows = [{"system": s, "label": table_rows.label(s), "recall@10": r, "recall@10_low": r - .2,
             "recall@10_high": r + .2} for s, r in (("popularity", .4), ("popularity+all", .6))]
    text = "\n".join(evaluation.reading(pd.DataFrame(rows), 20, 21, unseen=10, unseen_all=2))
    assert "2 of 20 test positives remain unseen: the cap moves from 0.50 to 0.90" in text
    from trsr_utils.core.config import ConfigError

    with pytest.raises(ConfigError, match="eval.all_interactions: unknown \\['tfidf'\\]"):
        resolve_config("smoke", tmp_path, {"eval.all_interactions": ["tfidf"]})


def test_an_edited_recommendation_prompt_gives_zero_shot_scores_a_new_key(tmp_path, monkeypatch):
    """A zero-shot row has no adapter whose key would show the edit: the prompt's own digest does."""
    from trsr_utils.stages import listwise_scores
    from trsr_utils.method import prompts
    from trsr_utils.core.config import resolve_config

    cfg = resolve_config("smoke", tmp_path)
    before = score_store.llm_key(cfg, "hierarchical", "summaries", None)
    listwise_before = listwise_scores.listwise_key(cfg, None, 0)
    original = prompts.recommendation_messages
    monkeypatch.setattr(prompts, "recommendation_messages",
                        lambda *a: [*original(*a)[:-1], {**original(*a)[-1], "content": "Reworded."}])
    assert score_store.llm_key(cfg, "hierarchical", "summaries", None) != before
    assert listwise_scores.listwise_key(cfg, None, 0) == listwise_before  # the listwise prompt is another prompt
    original_list = prompts.listwise_messages
    monkeypatch.setattr(prompts, "listwise_messages",
                        lambda *a: [*original_list(*a)[:-1], {**original_list(*a)[-1], "content": "Reworded."}])
    assert listwise_scores.listwise_key(cfg, None, 0) != listwise_before


def test_recbole_trains_on_the_gpu_when_there_is_one_under_its_own_key(tmp_path, monkeypatch):
    """The "(all users)" rows on MIND-large run for hours on a CPU beside idle GPUs: RecBole takes the profile's
    GPU. Its models round differently there, so their scores get a key of their own; a CPU run's keys (every
    stored result so far) are unchanged."""
    from trsr_utils.stages import table_rows
    from trsr_utils.method import llm
    from trsr_utils.baselines import recbole_models

    cfg = resolve_config("smoke", tmp_path)
    on_cpu = table_rows.baseline_key(cfg, "SASRec")
    assert "device" not in on_cpu and table_rows.recbole_device(cfg) == "cpu"
    conf = recbole_models.recbole_config("SASRec", tmp_path, "trsr", 1, 8, 5, 1e-3, 0, tmp_path / "saved")
    assert str(conf["device"]) == "cpu" and not conf["use_gpu"]
    monkeypatch.setattr(llm, "resolve_device", lambda device: "cuda")
    assert table_rows.recbole_device(cfg) == "cuda"
    assert table_rows.baseline_key(cfg, "SASRec") == {**on_cpu, "device": "cuda"}
    assert table_rows.baseline_key(cfg, "popularity") == table_rows.baseline_key(
        resolve_config("smoke", tmp_path), "popularity")  # no model to place: no device in the key


def test_bootstrap_interval_of_hits_lies_on_the_users_grid():
    # 0/1 hits of 20 users: every resampled mean is a multiple of 1/20, and so is each end of the interval
    hits = np.array([1] * 13 + [0] * 7, dtype=float)
    for end in evaluation.mean_interval(hits, 1000, 0):
        assert abs(end * 20 - round(end * 20)) < 1e-9


def test_recency_compares_positives_with_the_sampled_negatives():
    catalog = {"a": {"year": "1998"}, "b": {"year": "1997"}, "c": {"year": "1990"}, "d": {"year": "1985"},
               "e": {"year": "unknown"}}
    samples = pd.DataFrame({"positive": ["a", "b"], "history": [["a", "c"], ["b"]], "negatives": [["c", "d"], ["d", "e"]]})
    table = evaluation.recency(samples, catalog)
    share = "released 1997 or later"
    assert table.loc["positives", share] == 1.0 and table.loc["negatives", "n"] == 3  # "unknown" has no year
    assert table.loc["history items", share] == pytest.approx(2 / 3) and table.loc["negatives", share] == 0.0
    # 2 positives against 3 negatives: 100% against 0% is no evidence (Fisher p = .1), whatever the gap
    assert "100% of the positives" in evaluation.recency_reading(table) and "p = 0.1)" in \
        evaluation.recency_reading(table) and "no edge" in evaluation.recency_reading(table)
    # the course profile's shares: 32% of 100 positives against 18% of 1996 negatives is an edge (a gap of .14)
    course = pd.DataFrame({"n": [100, 1000, 1996], share: [0.32, 0.25, 0.176]},
                          index=["positives", "history items", "negatives"])
    text = evaluation.recency_reading(course)
    assert "1.8 times as often" in text and "is the check" in text
    demo = course.assign(n=[20, 413, 400]).astype({"n": int})
    demo.loc["negatives", share] = sum([True] * 66 + [False] * 334) / 400 - 1e-17  # 0.16499...: a mean's rounding
    assert "against 17% of the sampled negatives" in evaluation.recency_reading(demo)  # 66/400, as the table's 0.165
    assert evaluation.recency(samples, {"a": {"title": "x"}}) is None  # MIND, Amazon-M2: no year


def test_the_upstream_negatives_check_can_be_left_out(tmp_path):
    on = resolve_config("smoke", tmp_path)
    off = resolve_config("smoke", tmp_path, {"eval.upstream_check": False})
    # left out before anything is read or scored (prepared None would fail at once otherwise)
    assert protocols.upstream_check(off, None, pd.DataFrame(), {"popularity": pd.DataFrame()}) is None
    with pytest.raises(AttributeError):  # switched on, it goes on to read the prepared data (None here)
        protocols.upstream_check(on, None, pd.DataFrame(), {"popularity": pd.DataFrame()})
    assert stages.fingerprint(on, evaluation.STAGE) != stages.fingerprint(off, evaluation.STAGE)
    assert "eval.upstream_check" not in stages.parts(on, evaluation.STAGE)["settings"]  # earlier results kept
