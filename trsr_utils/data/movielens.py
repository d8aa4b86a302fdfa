"""MovieLens-100K in RecBole's atomic-file format (the embedded real dataset).

The ``recbole`` package ships ``dataset_example/ml-100k/`` with
``ml-100k.item`` (item_id, movie_title, release_year, class) and
``ml-100k.inter`` (user_id, item_id, rating, timestamp): tab-separated files
whose header names each column as ``name:type``. No download is needed.

Notebook 01 teaches it (the demo's dataset).
"""

from __future__ import annotations

import importlib.util
from collections import defaultdict
from pathlib import Path

from trsr_utils.data.core import (Catalog, DataFormatError, ErrorReport, RawDataset, UserSequence, clean_value,
                                  read_lines, tsv_rows)

ATTRIBUTES = ["title", "year", "genres"]


def embedded_dir() -> Path:
    """The ml-100k folder inside the installed recbole package (found without importing it)."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("the recbole package is not installed: run `make setup`")
    path = Path(spec.origin).parent / "dataset_example" / "ml-100k"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: this recbole build does not ship MovieLens-100K")
    return path


def read_atomic(path: Path, required: list[str], report: ErrorReport):
    """Yield ``(line, {column: value})`` rows of a RecBole atomic file."""
    lines = read_lines(path)
    try:
        _, header = next(lines)
    except StopIteration:
        raise DataFormatError(path, 1, None, "empty file: expected a header line") from None
    columns = [col.split(":", 1)[0] for col in header.split("\t")]
    missing = [c for c in required if c not in columns]
    if missing:
        raise DataFormatError(path, 1, missing[0], f"header lacks column(s) {missing}; found {columns}")
    yield from tsv_rows(path, lines, columns, report)


def load_movielens(source_dir: str | Path | None = None, on_error: str = "raise") -> RawDataset:
    """Load MovieLens-100K: catalogue (title, year, genres) and rating sequences."""
    folder = Path(source_dir) if source_dir else embedded_dir()
    item_path, inter_path = folder / "ml-100k.item", folder / "ml-100k.inter"
    report = ErrorReport(on_error)

    items: dict[str, dict[str, str]] = {}
    for number, row in read_atomic(item_path, ["item_id", "movie_title", "release_year", "class"], report):
        try:
            title = clean_value(row["movie_title"])
            if not title:
                raise DataFormatError(item_path, number, "movie_title", "empty title", kind="empty title")
        except DataFormatError as err:
            report.handle(err)
            continue
        attrs = {"title": title}
        if row["release_year"].strip():
            attrs["year"] = clean_value(row["release_year"])
        if row["class"].strip():
            attrs["genres"] = ", ".join(row["class"].split())
        items[row["item_id"].strip()] = attrs

    events: dict[str, list[tuple[float, int, str]]] = defaultdict(list)
    for number, row in read_atomic(inter_path, ["user_id", "item_id", "timestamp"], report):
        try:
            item_id = row["item_id"].strip()
            if item_id not in items:
                raise DataFormatError(inter_path, number, "item_id", f"item {item_id!r} is not in the catalogue",
                                      kind="unknown item")
            try:
                ts = float(row["timestamp"])
            except ValueError:
                raise DataFormatError(inter_path, number, "timestamp", f"not a number: {row['timestamp']!r}",
                                      kind="bad timestamp") from None
        except DataFormatError as err:
            report.handle(err)
            continue
        # The line number breaks timestamp ties, so the order is deterministic.
        events[row["user_id"].strip()].append((ts, number, item_id))

    sequences = []
    for user_id in sorted(events, key=_natural_key):
        ordered = sorted(events[user_id])
        sequences.append(
            UserSequence(user_id=user_id, items=[e[2] for e in ordered], timestamps=[e[0] for e in ordered])
        )
    return RawDataset("movielens-100k", Catalog(list(ATTRIBUTES), items), sequences, report,
                      files=[str(item_path), str(inter_path)])


def _natural_key(user_id: str) -> tuple[int, str]:
    return (int(user_id), "") if user_id.isdigit() else (1 << 62, user_id)
