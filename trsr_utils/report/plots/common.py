"""What every figure of the course shares: the random ranker's label, legends kept off the data, slanted tick
labels and label placement.

Used by every notebook's figures.
"""

from __future__ import annotations

from typing import Mapping

import matplotlib

# The backend is settled here, before any figure module imports pyplot (the package imports this module first).
if matplotlib.get_backend().lower() == "agg" or not matplotlib.get_backend():
    matplotlib.use("Agg")
import numpy as np


RANDOM_LABEL = "random ranker, expected"


def _legend_outside(ax, handles=None, labels=None, **kwargs):
    """A legend right of ``ax``, outside its data area: inside, a legend covers the bars or points behind it."""
    if handles is None:
        handles, labels = ax.get_legend_handles_labels()
    kwargs = {"fontsize": 8, "frameon": False, **kwargs}
    if labels is None:
        return ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, **kwargs)
    return ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, **kwargs)


def _slanted_labels(ax) -> None:
    """Long system names on the x axis, turned 45 degrees and anchored at their right end."""
    ax.tick_params(axis="x", rotation=45)
    for t in ax.get_xticklabels():
        t.set_horizontalalignment("right")


def _span(values: np.ndarray) -> tuple[float, float]:
    """The smallest and largest value, a little apart when they are equal (one value: no scale to draw)."""
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    return (lo, hi) if hi > lo else (lo, lo + max(abs(lo), 1.0) * 0.1)


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
