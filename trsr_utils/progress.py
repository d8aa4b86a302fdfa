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


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def __enter__(self) -> "_Silent":
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def bar(total: int | None = None, desc: str = "", unit: str = "it", iterable: Iterable[T] | None = None):
    """A progress bar (context manager) for the environment; ``.update(n)`` by hand or iterate it."""
    if os.environ.get("TRSR_PROGRESS", "1") == "0":
        return _Silent() if iterable is None else _SilentIter(iterable)
    if headless():
        from tqdm import tqdm

        return tqdm(iterable, desc=desc, total=total, unit=unit, file=sys.stderr, mininterval=30.0, ascii=True)
    from tqdm.auto import tqdm as auto_tqdm

    return auto_tqdm(iterable, desc=desc, total=total, unit=unit)


class _SilentIter(_Silent):
    def __init__(self, iterable: Iterable[T]):
        self.iterable = iterable

    def __iter__(self) -> Iterator[T]:
        return iter(self.iterable)
