"""Figures of notebooks 01-05: history and token lengths, what summaries cost, how they compare, their audit."""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.patches import Patch

from trsr_utils.report.plots.common import _legend_outside


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
    order = ["no fallback", "a step fell back to the template"]
    if summaries["n_items"].nunique() == 1:
        # one history length: a scatter would stack every user in one column, so show the spread itself
        sns.histplot(frame, x="llm_tokens", hue="flagged", hue_order=order, multiple="stack", bins=30, ax=axes[1])
        axes[1].set_xlabel("LLM tokens (prompt + generated)")
        axes[1].set_ylabel("users")
        axes[1].set_title(f"{title} ({summaries['n_items'].iloc[0]} items each)")
    else:
        sns.scatterplot(frame, x="n_items", y="llm_tokens", hue="flagged", style="flagged", ax=axes[1], alpha=0.7,
                        hue_order=order, style_order=order)
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
    # identical pairs (overlap 1.0) can be a handful of users beside bins of hundreds: the legend counts them
    same = {p: int((long.loc[long["pair"] == p, "overlap"] >= 1.0).sum()) for p in long["pair"].unique()}
    if any(same.values()):
        long["pair"] = long["pair"].map(lambda p: f"{p} ({same[p]} at 1.0)")
    # side by side: layered steps hid a pair whose bar had the same height as another's (e.g. two 1s at 1.0)
    sns.histplot(long, x="overlap", hue="pair", bins=20, binrange=(0, 1), multiple="dodge", shrink=0.9, ax=axes[1])
    axes[1].set_title("Content-word overlap (Jaccard)")
    rates = pd.Series({m: table[f"{m}_mentions_top"].mean() for m in methods})
    sns.barplot(x=rates.index, y=rates.values, ax=axes[2])
    axes[2].set_ylim(0, 1)
    axes[2].set_xlabel("summary method")  # seaborn would take the unnamed index's name: "None"
    axes[2].set_ylabel("share of users")
    axes[2].set_title("Names the user's top category")
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
    # A marker shape per series, smaller in drawing order: shares that coincide (one update step) all stay visible.
    for col, label, style, marker, size in (("unchanged", "share returned unchanged", "-", "o", 11),
                                            ("new_block_coverage", "new block's top 2 named (mean share)", "-", "s", 8),
                                            ("previous_coverage", "... already named before the update", ":", "D", 6),
                                            ("took_new", "share naming what the block brings new", "-", "^", 4)):
        ax.plot(by_step.index, by_step[col], marker=marker, ms=size, ls=style, label=label)
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
