"""Figures of notebook 06: the SFT curves and what the adapter changed per user (AUC of p(yes))."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from trsr_utils.method import metrics
from trsr_utils.report.plots.common import _legend_outside


def sft_curves(report: dict, random_recall10: float | None = None):
    """Training loss per logged step, and validation Recall@10 / MRR@10 per checkpoint (step 0 = zero-shot)."""
    fig, axes = plt.subplots(1, 2, figsize=(14.5, 3.4))
    loss = pd.DataFrame(report["loss_history"])
    if len(loss):
        sns.lineplot(loss, x="step", y="loss", marker="o", ax=axes[0], label="logged loss")
    q = report["positives"] / report["examples"] if report.get("examples") and report.get("positives") else None
    if q is not None and 0 < q < 1 and report.get("loss") in ("answer", "yes_no"):
        named, prior = metrics.prior_loss(q)  # the loss training_readings.reading argues from
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
