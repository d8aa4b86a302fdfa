"""The benchmarks run end to end (tiny model: the numbers mean nothing here, the equality checks do)."""

from __future__ import annotations

import json

import pytest

import trsr_synth
from trsr_utils.tools import bench


def test_scoring_benchmark_compares_three_variants_on_equal_probabilities():
    result = bench.bench_scoring("tiny-random", n_users=2, users_per_batch=2, pad_to=512, padded_candidates=3,
                                 log=lambda *_: None)
    assert [r["variant"] for r in result["rows"]] == ["shared prefix", "independent, dynamic padding",
                                                      "independent, padded to 512"]
    assert result["rows"][0]["candidates"] == 42 and result["rows"][2]["candidates"] == 3
    assert result["max_abs_diff_vs_independent"] <= 1e-4 and result["max_abs_diff_vs_padded"] <= 1e-4
    assert result["prefix_tokens_mean"] > 4 * result["suffix_tokens_mean"]
    assert "speed-up" in bench.table(result)


def test_bench_main_keeps_results_of_benchmarks_not_run(tmp_path, monkeypatch):
    out = tmp_path / "bench"
    out.mkdir()
    (out / "bench.json").write_text(json.dumps({"benchmarks": {"summarize": {"speedup": 4.0}}}))
    fake = {"benchmark": "scoring", "rows": [{"variant": "a"}], "speedup": 6.0, "goal": "x", "met": True,
            "model": "/home/me/models/foo@0123456789abcdef|float32|none"}
    monkeypatch.setitem(bench.BENCHMARKS, "scoring", lambda model_name: dict(fake))
    assert bench.main(["--only", "scoring", "--out", str(out)]) == 0
    saved = json.loads((out / "bench.json").read_text())
    assert saved["benchmarks"]["summarize"] == {"speedup": 4.0}
    assert saved["benchmarks"]["scoring"]["speedup"] == 6.0 and "machine" in saved["benchmarks"]["scoring"]
    assert "commit" in saved["benchmarks"]["scoring"]["git"]  # each entry its own commit
    assert saved["benchmarks"]["scoring"]["model"] == "foo@0123456789abcdef|float32|none"  # no local path


def test_precision_benchmark_counts_rank_changes_between_float32_and_bfloat16():
    result = bench.bench_precision("tiny-random", n_users=3, users_per_batch=2, log=lambda *_: None)
    assert [r["variant"] for r in result["rows"]] == ["float32", "bfloat16"]
    assert 0 < result["max_abs_p_difference"] < 0.05 and 0 <= result["share_rank_changed"] <= 1
    assert result["share_top10_changed"] <= result["share_rank_changed"]


def test_shared_prefix_sft_benchmark_trains_the_same_candidates_four_ways():
    result = bench.bench_sft_shared("tiny-random", n_train=2, train_negatives=2, log=lambda *_: None)
    assert len(result["rows"]) == 4
    assert {r["candidates"] for r in result["rows"]} == {6} and {r["users"] for r in result["rows"]} == {2}
    assert [r["steps"] for r in result["rows"]] == [2, 2, 2, 2]  # one user's 3 candidates per step, each way


def test_loaders_benchmark_runs_the_data_stage_on_cached_synthetic_data(tmp_path):
    result = bench.bench_loaders(scale=0.002, data_dir=tmp_path, log=lambda *_: None)
    assert [r["dataset"] for r in result["rows"]] == ["mind", "amazon-m2"]
    assert result["met"] is None and "checked at scale 1 only" in result["goal"]  # goals are for full scale
    for dataset, case in result["cases"].items():
        assert case["sizes"] == {"train": 20, "valid": 2, "test": 2}  # the paper's 10000/1000/1000 x 0.002
        assert case["samples"] == {"train": 20, "valid": 2, "test": 2}
        assert 24 <= case["filter"]["kept"] < case["users"] and case["skipped_rows"] == 0
        assert case["peak_rss_kb"] > 10_000 and case["load_s"] > 0 and case["met"] is None
        assert not case["generated"]["cached"]
    assert result["cases"]["mind"]["generated"]["impressions"] == 4465  # 2,232,748 x 0.002
    assert result["cases"]["amazon-m2"]["generated"]["products"] == 3102  # 1,551,057 x 0.002
    assert "loaders: (goal" in bench.table(result) and "speed-up" not in bench.table(result)

    again = bench.bench_loaders(scale=0.002, data_dir=tmp_path, datasets=("mind",), log=lambda *_: None)
    generated = again["cases"]["mind"]["generated"]
    assert generated["cached"] and generated["seconds"] == result["cases"]["mind"]["generated"]["seconds"]
    assert again["cases"]["mind"]["filter"] == result["cases"]["mind"]["filter"]


def test_loaders_benchmark_regenerates_stale_data_and_reports_child_failures(tmp_path):
    folder, info = trsr_synth.synthetic_data("mind", 0.001, tmp_path, log=lambda *_: None)
    assert not info["cached"] and not list(tmp_path.glob("*.partial"))
    marker = json.loads((folder / "synth.json").read_text())
    marker["version"] = -1  # written by an older generator
    (folder / "synth.json").write_text(json.dumps(marker))
    _, info = trsr_synth.synthetic_data("mind", 0.001, tmp_path, log=lambda *_: None)
    assert not info["cached"]
    _, info = trsr_synth.synthetic_data("mind", 0.001, tmp_path, log=lambda *_: None)
    assert info["cached"]
    (folder / "news.tsv").unlink()
    with pytest.raises(RuntimeError, match=r"loaders benchmark \(mind\) failed:(.|\n)*news.tsv not found"):
        bench.bench_loaders(scale=0.001, data_dir=tmp_path, datasets=("mind",), log=lambda *_: None)


def test_bench_main_passes_scale_and_data_dir_to_the_loaders_benchmark_only(tmp_path, monkeypatch):
    seen = {}

    def fake(model_name, scale, data_dir):
        seen.update(scale=scale, data_dir=data_dir)
        return {"benchmark": "loaders", "rows": [{"dataset": "mind"}], "goal": "x", "met": None}

    monkeypatch.setitem(bench.BENCHMARKS, "loaders", fake)
    assert bench.main(["--only", "loaders", "--scale", "0.1", "--out", str(tmp_path)]) == 0
    assert seen == {"scale": 0.1, "data_dir": str(tmp_path / "synth")}


def test_listwise_benchmark_times_both_scorings_on_the_same_users_and_candidates():
    result = bench.bench_listwise("tiny-random", n_users=2, users_per_batch=2, log=lambda *_: None)
    assert [r["variant"] for r in result["rows"]] == [
        "pointwise (shared prefix), float32", "listwise (letters), float32",
        "pointwise (shared prefix), bfloat16", "listwise (letters), bfloat16"]
    assert {r["candidates"] for r in result["rows"]} == {42} and all(r["candidates_per_s"] > 0 for r in result["rows"])
    # the same summary, recent items and candidates: the listwise prompt has about the pointwise tokens
    point, lists = result["rows"][0]["tokens_per_user"], result["rows"][1]["tokens_per_user"]
    assert 0.7 * point < lists < 1.1 * point
    assert "speed-up" in bench.table(result)
