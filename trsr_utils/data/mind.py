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
``sequence="history"`` keeps the click history alone, as the official LLM-TRSR
code does (its positive is the history's last news, the impressions unused; it
keeps a news read twice twice, where this loader counts it once, and every
row's impressions are still checked: bad input is reported either way).

Notebook 01 teaches it (its MIND cell and the smoke-mind profile).
"""

from __future__ import annotations

import re
from datetime import datetime
from itertools import compress
from pathlib import Path

from trsr_utils.data.core import (Catalog, DataFormatError, ErrorReport, RawDataset, UserSequence, clean_value,
                                  paused_gc, read_lines, split_tsv, tsv_rows)

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


_LABELS = frozenset(("-0", "-1"))


def _split_impressions(path: Path, number: int, field: str, known: dict[str, str]
                       ) -> tuple[tuple[str, ...], tuple[str, ...]] | list[str]:
    """``(clicked, skipped)`` ids of one impressions field, or the ids that are not in news.tsv.

    The fast path for the common case (every token ends in ``-0`` or ``-1``); anything else goes through
    :func:`_parse_impressions`, which raises with the exact message. Ids come back as the catalogue's own
    string objects (``known``), so two million rows do not hold tens of millions of copies of the same ids.
    """
    tokens = field.split()
    labels = [t[-2:] for t in tokens]
    ids = [t[:-2] for t in tokens]
    if not _LABELS.issuperset(labels) or "" in ids:
        _parse_impressions(path, number, field)  # raises
    found = list(map(known.get, ids))
    if None in found:
        return [i for i, f in zip(ids, found) if f is None]
    clicked = tuple(compress(found, [label == "-1" for label in labels]))
    skipped = tuple(compress(found, [label == "-0" for label in labels]))
    return clicked, skipped


# What TIME_FORMAT reads in the usual case; anything else (or out of range) is left to strptime.
_TIME = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4}) (\d{1,2}):(\d{2}):(\d{2}) ([AP]M)")


class _Times(dict):
    """MIND time text -> seconds since the epoch, each distinct text parsed once.

    strptime costs ~15 us a call; the regular expression and ``datetime(...)`` give the same value (local
    time, as ``strptime(...).timestamp()``) for the usual text several times faster.
    """

    def __missing__(self, text: str) -> float:
        stripped = text.strip()
        match = _TIME.fullmatch(stripped)
        value = None
        if match:
            month, day, year, hour, minute, second = map(int, match.groups()[:6])
            if 1 <= hour <= 12 and minute <= 59 and second <= 59:
                hour = hour % 12 + (12 if match.group(7) == "PM" else 0)
                try:
                    value = datetime(year, month, day, hour, minute, second).timestamp()
                except ValueError:
                    value = None
        if value is None:
            value = datetime.strptime(stripped, TIME_FORMAT).timestamp()
        self[text] = value
        return value


def load_mind(source_dir: str | Path, on_error: str = "raise", sequence: str = "history+clicks") -> RawDataset:
    """Load a MIND split folder (the one holding news.tsv and behaviors.tsv); ``sequence``: see the module."""
    if sequence not in ("history+clicks", "history"):
        raise ValueError(f"sequence must be 'history+clicks' or 'history', got {sequence!r}")
    folder = Path(source_dir)
    news_path, behaviors_path = folder / "news.tsv", folder / "behaviors.tsv"
    for p in (news_path, behaviors_path):
        if not p.exists():
            raise FileNotFoundError(
                f"{p} not found. Download MIND first: python -m trsr_utils download mind --dest {folder.parent}"
            )
    with paused_gc():
        return _load(news_path, behaviors_path, ErrorReport(on_error), sequence == "history")


def _load(news_path: Path, behaviors_path: Path, report: ErrorReport, history_only: bool = False) -> RawDataset:
    """The parsing behind :func:`load_mind` (its files exist)."""
    items = load_news(news_path, report)
    known = {news_id: news_id for news_id in items}
    times = _Times()

    # user -> [history text of their first row, [(time, line, clicked ids, non-clicked ids)]]. A user's
    # history is the same in every row (MIND-large: 2.2M rows, 0.7M users), so it is split and checked once
    # per distinct text, and each row keeps only its own clicks and skips.
    users: dict[str, list] = {}
    for number, text in read_lines(behaviors_path):
        try:
            values = split_tsv(behaviors_path, number, text, BEHAVIOR_COLUMNS)
            if values is None:
                continue
            _, user_text, time_text, history_text, impressions_text = values
            try:
                when = times[time_text]
            except ValueError:
                raise DataFormatError(behaviors_path, number, "time",
                                      f"expected MM/DD/YYYY HH:MM:SS AM/PM, found {time_text!r}",
                                      kind="bad time") from None
            shown = _split_impressions(behaviors_path, number, impressions_text, known)
            user_id = user_text.strip()
            entry = users.get(user_id)
            if entry is None or entry[0] != history_text:
                for news_id in history_text.split():
                    if news_id not in known:
                        raise DataFormatError(behaviors_path, number, "history",
                                              f"news {news_id!r} is not in {news_path.name}", kind="unknown item")
            if isinstance(shown, list):
                raise DataFormatError(behaviors_path, number, "impressions",
                                      f"news {shown[0]!r} is not in {news_path.name}", kind="unknown item")
        except DataFormatError as err:
            report.handle(err)
            continue
        if entry is None:
            entry = users[user_id] = [history_text, []]
        clicked, skipped = shown
        entry[1].append((when, number, clicked, skipped))

    sequences = []
    for user_id in sorted(users):
        history_text, events = users.pop(user_id)
        seq = list(dict.fromkeys(known[n] for n in history_text.split()))  # a news read twice counts once
        stamps: list[float | None] = [None] * len(seq)
        seen = set(seq)
        last_negatives: list[str] | None = None
        for when, _, clicked, skipped in ([] if history_only else sorted(events)):
            for news_id in clicked:
                if news_id not in seen:
                    seen.add(news_id)
                    seq.append(news_id)
                    stamps.append(when)
                    last_negatives = skipped
        sequences.append(UserSequence(user_id, seq, stamps,
                                      list(last_negatives) if last_negatives is not None else None))
    return RawDataset("mind", Catalog(list(ATTRIBUTES), items), sequences, report,
                      files=[str(news_path), str(behaviors_path)])
