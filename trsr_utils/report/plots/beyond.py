"""Figures of notebooks 09-10: listwise against pointwise, position bias, two-stage ranking, hours per stage."""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from trsr_utils.report.plots.common import RANDOM_LABEL, _legend_outside, _slanted_labels


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
    left.set_ylim(0, 1.15)  # the band above 1 holds the legend, clear of every bar
    left.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    left.set_ylabel("Recall@10")
    left.set_title("Same users, same 21 candidates (dashed: random; whiskers: 95% interval)")
    kinds = {"tab:blue": "pointwise p(yes)", "tab:orange": "listwise letters", "tab:gray": "retriever (MiniLM cosine)"}
    left.legend(handles=[Patch(color=c, label=label) for c, label in kinds.items() if c in colours],
                loc="upper center", ncol=3, fontsize=8, frameon=False)
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
