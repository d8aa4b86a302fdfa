"""The one representation every dataset maps onto, and exact error reporting.

A dataset is a :class:`Catalog` (item id -> ordered text attributes) plus
time-ordered :class:`UserSequence` objects. Loaders read the raw files line by
line so that any bad input is reported with its file, line and field.

Notebook 01 teaches it (the error-reporting cell).
"""

from __future__ import annotations

import gc
import re
import warnings
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

# Undecodable bytes survive decoding as lone surrogates (errors="surrogateescape"),
# so we can parse a row first and then name the exact field that holds them.
_SURROGATES = re.compile("[\udc80-\udcff]")


class DataFormatError(ValueError):
    """Bad input, located: ``<file>, line <n>, field '<name>': <reason>``."""

    def __init__(self, path: str | Path, line: int | None, field: str | None, reason: str, kind: str | None = None):
        self.path = str(path)
        self.line = line
        self.field = field
        self.reason = reason
        # A short category used to count skipped rows ("wrong field count", ...).
        self.kind = kind or reason
        where = self.path
        if line is not None:
            where += f", line {line}"
        if field is not None:
            where += f", field {field!r}"
        super().__init__(f"{where}: {reason}")


@dataclass
class ErrorReport:
    """Either raises each error (``on_error="raise"``) or counts it (``"skip"``)."""

    on_error: str = "raise"
    counts: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    max_examples: int = 10

    def __post_init__(self) -> None:
        if self.on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {self.on_error!r}")

    def handle(self, error: DataFormatError) -> None:
        if self.on_error == "raise":
            raise error
        self.counts[f"{Path(error.path).name}: {error.kind}"] += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(str(error))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def warn(self) -> None:
        """One warning that sums up every skipped row (nothing is skipped silently)."""
        if self.total:
            lines = ", ".join(f"{k}: {v}" for k, v in sorted(self.counts.items()))
            warnings.warn(f"skipped {self.total} bad input rows ({lines}); first: {self.examples[0]}", stacklevel=2)

    def to_dict(self) -> dict:
        return {"on_error": self.on_error, "skipped": self.total, "counts": dict(self.counts), "examples": self.examples}


@dataclass
class Catalog:
    """Item id -> text attributes, in a fixed attribute order."""

    attributes: list[str]
    items: dict[str, dict[str, str]]

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self.items


@dataclass
class UserSequence:
    """One user's interactions, oldest first."""

    user_id: str
    items: list[str]
    # Seconds since the epoch where the source has them (None: unknown, e.g. MIND history).
    timestamps: list[float | None] | None = None
    # MIND: non-clicked news shown in the impression of the last click.
    impression_negatives: list[str] | None = None


@dataclass
class RawDataset:
    """What a loader returns: the catalogue, the sequences and what was skipped."""

    name: str
    catalog: Catalog
    sequences: list[UserSequence]
    report: ErrorReport
    files: list[str] = field(default_factory=list)


def read_lines(path: str | Path, keep_ends: bool = False) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)``, 1-based, line endings removed unless ``keep_ends``.

    Decodes per line with ``surrogateescape`` so that invalid UTF-8 is kept and
    reported by :func:`check_utf8` against the field it sits in.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found")
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            text = raw.decode("utf-8", errors="surrogateescape")
            yield number, text if keep_ends else text.rstrip("\r\n")


def check_utf8(path: str | Path, line: int, fields: dict[str, str]) -> None:
    """Raise :class:`DataFormatError` naming the first field with invalid UTF-8."""
    for name, value in fields.items():
        if value and _SURROGATES.search(value):
            raise DataFormatError(path, line, name, "invalid UTF-8", kind="invalid UTF-8")


def tsv_rows(path: str | Path, lines: Iterator[tuple[int, str]], columns: list[str], report: ErrorReport
             ) -> Iterator[tuple[int, dict[str, str]]]:
    """Split tab-separated ``(line, text)`` pairs into ``{column: value}`` rows, checking count and UTF-8."""
    for number, text in lines:
        try:
            values = split_tsv(path, number, text, columns)
        except DataFormatError as err:
            report.handle(err)
            continue
        if values is not None:
            yield number, dict(zip(columns, values))


def split_tsv(path: str | Path, line: int, text: str, columns: list[str]) -> list[str] | None:
    """One tab-separated line -> its values, one per column (None for a blank line), or :class:`DataFormatError`.

    Checks the field count, then invalid UTF-8 naming the field. The whole line is searched once and only a
    line with undecodable bytes is checked field by field (MIND-large has millions of rows).
    """
    if not text.strip():
        return None
    values = text.split("\t")
    if len(values) != len(columns):
        raise DataFormatError(path, line, None, f"expected {len(columns)} tab-separated fields, found {len(values)}",
                              kind="wrong field count")
    if _SURROGATES.search(text):
        check_utf8(path, line, dict(zip(columns, values)))
    return values


def make_row(path: str | Path, line: int, columns: list[str], values: list[str], separator: str) -> dict[str, str]:
    """``{column: value}`` for one record, or :class:`DataFormatError` (field count, invalid UTF-8)."""
    if len(values) != len(columns):
        raise DataFormatError(path, line, None, f"expected {len(columns)} {separator} fields, found {len(values)}",
                              kind="wrong field count")
    row = dict(zip(columns, values))
    check_utf8(path, line, row)
    return row


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while building millions of acyclic objects.

    Each full collection walks every live object, and building a dataset of MIND-large's size triggers many:
    the data stage spent more time in them than in its own work. Strings, tuples and lists of ids form no
    cycles, so reference counting still frees everything; the caller's setting is restored afterwards.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def clean_value(value: str) -> str:
    """Normalise whitespace: tabs and newlines inside a value become single spaces."""
    return " ".join(value.split())
