"""Synthetic MIND and Amazon-M2 files in the exact real formats, deterministic for a seed.

    python -m trsr_synth mind --out tests/fixtures/mind_smoke --preset smoke
    python -m trsr_synth amazon-m2 --out runs/bench/data/amazon-m2 --preset large

They let the paper's path run without the real downloads: ``smoke`` writes
small fixture sets (committed under ``tests/fixtures/``) that survive the
paper's 10-25 filter with enough users for a small split; ``large`` writes
files of the real datasets' size (MIND-large train: about 100k news and 2.2M
impression rows; Amazon-M2: about 1.5M products and 3.6M sessions) so the
loaders can be timed at full scale (``python -m trsr_utils bench --only
loaders``).

The text is readable-ish (word lists by category and language), and the
distributions look like the real ones where it matters to the loaders and the
filter: Zipf-like popularity, users with several impression rows sharing one
history, clicks and skips in every impression, a few missing abstracts and
fields, several locales, multi-line quoted descriptions with commas and
quotes, some descriptions of several hundred words, sessions of varying
length. The same seed gives byte-identical files (Python's ``random`` and
NumPy's PCG64, both seeded).

The package sits beside ``trsr_utils``, not in it: the course never needs it, the tests and ``python -m
trsr_utils bench --only loaders`` do. Modules: :mod:`trsr_synth.mind` and :mod:`trsr_synth.amazon_m2` (one
generator each, with its spec and word lists), :mod:`trsr_synth.common` (what both use) and ``__main__`` (the
command line).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any, Callable

from trsr_synth.amazon_m2 import PRODUCT_LOCALES, SESSION_LOCALES, AmazonSpec, generate_amazon_m2
from trsr_synth.common import numpy_array_text, zipf_cumulative
from trsr_synth.mind import MindSpec, generate_mind
from trsr_utils.core import io

# Bumped when the generator's output changes, so cached large files (runs/bench/synth/) are written again.
VERSION = 1

# ---------------------------------------------------------------- presets

PRESETS: dict[str, dict[str, Any]] = {
    "mind": {
        # Sized so that the paper's filter (10-25 interactions) keeps ~40 users: enough for 12/4/6.
        "smoke": MindSpec(news=220, impressions=150, users=60, history_median=12, history_sigma=0.55,
                          empty_history=0.0, shown_median=28, shown_sigma=0.08, shown_min=24, shown_max=32,
                          extra_clicks=0.6),
        # MIND-large train: 101,527 news, 2,232,748 impressions, 711,222 users, ~37 news per impression.
        "large": MindSpec(news=101_527, impressions=2_232_748, users=711_222, history_median=18, history_sigma=0.95,
                          empty_history=0.03, shown_median=30, shown_sigma=0.6, shown_min=2, shown_max=299,
                          extra_clicks=0.5),
    },
    "amazon-m2": {
        # UK has ~70 sessions of which ~45 have 10-25 items; the other locales are there to be filtered out.
        "smoke": AmazonSpec(products=320, sessions=220, prev_median=11, prev_sigma=0.5, prev_max=40),
        # Amazon-M2 task 1: 1,551,057 products and 3,606,249 sessions over six locales.
        "large": AmazonSpec(products=1_551_057, sessions=3_606_249, prev_median=3.2, prev_sigma=0.8, prev_max=470),
    },
}
DATASETS = tuple(PRESETS)

# ---------------------------------------------------------------- entry points


def spec_for(dataset: str, preset: str = "smoke", scale: float = 1.0, **overrides: int | None) -> MindSpec | AmazonSpec:
    """The preset's spec, its counts multiplied by ``scale``, then ``overrides`` (news=, impressions=, ...) applied.

    Scaling MIND keeps impressions per user and news per impression as in the preset.
    """
    if dataset not in PRESETS:
        raise ValueError(f"unknown dataset {dataset!r}: one of {', '.join(DATASETS)}")
    if preset not in PRESETS[dataset]:
        raise ValueError(f"unknown preset {preset!r}: one of {', '.join(PRESETS[dataset])}")
    spec = PRESETS[dataset][preset]
    counts = ("news", "impressions", "users") if dataset == "mind" else ("products", "sessions")
    if scale != 1.0:
        spec = replace(spec, **{k: max(1, round(getattr(spec, k) * scale)) for k in counts})
    known = {f.name for f in fields(spec)}
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = sorted(set(given) - known)
    if unknown:
        raise ValueError(f"{dataset} has no setting {unknown[0]!r}; counts: {', '.join(counts)}")
    if dataset == "mind" and "impressions" in given and "users" not in given:
        # More (or fewer) impressions: keep the preset's impressions per user.
        given["users"] = max(1, round(given["impressions"] * spec.users / spec.impressions))
    return replace(spec, **given)


def generate(dataset: str, out: str | Path, preset: str = "smoke", seed: int = 0, scale: float = 1.0,
             **overrides: int | None) -> dict[str, Any]:
    """Write one synthetic dataset into ``out``; returns its sizes, the files' bytes and the seconds it took."""
    spec = spec_for(dataset, preset, scale, **overrides)
    began, cpu = time.perf_counter(), time.process_time()
    if dataset == "mind":
        info = generate_mind(out, spec, seed)
        names = ("news.tsv", "behaviors.tsv")
    else:
        info = generate_amazon_m2(out, spec, seed)
        names = ("products_train.csv", "sessions_train.csv")
    # CPU seconds beside wall seconds: on a shared machine the wall clock says more about the neighbours.
    info.update({"preset": preset, "seed": seed, "scale": scale, "seconds": round(time.perf_counter() - began, 2),
                 "cpu_seconds": round(time.process_time() - cpu, 2),
                 "bytes": {n: (Path(out) / n).stat().st_size for n in names}})
    return info


def synthetic_data(dataset: str, scale: float, data_dir: str | Path, seed: int = 0,
                   log: Callable[[str], None] = print) -> tuple[Path, dict[str, Any]]:
    """The ``large`` synthetic preset at ``scale``, generated once into ``data_dir`` and reused while the
    generator and its settings are unchanged; returns the folder and how it was generated (seconds, bytes)."""
    folder = Path(data_dir) / f"{dataset}-large-x{scale:g}-seed{seed}"
    spec = asdict(spec_for(dataset, "large", scale))
    marker = folder / "synth.json"
    if marker.exists():
        info = io.read_json(marker)
        if info.get("spec") == spec and info.get("version") == VERSION:
            return folder, {**info, "cached": True}
    # Written beside the final folder and renamed: an interrupted run never leaves half a dataset to reuse.
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    log(f"  generating {dataset} (large preset x{scale:g}) into {folder} ...")
    info = generate(dataset, partial, "large", seed, scale)
    info.update(spec=spec, version=VERSION)
    io.write_json(partial / "synth.json", info)
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return folder, {**info, "cached": False}


__all__ = ["DATASETS", "PRESETS", "PRODUCT_LOCALES", "SESSION_LOCALES", "VERSION", "AmazonSpec", "MindSpec",
           "generate", "generate_amazon_m2", "generate_mind", "numpy_array_text", "spec_for", "synthetic_data",
           "zipf_cumulative"]
