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
