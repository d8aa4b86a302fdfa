"""MIND (Microsoft News Dataset): ``news.tsv`` and ``behaviors.tsv``.

Both files are tab-separated without a header.

* news.tsv: news_id, category, subcategory, title, abstract, url,
  title_entities, abstract_entities
* behaviors.tsv: impression_id, user_id, time (``MM/DD/YYYY HH:MM:SS AM/PM``),
  history (space-separated news ids, oldest first), impressions
  (``N123-1 N456-0``, 1 = clicked)

A user's sequence is their click history followed by the news they clicked in
their impressions, in time order (a news clicked twice counts once). The
non-clicked news of the impression that holds the last click are kept, so the
negatives can be drawn from what the user actually saw and skipped.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from .core import (
    Catalog,
    DataFormatError,
    ErrorReport,
    RawDataset,
    UserSequence,
    clean_value,
    read_lines,
    tsv_rows,
)

NEWS_COLUMNS = ["news_id", "category", "subcategory", "title", "abstract", "url", "title_entities",
                "abstract_entities"]
BEHAVIOR_COLUMNS = ["impression_id", "user_id", "time", "history", "impressions"]
ATTRIBUTES = ["category", "subcategory", "title", "abstract"]
TIME_FORMAT = "%m/%d/%Y %I:%M:%S %p"


def _rows(path: Path, columns: list[str], report: ErrorReport):
    return tsv_rows(path, read_lines(path), columns, report)


def load_news(path: Path, report: ErrorReport) -> dict[str, dict[str, str]]:
    items: dict[str, dict[str, str]] = {}
    for number, row in _rows(path, NEWS_COLUMNS, report):
        try:
            news_id = row["news_id"].strip()
            if not news_id:
                raise DataFormatError(path, number, "news_id", "empty news id", kind="empty id")
            title = clean_value(row["title"])
            if not title:
                raise DataFormatError(path, number, "title", "empty title", kind="empty title")
        except DataFormatError as err:
            report.handle(err)
            continue
        attrs = {"category": clean_value(row["category"]), "subcategory": clean_value(row["subcategory"]),
                 "title": title}
        if row["abstract"].strip():
            attrs["abstract"] = clean_value(row["abstract"])
        items[news_id] = {k: v for k, v in attrs.items() if v}
    return items


def _parse_impressions(path: Path, number: int, field: str) -> list[tuple[str, int]]:
    out = []
    for token in field.split():
        news_id, sep, label = token.rpartition("-")
        if not sep or label not in ("0", "1") or not news_id:
            raise DataFormatError(
                path, number, "impressions",
                f"expected tokens like 'N123-1' (1 = clicked), found {token!r}"
                + (" (unlabelled impressions: the MIND test split cannot be used for training)" if not sep else ""),
                kind="bad impressions",
            )
        out.append((news_id, int(label)))
    return out


def load_mind(source_dir: str | Path, on_error: str = "raise") -> RawDataset:
    """Load a MIND split folder (the one holding news.tsv and behaviors.tsv)."""
    folder = Path(source_dir)
    news_path, behaviors_path = folder / "news.tsv", folder / "behaviors.tsv"
    for p in (news_path, behaviors_path):
        if not p.exists():
            raise FileNotFoundError(
                f"{p} not found. Download MIND first: python -m trsr_utils.data.download mind --dest {folder.parent}"
            )
    report = ErrorReport(on_error)
    items = load_news(news_path, report)

    # user -> (history, [(time, line, clicked ids, non-clicked ids)])
    users: dict[str, tuple[list[str], list[tuple[float, int, list[str], list[str]]]]] = {}
    for number, row in _rows(behaviors_path, BEHAVIOR_COLUMNS, report):
        try:
            try:
                when = datetime.strptime(row["time"].strip(), TIME_FORMAT).timestamp()
            except ValueError:
                raise DataFormatError(behaviors_path, number, "time",
                                      f"expected MM/DD/YYYY HH:MM:SS AM/PM, found {row['time']!r}",
                                      kind="bad time") from None
            history = row["history"].split()
            shown = _parse_impressions(behaviors_path, number, row["impressions"])
            for field, ids in (("history", history), ("impressions", [n for n, _ in shown])):
                for news_id in ids:
                    if news_id not in items:
                        raise DataFormatError(behaviors_path, number, field,
                                              f"news {news_id!r} is not in {news_path.name}", kind="unknown item")
        except DataFormatError as err:
            report.handle(err)
            continue
        user_id = row["user_id"].strip()
        clicked = [n for n, label in shown if label == 1]
        skipped = [n for n, label in shown if label == 0]
        hist, events = users.setdefault(user_id, (history, []))
        events.append((when, number, clicked, skipped))

    sequences = []
    for user_id in sorted(users):
        history, events = users[user_id]
        seq = list(dict.fromkeys(history))  # a news read twice counts once
        stamps: list[float | None] = [None] * len(seq)
        seen = set(seq)
        last_negatives: list[str] | None = None
        for when, _, clicked, skipped in sorted(events):
            for news_id in clicked:
                if news_id not in seen:
                    seen.add(news_id)
                    seq.append(news_id)
                    stamps.append(when)
                    last_negatives = skipped
        sequences.append(UserSequence(user_id, seq, stamps, last_negatives))
    return RawDataset("mind", Catalog(list(ATTRIBUTES), items), sequences, report,
                      files=[str(news_path), str(behaviors_path)])
