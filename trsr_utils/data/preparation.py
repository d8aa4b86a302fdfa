"""The data stage (notebook 01): raw files -> samples in the run directory.

Output format, version 1, in the stage's folder ``<run_dir>/01_data/<fingerprint>/``
(see :mod:`trsr_utils.stages`):

* ``samples.parquet``: one row per user; columns ``user_id`` (str), ``split``
  (train | valid | test), ``history`` (list of item ids, oldest first),
  ``positive`` (item id), ``negatives`` (list of item ids: 1 for train, 20 for
  valid/test by default).
* ``items.parquet``: ``item_id`` plus one string column per attribute, for
  every item that appears in a sample (histories, positives, negatives);
  missing values are null.
* ``meta.json``: ``format_version``, dataset, attribute order, the raw files
  read, the filtering and bad-input reports, and the data configuration.

Every file is written atomically.
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trsr_utils.core.config import Config, REPO_ROOT
from trsr_utils.data.amazon_m2 import load_amazon_m2
from trsr_utils.data.core import Catalog, RawDataset, paused_gc
from trsr_utils.data.filtering import FilterReport, filter_sequences
from trsr_utils.data.mind import load_mind
from trsr_utils.data.movielens import embedded_dir, load_movielens
from trsr_utils.data.sampling import SPLITS, build_samples

FORMAT_VERSION = 1
RAW_FILES = {"movielens-100k": ("ml-100k.item", "ml-100k.inter"), "mind": ("news.tsv", "behaviors.tsv"),
             "amazon-m2": ("products_train.csv", "sessions_train.csv")}


@dataclass
class PreparedData:
    samples: pd.DataFrame
    items: pd.DataFrame
    meta: dict[str, Any]

    @property
    def catalog(self) -> dict[str, dict[str, str]]:
        """item id -> {attribute: value} (nulls dropped)."""
        attrs = [c for c in self.items.columns if c != "item_id"]
        out = {}
        for row in self.items.itertuples(index=False):
            d = row._asdict()
            out[d["item_id"]] = {a: d[a] for a in attrs if isinstance(d[a], str) and d[a]}
        return out


def load_raw(cfg: Config) -> RawDataset:
    """Read the profile's dataset with the right loader."""
    d = cfg.data
    source = _resolve_source(d.source_dir)
    if d.dataset == "movielens-100k":
        return load_movielens(source, on_error=d.on_error)
    if source is None:
        raise ValueError(f"data.source_dir must name the folder with the {d.dataset} files")
    if d.dataset == "mind":
        return load_mind(source, on_error=d.on_error, sequence=d.mind_sequence)
    if d.dataset == "amazon-m2":
        return load_amazon_m2(source, locale=d.locale, on_error=d.on_error)
    raise ValueError(f"unknown dataset {d.dataset!r}")


def raw_files(cfg: Config) -> list[Path]:
    """The raw files the profile's loader reads (their digests are part of the data stage's fingerprint)."""
    d = cfg.data
    folder = _resolve_source(d.source_dir)
    if folder is None:
        if d.dataset != "movielens-100k":
            return []
        folder = embedded_dir()
    return [folder / name for name in RAW_FILES[d.dataset]]


def _resolve_source(source_dir: str | None) -> Path | None:
    if not source_dir:
        return None
    path = Path(source_dir).expanduser()
    if not path.is_absolute():
        path = REPO_ROOT / path
    return path


def prepare(cfg: Config, raw: RawDataset | None = None) -> PreparedData:
    """Filter users, split them and draw negatives, as the profile says."""
    d = cfg.data
    raw = raw if raw is not None else load_raw(cfg)
    raw.report.warn()
    with paused_gc():  # the raw dataset can hold tens of millions of objects (MIND-large)
        kept, freport = filter_sequences(raw.sequences, d.min_interactions, d.max_interactions, d.long_history)
        sizes = {"train": d.n_train, "valid": d.n_valid, "test": d.n_test}
        samples, counters = build_samples(kept, list(raw.catalog.items), sizes, d.train_negatives,
                                          d.eval_negatives, cfg.seed, d.negative_source)
        items = items_frame(raw.catalog, samples)
    meta = {
        "format_version": FORMAT_VERSION,
        "dataset": raw.name,
        "attributes": raw.catalog.attributes,
        "catalog_size": len(raw.catalog),
        "users_loaded": len(raw.sequences),
        "files": raw.files,
        "filter": freport.to_dict(),
        "bad_input": raw.report.to_dict(),
        "sampling": counters,
        "seed": cfg.seed,
        "data_config": asdict(d),
        "python": platform.python_version(),
    }
    return PreparedData(samples, items, meta)


def items_frame(catalog: Catalog, samples: pd.DataFrame) -> pd.DataFrame:
    """The catalogue restricted to items used by the samples, one column per attribute."""
    used: dict[str, None] = {}
    for row in samples.itertuples(index=False):
        for item in (*row.history, row.positive, *row.negatives):
            used[item] = None
    rows = [{"item_id": i, **{a: catalog.items[i].get(a) for a in catalog.attributes}} for i in used]
    return pd.DataFrame(rows, columns=["item_id", *catalog.attributes])


def with_whole_catalogue(cfg: Config, prepared: PreparedData) -> PreparedData:
    """The same samples with every item of the raw catalogue (the pool the negatives are drawn from) as items:
    what a full-catalogue ranking ranks (notebook 07)."""
    catalog = load_raw(cfg).catalog
    rows = [{"item_id": i, **{a: attrs.get(a) for a in catalog.attributes}} for i, attrs in catalog.items.items()]
    return PreparedData(prepared.samples, pd.DataFrame(rows, columns=["item_id", *catalog.attributes]), prepared.meta)


def statistics(prepared: PreparedData, item_lines: dict[str, str] | None = None, tokenizer: Any = None) -> pd.DataFrame:
    """A Table-1-style summary: attributes, samples per split, history length, tokens per item."""
    s = prepared.samples
    hist_len = s["history"].map(len)
    stats: dict[str, Any] = {
        "dataset": prepared.meta["dataset"],
        "attributes (incl. id)": len(prepared.meta["attributes"]) + 1,
        "catalogue items": prepared.meta["catalog_size"],
    }
    for split in SPLITS:
        stats[f"{split} samples"] = int((s["split"] == split).sum())
    stats["avg history length"] = round(float(hist_len.mean()), 2) if len(s) else 0.0
    if item_lines and tokenizer is not None:
        history_items = sorted({i for h in s["history"] for i in h})
        counts = [len(tokenizer.encode(item_lines[i], add_special_tokens=False)) for i in history_items]
        stats["avg tokens per item"] = round(float(np.mean(counts)), 2) if counts else 0.0
    return pd.DataFrame({"value": pd.Series(stats, dtype=object)})


def example_user(prepared: PreparedData, item_lines: dict[str, str], split: str = "test") -> dict[str, Any]:
    """One user end to end: history lines, positive and negatives, as text."""
    rows = prepared.samples[prepared.samples["split"] == split]
    if rows.empty:
        rows = prepared.samples
    row = rows.iloc[0]
    return {
        "user_id": row["user_id"],
        "split": row["split"],
        "history": [item_lines[i] for i in row["history"]],
        "positive": item_lines[row["positive"]],
        "negatives": [item_lines[i] for i in row["negatives"]],
    }


__all__ = ["PreparedData", "FilterReport", "load_raw", "raw_files", "prepare", "statistics",
           "example_user", "items_frame", "FORMAT_VERSION"]
