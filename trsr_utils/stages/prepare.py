"""Stage 01, notebook 01_data_filtering: the prepared data (users filtered and split, negatives drawn) in the
run directory. The preparation itself is :mod:`trsr_utils.data.preparation`'s; this module stores and reads it."""

from __future__ import annotations

from pathlib import Path

from trsr_utils.core import io
from trsr_utils.core.config import Config
from trsr_utils.data.preparation import FORMAT_VERSION, PreparedData, raw_files
from trsr_utils.store import stages


STAGE = stages.register(stages.Stage("01_data", "01_data_filtering", (), ("seed", "data"), data_files=raw_files))


def write(cfg: Config, prepared: PreparedData) -> dict[str, Path]:
    out = stages.result_dir(cfg, STAGE, create=True)
    paths = {
        "samples": io.write_parquet(out / "samples.parquet", prepared.samples),
        "items": io.write_parquet(out / "items.parquet", prepared.items),
        "meta": io.write_json(out / "meta.json", prepared.meta),
    }
    stages.finish(cfg, STAGE)
    return paths


def read(cfg: Config) -> PreparedData:
    """Read what :func:`write` wrote under these settings (later notebooks start here)."""
    folder = stages.require(cfg, STAGE)
    meta = io.read_json(folder / "meta.json")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{folder / 'meta.json'}: format_version {meta.get('format_version')} but this code reads "
            f"{FORMAT_VERSION}: re-run notebook 01"
        )
    samples = io.read_parquet(folder / "samples.parquet")
    for col in ("history", "negatives"):
        samples[col] = samples[col].map(list)
    return PreparedData(samples, io.read_parquet(folder / "items.parquet"), meta)
