"""Progress bars that suit where the code runs.

In JupyterLab a widget bar with ETA. In a headless papermill run (the pipeline
sets TRSR_HEADLESS=1) no bar at all: one line on stdout when the work is done
("hierarchical: blocks: 116 calls in 304.2 s"), so executed notebooks carry
no widget state, no carriage-return frames and nothing on stderr.
TRSR_PROGRESS=0 silences both.
"""

from __future__ import annotations

import os
import time
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


def headless() -> bool:
    return os.environ.get("TRSR_HEADLESS", "") == "1"


def quiet_libraries() -> None:
    """In headless runs, turn off the progress bars of transformers and datasets (weight loading, map)."""
    if not headless() and os.environ.get("TRSR_PROGRESS", "1") != "0":
        return
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        from datasets.utils.logging import disable_progress_bar

        disable_progress_bar()
    except ImportError:  # pragma: no cover - datasets is a dependency
        pass


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def __enter__(self) -> "_Silent":
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class _SilentIter(_Silent):
    def __init__(self, iterable: Iterable[T]):
        self.iterable = iterable

    def __iter__(self) -> Iterator[T]:
        return iter(self.iterable)


class _Done(_SilentIter):
    """Counts quietly; one line when the work is done."""

    def __init__(self, iterable: Iterable[T] | None, desc: str, unit: str):
        super().__init__(iterable if iterable is not None else ())
        self.desc, self.unit, self.n, self.began = desc, unit, 0, time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.n += n

    def __iter__(self) -> Iterator[T]:
        for item in self.iterable:
            yield item
            self.n += 1

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            print(f"{self.desc}: {self.n} {self.unit}{'s' if self.n != 1 else ''} in "
                  f"{time.perf_counter() - self.began:.1f} s", flush=True)


def bar(total: int | None = None, desc: str = "", unit: str = "it", iterable: Iterable[T] | None = None,
        quiet: bool = False):
    """A progress bar (context manager) for the environment; ``.update(n)`` by hand or iterate it.

    ``quiet`` shows nothing (work too small to report, such as one call at a time).
    """
    if quiet or os.environ.get("TRSR_PROGRESS", "1") == "0":
        return _Silent() if iterable is None else _SilentIter(iterable)
    if headless():
        return _Done(iterable, desc, unit)
    from tqdm.auto import tqdm as auto_tqdm

    return auto_tqdm(iterable, desc=desc, total=total, unit=unit)
