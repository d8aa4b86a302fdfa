"""Progress bars that suit where the code runs.

In JupyterLab a widget bar with ETA; in a headless papermill run (the pipeline
sets TRSR_HEADLESS=1) a plain text bar that updates rarely, so executed
notebooks stay small and carry no widget state; TRSR_PROGRESS=0 silences both.
"""

from __future__ import annotations

import os
import sys
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


def headless() -> bool:
    return os.environ.get("TRSR_HEADLESS", "") == "1"


def progress(iterable: Iterable[T], desc: str = "", total: int | None = None, unit: str = "it") -> Iterator[T]:
    """Wrap ``iterable`` in the progress bar that fits the environment."""
    if os.environ.get("TRSR_PROGRESS", "1") == "0":
        yield from iterable
        return
    if headless():
        from tqdm import tqdm

        bar = tqdm(iterable, desc=desc, total=total, unit=unit, file=sys.stderr, mininterval=30.0, ascii=True)
    else:
        from tqdm.auto import tqdm as auto_tqdm

        bar = auto_tqdm(iterable, desc=desc, total=total, unit=unit)
    with bar:
        yield from bar
