"""Stage 06, notebook 06_lora_sft: the recommender's LoRA adapter for one summary method and seed, trained,
validated at each checkpoint and kept in the run directory (the best checkpoint's weights, the report). The
training method is :mod:`trsr_utils.method.lora`'s; this module runs it in a result folder, resumes an
interrupted run and re-uses a finished one. Also: which adapter and summary stages 07-09 read for a fine-tuned
row (:func:`adapter_config`, :func:`llm_inputs`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from trsr_utils.core import distributed, io
from trsr_utils.core.config import Config, with_overrides
from trsr_utils.core.schema import LLM_ROWS
from trsr_utils.core.distributed import world
from trsr_utils.core.hashing import file_digest
from trsr_utils.method import llm, lora, metrics, prompts
from trsr_utils.method.prompts import UserPrompts
from trsr_utils.method.user_prompts import build
from trsr_utils.method.lora import (DEEPSPEED_ZERO2, Validator, accumulation, callback, check_launch,
                                    install_answer_loss, last_checkpoint, parameter_counts, peak_memory_mb,
                                    remove_answer_loss, shared_prefix_collator, trainer_class, training_arguments,
                                    with_lora)
from trsr_utils.stages import prepare, summarize
from trsr_utils.stages.summarize import SUMMARY_STAGE
from trsr_utils.store import stages
from trsr_utils.store.stages import Inputs


def adapter_config(cfg: Config, method: str, seed: int = 0) -> Config:
    """The settings of the adapter fine-tuned with summary ``method`` and the ``seed``-th SFT seed
    (``eval.sft_seeds``; everything else as in ``cfg``)."""
    overrides: dict[str, Any] = {}
    if cfg.sft.summary != method:
        overrides["sft.summary"] = method
    if seed:
        overrides["sft.seed_offset"] = cfg.sft.seed_offset + seed
    return with_overrides(cfg, overrides, control=method == "oracle") if overrides else cfg


def llm_inputs(cfg: Config, prompt_cfg: Config, method: str, finetuned: bool) -> Inputs:
    """What an LLM row reads: the summary stage of ``method`` (under ``prompt_cfg``) and, fine-tuned, notebook
    06's adapter for it."""
    out = {}
    if method != "none":
        out[SUMMARY_STAGE[method]] = (SUMMARY_STAGE[method], prompt_cfg)
    if finetuned:
        out[f"06_sft[{method}]"] = ("06_sft", adapter_config(cfg, method))
    return out


def for_split(cfg: Any, split: str, method: str, tokenizer: Any, limit: int = 0) -> tuple[pd.DataFrame,
                                                                                           list[UserPrompts]]:
    """The samples of ``split`` (the first ``limit``, if given) and their prompts with ``method``'s summary."""
    prepared = prepare.read(cfg)
    samples = prepared.samples[prepared.samples["split"] == split].reset_index(drop=True)
    if limit:
        samples = samples.head(limit)
    return samples, build(cfg, samples, prepared.catalog, summarize.summaries_for(cfg, method), tokenizer)


def training_examples(cfg: Config, tokenizer: Any, split: str = "train",
                      shared: bool | None = None) -> list[dict[str, Any]]:
    """The split's training examples with the summary of ``sft.summary``: one per candidate, or one per user when
    ``shared`` (default: ``sft.shared_prefix``)."""
    samples, user_prompts = for_split(cfg, split, cfg.sft.summary, tokenizer)
    return lora.examples(cfg, samples, user_prompts, tokenizer, shared)


def checkpoint_validator(cfg: Config, tokenizer: Any, path: Path | None = None) -> Validator:
    """The checkpoint validator on the first ``sft.valid_users`` validation users, with the summary of
    ``sft.summary`` (its results kept in ``path``)."""
    samples, user_prompts = for_split(cfg, "valid", cfg.sft.summary, tokenizer, limit=cfg.sft.valid_users)
    return Validator(cfg, tokenizer, samples, user_prompts, path)


def _inputs(cfg: Config) -> Inputs:
    """06 reads the summary it is trained with (none: only the data)."""
    out = {"01_data": ("01_data", cfg)}
    if cfg.sft.summary != "none":
        out[SUMMARY_STAGE[cfg.sft.summary]] = (SUMMARY_STAGE[cfg.sft.summary], cfg)
    return out


STAGE = stages.register(stages.Stage(
    "06_sft", "06_lora_sft", (prepare.STAGE, summarize.HIERARCHICAL, summarize.RECURRENT),
    ("seed", "sft", "prompt", "text", "model.device", "model.scoring_dtype"),
    exclude=("sft.score_batch_users", "sft.logging_steps", "sft.validate_zero_shot"),
    models=("model.recommender",), code=prompts.code_parts("recommendation"), inputs=_inputs,
    version=2))  # 2: BOS where the tokenizer adds one; validation by the float64 p(yes)


def load_adapter(cfg: Any, adapter_dir: str | Path | None = None, base: Any = None) -> Any:
    """The recommender with the saved (best) adapter for ``cfg``'s settings, in eval mode, ready for scoring."""
    from peft import PeftModel

    adapter_dir = Path(adapter_dir or stages.require(cfg, STAGE) / "adapter")
    if not (adapter_dir / "adapter_config.json").exists():
        raise FileNotFoundError(f"no LoRA adapter in {adapter_dir}: run notebook 06 (or python -m trsr_utils sft) "
                                "for these settings first")
    if base is None:
        m = cfg.model
        base = llm.load_model(m.recommender, m.dtype, m.quantization, m.device)
    model = PeftModel.from_pretrained(base, str(adapter_dir))
    model.eval()
    return model


def train(cfg: Any, model: Any = None, tokenizer: Any = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Fine-tune the recommender with LoRA, validate each checkpoint, keep the best adapter; returns a report.

    Writes to the stage's folder for these settings. A finished adapter with the same fingerprint is re-used
    (its report returned); an unfinished one resumes from its last checkpoint.
    """
    import torch
    from datasets import Dataset

    m = cfg.model
    device = llm.resolve_device(m.device)
    if stages.is_complete(cfg, STAGE):
        return _reuse(cfg, model, tokenizer, log)
    out = stages.result_dir(cfg, STAGE, create=True)
    ckpt_dir = out / "checkpoints"
    if tokenizer is None:
        tokenizer = llm.load_tokenizer(m.recommender)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    examples = training_examples(cfg, tokenizer)
    if not examples:
        raise ValueError("no training examples: data.n_train must be > 0")
    validator = checkpoint_validator(cfg, tokenizer, out / "validation.json")
    # The training arguments set up the process group under a launcher (torchrun / accelerate launch): one
    # process per GPU, each on its own device; rank 0 validates and writes, the others wait for it.
    args = training_arguments(cfg, ckpt_dir, device)  # pinned to one GPU when one process runs on several
    main_process = args.process_index == 0
    if device == "cuda":  # one process beside idle GPUs: say so, with the command that trains on all of them
        distributed.warn_alone(f"LoRA training on {len(examples)} examples",
                               f"python -m trsr_utils sft --gpus {{n}} --profile {cfg.profile} --run-dir {cfg.run_dir}")
    if model is None:
        model = llm.load_model(m.recommender, m.dtype, m.quantization, m.device)
    torch.manual_seed(cfg.seed + cfg.sft.seed_offset)
    if cfg.sft.validate_zero_shot and validator.done(0) is None and main_process:  # the curve's reference point
        validator.zero_shot(model, log)
    distributed.barrier()
    peft_model = with_lora(cfg, model)
    counts = parameter_counts(peft_model)
    log(f"LoRA r={cfg.sft.lora_r} on {list(cfg.sft.target_modules)}: {counts['trainable']:,} trainable of "
        f"{counts['total']:,} parameters ({counts['trainable'] / counts['total']:.3%})")
    shared = cfg.sft.shared_prefix
    columns = ("prefix_ids", "suffix_ids", "targets") if shared else ("input_ids", "labels")
    dataset = Dataset.from_list([{c: e[c] for c in columns} for e in examples])
    if cfg.sft.loss != "whole":  # same template, same ids as the examples
        install_answer_loss(peft_model, cfg.sft.loss, validator.answer, bool(args.bf16))
    trainer = trainer_class(cfg.sft.loss)(model=peft_model, args=args, train_dataset=dataset, processing_class=tokenizer,
                          callbacks=[callback(validator, log)],
                          data_collator=shared_prefix_collator(tokenizer.pad_token_id) if shared else None)
    if args.disable_tqdm:  # without bars the Trainer prints every log as a raw dict: the report keeps them instead
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    resume = last_checkpoint(ckpt_dir)
    check_launch(ckpt_dir, args, resume, main_process)
    if resume:
        log(f"resuming from {resume}")
    began, validating = time.perf_counter(), validator.seconds
    result = trainer.train(resume_from_checkpoint=resume)
    # Training time without the validations run from the checkpoint callback.
    seconds = time.perf_counter() - began - (validator.seconds - validating)
    remove_answer_loss(peft_model)
    peft_model.eval()
    distributed.barrier()  # every rank has finished its steps and rank 0 its last validation
    if not main_process:  # rank 0 alone picks the checkpoint and writes the adapter, the report, stage.json
        distributed.barrier()  # ... and the others return only once it has (they read them next)
        return {"rank": args.process_index, "global_step": trainer.state.global_step, "written_by": 0,
                "adapter": str(out / "adapter")}

    trained = [r for r in validator.records if r["step"] > 0 and r["checkpoint"]]
    if not trained:
        raise RuntimeError("training wrote no checkpoint: check sft.save_steps and sft.max_steps")
    # sft.select: the best validation score (ties: the earlier step), or the last checkpoint (a fixed budget).
    best = metrics.chosen_checkpoint(trained, cfg.sft.select)
    adapter = out / "adapter"
    tmp = out / ".adapter.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy2(Path(best["checkpoint"]) / name, tmp / name)
    shutil.rmtree(adapter, ignore_errors=True)
    os.replace(tmp, adapter)  # the adapter folder appears whole or not at all

    steps_run = trainer.state.global_step - (int(Path(resume).name.split("-")[-1]) if resume else 0)
    # Counted per candidate either way (a shared-prefix row is a user: its prefix's tokens are run once).
    per_row = [len(e["targets"]) for e in examples] if shared else [1] * len(examples)
    n_tokens = (sum(len(e["prefix_ids"]) + sum(map(len, e["suffix_ids"])) + len(e["targets"]) for e in examples)
                if shared else sum(len(e["input_ids"]) for e in examples))
    rows_seen = steps_run * cfg.sft.batch_size * cfg.sft.grad_accum  # per step, on any number of processes
    examples_seen = rows_seen * sum(per_row) / len(per_row)
    n_examples = sum(per_row)
    history = [h for h in trainer.state.log_history if "loss" in h]
    report = {
        "summary_method": cfg.sft.summary, "loss": cfg.sft.loss, "device": device, "dtype": m.dtype,
        "quantization": m.quantization, "parameters": counts, "examples": n_examples,
        "users": len({e["user_id"] for e in examples}), "shared_prefix": shared,
        "mixed_precision": cfg.sft.mixed_precision, "processes": args.world_size,
        "positives": len(examples) if shared else sum(e["label"] for e in examples),
        "tokens_per_example_mean": n_tokens / n_examples,
        "global_step": trainer.state.global_step, "steps_this_run": steps_run, "resumed_from": resume,
        "train_seconds": round(seconds, 2),
        "examples_per_second": round(examples_seen / seconds, 3) if seconds and steps_run else None,
        "tokens_per_second": round(examples_seen * n_tokens / n_examples / seconds, 1)
        if seconds and steps_run else None,
        "peak_memory_mb": round(peak_memory_mb(device), 1), "train_loss": result.training_loss,
        "loss_history": [{"step": h["step"], "loss": h["loss"], "epoch": h.get("epoch")} for h in history],
        "validation": sorted(validator.records, key=lambda r: r["step"]), "best": best, "select": cfg.sft.select,
        "zero_shot": validator.done(0), "adapter": str(adapter), "reused": False,
    }
    io.write_json(out / "report.json", report)
    stages.finish(cfg, STAGE, round(seconds, 2), adapter_sha256=adapter_digest(adapter))
    log(f"{cfg.sft.select} checkpoint: step {best['step']} (selection score {best['selection']:.3f} of 3); adapter "
        f"saved to {io.shown_path(adapter, cfg.run_dir)}")
    distributed.barrier()  # the other ranks wait here for the files just written
    return report


def _reuse(cfg: Any, model: Any, tokenizer: Any, log: Callable[[str], None]) -> dict[str, Any]:
    """The finished adapter's report; adds the zero-shot validation point when it was trained without one."""
    out = stages.result_dir(cfg, STAGE)
    report = io.read_json(out / "report.json")
    log(f"re-using the adapter trained with these settings: {io.shown_path(out / 'adapter', cfg.run_dir)}")
    if cfg.sft.validate_zero_shot and report.get("zero_shot") is None and world()[0] == 0:  # rank 0 writes
        m = cfg.model
        tokenizer = tokenizer or llm.load_tokenizer(m.recommender)
        validator = checkpoint_validator(cfg, tokenizer, out / "validation.json")
        r = validator.zero_shot(model if model is not None else llm.load_model(m.recommender, m.dtype,
                                                                               m.quantization, m.device), log)
        report.update(zero_shot=r, validation=sorted(validator.records, key=lambda x: x["step"]))
        io.write_json(out / "report.json", report)

    distributed.barrier()  # under a launcher, nobody reads the report before rank 0 has written it
    # What this call did, not what the training run did: no steps, and the adapter where it lies now (a run
    # directory copied or handed out keeps the training run's absolute path in the stored report).
    return {**report, "steps_this_run": 0, "reused": True, "adapter": str(out / "adapter")}


def adapter_digest(adapter: Path) -> str:
    """SHA-256 of an adapter's weights: what identifies it in the scores computed with it."""
    return file_digest(Path(adapter) / "adapter_model.safetensors")


def read_report(cfg: Any) -> dict[str, Any]:
    return io.read_json(stages.require(cfg, STAGE) / "report.json")


def selected_step(cfg: Any, method: str) -> tuple[int | None, int | None]:
    """The checkpoint step the fine-tuned recommender with summary ``method`` was chosen at (its best validation
    score, or the last with ``sft.select: last``; the report keeps it under "best") and the steps it trained for,
    from its training report; (None, None) where it has no complete adapter under these settings or the report
    lacks them."""
    try:
        data = read_report(adapter_config(cfg, method))
    except stages.MissingResult:
        return None, None
    return (data.get("best") or {}).get("step"), data.get("global_step")


# ----------------------------------------------------------------- command line
def adapters_for_table(cfg: Any) -> list[Any]:
    """The settings of every adapter notebook 07's table scores with (each fine-tuned row of ``eval.llm`` for
    each of ``eval.sft_seeds``), notebook 06's first: what a cluster trains before running 07."""
    out = [cfg]
    for system in cfg.eval.llm:
        if system == "zero_shot":
            continue
        for seed in range(cfg.eval.sft_seeds):
            settings = adapter_config(cfg, LLM_ROWS[system], seed)
            if all(stages.fingerprint(settings, STAGE).digest != stages.fingerprint(c, STAGE).digest for c in out):
                out.append(settings)
    return out


def launch_command(profile: str, run_dir: str, sets: Sequence[str], gpus: int, extra: Sequence[str] = (),
                   deepspeed: bool = False) -> list[str]:
    """The command that trains on ``gpus`` GPUs, one process each.

    Default: ``torchrun`` DDP. A LoRA adapter has ~4M trainable parameters: ZeRO-2 would shard next to nothing,
    and at each save it gathers the whole model into host RAM on every rank. ``deepspeed``: accelerate + the shipped
    ZeRO-2 config, with every accelerate setting given explicitly (:func:`accelerate_config`), so that a
    ``default_config.yaml`` in the user's accelerate cache (common on shared clusters) is never read."""
    if deepspeed:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(accelerate_config(Path(run_dir), gpus)), "--num_processes", str(gpus), "--use_deepspeed",
               "--deepspeed_config_file", str(DEEPSPEED_ZERO2)]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(gpus)]
    cmd += ["-m", "trsr_utils", "sft", "--profile", profile, "--run-dir", run_dir, *extra]
    for s in sets:
        cmd += ["--set", s]
    return cmd


def accelerate_config(run_dir: Path, gpus: int) -> Path:
    """An accelerate config naming only what the DeepSpeed launch needs (written into the run directory):
    passed as ``--config_file``, it replaces the user's default config, whose ``mixed_precision`` or other
    settings beside a ``deepspeed_config_file`` make accelerate refuse to start."""
    path = Path(run_dir) / STAGE.name / "accelerate_deepspeed.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"compute_environment: LOCAL_MACHINE\ndistributed_type: DEEPSPEED\nnum_machines: 1\n"
                    f"num_processes: {gpus}\nmachine_rank: 0\ndeepspeed_config:\n"
                    f"  deepspeed_config_file: {DEEPSPEED_ZERO2}\n  zero3_init_flag: false\n")
    return path


def arguments(parser: Any) -> None:
    parser.add_argument("--gpus", type=int, default=1, help="> 1: one process per GPU through torchrun (DDP)")
    parser.add_argument("--deepspeed", action="store_true",
                        help="with --gpus: accelerate + DeepSpeed ZeRO-2 instead of plain DDP")
    parser.add_argument("--all", action="store_true",
                        help="train every adapter notebook 07's table needs (eval.llm rows x eval.sft_seeds), "
                             "not only notebook 06's")


def command(cfg: Config, args: Any) -> int:
    """LoRA SFT of the recommender (notebook 06) from the command line, on one process or one per GPU."""
    if args.gpus > 1 and world()[1] == 1:
        accumulation(cfg, args.gpus)  # a grad_accum that does not divide fails here, before the launch
        cmd = launch_command(args.profile, cfg.run_dir, args.set, args.gpus, ["--all"] if args.all else [],
                             deepspeed=args.deepspeed)
        print("launching:", " ".join(cmd), flush=True)
        return subprocess.call(cmd, env={**os.environ, **({"TRSR_DEEPSPEED": "1"} if args.deepspeed else {})})
    rank = world()[0]
    for settings in adapters_for_table(cfg) if args.all else [cfg]:
        report = train(settings, log=print if rank == 0 else (lambda _: None))
        llm.release()  # the next adapter's base model loads onto a GPU the last one no longer holds
        if rank == 0:
            print(json.dumps({"adapter": report["adapter"], "sft.summary": settings.sft.summary,
                              "sft.seed_offset": settings.sft.seed_offset,
                              **{k: report[k] for k in ("global_step", "train_seconds", "best")}}, indent=2))
    return 0
