"""The synthetic MIND and Amazon-M2 generator: real formats, determinism, and the committed smoke fixtures."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from collections import Counter, defaultdict

import numpy as np
import pytest

import trsr_synth as synth
from conftest import FIXTURES
from trsr_synth.__main__ import main as synth_main
from trsr_utils.core.config import resolve_config
from trsr_utils.data import load_amazon_m2, load_mind
from trsr_utils.data import preparation

SMOKE = {"mind": (FIXTURES / "mind_smoke", ("news.tsv", "behaviors.tsv")),
         "amazon-m2": (FIXTURES / "amazon_smoke", ("products_train.csv", "sessions_train.csv"))}
# What the smoke-mind / smoke-amazon profiles use: the paper's filter and negatives, a small split.
PAPER_SMALL = {"min_interactions": 10, "max_interactions": 25, "long_history": "drop", "n_train": 12, "n_valid": 4,
               "n_test": 6, "train_negatives": 1, "eval_negatives": 20, "on_error": "raise"}


@pytest.mark.parametrize("dataset", sorted(SMOKE))
def test_committed_smoke_fixtures_are_what_the_generator_writes(tmp_path, dataset):
    folder, names = SMOKE[dataset]
    synth_main([dataset, "--out", str(tmp_path), "--preset", "smoke", "--seed", "0"])
    for name in names:
        assert (tmp_path / name).read_bytes() == (folder / name).read_bytes(), (
            f"{folder / name} differs from the generator's output: regenerate it with "
            f"python -m trsr_synth {dataset} --preset smoke --out {folder.relative_to(FIXTURES.parent.parent)}")
    assert sum((folder / n).stat().st_size for n in names) < 300_000
    assert not list(tmp_path.glob(".synth*"))  # no temporary files left behind


@pytest.mark.parametrize("dataset", sorted(SMOKE))
def test_same_seed_same_bytes_other_seed_other_data(tmp_path, dataset):
    a = synth.generate(dataset, tmp_path / "a", "smoke", seed=3)
    synth.generate(dataset, tmp_path / "b", "smoke", seed=3)
    synth.generate(dataset, tmp_path / "c", "smoke", seed=4)
    for name in a["bytes"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes()


def test_command_line_writes_a_dataset_and_never_overwrites_unasked(tmp_path):
    command = [sys.executable, "-m", "trsr_synth", "amazon-m2", "--out", str(tmp_path), "--products", "40",
               "--sessions", "20"]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "amazon-m2 (smoke, seed 0) -> " in done.stdout and (tmp_path / "sessions_train.csv").exists()
    again = subprocess.run(command, capture_output=True, text=True)
    assert again.returncode == 2 and "pass --force to overwrite" in again.stderr
    assert subprocess.run(command + ["--force"], capture_output=True, text=True).returncode == 0


def test_numpy_array_text_is_numpys_own_printing():
    rng = np.random.default_rng(0)
    for n in [0, 1, 4, 5, 6, 9, 10, 11, 24, 25, 26, 60]:
        ids = ["B0" + "".join(rng.choice(list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"), 8)) for _ in range(n)]
        assert synth.numpy_array_text(ids) == str(np.array(ids, dtype=str if ids else object))


# ---------------------------------------------------------------- MIND format


def test_mind_smoke_files_have_the_real_shape():
    folder = FIXTURES / "mind_smoke"
    news = [line.split("\t") for line in (folder / "news.tsv").read_text(encoding="utf-8").splitlines()]
    assert {len(cols) for cols in news} == {8}
    assert all(re.fullmatch(r"N\d+", cols[0]) for cols in news)
    assert all(cols[5].startswith("https://assets.msn.com/labs/mind/") for cols in news)
    entities = [json.loads(cols[k]) for cols in news for k in (6, 7)]
    linked = [e for ents in entities for e in ents]
    assert linked and {"Label", "Type", "WikidataId", "Confidence", "OccurrenceOffsets", "SurfaceForms"} <= set(linked[0])
    for cols in news:  # the offsets point at the surface form in the title
        for e in json.loads(cols[6]):
            offset = e["OccurrenceOffsets"][0]
            assert cols[3][offset:offset + len(e["SurfaceForms"][0])] == e["SurfaceForms"][0]
    with_abstract = sum(bool(cols[4]) for cols in news)
    assert 0.8 * len(news) <= with_abstract < len(news)  # most, not all, have an abstract
    assert len({cols[1] for cols in news}) >= 5

    rows = [line.split("\t") for line in (folder / "behaviors.tsv").read_text(encoding="utf-8").splitlines()]
    assert {len(cols) for cols in rows} == {5}
    assert [int(cols[0]) for cols in rows] == list(range(1, len(rows) + 1))
    assert all(re.fullmatch(r"\d{1,2}/\d{1,2}/\d{4} \d{1,2}:\d\d:\d\d [AP]M", cols[2]) for cols in rows)
    histories = defaultdict(set)
    for cols in rows:
        histories[cols[1]].add(cols[3])
        labels = [t.rsplit("-", 1)[1] for t in cols[4].split()]
        assert "1" in labels and "0" in labels and 24 <= len(labels) <= 32
    assert all(len(h) == 1 for h in histories.values())  # one history per user, repeated in every row
    rows_per_user = Counter(cols[1] for cols in rows)
    assert sum(n for n in rows_per_user.values() if n > 1) > len(rows) / 2  # most rows belong to returning users
    # users' rows are interleaved, not grouped
    users_in_order = [cols[1] for cols in rows]
    assert sum(a != b for a, b in zip(users_in_order, users_in_order[1:])) > len(rows) * 0.8


def test_mind_popularity_is_skewed():
    spec = synth.spec_for("mind", "smoke")
    ds = load_mind(FIXTURES / "mind_smoke")
    counts = Counter(i for s in ds.sequences for i in s.items)
    top = sum(c for _, c in counts.most_common(spec.news // 10))
    assert top > 0.25 * sum(counts.values())  # a tenth of the news draw over a quarter of the clicks


# ---------------------------------------------------------------- Amazon-M2 format


def test_amazon_smoke_files_have_the_real_shape():
    folder = FIXTURES / "amazon_smoke"
    text = (folder / "products_train.csv").read_text(encoding="utf-8")
    assert text.startswith("id,locale,title,price,brand,color,size,model,material,author,desc\n")
    products = list(csv.DictReader(text.splitlines(keepends=True)))
    locales = Counter(p["locale"] for p in products)
    assert {"DE", "JP", "UK", "ES", "FR", "IT"} == set(locales)
    assert all(re.fullmatch(r"B0[0-9A-Z]{8}|\d{9}[\dX]", p["id"]) for p in products)
    descs = [p["desc"] for p in products]
    assert any("\n" in d and "," in d and '"' in d for d in descs)  # multi-line, quoted, with commas and quotes
    assert max(len(d.split()) for d in descs) >= 300  # long enough that text.max_field_tokens must cut it
    assert any(not d for d in descs) and any(not p["brand"] for p in products)  # missing fields are empty
    assert any(re.search(r"[\u3040-\u30ff]", p["title"]) for p in products if p["locale"] == "JP")

    raw = (folder / "sessions_train.csv").read_text(encoding="utf-8")
    sessions = list(csv.DictReader(raw.splitlines(keepends=True)))
    assert raw.startswith("prev_items,next_item,locale\n")
    assert any("\n" in s["prev_items"] for s in sessions)  # long arrays wrap inside a quoted field
    assert re.search(r"^\['B0[0-9A-Z]{8}'( '[0-9A-Z]{10}')*\],", raw, re.M)  # short ones are not quoted
    lengths = [len(s["prev_items"].split("'")) // 2 for s in sessions]
    assert min(lengths) < 9 and max(lengths) > 24
    assert {s["locale"] for s in sessions} == set(locales)
    assert all(s["next_item"] != s["prev_items"].split("'")[-2] for s in sessions)


def test_long_descriptions_are_cut_by_max_field_tokens(smol_tokenizer):
    from trsr_utils.method.text import ELLIPSIS, cap_tokens

    ds = load_amazon_m2(FIXTURES / "amazon_smoke")
    longest = max((a.get("description", "") for a in ds.catalog.items.values()), key=len)
    assert len(smol_tokenizer.encode(longest, add_special_tokens=False)) > 128
    cut = cap_tokens(longest, smol_tokenizer, 128)
    assert cut.endswith(ELLIPSIS) and len(smol_tokenizer.encode(cut, add_special_tokens=False)) <= 129


# ---------------------------------------------------------------- through the loaders and the data stage


def test_mind_smoke_through_prepare_with_the_paper_filter(tmp_path):
    overrides = {"data": {"dataset": "mind", "source_dir": str(FIXTURES / "mind_smoke"),
                          "negative_source": "impressions", **PAPER_SMALL}}
    cfg = resolve_config("smoke", run_dir=tmp_path, overrides=overrides)
    prepared = preparation.prepare(cfg)
    meta = prepared.meta
    assert meta["bad_input"]["skipped"] == 0 and meta["catalog_size"] == synth.spec_for("mind", "smoke").news
    assert meta["filter"]["kept"] >= 30
    assert meta["filter"]["too_short"] > 0 and meta["filter"]["too_long_dropped"] > 0  # the filter has work to do
    samples = prepared.samples
    assert samples["split"].value_counts().to_dict() == {"train": 12, "valid": 4, "test": 6}
    raw = {s.user_id: s for s in preparation.load_raw(cfg).sequences}
    for row in samples.itertuples():
        assert len(row.negatives) == (1 if row.split == "train" else 20)
        assert 10 <= len(row.history) + 1 <= 25
        # every negative is news the user was shown and skipped: no uniform top-up was needed
        assert set(row.negatives) <= set(raw[row.user_id].impression_negatives)
        assert not set(row.negatives) & {*row.history, row.positive}
    assert meta["sampling"]["negatives_topped_up"] == 0


def test_amazon_smoke_through_prepare_with_the_paper_filter(tmp_path):
    overrides = {"data": {"dataset": "amazon-m2", "source_dir": str(FIXTURES / "amazon_smoke"), "locale": "UK",
                          "negative_source": "uniform", **PAPER_SMALL}}
    cfg = resolve_config("smoke", run_dir=tmp_path, overrides=overrides)
    prepared = preparation.prepare(cfg)
    meta = prepared.meta
    assert meta["bad_input"]["skipped"] == 0
    assert meta["filter"]["kept"] >= 30 and meta["filter"]["too_short"] > 0 and meta["filter"]["too_long_dropped"] > 0
    assert prepared.samples["split"].value_counts().to_dict() == {"train": 12, "valid": 4, "test": 6}
    uk = {r["id"] for r in csv.DictReader(open(FIXTURES / "amazon_smoke" / "products_train.csv", encoding="utf-8",
                                               newline="")) if r["locale"] == "UK"}
    assert meta["catalog_size"] == len(uk) and set(prepared.items.item_id) <= uk
    assert {len(n) for n in prepared.samples.negatives} == {1, 20}
    assert "description" in prepared.items.columns and prepared.items["description"].isna().any()
    # the other locales are in the files and are filtered out, not absent
    assert len(load_amazon_m2(FIXTURES / "amazon_smoke", locale="DE").sequences) > 0


# ---------------------------------------------------------------- presets and overrides


def test_spec_scale_and_overrides():
    large = synth.spec_for("mind", "large")
    assert (large.news, large.impressions) == (101_527, 2_232_748)
    tenth = synth.spec_for("mind", "large", scale=0.1)
    assert (tenth.news, tenth.impressions, tenth.users) == (10_153, 223_275, 71_122)
    more = synth.spec_for("mind", "smoke", impressions=300)
    assert more.impressions == 300 and more.users == 120  # impressions per user kept
    amazon = synth.spec_for("amazon-m2", "large", scale=0.5, sessions=10)
    assert (amazon.products, amazon.sessions) == (775_528, 10)
    with pytest.raises(ValueError, match="amazon-m2 has no setting 'news'"):
        synth.spec_for("amazon-m2", "smoke", news=3)
    with pytest.raises(ValueError, match="unknown preset"):
        synth.spec_for("mind", "huge")


def test_overrides_change_the_sizes_written(tmp_path):
    info = synth.generate("amazon-m2", tmp_path, "smoke", products=60, sessions=30)
    products = list(csv.DictReader(open(tmp_path / "products_train.csv", encoding="utf-8", newline="")))
    sessions = list(csv.DictReader(open(tmp_path / "sessions_train.csv", encoding="utf-8", newline="")))
    assert len(products) == 60 and len(sessions) == 30 and info["products_per_locale"]["UK"] > 0
    info = synth.generate("mind", tmp_path / "m", "smoke", news=40, impressions=25)
    assert len((tmp_path / "m" / "behaviors.tsv").read_text().splitlines()) == 25
    assert len((tmp_path / "m" / "news.tsv").read_text().splitlines()) == 40
    load_mind(tmp_path / "m")  # still consistent: every id it mentions is in news.tsv
