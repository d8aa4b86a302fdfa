"""Figures (issue 27): each test draws a tiny hand-made table and checks the property a reader relies on."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402

from trsr_utils.report import plots  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def legends(fig) -> list:
    """Every legend of the figure: on its axes and on the figure itself."""
    return [ax.get_legend() for ax in fig.axes if ax.get_legend()] + list(fig.legends)


def legend_texts(fig) -> list[str]:
    return [t.get_text() for lg in legends(fig) for t in lg.get_texts()]


def assert_legends_off_the_data(fig) -> None:
    """No legend box overlaps any panel's data area (axes that are switched off hold no data)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    found = legends(fig)
    assert found, "the figure has no legend"
    for lg in found:
        box = lg.get_window_extent(renderer)
        for ax in fig.axes:
            if ax.axison and box.overlaps(ax.get_window_extent(renderer)):
                raise AssertionError(f"legend {[t.get_text() for t in lg.get_texts()]} lies on {ax.get_title()!r}")


def test_compare_summaries_labels_every_x_axis():
    table = pd.DataFrame({"a_words": [10, 12], "b_words": [8, 9], "a_mentions_top": [True, False],
                          "b_mentions_top": [True, True], "overlap_a_b": [0.2, 0.5]})
    fig = plots.compare_summaries(table, ["a", "b"])
    labels = [ax.get_xlabel() for ax in fig.axes]
    assert "None" not in labels and all(labels)
    assert legend_texts(fig) == ["a vs b"]
    # identical pairs at 1.0 may be one user beside hundreds: the legend counts them
    fig = plots.compare_summaries(table.assign(overlap_a_b=[1.0, 0.5]), ["a", "b"])
    assert legend_texts(fig) == ["a vs b (1 at 1.0)"]


def test_protocols_draws_each_protocol_on_its_own_scale():
    # whole-catalogue values 100x smaller: on one shared axis they would collapse at the bottom
    full = pd.DataFrame({"label": ["A", "B", "C"], "sampled ndcg@10": [0.3, 0.5, 0.4],
                         "full ndcg@10": [0.004, 0.001, 0.0]})
    fig = plots.protocols(full, "ndcg@10")
    ax = fig.axes[0]
    lines = [ln for ln in ax.get_lines() if len(ln.get_xdata()) == 2]
    left = np.array([ln.get_ydata()[0] for ln in lines])
    right = np.array([ln.get_ydata()[1] for ln in lines])
    assert np.ptp(right) >= 0.9 * np.ptp(left)  # the full protocol's spread is as readable as the sampled one's
    assert list(np.argsort(right)) == list(np.argsort(full["full ndcg@10"].to_numpy()))  # its order is kept
    assert "ndcg@10" in ax.get_title()
    texts = legend_texts(fig)
    assert "A  (3 → 1)" in texts  # A: 3rd sampled, 1st whole catalogue


def test_metric_bars_names_the_random_lines_in_its_legend():
    table = pd.DataFrame({"label": ["x", "y"], "recall@3": [0.2, 0.3], "recall@10": [0.5, 0.6]})
    fig = plots.metric_bars(table, ["recall@3", "recall@10"], random={"recall@3": 0.143, "recall@10": 0.476})
    texts = legend_texts(fig)  # one entry per metric, with its level: coinciding levels are named, not hidden
    assert f"{plots.RANDOM_LABEL}, recall@3: 0.143" in texts and f"{plots.RANDOM_LABEL}, recall@10: 0.476" in texts
    assert_legends_off_the_data(fig)


def test_rank_distribution_names_the_random_line():
    ranks = pd.DataFrame({"label": ["x"] * 3 + ["y"] * 3, "rank": [1, 4, 9, 2, 15, 21]})
    fig = plots.rank_distribution(ranks, 21)
    assert any(plots.RANDOM_LABEL in t for t in legend_texts(fig))


def two_stage_table() -> pd.DataFrame:
    rows = [(r, rr, rec, nd) for r, base in (("SASRec", 0.25), ("union", 0.125))
            for rr, rec, nd in (("none", base, base / 3), ("pointwise", base / 2, base / 5))]
    table = pd.DataFrame(rows, columns=["retriever", "reranker", "recall@10", "ndcg@10"])
    return table.assign(**{"retrieved@20": table["retriever"].map({"SASRec": 0.25, "union": 0.375})})


def test_two_stage_draws_the_retrieval_ceiling_on_the_recall_panel_only():
    fig = plots.two_stage(two_stage_table(), 20)
    recall, ndcg = fig.axes[:2]
    assert "recall" in recall.get_title() and "ndcg" in ndcg.get_title()
    assert any(isinstance(c, PathCollection) for c in recall.collections)  # the ceiling ticks
    assert not any(isinstance(c, PathCollection) for c in ndcg.collections)  # a Recall bound: not on NDCG
    assert any("retrieved in the top 20" in t for t in legend_texts(fig))


def test_two_stage_writes_each_bar_value_so_a_zero_bar_is_seen():
    table = two_stage_table().assign(**{"recall@10": 0.0, "ndcg@10": 0.0})
    fig = plots.two_stage(table, 20)
    for ax in fig.axes[:2]:
        assert [t.get_text() for t in ax.texts].count("0.00") == len(table)


def test_two_stage_legend_lies_outside_the_panels():
    assert_legends_off_the_data(plots.two_stage(two_stage_table(), 20))


def positions_table() -> pd.DataFrame:
    # 21 letters in 7 bands of 3; nothing listed at J-L (positions 9-11); the top candidate always listed first
    rows = []
    for system in ("listwise zero-shot", "pointwise fine-tuned"):
        for user, (position, rank) in enumerate([(0, 2), (4, 6), (7, 9), (13, 14), (16, 15), (19, 12)]):
            rows.append({"system": system, "user_id": user, "order": 0, "position": position,
                         "rank": rank if system.startswith("listwise") else rank + user % 3,
                         "top_position": 0})
    return pd.DataFrame(rows)


def test_position_bias_masks_empty_bins_and_gives_pointwise_no_position():
    fig = plots.position_bias(positions_table(), 21)
    left = fig.axes[0]
    by_label = {ln.get_label(): ln for ln in left.get_lines()}
    listwise = np.asarray(by_label["listwise zero-shot"].get_ydata(), dtype=float)
    assert np.isnan(listwise[3]) and (listwise[~np.isnan(listwise)] > 0).all()  # J-L: empty, not 0
    assert np.isfinite(listwise).sum() == 6
    pointwise = [ln for label, ln in by_label.items() if label.startswith("pointwise")]
    assert len(pointwise) == 1  # one flat reference, labelled as having no list
    assert len(set(np.asarray(pointwise[0].get_ydata(), dtype=float))) == 1
    assert "no list" in pointwise[0].get_label()
    assert "none listed" in left.get_xticklabels()[3].get_text()
    assert_legends_off_the_data(fig)


def ablation_table() -> pd.DataFrame:
    rows = [("summary", "none", False, 0.55), ("summary", "none", True, 0.45),
            ("summary", "hierarchical", False, 0.65), ("summary", "hierarchical", True, 0.5),
            ("recent_items", "1", True, 0.5), ("recent_items", "3", True, 0.5),
            ("recent_items", "3", True, 0.5),  # the same cell listed twice
            ("items_per_block", "3", True, 0.6)]
    table = pd.DataFrame(rows, columns=["axis", "value", "finetuned", "recall@10"])
    # recent_items = 3 is the profile's setting: the same scores as the fine-tuned hierarchical summary cell
    scores = {("summary", "hierarchical", True): "h-ft", ("recent_items", "3", True): "h-ft"}
    table["scores"] = [scores.get((a, v, t), f"{a}-{v}-{t}") for a, v, t, _ in rows]
    return table


def test_ablation_axes_says_what_each_panel_compares():
    fig = plots.ablation_axes(ablation_table(), "recall@10", random=0.48)
    summary, recent, block = fig.axes[:3]
    assert "zero-shot" in summary.get_title() and "fine-tuned" in summary.get_title()
    assert "fine-tuned only" in recent.get_title()
    assert "one cell" in block.get_title()
    assert len(summary.patches) == 4 and len(recent.patches) == 2 and len(block.patches) == 1  # no duplicates
    # every bar carries its value
    assert [t.get_text() for t in recent.texts] == ["0.50", "0.50"]
    ticks = [t.get_text() for t in recent.get_xticklabels()]
    assert ticks[0] == "k = 1" and "profile's setting" in ticks[1]
    assert any(plots.RANDOM_LABEL in t for t in legend_texts(fig))
    assert_legends_off_the_data(fig)
    # a grid without zero-shot cells (the demo's) names no zero-shot model, in the legend or the cost plot's title
    tuned = ablation_table().query("finetuned").assign(llm_tokens_per_user=1000.0, cell="c")
    assert not any("zero-shot" in t for t in legend_texts(plots.ablation_axes(tuned, "recall@10")))
    title = plots.cost_vs_quality(tuned).axes[0].get_title()
    assert "ft: fine-tuned" in title and "zero-shot" not in title
    assert "zs: zero-shot, ft: fine-tuned" in plots.cost_vs_quality(
        ablation_table().assign(llm_tokens_per_user=1000.0)).axes[0].get_title()


def test_summary_cost_legend_lies_off_the_scatter():
    summaries = pd.DataFrame({"summary": ["a b c", "a b", "a b c d"], "fallbacks": [0, 1, 0],
                              "n_items": [19, 20, 24], "llm_tokens": [1000, 2300, 1400]})
    fig = plots.summary_cost(summaries)
    assert_legends_off_the_data(fig)
    assert "False" not in legend_texts(fig)
    # one history length (course-long's 40 items): the spread as a histogram, not a scatter stacked in one column
    fig = plots.summary_cost(summaries.assign(n_items=40))
    ax = fig.axes[1]
    assert ax.get_xlabel() == "LLM tokens (prompt + generated)" and ax.get_ylabel() == "users"
    assert "(40 items each)" in ax.get_title() and not ax.collections  # bars, no scatter points
    assert_legends_off_the_data(fig)


def test_drift_and_sft_legends_lie_off_the_data():
    by_step = pd.DataFrame({"unchanged": [0.1, 0.7], "new_block_coverage": [0.6, 0.5],
                            "previous_coverage": [0.65, 0.5], "took_new": [0.3, 0.0]}, index=[1, 2])
    assert_legends_off_the_data(plots.drift_by_step(by_step))
    report = {"loss_history": [{"step": 1, "loss": 1.6}, {"step": 5, "loss": 1.0}],
              "validation": [{"step": 0, "recall@10": 0.33, "mrr@10": 0.11},
                             {"step": 32, "recall@10": 0.67, "mrr@10": 0.44}], "best": {"step": 32}}
    assert_legends_off_the_data(plots.sft_curves(report, 0.476))


def test_stage_hours_keeps_one_colour_per_device_and_its_legend_off_the_bars():
    stages = ["03 summaries", "06 SFT", "total"]
    run = pd.DataFrame({"a100": [1e-3, 4e-4, 1.4e-3], "cpu": [5e-2, 1e-2, 6e-2]}, index=stages)
    paper = pd.DataFrame({"a100": [26.0, 1.7, 27.7]}, index=stages)
    fig = plots.stage_hours([("demo", run, True), ("paper", paper, False)])
    left, right = fig.axes[:2]
    assert len(left.patches) == 4 and len(right.patches) == 2  # the total row is left out
    assert left.patches[0].get_facecolor() == right.patches[0].get_facecolor()  # a100 in both panels
    assert legend_texts(fig) == ["a100", "cpu"]
    assert_legends_off_the_data(fig)


def test_stage_hours_hatches_the_stages_that_do_not_fit_as_planned():
    stages = ["03 summaries", "06 SFT", "total"]
    paper = pd.DataFrame({"a100-40gb": [26.0, 1.7, 27.7], "h100": [9.0, 0.6, 9.6]}, index=stages)
    fits = pd.DataFrame({"a100-40gb": [False, True], "h100": [True, True]}, index=stages[:2])
    fig = plots.stage_hours([("paper", paper, False)], fits={"paper": fits})
    hatches = [p.get_hatch() for p in fig.axes[0].patches]
    assert hatches == ["////", None, None, None]  # a100-40gb's bars first (03, 06), then h100's
    assert any("does not fit as planned" in t for t in legend_texts(fig))


def test_auc_pairs_draws_one_line_per_user_and_marks_the_positives():
    auc = pd.DataFrame({"zero-shot": [0.4, 0.7, 0.55], "fine-tuned": [0.45, 0.6, 0.55]})
    p_zero = [np.array([0.5, 0.4, 0.6]), np.array([0.3, 0.2, 0.1]), np.array([0.2, 0.2, 0.3])]
    p_tuned = [p + 0.1 for p in p_zero]
    fig = plots.auc_pairs(auc, p_zero, p_tuned)
    left, right = fig.axes[:2]
    assert len(left.lines) == 3 + 2  # one per user, the mean, the coin line
    stars = [c for c in right.collections if isinstance(c, PathCollection)]
    assert [len(c.get_offsets()) for c in stars] == [6, 3]  # negatives, then the three positives
    assert_legends_off_the_data(fig)


def test_auc_reading_tells_the_prior_from_the_ranking():
    from trsr_utils.report import training_readings

    p_zero = [np.array([0.5, 0.4, 0.6]), np.array([0.3, 0.2, 0.1])]
    same = pd.DataFrame({"zero-shot": [0.5, 1.0], "fine-tuned": [0.5, 1.0]})
    lines = training_readings.auc_reading(same, p_zero, [p + 0.2 for p in p_zero])
    assert "+0.200" in lines[0] and "the prior, not which candidate" in lines[-1] and "mean p(yes) moved" in lines[-1]
    better = pd.DataFrame({"zero-shot": [0.5, 0.5], "fine-tuned": [1.0, 1.0]})
    assert "rose" in training_readings.auc_reading(better, p_zero, p_zero)[-1]
    assert "2 of 2 users up" in training_readings.auc_reading(better, p_zero, p_zero)[1]
    # the mean stays but single users move both ways (the demo's 06): a reshuffle, not "ranks as the base model did"
    shuffled = pd.DataFrame({"zero-shot": [0.0, 0.8, 0.5], "fine-tuned": [0.35, 0.25, 0.7]})
    lines = training_readings.auc_reading(shuffled, p_zero + p_zero[:1], [p + 0.3 for p in p_zero + p_zero[:1]])
    assert "moved by 0.367 on average" in lines[1] and "reshuffled" in lines[-1] and "much as" not in lines[-1]


def test_predictiveness_names_each_colour_and_keeps_its_legend_off_the_bars():
    table = pd.DataFrame({"recall@10": [0.8, 0.6, 0.4]},
                         index=["whole history", "summary", "another user's summary"])
    fig = plots.predictiveness(table, random=0.476)
    assert legend_texts(fig) == ["built from the user's own data", "knows nothing of the user", "random order"]
    assert_legends_off_the_data(fig)


def test_position_bias_gives_each_panel_its_own_legend():
    fig = plots.position_bias(positions_table(), 21)
    left, right = fig.axes[:2]
    left_texts = [t.get_text() for t in left.get_legend().get_texts()]
    right_texts = [t.get_text() for t in right.get_legend().get_texts()]
    assert any("mean rank" in t for t in left_texts) and not any("uniform" in t for t in left_texts)
    assert "uniform share" in right_texts and not any("mean rank" in t for t in right_texts)


def test_ablation_axes_marks_the_profiles_own_cells_when_its_summary_is_recurrent():
    rows = [("summary", "hierarchical", True, 0.5, False), ("summary", "recurrent", True, 0.6, True),
            ("recent_items", "3", True, 0.6, True), ("items_per_block", "5", True, 0.5, False),
            ("items_per_block", "3", True, 0.4, False)]
    table = pd.DataFrame(rows, columns=["axis", "value", "finetuned", "recall@10", "profile_setting"])
    # items_per_block = 5 (hierarchical) has the same scores as the hierarchical summary cell: not the profile's
    table["scores"] = ["h-ft", "r-ft", "r-ft", "h-ft", "b3"]
    summary, recent, block = plots.ablation_axes(table).axes[:3]
    ticks = {ax: [t.get_text() for t in ax.get_xticklabels()] for ax in (summary, recent, block)}
    assert ["profile's setting" in t for t in ticks[summary]] == [False, True]
    assert "profile's setting" in ticks[recent][0]
    assert not any("profile's setting" in t for t in ticks[block])
