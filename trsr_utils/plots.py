"""Figures the notebooks show (seaborn on matplotlib); each returns its Figure."""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib

if matplotlib.get_backend().lower() == "agg" or not matplotlib.get_backend():
    matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from . import metrics

RANDOM_LABEL = "random ranker, expected"


def _legend_outside(ax, handles=None, labels=None, **kwargs):
    """A legend right of ``ax``, outside its data area: inside, a legend covers the bars or points behind it."""
    if handles is None:
        handles, labels = ax.get_legend_handles_labels()
    kwargs = {"fontsize": 8, "frameon": False, **kwargs}
    if labels is None:
        return ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, **kwargs)
    return ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, **kwargs)


def history_lengths(samples: pd.DataFrame):
    """Histogram of history lengths, one colour per split."""
    frame = pd.DataFrame({"history length": samples["history"].map(len), "split": samples["split"]})
    fig, ax = plt.subplots(figsize=(6, 3.2))
    sns.histplot(frame, x="history length", hue="split", multiple="stack", discrete=True, ax=ax)
    ax.set_title("History length per sample")
    fig.tight_layout()
    return fig


def token_distributions(series: Mapping[str, Sequence[int]], title: str = "Tokens per unit"):
    """One histogram per named list of token counts (items, blocks, prompts)."""
    names = list(series)
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        sns.histplot(list(series[name]), ax=ax, bins=30)
        ax.set_title(name)
        ax.set_xlabel("tokens")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def summary_cost(summaries: pd.DataFrame, title: str = "LLM tokens spent per user"):
    """Left: summary length in words; right: LLM tokens (prompt + generated, retries included) per user
    against the number of history items the summary covers."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.4))
    sns.histplot(summaries["summary"].str.split().map(len), ax=axes[0], discrete=True)
    axes[0].set_xlabel("words in the final summary")
    axes[0].set_title("Summary length")
    frame = summaries.assign(flagged=np.where(summaries["fallbacks"] > 0, "a step fell back to the template",
                                              "no fallback"))
    sns.scatterplot(frame, x="n_items", y="llm_tokens", hue="flagged", style="flagged", ax=axes[1], alpha=0.7,
                    hue_order=["no fallback", "a step fell back to the template"],
                    style_order=["no fallback", "a step fell back to the template"])
    axes[1].set_xlabel("history items summarised")
    axes[1].set_ylabel("LLM tokens (prompt + generated)")
    axes[1].set_title(title)
    sns.move_legend(axes[1], "upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, title=None, fontsize=8,
                    frameon=False)
    fig.tight_layout()
    return fig


def compare_summaries(table: pd.DataFrame, methods: Sequence[str]):
    """Three panels: words per summary by method, overlap between methods, share naming the top category."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    words = pd.DataFrame({m: table[f"{m}_words"] for m in methods}).melt(var_name="method", value_name="words")
    sns.boxplot(words, x="method", y="words", ax=axes[0])
    axes[0].set_xlabel("summary method")
    axes[0].set_title("Summary length")
    overlaps = [c for c in table.columns if c.startswith("overlap_")]
    long = table[overlaps].melt(var_name="pair", value_name="overlap")
    long["pair"] = long["pair"].str.removeprefix("overlap_").str.replace("_", " vs ")
    sns.histplot(long, x="overlap", hue="pair", bins=20, binrange=(0, 1), element="step", ax=axes[1])
    axes[1].set_title("Content-word overlap (Jaccard)")
    rates = pd.Series({m: table[f"{m}_mentions_top"].mean() for m in methods})
    sns.barplot(x=rates.index, y=rates.values, ax=axes[2])
    axes[2].set_ylim(0, 1)
    axes[2].set_xlabel("summary method")  # seaborn would take the unnamed index's name: "None"
    axes[2].set_ylabel("share of users")
    axes[2].set_title("Names the user's top category")
    fig.tight_layout()
    return fig


def sft_curves(report: dict, random_recall10: float | None = None):
    """Training loss per logged step, and validation Recall@10 / MRR@10 per checkpoint (step 0 = zero-shot)."""
    fig, axes = plt.subplots(1, 2, figsize=(14.5, 3.4))
    loss = pd.DataFrame(report["loss_history"])
    if len(loss):
        sns.lineplot(loss, x="step", y="loss", marker="o", ax=axes[0], label="logged loss")
    q = report["positives"] / report["examples"] if report.get("examples") and report.get("positives") else None
    if q is not None and 0 < q < 1 and report.get("loss") in ("answer", "yes_no"):
        named, prior = metrics.prior_loss(q)  # the loss sft.reading argues from
        axes[0].axhline(prior, ls="--", c="grey", label=f"{named} = {prior:.3f}: only the Yes rate learned")
    if axes[0].get_legend_handles_labels()[0]:
        _legend_outside(axes[0])
    axes[0].set_title("Training loss")
    val = pd.DataFrame(report["validation"])
    long = val.melt(id_vars="step", value_vars=["recall@10", "mrr@10"], var_name="metric", value_name="value")
    if val["step"].nunique() >= 3:
        sns.lineplot(long, x="step", y="value", hue="metric", marker="o", ax=axes[1])
    else:  # two checkpoints are two measurements, not a trend: no line between them
        sns.scatterplot(long, x="step", y="value", hue="metric", s=60, ax=axes[1])
    if random_recall10 is not None:
        axes[1].axhline(random_recall10, ls="--", c="grey", label="random R@10")
    best = report["best"]["step"]
    axes[1].axvline(best, ls=":", c="black", label=f"selected (step {best})")
    _legend_outside(axes[1])
    axes[1].set_title("Validation ranking (step 0 = zero-shot)")
    fig.tight_layout()
    return fig


def auc_pairs(auc: pd.DataFrame, p_zero: Sequence[np.ndarray], p_tuned: Sequence[np.ndarray]):
    """Left: each validation user's AUC of p(yes), zero-shot -> fine-tuned (one line per user; .5 = a coin).
    Right: every candidate's p(yes), zero-shot against fine-tuned (positives marked): a shift of all points alike
    is the prior; positives pulled away from their negatives would be the ranking."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for _, row in auc.iterrows():
        axes[0].plot([0, 1], [row["zero-shot"], row["fine-tuned"]], marker="o", c="tab:blue", alpha=0.6)
    axes[0].plot([0, 1], [auc["zero-shot"].mean(), auc["fine-tuned"].mean()], marker="s", lw=3, c="black",
                 label="mean")
    axes[0].axhline(0.5, ls="--", c="grey", label="coin (.5)")
    axes[0].set_xticks([0, 1], ["zero-shot", "fine-tuned"])
    axes[0].set_xlim(-0.3, 1.3)
    axes[0].set_ylim(-0.02, 1.02)
    axes[0].set_ylabel("per-user AUC of p(yes)")
    axes[0].set_title("Does it rank the user's positive higher?")
    _legend_outside(axes[0])
    z, t = np.concatenate(list(p_zero)), np.concatenate(list(p_tuned))
    positive = np.concatenate([np.arange(len(p)) == 0 for p in p_zero])
    axes[1].scatter(z[~positive], t[~positive], s=10, c="tab:grey", alpha=0.5, label="negatives")
    axes[1].scatter(z[positive], t[positive], s=40, c="tab:red", marker="*", label="positives")
    lo, hi = float(min(z.min(), t.min())), float(max(z.max(), t.max()))
    axes[1].plot([lo, hi], [lo, hi], ls=":", c="black", label="unchanged")
    axes[1].set_xlabel("p(yes), zero-shot")
    axes[1].set_ylabel("p(yes), fine-tuned")
    axes[1].set_title("Every candidate's p(yes)")
    _legend_outside(axes[1])
    fig.tight_layout()
    return fig


def _slanted_labels(ax) -> None:
    """Long system names on the x axis, turned 45 degrees and anchored at their right end."""
    ax.tick_params(axis="x", rotation=45)
    for t in ax.get_xticklabels():
        t.set_horizontalalignment("right")


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
    ax.set_ylim(0, 1)
    _slanted_labels(ax)
    ax.set_title("Ranking quality on the test users (dashed: random ranker; whiskers: 95% interval of R@10)")
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
    ax.set_xlabel("")
    _slanted_labels(ax)
    ax.set_title("Rank of the positive (1 = top; dashed: a random ranker's mean)")
    _legend_outside(ax)
    fig.tight_layout()
    return fig


def _span(values: np.ndarray) -> tuple[float, float]:
    """The smallest and largest value, a little apart when they are equal (one value: no scale to draw)."""
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    return (lo, hi) if hi > lo else (lo, lo + max(abs(lo), 1.0) * 0.1)


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

    Only the summary axis runs both models (:func:`trsr_utils.ablation.grid`); a panel with one model says which in
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
    handles = [Patch(color=colour, label=model) for model, colour in MODELS.values()]
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
    ax.set_title(f"Cost against {metric} (zs: zero-shot, ft: fine-tuned)")
    fig.tight_layout()
    points: dict[tuple[float, float], list[str]] = {}
    for _, r in frame.iterrows():
        name = f"{r['axis']}={r['value']} ({'ft' if r['finetuned'] else 'zs'})"
        points.setdefault((round(float(r["llm_tokens_per_user"]), 3), round(float(r[metric]), 6)), []).append(name)
    _place_labels(fig, ax, {xy: " = ".join(names) for xy, names in points.items()})
    return fig


def _place_labels(fig, ax, labels: Mapping[tuple[float, float], str], fontsize: int = 7) -> None:
    """Annotate each point, trying offsets until the label overlaps no earlier label and stays in the axes."""
    renderer = fig.canvas.get_renderer()
    inside = ax.get_window_extent(renderer)
    placed = []
    offsets = [(5, 4), (5, -12), (-5, 4), (-5, -12), (12, 14), (12, -22), (-12, 14), (-12, -22)]
    for (x, y), text in sorted(labels.items(), key=lambda kv: (-kv[0][1], kv[0][0])):
        for dx, dy in offsets:
            # a thin leader line wherever the label sits away from its point's upper right
            leader = None if (dx, dy) == offsets[0] else {"arrowstyle": "-", "lw": 0.5, "color": "grey",
                                                         "shrinkA": 0, "shrinkB": 4}
            note = ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=fontsize,
                               ha="left" if dx > 0 else "right", va="center", arrowprops=leader)
            box = note.get_window_extent(renderer)
            fits = inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1
            if fits and not any(box.overlaps(other) for other in placed):
                break
            note.remove()
        else:  # nowhere free: keep the first place rather than drop the label
            note = ax.annotate(text, (x, y), textcoords="offset points", xytext=offsets[0], fontsize=fontsize)
            box = note.get_window_extent(renderer)
        placed.append(box)


def listwise_vs_pointwise(table: pd.DataFrame, timing: Mapping[str, object], random10: float | None = None):
    """Left: Recall@10 of each system on the same users and candidates (whiskers: 95% interval over users);
    right: candidates scored per second, pointwise and listwise, measured back to back."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [3, 1]})
    mid = table["recall@10"].to_numpy()
    colours = ["tab:blue" if s.startswith("pointwise") else "tab:orange" if s.startswith("listwise") else "tab:gray"
               for s in table["system"]]
    left.bar(range(len(table)), mid, color=colours)
    left.errorbar(range(len(table)), mid, yerr=[mid - table["recall@10_low"].to_numpy(),
                                                table["recall@10_high"].to_numpy() - mid],
                  fmt="none", ecolor="black", elinewidth=0.8, capsize=2)
    if random10 is not None:
        left.axhline(random10, color="grey", linestyle="--", linewidth=0.8)
    left.set_xticks(range(len(table)), table["label"])
    _slanted_labels(left)
    left.set_ylim(0, 1)
    left.set_ylabel("Recall@10")
    left.set_title("Same users, same 21 candidates (dashed: random; whiskers: 95% interval)")
    rows = pd.DataFrame(timing["rows"])
    right.bar(rows["scoring"], rows["candidates_per_s"], color=["tab:blue", "tab:orange"][:len(rows)])
    right.set_ylabel("candidates / s")
    right.set_title(f"Speed, back to back ({rows['users'].iloc[0]} users)")
    fig.tight_layout()
    return fig


def position_bias(positions: pd.DataFrame, n_candidates: int = 21, bins: int = 7):
    """Left: the positive's mean rank by where it was shown (letters grouped in ``bins`` bands), one line per listwise
    system: flat = no position bias. Right: how often the top-ranked candidate was the one shown at each band,
    against the uniform share.

    A pointwise system scores each candidate in its own prompt: there is no list, so no position to be biased by. On
    the left it is one flat reference (its mean rank); on the right its line is the order candidates were scored in.
    A band where no positive was listed has no mean rank: it is left empty (shaded, the line broken there), not 0.
    """
    band = n_candidates / bins
    p = positions.assign(band=(positions["position"] // band).astype(int),
                         top_band=(positions["top_position"] // band).astype(int))
    names = [f"{chr(65 + int(b * band))}-{chr(65 + min(n_candidates, int((b + 1) * band)) - 1)}" for b in range(bins)]
    systems = list(dict.fromkeys(p["system"]))
    colours = dict(zip(systems, sns.color_palette(n_colors=len(systems))))
    listed = [s for s in systems if not s.startswith("pointwise")]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.0))
    # each system its own marker and dash, so that lines lying on each other stay visible
    styles = dict(zip(systems, [("o", "-"), ("s", "--"), ("^", ":"), ("D", "-."), ("v", "-")] * len(systems)))
    for system in listed:
        g = p[p["system"] == system]
        by = g.groupby("band")["rank"].mean().reindex(range(bins))  # NaN where nothing was listed: a break, not 0
        left.plot(range(bins), by.to_numpy(), marker=styles[system][0], linestyle=styles[system][1],
                  markersize=7 - 2 * (listed.index(system) % 2), color=colours[system], label=system)
    for system in systems:
        if system not in listed:
            left.axhline(p.loc[p["system"] == system, "rank"].mean(), color=colours[system], linestyle=":",
                         linewidth=1.5, label=f"{system}: mean rank\n(one candidate per prompt, no list)")
    counts = p[p["system"].isin(listed)].groupby("band").size().reindex(range(bins), fill_value=0)
    for b in counts.index[counts == 0]:
        left.axvspan(b - 0.5, b + 0.5, color="0.92", zorder=0)
    left.axhline((n_candidates + 1) / 2, color="grey", linestyle="--", linewidth=0.8,
                 label=f"{RANDOM_LABEL} mean rank")
    left.set_ylim(n_candidates + 0.5, 0.5)
    left.set_ylabel("mean rank of the positive (1 = top)")
    left.set_title("The positive's rank by where it was listed", fontsize=10)
    left.set_xticks(range(bins), [f"{n}\n(none listed)" if counts[b] == 0 else n for b, n in enumerate(names)],
                    fontsize=8)
    for system in systems:
        g = p[p["system"] == system]
        # every prompt has a top candidate: a band that never held it is a measured 0, not a missing value
        share = g["top_band"].value_counts(normalize=True).reindex(range(bins), fill_value=0)
        right.plot(range(bins), share.to_numpy(), marker=styles[system][0], linestyle=styles[system][1],
                   markersize=7 - 2 * (systems.index(system) % 2), color=colours[system],
                   label=system if system in listed else f"{system}: where its top candidate was in the scoring order")
    right.axhline(1 / bins, color="grey", linestyle="-.", linewidth=0.8, label="uniform share")
    right.set_ylabel("share of prompts")
    right.set_title("Where the top-ranked candidate was listed (dash-dot: uniform)", fontsize=10)
    right.set_xticks(range(bins), names, fontsize=8)
    for ax in (left, right):
        ax.set_xlabel("letters")
        ax.set_xlim(-0.5, bins - 0.5)
    # each panel its own legend, under it: inside, a legend covered the lines; one legend beside both mixed the
    # left panel's references with the right one's
    for ax in (left, right):
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def rank_moves(positions: pd.DataFrame):
    """Per user, how far the positive's rank moved over the candidate orders (largest minus smallest rank)."""
    spread = positions.groupby(["system", "user_id"], sort=False)["rank"].agg(lambda r: r.max() - r.min()).reset_index()
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    sns.boxplot(spread, x="system", y="rank", ax=ax, color="#cfe0f3", fliersize=0)
    sns.stripplot(spread, x="system", y="rank", ax=ax, size=3, alpha=0.6, color="#1f4e79")
    ax.set_xlabel("")
    ax.set_ylabel("largest - smallest rank")
    ax.set_title("How far one user's positive moves when only the order changes")
    _slanted_labels(ax)
    fig.tight_layout()
    return fig


def two_stage(table: pd.DataFrame, k: int):
    """Full-catalogue Recall@10 and NDCG@10 of each retriever alone and with each LLM re-ranker. On the Recall@10
    panel, the black tick on each group is the share of users whose positive was retrieved at all: a re-ranker
    cannot exceed it. It bounds Recall@10 only (NDCG@10 also depends on the rank), so the NDCG panel has no tick."""
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 3.6), sharey=True)
    order = list(dict.fromkeys(table["retriever"]))
    for ax, metric in zip(axes, ("recall@10", "ndcg@10")):
        sns.barplot(table, x="retriever", y=metric, hue="reranker", order=order, ax=ax)
        for container in ax.containers:  # each bar's value written on it: a bar at 0 is a result, not a gap
            ax.bar_label(container, fmt="%.2f", fontsize=7, padding=1)
        ax.set_xlabel("retriever")
    ceiling = table.groupby("retriever", sort=False)[f"retrieved@{k}"].first().reindex(order)
    axes[0].scatter(range(len(order)), ceiling.to_numpy(), marker="_", s=900, color="black", zorder=3)
    axes[0].set_title(f"recall@10 over the whole catalogue (black: retrieved in the top {k})", fontsize=10)
    axes[1].set_title("ndcg@10 over the whole catalogue", fontsize=10)
    axes[1].set_ylabel("ndcg@10")
    axes[1].yaxis.label.set_visible(True)  # shared y: the right panel hides its label otherwise
    handles, labels = axes[0].get_legend_handles_labels()
    # the tick as the legend shows it: the plotted marker (900 pt^2) would reach into the panel
    handles.append(Line2D([], [], marker="_", markersize=14, linestyle="none", color="black"))
    labels.append(f"retrieved in the top {k}\n(the most Recall@10 can reach)")
    for ax in axes:
        if ax.get_legend():
            ax.get_legend().remove()
    _legend_outside(axes[1], handles, labels, title="re-ranker", title_fontsize=8)
    axes[0].set_ylim(0, max(0.05, float(table[[f"retrieved@{k}", "recall@10"]].to_numpy().max()) * 1.15))
    fig.tight_layout()
    return fig


def audit_specificity(table: pd.DataFrame, measure: str = "coverage"):
    """Per summary method: ``measure`` against the user's own history and (mean) against other users' histories,
    one line per user between the two (a specific summary slopes down from own to others)."""
    methods = list(dict.fromkeys(table["method"]))
    fig, axes = plt.subplots(1, len(methods), figsize=(3.2 * len(methods), 3.2), sharey=True, squeeze=False)
    for ax, m in zip(axes[0], methods):
        sub = table[table["method"] == m][[measure, f"{measure}_others"]].dropna()
        for own, others in sub.itertuples(index=False):
            ax.plot([0, 1], [own, others], color="0.75", lw=0.8)
        ax.plot([0, 1], [sub[measure].mean(), sub[f"{measure}_others"].mean()], color="C3", lw=2.5, marker="o",
                label="mean")
        ax.set_xticks([0, 1], ["own history", "other users'"])
        ax.set_xlim(-0.2, 1.2)
        ax.set_title(m)
    axes[0][0].set_ylabel(f"{measure} of the top attributes")
    axes[0][0].legend(loc="lower left", fontsize=8)
    fig.suptitle(f"Specificity: does a summary describe its own user better than others? ({measure})")
    fig.tight_layout()
    return fig


def drift_by_step(by_step: pd.DataFrame):
    """Recurrent updates per step: the share returned unchanged, naming the new block's top attributes, and
    taking in an attribute the new block brings."""
    fig, ax = plt.subplots(figsize=(8.6, 3.2))
    for col, label, style in (("unchanged", "share returned unchanged", "-"),
                              ("new_block_coverage", "new block's top 2 named (mean share)", "-"),
                              ("previous_coverage", "... already named before the update", ":"),
                              ("took_new", "share naming what the block brings new", "-")):
        ax.plot(by_step.index, by_step[col], marker="o", ls=style, label=label)
    ax.set_xlabel("update step (block)")
    ax.set_ylabel("share")
    ax.set_ylim(-0.05, 1.05)
    ax.set_xticks(list(by_step.index))
    _legend_outside(ax)
    ax.set_title("Recurrent summaries: what each update takes in")
    fig.tight_layout()
    return fig


def predictiveness(metrics_table: pd.DataFrame, metric: str = "recall@10", random: float | None = None):
    """The positive found by each query alone (MiniLM cosine over the user's candidates): ``metric`` per query."""
    frame = metrics_table.sort_values(metric)
    fig, ax = plt.subplots(figsize=(8.5, 0.45 * len(frame) + 1.2))
    colors = ["C3" if "another" in q else "C0" for q in frame.index]
    ax.barh(frame.index, frame[metric], color=colors)
    # Both colours named (one legend entry per colour used), the legend right of the bars, off the data.
    names = {"C0": "built from the user's own data", "C3": "knows nothing of the user"}
    handles = [Patch(color=c, label=label) for c, label in names.items() if c in colors]
    if random is not None:
        handles.append(ax.axvline(random, color="0.4", ls="--", lw=1, label="random order"))
    _legend_outside(ax, handles, title="query", title_fontsize=8)
    ax.set_xlabel(f"{metric} (the query alone ranks the candidates)")
    ax.set_title("What each query knows of the positive")
    fig.tight_layout()
    return fig


def stage_hours(panels: Sequence[tuple[str, pd.DataFrame, bool]], fits: Mapping[str, pd.DataFrame] | None = None):
    """Notebook 10: estimated hours per stage on one device, one panel per ``(title, hours, log scale)``, where
    ``hours`` has one row per stage (a ``total`` row is left out) and one column per device. Each device keeps its
    colour in every panel; one legend right of the panels (inside a panel it covered the tallest bars). ``fits``
    (by panel title, the same shape as its hours, True where the stage fits the device as planned): a stage that
    does not is drawn hatched, its hours those of the planned batch it cannot run."""
    devices = list(dict.fromkeys(c for _, hours, _ in panels for c in hours.columns))
    colours = dict(zip(devices, sns.color_palette(n_colors=len(devices))))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels) + 1.4, 4.2), squeeze=False)
    hatched = False
    for ax, (title, hours, log) in zip(axes[0], panels):
        shown = hours.drop(index="total", errors="ignore")
        shown.plot.bar(ax=ax, logy=log, rot=20, width=0.8, color=[colours[c] for c in shown.columns], legend=False)
        fit = (fits or {}).get(title)
        if fit is not None:  # pandas draws column by column: container j holds device j's bars in row order
            for device, container in zip(shown.columns, ax.containers):
                for stage, bar in zip(shown.index, container):
                    if not bool(fit.reindex(index=shown.index, columns=shown.columns).loc[stage, device]):
                        bar.set_hatch("////")
                        bar.set_alpha(0.45)
                        hatched = True
        for t in ax.get_xticklabels():
            t.set_horizontalalignment("right")
        ax.set_title(f"{title}: hours per stage on one device", fontsize=10)
        ax.set_ylabel("hours (log scale)" if log else "hours")
        ax.set_xlabel("")
    handles = [Patch(color=colours[d], label=d) for d in devices]
    if hatched:
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="////",
                             label="does not fit as planned\n(hours of the planned batch)"))
    _legend_outside(axes[0][-1], handles, [h.get_label() for h in handles], title="device", title_fontsize=8)
    fig.tight_layout()
    return fig
