"""The cost plan: model shapes, the FLOP/byte formulas written out by hand, work counts, scaling, the CLI."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from trsr_utils.tools import plan
from trsr_utils.core.config import resolve_config

LLAMA2_7B_CONFIG = {"num_hidden_layers": 32, "hidden_size": 4096, "intermediate_size": 11008,
                    "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32000,
                    "tie_word_embeddings": False}


def test_parameter_counts_follow_from_the_shapes():
    llama7 = plan.model_spec("meta-llama/Llama-2-7b-hf")
    assert llama7.params == pytest.approx(6.74e9, rel=0.002)  # Llama-2-7B: 6,738,415,616
    assert plan.model_spec("upstage/llama-30b-instruct-2048").params == pytest.approx(32.5e9, rel=0.005)
    assert plan.model_spec("smollm2-135m-instruct").params == pytest.approx(134.5e6, rel=0.002)
    assert plan.spec_from_config("x", LLAMA2_7B_CONFIG, "test").params == llama7.params
    # tiny-random is built and counted (model_spec asserts the count equals the model's numel)
    tiny = plan.model_spec("tiny-random")
    assert tiny.layers == 2 and tiny.hidden == 64 and tiny.tied
    # the layers' matrices are what a token multiplies through: Llama-2-7B minus its two 131M-entry tables
    assert llama7.layer_params == pytest.approx(llama7.params - 2 * 32000 * 4096)
    with pytest.raises(ValueError, match="no shape known"):
        plan.model_spec("someone/unknown-model")


def test_model_spec_prefers_a_local_config(tmp_path):
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({**LLAMA2_7B_CONFIG, "num_hidden_layers": 16}))
    spec = plan.model_spec(str(folder))
    assert spec.layers == 16 and "config.json" in spec.source


def test_weight_memory_by_precision_and_what_fits():
    big = plan.model_spec("upstage/llama-30b-instruct-2048")
    gb = {p: plan.weight_bytes(big, "bfloat16", q) / 1e9 for p, q in (("bf16", None), ("8bit", "8bit"),
                                                                        ("4bit", "4bit"))}
    assert 64 < gb["bf16"] < 66 and 32 < gb["8bit"] < 34 and 16 < gb["4bit"] < 18
    assert plan.weight_bytes(plan.model_spec("meta-llama/Llama-2-7b-hf"), "bfloat16") / 1e9 == pytest.approx(13.5,
                                                                                                          abs=0.1)
    table = plan.fit_table().set_index("precision")
    row = table[table["model"] == "upstage/llama-30b-instruct-2048"]
    assert row.loc["bfloat16", "a100-40gb"] == "no" and row.loc["8bit", "a100-40gb"] == "fits"
    assert row.loc["bfloat16", "a100-80gb"] == "fits"  # the weights alone: 65 of 72 usable GB (see the next test)


def test_kv_cache_per_token():
    llama7 = plan.model_spec("meta-llama/Llama-2-7b-hf")
    assert plan.kv_bytes_per_token(llama7, "bfloat16") == 2 * 32 * 4096 * 2  # keys + values, 32 layers, bf16
    smol = plan.model_spec("smollm2-135m-instruct")  # grouped-query attention: 3 of 9 heads keep keys/values
    assert plan.kv_bytes_per_token(smol, "float32") == 2 * 30 * 3 * 64 * 4


TOY = plan.ModelSpec("toy", layers=2, hidden=8, intermediate=16, heads=2, kv_heads=2, vocab=10, tied=True,
                     source="test")
HW = plan.Hardware("toy", bf16_tflops=1e-9, fp32_tflops=1e-9, memory_gb=1.0, bandwidth_gbs=1e-6, source="test")
# 1000 FLOP/s and 1000 bytes/s: seconds are easy to check by hand


def test_prefill_and_decoding_by_hand():
    N, L, d, V = TOY.layer_params, 2, 8, 10
    w = plan.Work("03", "x", "summarizer", "generate", sequences=4, prompt_tokens=10, new_tokens=3, batch=2,
                  longest=13)
    c = plan.cost(w, TOY, HW, plan.Precision("float32", None))
    prefill = 2 * N * 10 * 4 + 2 * L * d * 10 * 10 * 4
    ctx = 10 + 3 / 2
    step_flops = 2 * (2 * (N + V * d) + 4 * L * d * ctx)
    step_bytes = plan.weight_bytes(TOY, "float32") + 2 * ctx * plan.kv_bytes_per_token(TOY, "float32")
    assert c["flops"] == pytest.approx(prefill + 2 * 3 * step_flops)  # 2 batches x 3 steps
    assert c["prefill_seconds"] == pytest.approx(prefill / 1000)
    # each step takes the longer of its compute and its reads: here the reads (decoding is bandwidth bound)
    assert step_bytes > step_flops and c["decode_seconds"] == pytest.approx(2 * 3 * step_bytes / 1000)
    assert c["tokens"] == 40 and c["generated"] == 12
    assert c["memory_gb"] == pytest.approx((plan.weight_bytes(TOY, "float32")
                                            + 2 * 13 * plan.kv_bytes_per_token(TOY, "float32")) / 1e9)
    # utilisation scales both rates
    half = plan.cost(w, TOY, HW, plan.Precision("float32", None), utilization=0.5)
    assert half["seconds"] == pytest.approx(2 * c["seconds"])


def test_decoding_turns_compute_bound_with_a_large_batch():
    fast_memory = plan.Hardware("toy", 1e-9, 1e-9, 1.0, 1.0, "test")  # 1 GB/s: reads are cheap
    w = plan.Work("03", "x", "summarizer", "generate", sequences=64, prompt_tokens=10, new_tokens=5, batch=64)
    c = plan.cost(w, TOY, fast_memory, plan.Precision("float32", None))
    step_flops = 64 * (2 * (TOY.layer_params + 10 * 8) + 4 * 2 * 8 * 12.5)
    assert c["decode_seconds"] == pytest.approx(5 * step_flops / 1000)


def test_lora_training_is_four_n_per_token_and_six_with_checkpointing():
    N, L, d = TOY.layer_params, 2, 8
    w = plan.Work("06", "t", "recommender", "train", sequences=10, prompt_tokens=20, batch=2, passes=3, longest=20)
    c = plan.cost(w, TOY, HW, plan.Precision("float32", None))
    tokens = 10 * 3 * 20
    assert c["tokens"] == tokens
    assert c["flops"] == pytest.approx(4 * N * tokens + 2 * L * d * 20 * 20 * 10 * 3 * 2)
    ck = plan.cost(w, TOY, HW, plan.Precision("float32", None), checkpointing=True)
    assert ck["flops"] == pytest.approx(6 * N * tokens + 2 * L * d * 20 * 20 * 10 * 3 * 3)
    assert ck["activations_gb"] < c["activations_gb"]


def test_shared_prefix_scoring_runs_the_prefix_once():
    N = TOY.layer_params
    w = plan.Work("07", "s", "recommender", "score", sequences=3, prompt_tokens=100, batch=1, suffixes=21,
                  suffix_tokens=10, longest=110)
    c = plan.cost(w, TOY, HW, plan.Precision("float32", None))
    assert c["tokens"] == 3 * (100 + 21 * 10)  # not 3 x 21 x 110
    assert c["flops"] > 2 * N * c["tokens"]  # + attention over the prefix


def test_quantized_models_are_slowed_only_by_the_stated_factor():
    w = plan.Work("03", "x", "summarizer", "generate", sequences=2, prompt_tokens=10, new_tokens=2, batch=2)
    gpu = plan.GPUS["a100-80gb"]
    base = plan.cost(w, TOY, gpu, plan.Precision("bfloat16", "8bit"))
    assert plan.cost(w, TOY, gpu, plan.Precision("bfloat16", "8bit"), quant_slowdown=3)["seconds"] == pytest.approx(
        3 * base["seconds"])
    assert plan.cost(w, TOY, gpu, plan.Precision("bfloat16", None), quant_slowdown=3)["seconds"] > 0


def test_merge_calls_level_by_level():
    assert plan.work._merge_calls(1, 5) == 0
    assert plan.work._merge_calls(5, 5) == 1
    assert plan.work._merge_calls(6, 5) == 2  # (5 + 1) -> one merge, then 2 -> one merge
    assert plan.work._merge_calls(5, 2) == 4  # (2, 2, 1) -> 2 merges; (2, 1) -> 1; (2) -> 1
    assert plan.work._interp(4.5, lambda b: plan.work._merge_calls(int(b), 2)) == pytest.approx(3.5)  # 4 blocks: 3, 5: 4


@pytest.fixture
def demo(tmp_path):
    return resolve_config("demo", tmp_path / "run")


def test_demo_workload_counts(demo):
    st = plan.data_stats(demo)
    assert st.users == {"train": 24, "valid": 6, "test": 20} and "estimate" in st.sources["history"]
    work = plan.workload(demo, st)
    blocks = next(w for w in work if w.stage == "03" and w.label == "block summaries")
    assert blocks.sequences == pytest.approx(50 * st.blocks) and blocks.batch == 32
    assert 4 <= st.blocks <= 5  # 19-24-item histories in blocks of 5
    rows = [w.label for w in work if w.stage == "07" and w.label.startswith("scoring")]
    assert rows == ["scoring zero_shot", "scoring tallrec", "scoring hierarchical", "scoring recurrent"]
    # two adapters trained in 07 (no summary, recurrent); notebook 06 trained the hierarchical one
    trained = [w.label for w in work if w.stage == "07" and w.kind == "train"]
    assert len(trained) == 2 and any("none" in t for t in trained) and any("recurrent" in t for t in trained)
    # 08: the cells notebook 07 did not score (one new grid cell on the demo, k = 1, and one reliance control)
    assert len([w for w in work if w.stage == "08" and w.kind == "score"]) == 2
    # the demo leaves the official-negatives check to the course profile (eval.upstream_check: false)
    assert not [w for w in work if w.label.startswith("upstream negatives")]
    course = plan.workload(resolve_config("course", demo.run_dir), st)
    assert [w.label for w in course if w.label.startswith("upstream negatives")] == [
        "upstream negatives (main row again)"]
    assert not [w for w in work if w.stage == "08" and w.kind == "train"]  # the demo trains no positive control
    sft = next(w for w in work if w.stage == "06" and w.kind == "train")
    assert sft.sequences == 24 and sft.suffixes == 2 and sft.passes == pytest.approx(1.0)  # shared prefix, 1 epoch
    # no summary: a shorter prompt
    tallrec = next(w for w in work if w.label == "scoring tallrec")
    hier = next(w for w in work if w.label == "scoring hierarchical")
    assert tallrec.prompt_tokens < hier.prompt_tokens


def test_course_long_prices_the_controls(tmp_path):
    from trsr_utils.core.config import resolve_config

    cfg = resolve_config("course-long", tmp_path)
    work = plan.workload(cfg, plan.data_stats(cfg))
    trained = [w.label for w in work if w.stage == "08" and w.kind == "train"]
    assert len(trained) == 2 and any("template" in t for t in trained) and any("oracle" in t for t in trained)
    assert any(w.stage == "08" and w.label.startswith("order=shuffled") for w in work)  # the order test's summaries


def test_sharding_deals_batches_and_leaves_one_process_work_alone():
    w = plan.Work("03", "x", "summarizer", "generate", sequences=100, prompt_tokens=10, batch=10)  # 10 batches
    assert plan.sharded_seconds(w, 100.0, 1) == 100.0
    assert plan.sharded_seconds(w, 100.0, 5) == pytest.approx(20.0)  # 2 rounds of 5 batches
    assert plan.sharded_seconds(w, 100.0, 8) == pytest.approx(20.0)  # still 2 rounds: 6 GPUs idle in the second
    assert plan.sharded_seconds(w, 100.0, 16) == pytest.approx(10.0)  # one round; 6 GPUs never used
    train = plan.Work("06", "t", "recommender", "train", sequences=64, prompt_tokens=10, batch=4, parallel="ddp")
    assert plan.sharded_seconds(train, 80.0, 8) == pytest.approx(10.0)
    valid = plan.Work("06", "v", "recommender", "score", sequences=64, prompt_tokens=10, parallel="one")
    assert plan.sharded_seconds(valid, 80.0, 8) == 80.0  # rank 0 only


def test_paper_plan_scales_over_gpus_and_says_what_does_not(tmp_path):
    shipped = plan.multi_gpu_stages()
    assert shipped == {"03", "04", "06", "07", "08", "09"}  # every LLM stage's command line runs under torchrun
    cfg = resolve_config("paper-mind", tmp_path / "run")
    one = plan.plan(cfg, "a100-80gb", 1)
    eight = plan.plan(cfg, "a100-80gb", 8)
    # thousands of batches: nearly 8x, less the validations on rank 0
    valid = sum(i["seconds"] for i in one.items if i["parallel"] == "one") / 3600
    assert valid > 0 and one.hours() / 8 < eight.hours(sharded=True) < one.hours() / 8 + valid + 0.01 * one.hours()
    by_stage = {s: sum(i["seconds_sharded" if s in shipped else "seconds"] for i in eight.items if i["stage"] == s)
                for s in plan.STAGE_NAMES if s != "nb"}
    # as shipped = sharded + the notebook pass after the command lines (it loads the recommender for 06-09)
    notebook_pass = sum(i["seconds_shipped"] for i in eight.items if i["stage"] == "nb") / 3600
    assert notebook_pass > 0 and not any(i["stage"] == "nb" for i in one.items)
    assert eight.hours(sharded=False) == pytest.approx(sum(by_stage.values()) / 3600 + notebook_pass)
    assert eight.hours(sharded=False) == pytest.approx(eight.hours(sharded=True) + notebook_pass)
    assert plan.plan(cfg, "h100-80gb").hours() < one.hours()  # faster and wider
    assert "hours (8, sharded)" in eight.stages() and "hours (1, sharded)" not in one.stages()
    stages = one.stages()
    assert list(stages["stage"]) == [*(n for s, n in plan.STAGE_NAMES.items() if s != "nb"), "total"]
    assert stages.iloc[-1]["hours (1)"] == pytest.approx(one.hours())
    assert (stages["statistics"].iloc[:-1] == "estimated").all()  # no run directory: every number is estimated
    assert one.models["summarizer"]["precision"] == "8bit" and one.models["recommender"]["precision"] == "bfloat16"
    # the 8-bit summarizer's decoding at the reported slowdown, its sources named; 1 is the roofline's bound
    assert any("2.4-5.7x slower" in n and "quant_slowdown=4" in n for n in one.notes)
    roofline = plan.plan(cfg, "a100-80gb", 1, quant_slowdown=1.0)
    quantized = [i for i in one.items if i["role"] == "summarizer" and i["kind"] == "generate"]
    assert all(i["seconds"] == pytest.approx(4 * r["seconds"]) for i, r in zip(
        quantized, [r for r in roofline.items if r["role"] == "summarizer" and r["kind"] == "generate"]))
    # loading: every stage's models once per launch, the 30B summarizer's 33 GB at 1 GB/s
    loads = {i["label"]: i["seconds"] for i in one.items if i["kind"] == "load" and i["stage"] == "03"}
    assert loads == {"loading the summarizer": pytest.approx(one.models["summarizer"]["weights_gb"] / plan.LOAD_GBS)}
    # notebook 09 is priced (listwise adapter, orders, re-ranking) and the engine column only shortens generation
    assert {i["label"].split(" (")[0].split(" x ")[0] for i in one.items if i["stage"] == "09" and i["kind"] != "load"} \
        >= {"listwise adapter training", "listwise scoring", "pointwise fine-tuned, second order"}
    assert all(i["seconds_engine"] == i["seconds"] for i in one.items if i["kind"] != "generate")
    assert all(i["seconds_engine"] < i["seconds"] for i in quantized)
    assert one.hours(engine=True) < one.hours()


def test_what_does_not_fit_is_said(tmp_path):
    cfg = resolve_config("paper-mind", tmp_path / "run", {"model.summarizer_quantization": None})
    fits = {i["fits"] for i in plan.plan(cfg, "a100-40gb").items if i["role"] == "summarizer"}
    assert fits == {"no: weights 65 GB > 36 GB"}
    # on 80 GB the bf16 weights fit, but not with the key/value cache of a batch of 16 long block prompts
    p = plan.plan(cfg, "a100-80gb")
    fits = {i["fits"] for i in p.items if i["role"] == "summarizer"}
    assert any(f.startswith("only batch <= ") for f in fits)
    assert any(n.startswith("Does not fit as planned: 03 block summaries: only batch") for n in p.notes)
    assert {i["fits"] for i in plan.plan(cfg, "h200").items if i["stage"] == "03"} == {"yes"}


def test_cpu_cannot_run_bitsandbytes(tmp_path, monkeypatch):
    import torch

    threads = torch.get_num_threads()
    for shape in ((6656, 17920, 52, 52, 32, threads), (4096, 11008, 32, 32, 32, threads)):
        monkeypatch.setitem(plan.devices._CPU, shape, plan.Hardware("cpu", 1.0, 1.0, 24.0, 10.0, "fake", True))
    p = plan.plan(resolve_config("paper-mind", tmp_path / "run"), "cpu")
    assert {i["fits"] for i in p.items if i["role"] == "summarizer" and not i["model"].startswith("meta")} == {
        "no: bitsandbytes needs a CUDA GPU"}
    assert p.utilization == 1.0  # measured rates need no utilisation factor


def test_measure_cpu_reports_rates():
    hw = plan.measure_cpu(TOY, decode_rows=4)
    assert hw.measured and hw.fp32_tflops > 0 and hw.bf16_tflops > 0 and hw.bandwidth_gbs > 0
    assert hw.decode_fp32_tflops > 0 and plan.measure_cpu(TOY, decode_rows=4) is hw  # measured once per process
    assert "one decoder layer of toy's shape" in hw.source


def _write_cache(path, batches):
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE calls (key TEXT PRIMARY KEY, model TEXT, prompt TEXT, params TEXT, text TEXT, "
               "finish TEXT, prompt_tokens INTEGER, new_tokens INTEGER, seconds REAL, created REAL)")
    k = 0
    for created, rows in batches:
        for p, n in rows:
            db.execute("INSERT INTO calls VALUES (?,?,?,?,?,?,?,?,?,?)", (str(k), "m", "p", "{}", "t", "eos", p, n,
                                                                          1.5, created))
            k += 1
    db.commit()
    db.close()


def test_summarizer_batches_are_read_back_from_the_call_cache(demo):
    from trsr_utils.store.callcache import CACHE_FILE

    _write_cache(demo.run_dir and (Path(demo.run_dir) / CACHE_FILE),
                 [(100.0, [(10, 5), (12, 7)]), (200.0, [(30, 2)]), (300.0, [(8, 8)])])
    batches = plan.summarizer_batches(demo)
    assert [(b["rows"], b["width"], b["steps"], b["prompt_tokens"]) for b in batches] == [
        (2, 12, 7, 22), (1, 30, 2, 30), (1, 8, 8, 8)]
    assert batches[0]["seconds"] == pytest.approx(3.0)
    assert [b["created"] for b in plan.summarizer_batches(demo, (150, 250))] == [200.0]


def test_measured_statistics_replace_the_estimates(demo):
    from trsr_utils.core import io
    from trsr_utils import stages

    samples = pd.DataFrame({"user_id": ["a", "b"], "split": ["train", "test"], "history": [["1"] * 12, ["2"] * 14],
                            "positive": ["3", "4"], "negatives": [["5"], ["6"]]})
    folder = stages.result_dir(demo, "01_data", create=True)
    io.write_parquet(folder / "samples.parquet", samples)
    stages.finish(demo, "01_data")
    blocks = pd.DataFrame({"user_id": ["a", "a", "b"], "n_items": [5, 5, 4], "n_tokens": [100, 110, 70]})
    folder = stages.result_dir(demo, "02_text", create=True)
    io.write_parquet(folder / "blocks.parquet", blocks)
    stages.finish(demo, "02_text")
    st = plan.data_stats(demo)
    assert st.users == {"train": 1, "test": 1} and st.history == 13.0 and st.blocks == 1.5
    assert st.tokens_per_item == pytest.approx(280 / 14) and st.block_tokens == pytest.approx(280 / 3)
    assert st.block_tokens_max == 110  # the longest block sizes a batch's key/value cache
    assert st.sources["history"].startswith("measured") and st.sources["summary_tokens"].startswith("estimate")


def test_command_line_table_and_json(capsys):
    assert plan.main(["--profile", "paper-amazon", "--gpu", "h100-80gb", "--gpus", "8"]) == 0
    out = capsys.readouterr().out
    assert "paper-amazon on 8 x h100-80gb" in out and "hours (8, sharded)" in out and "total" in out
    assert plan.main(["--profile", "paper-mind", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["gpus"] == 1 and data["stages"][-1]["stage"] == "total"
    assert math.isclose(data["stages"][-1]["hours (1)"], sum(i["seconds"] for i in data["items"]) / 3600)
    assert plan.main(["--profile", "paper-mind", "--gpu", "tpu"]) == 1


def test_validate_puts_the_plan_beside_what_the_run_measured(demo, monkeypatch):
    import torch

    from trsr_utils.core import io
    from trsr_utils import stages
    from trsr_utils.store.callcache import CACHE_FILE

    spec = plan.model_spec("smollm2-135m-instruct")
    key = (spec.hidden, spec.intermediate, spec.heads, spec.kv_heads, 32, torch.get_num_threads())
    fake = plan.Hardware("cpu", 0.1, 0.1, 24.0, 10.0, "fake", True, 0.05, 0.05)  # 100 GFLOP/s, 10 GB/s
    monkeypatch.setitem(plan.devices._CPU, key, fake)
    assert plan.validate(demo).empty  # nothing measured yet
    folder = stages.result_dir(demo, "03_hierarchical", create=True)
    io.write_parquet(folder / "steps.parquet", pd.DataFrame({"calls": [1, 2], "new_tokens": [30, 50]}))
    stages.finish(demo, "03_hierarchical", 12.5)
    finished = stages.record(folder)["created"]
    # two batches inside notebook 03's window, one from before it (another notebook's calls)
    _write_cache(Path(demo.run_dir) / CACHE_FILE, [(finished - 100, [(50, 5)]), (finished - 8, [(200, 40)] * 32),
                                                        (finished - 2, [(220, 40)] * 16)])
    assert [w.sequences for w in plan.measured_summary_work(demo)] == [32, 16]
    table = plan.validate(demo)
    assert list(table["stage"]) == ["03 hierarchical summaries"] and table.loc[0, "measured s"] == 12.5
    by_hand = sum(plan.cost(w, spec, fake, plan.Precision("float32", None))["seconds"]
                  for w in plan.measured_summary_work(demo))
    assert table.loc[0, "predicted s (from the run)"] == pytest.approx(by_hand)
    assert table.loc[0, "ratio"] == pytest.approx(by_hand / 12.5)
    assert table.loc[0, "predicted s (from settings)"] > 0


def test_a_gpu_run_is_compared_with_the_gpu_plan(tmp_path, monkeypatch):
    """Notebook 10 checks the plan against the run's own times: on a GPU run, against that GPU's plan."""
    import types

    import torch

    from trsr_utils.method import llm

    cfg = resolve_config("smoke", tmp_path)
    assert plan.run_hardware(cfg) == "cpu"
    monkeypatch.setattr(llm, "resolve_device", lambda device: "cuda")
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index=0: types.SimpleNamespace(total_memory=85e9))
    assert plan.run_hardware(cfg) == "h100-80gb"
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "NVIDIA A100-SXM4-40GB")
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index=0: types.SimpleNamespace(total_memory=42e9))
    assert plan.run_hardware(cfg) == "a100-40gb"
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "Tesla V100-SXM2-32GB")
    with pytest.raises(ValueError, match="not in trsr_utils.tools.plan.GPUS"):
        plan.run_hardware(cfg)
