"""Figures of notebooks 07-08: metrics with their intervals, paired differences, ranks, the two protocols, the
paper's numbers, the ablation grid and its cost."""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from trsr_utils.report.plots.common import RANDOM_LABEL, _legend_outside, _place_labels, _slanted_labels, _span


def metric_bars(table: pd.DataFrame, metrics_: Sequence[str] = ("recall@3", "recall@5", "recall@10", "mrr@10"),
                random: Mapping[str, float] | None = None):
    """Grouped bars, one group per system (in table order), one bar per metric; dashed lines: random."""
    long = table.melt(id_vars=["label"], value_vars=list(metrics_), var_name="metric", value_name="value")
    fig, ax = plt.subplots(figsize=(max(7, 0.7 * len(table)), 3.8))
    sns.barplot(long, x="label", y="value", hue="metric", ax=ax)
    if {"recall@10_low", "recall@10_high"} <= set(table.columns) and "recall@10" in metrics_:
        # The 95% bootstrap interval of Recall@10 on its bars: where intervals overlap, the test set does not
        # tell the systems apart.
        container = ax.containers[list(metrics_).index("recall@10")]
        xs = [bar.get_x() + bar.get_width() / 2 for bar in container]
        mid = table["recall@10"].to_numpy()
        ax.errorbar(xs, mid, yerr=[mid - table["recall@10_low"].to_numpy(), table["recall@10_high"].to_numpy() - mid],
                    fmt="none", ecolor="black", elinewidth=0.8, capsize=2)
    legend = ax.get_legend()
    handles, labels = ((list(legend.legend_handles), [t.get_text() for t in legend.texts]) if legend
                       else ax.get_legend_handles_labels())
    # Each metric's random level in its colour and its own dash, named with its value in the legend: two levels
    # can coincide (Recall@3 .143 and MRR@10 .139 with 21 candidates), and then the legend says so.
    dashes = [(4, 2), (1, 1.5), (6, 2, 1, 2), (2, 3)]
    for i, (m, colour) in enumerate(zip(metrics_, sns.color_palette())):
        if random and m in random:
            ax.axhline(random[m], color=colour, linewidth=0.9, dashes=dashes[i % len(dashes)])
            handles.append(Line2D([], [], color=colour, linewidth=0.9, dashes=dashes[i % len(dashes)]))
            labels.append(f"{RANDOM_LABEL}, {m}: {random[m]:.3f}")
    ax.set_xlabel("")
    ax.set_ylim(0, 1.05)  # a bar at 1 keeps its whisker
    _slanted_labels(ax)
    ax.set_title("Ranking quality on the test users (lines: random ranker; whiskers: 95% interval of R@10)")
    _legend_outside(ax, handles, labels, title="metric", fontsize=None, frameon=True)
    fig.tight_layout()
    return fig


def forest(table: pd.DataFrame, labels: Mapping[str, str] | None = None, title: str = ""):
    """One panel per metric: each comparison's paired mean difference with its 95% interval (filled: significant
    after Holm's correction). Rows are read "a - b"; right of the zero line, a ranks the positive better."""
    labels = labels or {}
    metrics_ = list(dict.fromkeys(table["metric"]))
    names = [f"{labels.get(a, a)} - {labels.get(b, b)}" for a, b in dict.fromkeys(zip(table["a"], table["b"]))]
    fig, axes = plt.subplots(1, len(metrics_), figsize=(3.4 * len(metrics_) + 2.6, 0.42 * len(names) + 1.3),
                             sharey=True, squeeze=False)
    for ax, metric in zip(axes[0], metrics_):
        rows = table[table["metric"] == metric]
        y = list(range(len(rows)))[::-1]
        for yi, r in zip(y, rows.itertuples()):
            colour = "tab:red" if r.significant else "tab:gray"
            ax.plot([r.low, r.high], [yi, yi], color=colour, linewidth=1.6)
            ax.plot([r.diff], [yi], "o", color=colour, markerfacecolor=colour if r.significant else "white")
        ax.axvline(0, color="black", linewidth=0.8, linestyle="--")
        ax.set_title(metric)
        ax.set_xlabel("difference (a - b)")
        ax.set_yticks(y)
        ax.set_yticklabels(names)
    fig.suptitle(title or "Paired differences over the same test users (95% interval; filled red: significant "
                          "after Holm)", fontsize=10)
    fig.tight_layout()
    return fig


def rank_distribution(ranks: pd.DataFrame, n_candidates: int = 21):
    """Where each system ranks the positive among the candidates (1 = top)."""
    order = list(dict.fromkeys(ranks["label"]))
    fig, ax = plt.subplots(figsize=(max(7, 0.7 * len(order)), 3.8))
    sns.boxplot(ranks, x="label", y="rank", order=order, ax=ax, color="#cfe0f3", fliersize=0)
    sns.stripplot(ranks, x="label", y="rank", order=order, ax=ax, size=2.5, alpha=0.5, color="#1f4e79")
    ax.axhline((n_candidates + 1) / 2, color="grey", linestyle="--", linewidth=0.8,
               label=f"{RANDOM_LABEL}: mean rank {(n_candidates + 1) / 2:g}")
    ax.set_ylim(n_candidates + 0.5, 0.5)
    # rank 1 (the top) and the top-10 cut labelled: matplotlib's own ticks (0, 5, ...) missed both
    step = 5 * max(1, round(n_candidates / 25))
    ax.set_yticks([1, *range(step, n_candidates - step // 2, step), n_candidates])  # no tick crowding the last
    ax.set_xlabel("")
    _slanted_labels(ax)
    ax.set_title("Rank of the positive (1 = top; dashed: a random ranker's mean)")
    _legend_outside(ax)
    fig.tight_layout()
    return fig


def protocols(full: pd.DataFrame, metric: str = "ndcg@10"):
    """Each system's ``metric`` under the sampled (1 + negatives) and the full-catalogue protocol, one line per
    system, each protocol on its own scale (left axis: sampled, right axis: whole catalogue).

    Whole-catalogue values are an order of magnitude smaller: on one shared axis they collapse near 0 and their order
    cannot be read. Both scales grow upwards, so a line that crosses another is a pair of systems the two protocols
    order differently; the legend gives each system's rank under each protocol (1 = best, ties share a rank).
    """
    sampled = full[f"sampled {metric}"].astype(float).to_numpy()
    whole = full[f"full {metric}"].astype(float).to_numpy()
    s_lo, s_hi = _span(sampled)
    w_lo, w_hi = _span(whole)

    def to_left(v):  # a whole-catalogue value -> the height it is drawn at (the sampled axis' units)
        return s_lo + (np.asarray(v, dtype=float) - w_lo) * (s_hi - s_lo) / (w_hi - w_lo)

    def to_right(y):
        return w_lo + (np.asarray(y, dtype=float) - s_lo) * (w_hi - w_lo) / (s_hi - s_lo)

    rank_s = pd.Series(sampled).rank(ascending=False, method="min").astype(int).to_numpy()
    rank_w = pd.Series(whole).rank(ascending=False, method="min").astype(int).to_numpy()
    # the legend in its own panel: right of the plot, the right axis' ticks and label are in the way
    fig, (ax, key) = plt.subplots(1, 2, figsize=(9.6, 4.6), gridspec_kw={"width_ratios": [3, 2]})
    lines = []
    for i, colour in zip(range(len(full)), sns.color_palette("tab20", len(full))):
        (line,) = ax.plot([0, 1], [sampled[i], float(to_left(whole[i]))], marker="o", color=colour,
                          label=f"{full['label'].iloc[i]}  ({rank_s[i]} \u2192 {rank_w[i]})")
        lines.append(line)
    pad = 0.06 * (s_hi - s_lo)
    ax.set_ylim(s_lo - pad, s_hi + pad)
    ax.set_ylabel(f"{metric}, sampled candidates")
    right = ax.secondary_yaxis("right", functions=(to_right, to_left))
    right.set_ylabel(f"{metric}, whole catalogue")
    ax.set_xticks([0, 1], ["sampled candidates\n(left scale)", "whole catalogue\n(right scale)"])
    ax.set_xlim(-0.15, 1.15)
    ax.set_title(f"{metric} of each system under two protocols,\neach on its own scale (crossing lines: the order "
                 "differs)", fontsize=10)
    key.axis("off")
    ordered = sorted(lines, key=lambda ln: -ln.get_ydata()[0])  # top to bottom as the left end points lie
    key.legend(handles=ordered, loc="upper left", fontsize=8, frameon=False,
               title="system (rank sampled \u2192 whole catalogue)", title_fontsize=8)
    fig.tight_layout()
    return fig


def ours_vs_paper(combined: pd.DataFrame, metric: str = "recall@10"):
    """One bar per system and dataset: our measurement beside the paper's (other data, other models)."""
    fig, ax = plt.subplots(figsize=(max(7, 0.8 * combined["label"].nunique()), 3.6))
    sns.barplot(combined, x="label", y=metric, hue="dataset", ax=ax)
    ax.set_xlabel("")
    ax.set_ylim(0, 1)
    _slanted_labels(ax)
    ax.set_title(f"{metric}: ours vs the paper's Table 2 (different data and models)")
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.0, 1.0), title=None)
    fig.tight_layout()
    return fig


AXIS_WORDS = {"summary": "summary in the prompt", "recent_items": "recent items shown (k)",
              "items_per_block": "items per summary block", "summarizer": "summarizer model"}


VALUE_PREFIX = {"recent_items": "k = ", "items_per_block": "n = "}


MODELS = {False: ("zero-shot", "C0"), True: ("fine-tuned", "C1")}


def ablation_axes(table: pd.DataFrame, metric: str = "recall@10", random: float | None = None):
    """One panel per ablation axis: the metric per value, zero-shot and fine-tuned side by side where the axis has
    both, each bar labelled with its value.

    Only the summary axis runs both models (:func:`trsr_utils.stages.grid.grid`); a panel with one model says which in
    its title, and a panel with a single cell says so, so that bars of equal height are not read as a missing
    comparison. A value whose cell is the profile's own recommender (the table's ``profile_setting``: e.g.
    ``recent_items`` = the profile's k is the fine-tuned cell of the profile's summary) is marked under its value.
    """
    # the same cell listed twice is one measurement: one bar
    frame = table.drop_duplicates(["axis", "value", "finetuned"]).assign(value=lambda t: t["value"].astype(str))
    shared: set[str] = set()
    if "profile_setting" in frame:  # the grid says which cells are the profile's own recommender
        frame = frame.assign(profile_setting=frame["profile_setting"].astype(bool))
    elif "scores" in frame:  # (a table from before that column) scores another axis' row also points at
        axes_of = frame.groupby("scores")["axis"].nunique()
        shared = set(axes_of[axes_of > 1].index)
        frame = frame.assign(profile_setting=frame["scores"].isin(shared))
    names = list(dict.fromkeys(frame["axis"]))
    fig, axes = plt.subplots(1, len(names), figsize=(3.8 * len(names) + 1.8, 3.8), squeeze=False, sharey=True)
    for ax, name in zip(axes[0], names):
        sub = frame[frame["axis"] == name]
        values = list(dict.fromkeys(sub["value"]))
        tuned = [t for t in (False, True) if (sub["finetuned"] == t).any()]
        width = 0.8 / len(tuned)
        for i, t in enumerate(tuned):
            rows = sub[sub["finetuned"] == t]
            xs = [values.index(v) + (i - (len(tuned) - 1) / 2) * width for v in rows["value"]]
            bars = ax.bar(xs, rows[metric], width * 0.92, color=MODELS[t][1])
            ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
        profile = set(sub.loc[sub["profile_setting"], "value"]) if "profile_setting" in sub else set()
        ticks = [VALUE_PREFIX.get(name, "") + v + ("\n(profile's setting)" if v in profile else "") for v in values]
        ax.set_xticks(range(len(values)), ticks, fontsize=8)
        ax.set_xlim(-0.6, len(values) - 0.4)
        if random is not None:
            ax.axhline(random, color="grey", linestyle="--", linewidth=0.8)
        if len(sub) == 1:
            title = f"{name}: one cell only ({MODELS[tuned[0]][0]})"
        elif len(tuned) == 1:
            title = f"{name} ({MODELS[tuned[0]][0]} only)"
        else:
            title = f"{name} (zero-shot vs fine-tuned)"
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(AXIS_WORDS.get(name, name))
        ax.set_ylim(0, 1)
    axes[0][0].set_ylabel(metric)
    present = set(frame["finetuned"])  # a legend entry only for a model the grid has (the demo: fine-tuned only)
    handles = [Patch(color=colour, label=model) for t, (model, colour) in MODELS.items() if t in present]
    if random is not None:
        handles.append(Line2D([], [], color="grey", linestyle="--", linewidth=0.8, label=RANDOM_LABEL))
    _legend_outside(axes[0][-1], handles)
    fig.suptitle(f"Ablations: {metric} on the test users")
    fig.tight_layout()
    return fig


def cost_vs_quality(table: pd.DataFrame, metric: str = "recall@10"):
    """LLM tokens spent per user (summaries + scoring) against ranking quality, one point per cell.

    Cells at the same point (a cell that is a notebook 07 row, another with the profile's own setting) share one
    label; labels are placed where they overlap no other label and stay inside the axes.
    """
    frame = table.assign(model=table["finetuned"].map({True: "fine-tuned", False: "zero-shot"}))
    fig, ax = plt.subplots(figsize=(8, 4.4))
    sns.scatterplot(frame, x="llm_tokens_per_user", y=metric, hue="axis", style="model", s=70, ax=ax)
    ax.margins(x=0.1, y=0.12)
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_xlabel("LLM tokens per user (summary + scoring 21 candidates)")
    present = set(frame["finetuned"])
    marks = ", ".join(m for t, m in ((False, "zs: zero-shot"), (True, "ft: fine-tuned")) if t in present)
    ax.set_title(f"Cost against {metric} ({marks})")
    fig.tight_layout()
    points: dict[tuple[float, float], list[str]] = {}
    for _, r in frame.iterrows():
        name = f"{r['axis']}={r['value']} ({'ft' if r['finetuned'] else 'zs'})"
        points.setdefault((round(float(r["llm_tokens_per_user"]), 3), round(float(r[metric]), 6)), []).append(name)
    _place_labels(fig, ax, {xy: " = ".join(names) for xy, names in points.items()})
    return fig
