"""The benchmarks run end to end (tiny model: the numbers mean nothing here, the equality checks do)."""

from __future__ import annotations

import json

from trsr_utils import bench


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
    fake = {"benchmark": "scoring", "rows": [{"variant": "a"}], "speedup": 6.0, "goal": "x", "met": True}
    monkeypatch.setitem(bench.BENCHMARKS, "scoring", lambda model_name: dict(fake))
    assert bench.main(["--only", "scoring", "--out", str(out)]) == 0
    saved = json.loads((out / "bench.json").read_text())
    assert saved["benchmarks"]["summarize"] == {"speedup": 4.0}
    assert saved["benchmarks"]["scoring"]["speedup"] == 6.0 and "machine" in saved["benchmarks"]["scoring"]


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
