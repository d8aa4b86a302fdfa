"""The data stage end to end through the configuration, and its output format."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from conftest import FIXTURES
from trsr_utils import stages
from trsr_utils.core.config import resolve_config
from trsr_utils.data import preparation
from trsr_utils.stages import prepare


def test_movielens_stage_roundtrip(tmp_path):
    cfg = resolve_config("smoke", run_dir=tmp_path)
    prepared = preparation.prepare(cfg)
    paths = prepare.write(cfg, prepared)
    assert {p.name for p in paths.values()} == {"samples.parquet", "items.parquet", "meta.json"}
    back = prepare.read(cfg)
    assert back.samples.equals(prepared.samples)
    assert back.meta["format_version"] == preparation.FORMAT_VERSION
    assert list(back.items.columns) == ["item_id", "title", "year", "genres"]
    used = {i for r in back.samples.itertuples() for i in (*r.history, r.positive, *r.negatives)}
    assert used == set(back.items.item_id)
    assert all(10 <= len(h) + 1 <= 25 for h in back.samples.history)
    stats = preparation.statistics(back)
    assert stats.loc["train samples", "value"] == cfg.data.n_train
    assert stats.loc["attributes (incl. id)", "value"] == 4


def test_read_refuses_other_format_versions(tmp_path):
    cfg = resolve_config("smoke", run_dir=tmp_path)
    prepare.write(cfg, preparation.prepare(cfg))
    meta_path = stages.result_dir(cfg, "01_data") / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["format_version"] = 99
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="format_version 99 .* re-run notebook 01"):
        prepare.read(cfg)


def test_read_before_write_says_which_notebook(tmp_path):
    with pytest.raises(FileNotFoundError, match="run notebook 01_data_filtering first .*--only 01"):
        prepare.read(resolve_config("smoke", run_dir=tmp_path))
    cfg = resolve_config("smoke", run_dir=tmp_path)
    prepare.write(cfg, preparation.prepare(cfg))
    # another setting: the message names the notebook and what differs from the result that exists
    with pytest.raises(FileNotFoundError, match=r"01_data_filtering.*data.n_train: 12 -> 13"):
        prepare.read(resolve_config("smoke", run_dir=tmp_path, overrides={"data.n_train": 13}))


def test_mind_with_impression_negatives(tmp_path):
    overrides = {"data": {"dataset": "mind", "source_dir": str(FIXTURES / "mind"), "n_train": 2, "n_valid": 1,
                          "n_test": 2, "eval_negatives": 8, "negative_source": "impressions",
                          "long_history": "drop"}}
    cfg = resolve_config("smoke", run_dir=tmp_path, overrides=overrides)
    prepared = preparation.prepare(cfg)
    # fixture users have 6, 10, 14, 17, 22, 32, 11, 13 interactions: 6 fit 10-25, 5 requested
    assert prepared.meta["filter"]["kept"] == 6 and len(prepared.samples) == 5
    raw = preparation.load_raw(cfg)
    by_user = {s.user_id: s for s in raw.sequences}
    for row in prepared.samples.itertuples():
        shown = set(by_user[row.user_id].impression_negatives)
        k = 1 if row.split == "train" else 8
        # 5 non-clicked news were shown: they come first, the rest is topped up uniformly
        assert set(row.negatives[: min(k, 5)]) <= shown
    assert prepared.meta["sampling"]["negatives_topped_up"] == 3 * 3


def test_amazon_through_config(tmp_path):
    overrides = {"data": {"dataset": "amazon-m2", "source_dir": str(FIXTURES / "amazon_m2"), "n_train": 3,
                          "n_valid": 1, "n_test": 2}}
    cfg = resolve_config("smoke", run_dir=tmp_path, overrides=overrides)
    prepared = preparation.prepare(cfg)
    assert prepared.meta["dataset"] == "amazon-m2"
    assert "description" in prepared.items.columns
    assert isinstance(prepared.samples, pd.DataFrame) and len(prepared.samples) == 6


@pytest.mark.parametrize("profile", ["smoke-mind", "smoke-amazon"])
def test_the_upstream_protocol_on_the_smoke_fixtures(tmp_path, profile):
    """The official code's data: uniform negatives over the whole catalogue (history and positive not excluded);
    on MIND each user's click history alone, its last news the positive (pandas, by hand, as the official code)."""
    from trsr_utils.core.config import REPO_ROOT
    from trsr_utils.data.sampling import collisions

    cfg = resolve_config(profile, tmp_path, {"eval.protocol": "upstream"})
    prepared = preparation.prepare(cfg)
    samples = prepared.samples
    assert prepared.meta["sampling"] == {"negatives_topped_up": 0, **collisions(samples)}
    assert all(len(n) == (cfg.data.train_negatives if s == "train" else cfg.data.eval_negatives)
               for n, s in zip(samples["negatives"], samples["split"]))
    if profile == "smoke-mind":
        rows = pd.read_csv(REPO_ROOT / cfg.data.source_dir / "behaviors.tsv", sep="\t", header=None,
                           names=["impression", "user", "time", "history", "impressions"])
        rows = rows.dropna(subset=["history"]).drop_duplicates(subset=["user"], keep="first")
        official = {u: h.split(" ") for u, h in zip(rows["user"], rows["history"])}
        assert cfg.data.long_history == "drop"  # kept sequences are whole: compare them whole
        for s in samples.itertuples():  # (a news read twice counts once here; the official code keeps repeats)
            assert [*s.history, s.positive] == list(dict.fromkeys(official[s.user_id]))
        ours = preparation.prepare(resolve_config(profile, tmp_path / "ours"))
        assert not ours.samples.set_index("user_id")["positive"].equals(samples.set_index("user_id")["positive"])
