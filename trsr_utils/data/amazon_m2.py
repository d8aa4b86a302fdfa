"""Amazon-M2 (KDD Cup 2023, multilingual sessions): products and sessions CSVs.

* products_train.csv: id, locale, title, price, brand, color, size, model,
  material, author, desc
* sessions_train.csv: prev_items, next_item, locale. ``prev_items`` is the
  string form of a numpy array, ``['B09W9FND7K' 'B09JSPLN1M']``: ids in quotes,
  separated by whitespace (no commas), and long arrays wrap onto several lines
  inside the quoted CSV field.

Sessions are anonymous, so each session is one "user": its sequence is
``prev_items`` followed by ``next_item``. Only rows of one locale are kept
(UK by default, as in the paper).

Notebook 01 teaches it on the smoke-amazon and paper-amazon profiles.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Iterator

from trsr_utils.data.core import (Catalog, DataFormatError, ErrorReport, RawDataset, UserSequence, clean_value,
                                  make_row, paused_gc, read_lines)

PRODUCT_COLUMNS = ["id", "locale", "title", "price", "brand", "color", "size", "model", "material", "author", "desc"]
SESSION_COLUMNS = ["prev_items", "next_item", "locale"]
# Our attribute names, in the paper's order; "desc" is called "description".
ATTRIBUTES = ["title", "price", "brand", "color", "size", "model", "material", "author", "description"]
_RENAME = {"desc": "description"}
_ARRAY = re.compile(r"^\[\s*(?:'[^'\n]*'\s*)*\]$")
_ARRAY_ITEM = re.compile(r"'([^'\n]*)'")
_MISSING = {"", "nan", "none", "null"}


def parse_prev_items(text: str) -> list[str]:
    """``"['A' 'B'\\n 'C']"`` -> ``['A', 'B', 'C']``; ValueError if not that shape."""
    stripped = text.strip()
    if not _ARRAY.match(stripped):
        raise ValueError(f"expected a numpy-style list like ['B09W9FND7K' 'B09JSPLN1M'], found {text[:60]!r}")
    ids = _ARRAY_ITEM.findall(stripped)
    if any(not i.strip() for i in ids):
        raise ValueError("empty item id inside the list")
    return [i.strip() for i in ids]


def _csv_rows(path: Path, columns: list[str], report: ErrorReport) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield ``(first_line_of_record, row)`` for a CSV with a header line."""
    lines = (text for _, text in read_lines(path, keep_ends=True))
    reader = csv.reader(lines, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise DataFormatError(path, 1, None, "empty file: expected a header line") from None
    except csv.Error as exc:
        raise DataFormatError(path, 1, None, f"unreadable header: {exc}") from None
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataFormatError(path, 1, missing[0], f"header lacks column(s) {missing}; found {header}")
    end = reader.line_num
    while True:
        start = end + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            end = reader.line_num
            report.handle(DataFormatError(path, start, None, f"malformed CSV: {exc}", kind="malformed CSV"))
            continue
        end = reader.line_num
        if not values:
            continue
        try:
            row = make_row(path, start, header, values, "comma-separated")
        except DataFormatError as err:
            report.handle(err)
            continue
        yield start, row


def load_products(path: Path, locale: str, report: ErrorReport) -> dict[str, dict[str, str]]:
    items: dict[str, dict[str, str]] = {}
    for number, row in _csv_rows(path, PRODUCT_COLUMNS, report):
        if row["locale"].strip() != locale:
            continue
        try:
            item_id = row["id"].strip()
            if not item_id:
                raise DataFormatError(path, number, "id", "empty product id", kind="empty id")
            if clean_value(row["title"]).lower() in _MISSING:
                raise DataFormatError(path, number, "title", "empty title", kind="empty title")
        except DataFormatError as err:
            report.handle(err)
            continue
        attrs = {}
        for column in PRODUCT_COLUMNS[2:]:
            value = clean_value(row[column])
            if value.lower() not in _MISSING:
                attrs[_RENAME.get(column, column)] = value
        items.setdefault(item_id, attrs)
    return items


def load_amazon_m2(source_dir: str | Path, locale: str = "UK", on_error: str = "raise") -> RawDataset:
    """Load the products and sessions of one locale from an Amazon-M2 folder."""
    folder = Path(source_dir)
    products_path, sessions_path = folder / "products_train.csv", folder / "sessions_train.csv"
    for p in (products_path, sessions_path):
        if not p.exists():
            raise FileNotFoundError(f"{p} not found. See data/README.md for how to get Amazon-M2 (KDD Cup 2023).")
    with paused_gc():
        return _load(products_path, sessions_path, locale, ErrorReport(on_error))


def _load(products_path: Path, sessions_path: Path, locale: str, report: ErrorReport) -> RawDataset:
    """The parsing behind :func:`load_amazon_m2` (its files exist)."""
    items = load_products(products_path, locale, report)
    if not items:
        raise DataFormatError(products_path, None, "locale", f"no product has locale {locale!r}")

    # Sequences hold the catalogue's own id strings: a million sessions, not millions of copies of the same ids.
    known = {item_id: item_id for item_id in items}
    sequences = []
    for number, row in _csv_rows(sessions_path, SESSION_COLUMNS, report):
        if row["locale"].strip() != locale:
            continue
        try:
            try:
                prev = parse_prev_items(row["prev_items"])
            except ValueError as exc:
                raise DataFormatError(sessions_path, number, "prev_items", str(exc), kind="bad prev_items") from None
            next_item = row["next_item"].strip()
            if not next_item:
                raise DataFormatError(sessions_path, number, "next_item", "empty item id", kind="empty id")
            seq = list(map(known.get, prev + [next_item]))
            if None in seq:
                for field, ids in (("prev_items", prev), ("next_item", [next_item])):
                    for item_id in ids:
                        if item_id not in known:
                            raise DataFormatError(sessions_path, number, field,
                                                  f"product {item_id!r} is not in {products_path.name} ({locale})",
                                                  kind="unknown item")
        except DataFormatError as err:
            report.handle(err)
            continue
        sequences.append(UserSequence(f"session-{number}", seq))
    return RawDataset("amazon-m2", Catalog(list(ATTRIBUTES), items), sequences, report,
                      files=[str(products_path), str(sessions_path)])
