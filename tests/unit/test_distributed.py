"""Stages spread over processes, for real: 2 CPU processes (gloo) under torchrun with the tiny model.

Two processes must give what one gives: the same greedy summaries (03, 04) with every LLM call in the cache once,
the same scores (07's LLM rows), and for SFT at the same global batch (DDP, shared prefix, the demo's default) the
same losses and the same adapter, written once by rank 0 into the folder of the one-process settings, which
notebook 06 then re-uses instead of training again.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import hostile_hf_home
from trsr_utils.method import score_store
from trsr_utils.store import callcache
from trsr_utils.data import preparation
from trsr_utils.method import chunks, lora, summarizer
from trsr_utils.stages import chunking, prepare, sft, summarize
from trsr_utils import stages
from trsr_utils.core.config import resolve_config

SETS = {"sft.summary": "none", "data.n_train": 8, "data.n_valid": 2, "data.n_test": 2, "sft.batch_size": 2,
        "sft.grad_accum": 2, "sft.logging_steps": 1, "sft.max_steps": 4, "sft.save_steps": 2,
        "prompt.max_length": 400, "sft.shared_prefix": True,
        # LoRA dropout draws other masks in each process: without it the two runs compute the same function
        "sft.lora_dropout": 0.0}


def _sets() -> list[str]:
    return [a for k, v in SETS.items() for a in ("--set", f"{k}={v}")]


def _run(cmd: list[str], log, **extra_env: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TRSR_PROGRESS": "0", **extra_env}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    log.write_text(done.stdout + done.stderr)
    assert done.returncode == 0, done.stderr[-3000:]


def torchrun(n: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n)]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    one, two = root / "one", root / "two"
    cfg = resolve_config("smoke", one, SETS)
    prepare.write(cfg, preparation.prepare(cfg))
    shutil.copytree(one, two)
    _run([sys.executable, "-m", "trsr_utils", "sft", "--profile", "smoke", "--run-dir", str(one), *_sets()],
         root / "one.log")
    # The command line's own launch (--gpus 2: torchrun DDP), beside a user's accelerate default config that would
    # make an accelerate launch refuse: nothing of it may be read.
    home = root / "hf_home"
    hostile_hf_home(home)
    _run([sys.executable, "-m", "trsr_utils", "sft", "--gpus", "2", "--profile", "smoke", "--run-dir", str(two),
          *_sets()], root / "two.log", HF_HOME=str(home))
    assert "torch.distributed.run --standalone --nproc_per_node 2" in (root / "two.log").read_text()
    return one, two


def test_two_process_sft_follows_one_process_and_writes_once(two_runs):
    import torch
    from safetensors.torch import load_file

    reports = {}
    for run in two_runs:
        cfg = resolve_config("smoke", run, SETS)
        folder = stages.result_dir(cfg, sft.STAGE)
        assert stages.is_complete(cfg, sft.STAGE), f"no finished adapter in {folder}"
        assert len(list((run / sft.STAGE.name).iterdir())) == 1  # one folder: the one-process settings' fingerprint
        reports[run.name] = json.loads((folder / "report.json").read_text())
        reports[run.name]["weights"] = load_file(folder / "adapter" / "adapter_model.safetensors")
        reports[run.name]["validated"] = [r["step"] for r in json.loads((folder / "validation.json").read_text())]
    one, two = reports["one"], reports["two"]
    assert (one["processes"], two["processes"]) == (1, 2)
    assert one["global_step"] == two["global_step"] == 4
    # the same examples per optimizer step (batch 2 x accumulation 2 = 2 processes x batch 2 x 1): equal losses
    losses = [(a["loss"], b["loss"]) for a, b in zip(one["loss_history"], two["loss_history"])]
    assert len(losses) == 4 and all(abs(a - b) < 1e-4 for a, b in losses), losses
    assert one["validated"] == two["validated"] == [0, 2, 4]  # rank 0 alone validated (no step twice)
    assert one["best"]["step"] == two["best"]["step"]
    for name, w in one["weights"].items():
        assert torch.allclose(w, two["weights"][name], atol=1e-5), name


def test_notebook_06_reuses_the_adapter_trained_on_two_processes(two_runs):
    report = sft.train(resolve_config("smoke", two_runs[1], SETS), log=lambda _: None)
    assert report["reused"] and report["processes"] == 2 and report["steps_this_run"] == 0


def test_grad_accum_that_does_not_divide_by_the_processes_fails_before_launch(tmp_path):
    cfg = resolve_config("smoke", tmp_path, {**SETS, "sft.grad_accum": 3})
    with pytest.raises(ValueError, match="must divide by the 2 processes"):
        lora.accumulation(cfg, 2)
    assert lora.accumulation(resolve_config("paper-mind", tmp_path), 8) == 2  # 4 x 16 = 64 = 8 GPUs x 4 x 2


def test_deepspeed_zero2_config_passes_deepspeeds_own_check(tmp_path):
    """The shipped ZeRO-2 config, its "auto" values filled by the Trainer as on a cluster, is accepted by
    DeepSpeed's own parser; it names no optimizer, so the Trainer's AdamW runs (no FusedAdam to JIT-build with
    nvcc) and the one-process schedule is kept."""
    from deepspeed.runtime.config import DeepSpeedConfig
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

    cfg = resolve_config("paper-mind", tmp_path, {"model.device": "cpu", "sft.mixed_precision": "bfloat16"})
    args = lora.training_arguments(cfg, tmp_path / "ckpt", "cpu")
    filled = HfTrainerDeepSpeedConfig(str(lora.DEEPSPEED_ZERO2))
    filled.trainer_config_process(args)
    checked = DeepSpeedConfig(filled.config)
    assert checked.zero_optimization_stage == 2 and checked.optimizer_name is None and checked.scheduler_name is None
    assert checked.train_batch_size == cfg.sft.batch_size * cfg.sft.grad_accum == 64
    assert filled.config["bf16"]["enabled"] is True


def test_resuming_a_deepspeed_run_without_deepspeed_is_refused(tmp_path):
    from types import SimpleNamespace

    ckpt = tmp_path / "checkpoints"
    lora.check_launch(ckpt, SimpleNamespace(deepspeed="ds.json", world_size=8), None, True)
    with pytest.raises(RuntimeError, match="--gpus 8"):
        lora.check_launch(ckpt, SimpleNamespace(deepspeed=None, world_size=1), str(ckpt / "checkpoint-2"), True)
    lora.check_launch(ckpt, SimpleNamespace(deepspeed="ds.json", world_size=4), str(ckpt / "checkpoint-2"), True)



@pytest.fixture(scope="module")
def llm_runs(tmp_path_factory):
    """Notebooks 01-02 on the smoke profile, then 03 + 04 and 07's zero-shot row from the command line on one
    process and on two."""
    from trsr_utils.method import llm
    from trsr_utils.method.text import ItemTexter

    root = tmp_path_factory.mktemp("dist-llm")
    one, two = root / "one", root / "two"
    cfg = resolve_config("smoke", one)
    prepared = preparation.prepare(cfg)
    prepare.write(cfg, prepared)
    tok = llm.load_tokenizer(cfg.model.summarizer)
    texter = ItemTexter.from_config(cfg, prepared.catalog, tok)
    blocks, report = chunks.chunk_samples(prepared.samples, texter, chunks.Chunker.from_config(cfg, tok))
    chunking.write_blocks(cfg, blocks, {"chunking": cfg.to_dict()["chunking"], **report})
    shutil.copytree(one, two)
    zero_shot = ["--set", "eval.llm=[zero_shot]"]
    for run, launch in ((one, [sys.executable]), (two, torchrun(2))):
        for command, extra in (("summarize", []), ("evaluation", zero_shot)):
            _run([*launch, "-m", "trsr_utils", command, "--profile", "smoke", "--run-dir", str(run), *extra],
                 root / f"{run.name}-{command}.log")
    return one, two


def test_two_process_summaries_are_identical_and_every_call_is_cached_once(llm_runs):
    import sqlite3

    import pandas as pd


    cfgs = [resolve_config("smoke", run) for run in llm_runs]
    for method in ("hierarchical", "recurrent"):
        one, two = (summarize.read_steps(c, method) for c in cfgs)
        assert len(one) > 50 and one["summary"].tolist() == two["summary"].tolist(), method
        assert one["flag"].tolist() == two["flag"].tolist()
        pd.testing.assert_frame_equal(summarize.read_summaries(cfgs[0], method)[["user_id", "summary"]],
                                      summarize.read_summaries(cfgs[1], method)[["user_id", "summary"]])
    calls = []
    for run in llm_runs:
        with sqlite3.connect(run / callcache.CACHE_FILE) as db:
            calls.append(sorted(db.execute("SELECT key, text FROM calls").fetchall()))
    assert len(calls[0]) == len({k for k, _ in calls[0]}) > 100  # no call repeated
    assert calls[0] == calls[1]  # none lost, none extra, the same text


def test_two_process_scores_equal_one_process(llm_runs):
    import numpy as np

    from trsr_utils.stages import evaluation

    stores = [sorted((run / score_store.SCORES_DIR).glob("*.parquet")) for run in llm_runs]
    assert [p.name for p in stores[0]] == [p.name for p in stores[1]] and len(stores[0]) == 1  # the same key
    one, two = (evaluation.io.read_parquet(p[0]) for p in stores)
    assert one["user_id"].tolist() == two["user_id"].tolist()
    assert max(np.abs(np.asarray(a) - np.asarray(b)).max() for a, b in zip(one["scores"], two["scores"])) < 1e-5
    assert one["rank"].tolist() == two["rank"].tolist()


def test_the_command_line_trains_every_adapter_07_needs_each_in_its_own_folder(tmp_path):
    """--all: notebook 06's adapter, then one per other fine-tuned row (and SFT seed), each under its own
    settings; none shares a folder (and so a checkpoint or a report) with another."""
    cfg = resolve_config("smoke", tmp_path, {"eval.sft_seeds": 2})
    wanted = sft.adapters_for_table(cfg)
    assert wanted[0] is cfg
    assert sorted((c.sft.summary, c.sft.seed_offset) for c in wanted) == sorted(
        (m, s) for m in ("hierarchical", "none", "recurrent") for s in (0, 1))
    assert len({stages.result_dir(c, sft.STAGE) for c in wanted}) == len(wanted) == 6


def test_the_call_cache_keeps_generations_of_each_precision_apart():
    from trsr_utils.method import llm

    params = {"max_new_tokens": 8}
    keys = {(d, q): callcache.call_key(llm.model_id("some/model", d, q), "prompt", params)
            for d in ("bfloat16", "float32") for q in (None, "8bit")}
    assert len(set(keys.values())) == 4


def test_a_lone_process_beside_idle_gpus_says_so_before_it_starts(monkeypatch):
    """A notebook about to do on one GPU what the command line would share over eight warns, with the command."""
    import warnings

    import torch

    from trsr_utils.core import distributed

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        distributed.warn_alone("120 LLM calls", "torchrun --nproc_per_node {n} -m trsr_utils summarize")  # no GPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    with pytest.warns(UserWarning, match=r"while 7 more stand idle.*torchrun --nproc_per_node 8 -m trsr_utils"):
        distributed.warn_alone("120 LLM calls", "torchrun --nproc_per_node {n} -m trsr_utils summarize")
    monkeypatch.setenv("WORLD_SIZE", "8")  # under the launcher: nothing to say
    assert distributed.idle_gpus() == 0


LISTWISE_CHILD = """
import sys
from pathlib import Path
from trsr_utils.method import listwise, llm, prompts
from trsr_utils.core.config import resolve_config
out = Path(sys.argv[1])
cfg = resolve_config("smoke", out, {"sft.max_steps": 4, "sft.save_steps": 2, "sft.batch_size": 1,
                                    "sft.grad_accum": 2, "sft.lora_dropout": 0.0, "sft.learning_rate": 0.02})
tok = llm.load_tokenizer(llm.TINY)
movie = lambda i: f"title: Movie {i}; genres: Drama"
lists = [prompts.ListwisePrompter(tok, "movies", 1024).build_list(None, [movie(90 + u)], [movie(4 * u + c) for c in range(4)])
         for u in range(4)]
letters = listwise.letters_for(tok, lists)
examples = listwise.training_examples(lists, [u % 4 for u in range(4)], letters)
listwise.train(cfg, llm.load_model(llm.TINY, device="cpu"), tok, examples, out / "lw", log=lambda *_: None)
"""


def test_the_listwise_adapter_trains_on_two_processes_as_on_one_and_is_written_once(tmp_path):
    """Notebook 09's listwise adapter under torchrun (python -m trsr_utils beyond): DDP at the same global batch
    gives the one-process adapter, rank 0 alone writes it."""
    import torch
    from safetensors.torch import load_file

    script = tmp_path / "train_listwise.py"
    script.write_text(LISTWISE_CHILD)
    for name, launch in (("one", [sys.executable]), ("two", torchrun(2))):
        _run([*launch, str(script), str(tmp_path / name)], tmp_path / f"{name}.log")
    reports = {n: json.loads((tmp_path / n / "lw" / "report.json").read_text()) for n in ("one", "two")}
    assert (reports["one"]["processes"], reports["two"]["processes"]) == (1, 2)
    assert reports["one"]["global_step"] == reports["two"]["global_step"] == 4
    assert abs(reports["one"]["train_loss"] - reports["two"]["train_loss"]) < 1e-4
    one, two = (load_file(tmp_path / n / "lw" / "adapter" / "adapter_model.safetensors") for n in ("one", "two"))
    assert one.keys() == two.keys() and all(torch.allclose(one[k], two[k], atol=1e-5) for k in one)
    assert not (tmp_path / "two" / "lw" / ".adapter.tmp").exists()
