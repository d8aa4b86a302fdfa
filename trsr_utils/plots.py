"""Figures the notebooks show (seaborn on matplotlib); each returns its Figure."""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib

if matplotlib.get_backend().lower() == "agg" or not matplotlib.get_backend():
    matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns


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
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    sns.histplot(summaries["summary"].str.split().map(len), ax=axes[0], discrete=True)
    axes[0].set_xlabel("words in the final summary")
    axes[0].set_title("Summary length")
    frame = summaries.assign(flagged=summaries["fallbacks"] > 0)
    sns.scatterplot(frame, x="n_items", y="llm_tokens", hue="flagged", style="flagged", ax=axes[1], alpha=0.7)
    axes[1].set_xlabel("history items summarised")
    axes[1].set_ylabel("LLM tokens (prompt + generated)")
    axes[1].set_title(title)
    fig.tight_layout()
    return fig


def compare_summaries(table: pd.DataFrame, methods: Sequence[str]):
    """Three panels: words per summary by method, overlap between methods, share naming the top category."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    words = pd.DataFrame({m: table[f"{m}_words"] for m in methods}).melt(var_name="method", value_name="words")
    sns.boxplot(words, x="method", y="words", ax=axes[0])
    axes[0].set_title("Summary length")
    overlaps = [c for c in table.columns if c.startswith("overlap_")]
    long = table[overlaps].melt(var_name="pair", value_name="overlap")
    long["pair"] = long["pair"].str.removeprefix("overlap_").str.replace("_", " vs ")
    sns.histplot(long, x="overlap", hue="pair", bins=20, binrange=(0, 1), element="step", ax=axes[1])
    axes[1].set_title("Content-word overlap (Jaccard)")
    rates = pd.Series({m: table[f"{m}_mentions_top"].mean() for m in methods})
    sns.barplot(x=rates.index, y=rates.values, ax=axes[2])
    axes[2].set_ylim(0, 1)
    axes[2].set_ylabel("share of users")
    axes[2].set_title("Names the user's top category")
    fig.tight_layout()
    return fig


def sft_curves(report: dict, random_recall10: float | None = None):
    """Training loss per logged step, and validation Recall@10 / MRR@10 per checkpoint (step 0 = zero-shot)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    loss = pd.DataFrame(report["loss_history"])
    if len(loss):
        sns.lineplot(loss, x="step", y="loss", marker="o", ax=axes[0])
    axes[0].set_title("Training loss")
    val = pd.DataFrame(report["validation"])
    long = val.melt(id_vars="step", value_vars=["recall@10", "mrr@10"], var_name="metric", value_name="value")
    sns.lineplot(long, x="step", y="value", hue="metric", marker="o", ax=axes[1])
    if random_recall10 is not None:
        axes[1].axhline(random_recall10, ls="--", c="grey", label="random R@10")
    best = report["best"]["step"]
    axes[1].axvline(best, ls=":", c="black", label=f"selected (step {best})")
    axes[1].legend()
    axes[1].set_title("Validation ranking (step 0 = zero-shot)")
    fig.tight_layout()
    return fig
