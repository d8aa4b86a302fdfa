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
