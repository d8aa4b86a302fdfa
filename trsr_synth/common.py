"""Helpers the MIND and Amazon-M2 generators share: Zipf popularity, log-normal counts, NumPy's array text."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def zipf_cumulative(n: int, exponent: float = 1.05, offset: float = 5.0) -> list[float]:
    """Cumulative weights of a Zipf-like law over ranks 0..n-1 (for ``random.choices``)."""
    ranks = np.arange(n, dtype=np.float64)
    return np.cumsum(1.0 / (ranks + offset) ** exponent).tolist()


def lognormal_counts(rng: np.random.Generator, n: int, median: float, sigma: float, low: int, high: int
                     ) -> np.ndarray:
    """``n`` integers from a clipped log-normal law (heavy right tail, like history and session lengths)."""
    values = np.rint(rng.lognormal(math.log(median), sigma, n)) if sigma > 0 else np.full(n, round(median))
    return np.clip(values, low, high).astype(np.int64)


def numpy_array_text(ids: Sequence[str]) -> str:
    """``str(numpy.array(ids))`` for ids of 10 characters (every Amazon-M2 id), without NumPy's slow printer.

    NumPy wraps its 75-character lines after five quoted 10-character ids and indents the next line by one
    space; the unit tests compare this against ``str(np.array(ids))``.
    """
    quoted = [f"'{i}'" for i in ids]
    lines = [" ".join(quoted[k:k + 5]) for k in range(0, len(quoted), 5)]
    return "[" + "\n ".join(lines) + "]"


def sentence(words: list[str]) -> str:
    """Words joined into a sentence with a capital first letter."""
    text = " ".join(words)
    return text[:1].upper() + text[1:]

