"""Progress bars that suit where the code runs.

In JupyterLab a widget bar with ETA. In a headless papermill run (the pipeline
sets TRSR_HEADLESS=1) no bar at all: one line on stdout when the work is done
("hierarchical: blocks: 116 calls in 304.2 s"), so executed notebooks carry
no widget state, no carriage-return frames and nothing on stderr.
TRSR_PROGRESS=0 silences both.

Not a notebook's subject: the bars every long cell shows.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar

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


class _LogFile:
    """A text stream into a log file that writes the run directory's paths relative to it and counts lines."""

    def __init__(self, handle, roots: tuple[str, ...]):
        self.handle, self.roots, self.lines, self.last, self.partial = handle, roots, 0, "", ""

    def write(self, text: str) -> int:
        # print() writes a line in pieces (its arguments, separators, the newline): paths are replaced and lines
        # counted once a line is whole.
        self.partial += text
        *whole, self.partial = self.partial.split("\n")
        for line in whole:
            for root in self.roots:
                line = line.replace(root, "")
            self.handle.write(line + "\n")
            if line.strip():
                self.lines, self.last = self.lines + 1, line.strip()
        return len(text)

    def flush(self) -> None:
        self.handle.flush()


@contextlib.contextmanager
def logged(path: Path, root: Path | None = None, title: str = "") -> Iterator[Callable[[str], None]]:
    """Send a long stage's progress to ``path`` instead of the notebook: inside, everything printed (the stage's
    ``log`` lines, one line per finished piece of work) goes to the file, paths under ``root`` written relative to
    it. Yields the ``log`` function to hand the stage. On leaving, one line is printed: how many lines, where,
    and the last one (the stage's summary). A widget bar in JupyterLab is not stdout, so it still shows."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    # the resolved form first: a relative root is a suffix of it
    roots = tuple(dict.fromkeys(f"{r}{os.sep}" for r in (Path(root).resolve(), Path(root)))) if root is not None else ()
    with open(path, "a", encoding="utf-8") as handle:
        stream = _LogFile(handle, roots)

        def log(message: str) -> None:
            print(message, file=stream, flush=True)

        try:
            with contextlib.redirect_stdout(stream):
                yield log
        finally:  # a last line without its newline (or one cut by an error) still reaches the file
            if stream.partial:
                stream.write("\n")
    shown = path.resolve().relative_to(Path(root).resolve()) if root is not None else path
    seconds = time.perf_counter() - began
    said = (f"{stream.lines} progress line{'s' if stream.lines != 1 else ''} in {shown} ({seconds:.1f} s); the "
            f"last: {stream.last}" if stream.lines else f"nothing logged ({seconds:.1f} s; the log: {shown})")
    print(f"{title + ': ' if title else ''}{said}", file=sys.stdout, flush=True)
