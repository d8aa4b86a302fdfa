"""LoRA supervised fine-tuning of the recommender LLM (notebook 06).

Training examples come from the training split: for each positive and each of
its negatives, the recommendation prompt (summary of the chosen method, the
last k items, the candidate) and the answer word, "Yes" or "No". They are
tokenized exactly as the scoring stage tokenizes them: prefix ids + candidate
suffix ids + the answer id, each part on its own. By default only the answer
token is learned (every prompt token's label is -100); ``sft.loss: whole``
gives the paper's loss over the whole text. With ``sft.shared_prefix`` a
training row is a user instead: the prefix (summary, recent items) is run once
and every candidate's suffix continues from a copy of its key/value cache, the
loss on each candidate's answer: the same loss and gradient as one example per
candidate (tested), for fewer tokens. ``sft.mixed_precision: bfloat16`` trains
under bf16 autocast (float32 master weights), on a CPU too.

Training is TRL's ``SFTTrainer`` with a PEFT LoRA adapter. Precision and
gradient checkpointing are set explicitly (TRL would turn on bf16 autocast and
checkpointing even on CPU). A checkpoint is written each epoch (or every
``save_steps``); after each one the validation users are ranked and
Recall@3+5+10 recorded, the paper's selection rule; the best checkpoint's
adapter is copied to ``adapter/`` in the stage's folder,
``06_sft/<fingerprint>/`` (:mod:`trsr_utils.stages`): every setting that
changes the adapter (the ``sft`` section, the prompt, the model, the data and
summaries it learns from) gives another folder, so adapters for different
settings sit side by side. A finished adapter is re-used only for exactly its
settings; an interrupted run resumes from its last checkpoint.

Command line (one device in-process; several GPUs through torchrun DDP, or accelerate + the shipped DeepSpeed
ZeRO-2 config with ``--deepspeed``)::

    python -m trsr_utils.sft --profile demo [--run-dir runs/demo] [--set sft.epochs=2] [--all]
    python -m trsr_utils.sft --profile paper-mind --gpus 8 --all               # torchrun DDP
    python -m trsr_utils.sft --profile paper-mind --gpus 8 --all --deepspeed   # accelerate + ZeRO-2
    torchrun --nproc_per_node 2 -m trsr_utils.sft --profile smoke      # the same DDP by hand (gloo on CPU)

Under a launcher each process trains on its own device with ``sft.grad_accum``
divided by the process count (:func:`accumulation`): the effective batch, the
schedule and so the adapter's fingerprint are the one-GPU run's, and notebook
06 re-uses the adapter instead of training again. Rank 0 validates and writes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from . import distributed, io, llm, metrics, stages
from .config import LLM_ROWS, REPO_ROOT, stage_arguments, stage_config
from .distributed import world
from .progress import headless
from .prompts import AnswerTokens, UserPrompts, answer_tokens
from .scoring import decoder_and_head, for_scoring, prefix_pass, score_users, suffix_states
from .user_prompts import for_split

STAGE = "06_sft"
DEEPSPEED_ZERO2 = REPO_ROOT / "configs" / "deepspeed_zero2.json"
IGNORE = -100


# ----------------------------------------------------------------- examples
def examples_from_prompts(prompts: Sequence[UserPrompts], answer: AnswerTokens, loss: str = "answer",
                          user_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """One example per candidate: the positive (index 0) answers Yes, every other candidate No."""
    if loss not in ("answer", "yes_no", "whole"):
        raise ValueError(f"sft.loss must be 'answer', 'yes_no' or 'whole', got {loss!r}")
    out = []
    for u, p in enumerate(prompts):
        for i in range(len(p.suffix_ids)):
            target = answer.yes_id if i == 0 else answer.no_id
            ids = p.full_ids(i) + [target]
            labels = list(ids) if loss == "whole" else [IGNORE] * (len(ids) - 1) + [target]
            out.append({"input_ids": ids, "labels": labels, "label": int(i == 0),
                        "user_id": user_ids[u] if user_ids is not None else str(u)})
    return out


def user_examples_from_prompts(prompts: Sequence[UserPrompts], answer: AnswerTokens,
                               user_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """One example per user for shared-prefix training: the prefix once, then every candidate's suffix with its
    answer (the positive, index 0, Yes; the others No). The same tokens as :func:`examples_from_prompts`."""
    return [{"prefix_ids": list(p.prefix_ids), "suffix_ids": [list(x) for x in p.suffix_ids],
             "targets": [answer.yes_id] + [answer.no_id] * (len(p.suffix_ids) - 1),
             "user_id": user_ids[u] if user_ids is not None else str(u)} for u, p in enumerate(prompts)]


def training_examples(cfg: Any, tokenizer: Any, split: str = "train",
                      shared: bool | None = None) -> list[dict[str, Any]]:
    """The split's training examples: one per candidate, or one per user when ``shared`` (default:
    ``sft.shared_prefix``)."""
    samples, prompts = for_split(cfg, split, cfg.sft.summary, tokenizer)
    tail = prompts[0].suffixes[0] if prompts else None
    answer = answer_tokens(tokenizer, tail)
    if cfg.sft.shared_prefix if shared is None else shared:
        return user_examples_from_prompts(prompts, answer, list(samples["user_id"]))
    return examples_from_prompts(prompts, answer, cfg.sft.loss, list(samples["user_id"]))


def shared_prefix_collator(pad_id: int) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
    """Batches of users: their prefixes left-padded, all their candidates' suffixes right-padded, ``owners`` (the
    user of each suffix row) and one answer label per suffix (``shift_labels`` too, which the Trainer counts to
    normalise the loss over an accumulation window: one item per candidate, as without sharing)."""
    def collate(rows: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        ids, mask = llm.pad_ids([r["prefix_ids"] for r in rows], pad_id, left=True)
        s_ids, s_mask = llm.pad_ids([x for r in rows for x in r["suffix_ids"]], pad_id, left=False)
        targets = torch.tensor([t for r in rows for t in r["targets"]], dtype=torch.long)
        owners = torch.tensor([u for u, r in enumerate(rows) for _ in r["suffix_ids"]], dtype=torch.long)
        return {"input_ids": ids, "attention_mask": mask, "suffix_ids": s_ids, "suffix_mask": s_mask,
                "owners": owners, "labels": targets, "shift_labels": targets}
    return collate


# ----------------------------------------------------------------- model
def lora_config(cfg: Any) -> Any:
    from peft import LoraConfig

    s = cfg.sft
    return LoraConfig(r=s.lora_r, lora_alpha=s.lora_alpha, lora_dropout=s.lora_dropout,
                      target_modules=list(s.target_modules), bias="none", task_type="CAUSAL_LM")


def with_lora(cfg: Any, model: Any) -> Any:
    """Wrap a base model in a fresh LoRA adapter (k-bit bases prepared for training first)."""
    from peft import get_peft_model, prepare_model_for_kbit_training

    if cfg.model.quantization is not None:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.sft.gradient_checkpointing)
    return get_peft_model(model, lora_config(cfg))


def parameter_counts(model: Any) -> dict[str, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable": int(trainable), "total": int(total)}


def load_adapter(cfg: Any, adapter_dir: str | Path | None = None, base: Any = None) -> Any:
    """The recommender with the saved (best) adapter for ``cfg``'s settings, in eval mode, ready for scoring."""
    from peft import PeftModel

    adapter_dir = Path(adapter_dir or stages.require(cfg, STAGE) / "adapter")
    if not (adapter_dir / "adapter_config.json").exists():
        raise FileNotFoundError(f"no LoRA adapter in {adapter_dir}: run notebook 06 (or python -m trsr_utils.sft) "
                                "for these settings first")
    if base is None:
        m = cfg.model
        base = llm.load_model(m.recommender, m.dtype, m.quantization, m.device)
    model = PeftModel.from_pretrained(base, str(adapter_dir))
    model.eval()
    return model


# ----------------------------------------------------------------- validation (model selection)
class Validator:
    """Ranks the validation users' candidates with the current model; remembers every result by step."""

    def __init__(self, cfg: Any, tokenizer: Any, path: Path | None = None):
        limit = cfg.sft.valid_users
        self.samples, self.prompts = for_split(cfg, "valid", cfg.sft.summary, tokenizer, limit=limit)
        if not self.prompts:
            raise ValueError("no validation users: data.n_valid must be > 0 to select a checkpoint")
        self.answer = answer_tokens(tokenizer, self.prompts[0].suffixes[0])
        self.pad_id = tokenizer.pad_token_id or 0
        self.users_per_batch = cfg.sft.score_batch_users
        self.dtype = cfg.model.scoring_dtype
        self.path = path
        self.records: list[dict[str, Any]] = io.read_json(path) if path is not None and path.exists() else []
        self.seconds = 0.0  # spent validating in this process (kept out of the training throughput)

    def zero_shot(self, model: Any, log: Callable[[str], None]) -> dict[str, Any]:
        """Step 0 of the validation curve: the model before any training."""
        r = self(model, 0, None)
        log(f"zero-shot validation {describe(r, len(self.prompts))}")
        return r

    def done(self, step: int) -> dict[str, Any] | None:
        return next((r for r in self.records if r["step"] == step), None)

    def __call__(self, model: Any, step: int, checkpoint: str | None) -> dict[str, Any]:
        previous = self.done(step)
        if previous is not None:
            return previous
        was_training = model.training
        model.eval()
        began = time.perf_counter()
        scores = self.scores(model)
        if was_training:
            model.train()
        m = metrics.evaluate(scores)
        seconds = time.perf_counter() - began
        self.seconds += seconds
        # p_yes: every validation candidate's p(yes) (positive first), so that what the model learned can be
        # looked at later (notebook 06's per-user AUC) without scoring again
        record = {"step": step, "checkpoint": checkpoint, "selection": metrics.selection_score(m),
                  "seconds": round(seconds, 2), **m, "p_yes": [[float(x) for x in s] for s in scores]}
        self.records = [r for r in self.records if r["step"] != step] + [record]
        if self.path is not None:
            io.write_json(self.path, sorted(self.records, key=lambda r: r["step"]))
        return record

    def scores(self, model: Any) -> list[Any]:
        """p(yes) of each validation user's candidates (positive first) under ``model``, as validation ranks them."""
        # (a bfloat16 copy under model.scoring_dtype: the training weights stay as they are)
        # (rank 0 alone validates under a launcher: no sharing out)
        return score_users(for_scoring(model, self.dtype), self.prompts, self.answer, self.users_per_batch,
                           self.pad_id, shard=False)


def describe(record: dict[str, Any], users: int) -> str:
    """One validation result in words: the three recalls, their sum (the paper's selection score, at most 3),
    and what one user is worth (a change of 1/users is one user's positive moving across a cut-off)."""
    return (f"R@3 {record['recall@3']:.3f}, R@5 {record['recall@5']:.3f}, R@10 {record['recall@10']:.3f} "
            f"(selection score = their sum, {record['selection']:.3f} of 3; {users} users, one user = "
            f"{1 / users:.3f})")


def reading(report: dict[str, Any], valid_users: int, random_recall10: float | None = None) -> list[str]:
    """What the training run shows, in sentences computed from its report (``random_recall10``: a random order's
    expected Recall@10, to say where the checkpoints stand against chance)."""
    out = []
    losses = [h["loss"] for h in report["loss_history"]]
    if losses and report["loss"] in ("answer", "yes_no"):
        # The cross-entropy of always answering Yes with probability q, the positives' share of the candidates:
        # all a model that learned only the prior can do (1 positive : 1 negative: q = 1/2, ln 2).
        q = report["positives"] / report["examples"] if report.get("examples") else 0.5
        named, prior = metrics.prior_loss(q)
        last = losses[-1]
        out.append(f"The last logged loss is {last:.3f}; {named} = {prior:.3f} is the loss of answering Yes with "
                   f"probability {q:.2f} every time (the share of positives among the training candidates), which "
                   "is all a model that learned only that prior can do"
                   + (": this adapter is near it, so it has learned little beyond the prior." if abs(last - prior) < 0.1
                      else (": below it, so the adapter separates positives from negatives on the training data."
                            if last < prior - 0.1 else ".")))
    zero, best = report.get("zero_shot"), report["best"]
    out.append(f"{valid_users} validation users: one user moves each Recall@K by {1 / valid_users:.3f}, and the "
               f"selection score (R@3 + R@5 + R@10, at most 3) by up to {3 / valid_users:.3f}.")
    tied = [v["step"] for v in report.get("validation", []) if v["step"] and v["selection"] == best["selection"]]
    if len(tied) > 1:
        out.append(f"Checkpoints at steps {', '.join(map(str, tied))} tie at {best['selection']:.3f}; the earliest, "
                   f"step {best['step']}, is kept.")
    if zero is not None:
        gain = best["selection"] - zero["selection"]
        crossings = round(abs(gain) * valid_users)
        out.append(f"The selected checkpoint (step {best['step']}) scores {best['selection']:.3f} against "
                   f"{zero['selection']:.3f} zero-shot: a difference of {gain:+.3f}, about "
                   f"{crossings} user-cut-off crossing{'s' if crossings != 1 else ''}"
                   + (" (below zero-shot: training has not helped on these users)" if gain < 0 else "")
                   + "; notebook 07 measures it on the test users.")
    if random_recall10 is not None:
        r_best, r_zero = best["recall@10"], (zero or {}).get("recall@10")
        below = [name for name, r in (("the selected checkpoint", r_best), ("zero-shot", r_zero))
                 if r is not None and r < random_recall10]
        zero_part = f", {r_zero:.3f} zero-shot" if r_zero is not None else ""
        out.append(f"Recall@10 on validation: {r_best:.3f} selected{zero_part}"
                   + f"; a random order reaches {random_recall10:.3f} on average"
                   + (f": {' and '.join(below)} {'are' if len(below) > 1 else 'is'} below chance here, on "
                      f"{valid_users} users." if below else "."))
    return out


def auc_reading(auc: Any, p_zero: Sequence[Any], p_tuned: Sequence[Any], margin: float = 0.05) -> list[str]:
    """What per-user AUC (columns ``zero-shot``, ``fine-tuned``) says about what the adapter learned, from the
    numbers: a shift of every p(yes) alike moves no AUC, so a model that learned only the prior keeps each user's
    zero-shot AUC while its mean p(yes) moves. Users' AUCs that move both ways while their mean stays are a
    reshuffle, not a ranking learned."""
    import numpy as np

    z, t = auc["zero-shot"].to_numpy(), auc["fine-tuned"].to_numpy()
    up, down = int((t > z).sum()), int((t < z).sum())
    mz, mt = float(np.mean([p.mean() for p in p_zero])), float(np.mean([p.mean() for p in p_tuned]))
    shift, moved = float(t.mean() - z.mean()), float(np.abs(t - z).mean())
    out = [f"Mean p(yes) over the candidates: {mz:.3f} zero-shot, {mt:.3f} fine-tuned ({mt - mz:+.3f}).",
           f"Mean per-user AUC: {z.mean():.3f} zero-shot, {t.mean():.3f} fine-tuned ({shift:+.3f}); "
           f"{up} of {len(t)} users up, {down} down, {len(t) - up - down} unchanged (.5 is a coin); a user's AUC "
           f"moved by {moved:.3f} on average."]
    yes_rate = " (the mean p(yes) moved)" if abs(mt - mz) >= 0.02 else ""
    if moved < margin:
        out.append(f"Each user's AUC moved by less than {margin:.2f} on average: the adapter ranks each user's "
                   f"candidates much as the base model did. What changed is how often it says Yes{yes_rate}, the "
                   "prior, not which candidate is the user's.")
    elif shift >= margin:
        out.append("The AUCs rose on average: the adapter separates these users' positives from their negatives "
                   "better than the base model, beyond a shift of the Yes rate.")
    elif shift <= -margin:
        out.append("The AUCs fell on average: on these users the adapter separates positives from negatives worse "
                   "than the base model did.")
    else:
        out.append(f"The mean AUC moved by less than {margin:.2f} while single users' AUCs moved both ways: the "
                   f"adapter reshuffled each user's candidates without ranking the positives higher on average; the "
                   f"change shared by all is how often it says Yes{yes_rate}.")
    return out


def _callback(validator: Validator, log: Callable[[str], None]) -> Any:
    from transformers import TrainerCallback

    class ValidateOnSave(TrainerCallback):
        """After each checkpoint is written: rank the validation users (the paper's model selection)."""

        def on_save(self, args, state, control, model=None, **kwargs):
            if not state.is_world_process_zero:
                return
            checkpoint = str(Path(args.output_dir) / f"checkpoint-{state.global_step}")
            r = validator(model, state.global_step, checkpoint)
            log(f"step {state.global_step}: validation {describe(r, len(validator.prompts))}")

    return ValidateOnSave()


# ----------------------------------------------------------------- training
def answer_loss(model: Any, inputs: dict[str, Any], loss: str, answer: AnswerTokens,
                bf16: bool = False) -> tuple[Any, int]:
    """(summed cross-entropy, number of answers) of a collated batch, from the hidden states at the answer
    positions only (no [batch, length, vocabulary] logits).

    ``loss``: ``answer``, over the whole vocabulary (the value of the model's own loss when only the answer is
    labelled); ``yes_no``, over the two answer logits (exactly the p(yes) scoring ranks by). ``inputs``: one
    example per candidate (``input_ids``, ``labels``), or a shared-prefix batch of users
    (:func:`shared_prefix_collator`): each prefix run once, each candidate's suffix on a copy of its cache.
    ``bf16``: under bfloat16 autocast.
    """
    import torch
    import torch.nn.functional as F

    labels = inputs["labels"]
    decoder, head = decoder_and_head(model)
    # The inner decoder is called directly, past the autocast wrapper Accelerate puts on the outer model's
    # forward: mixed precision is switched on here explicitly.
    with torch.autocast(labels.device.type, dtype=torch.bfloat16, enabled=bf16):
        if "suffix_ids" in inputs:  # shared prefix: each user's prefix once, then all its candidates
            mask = inputs["attention_mask"]
            layers = prefix_pass(decoder, inputs["input_ids"], mask)
            states = suffix_states(decoder, layers, mask, inputs["owners"], inputs["suffix_ids"],
                                   inputs["suffix_mask"])
            targets = labels
        else:
            hidden = decoder(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"),
                             use_cache=False).last_hidden_state
            rows, cols = (labels[:, 1:] != IGNORE).nonzero(as_tuple=True)  # position t predicts label t+1
            states, targets = hidden[rows, cols], labels[rows, cols + 1]
        states = states.to(head.weight.dtype)
        if loss == "yes_no":
            logits = states @ head.weight[[answer.yes_id, answer.no_id]].T
            total = F.cross_entropy(logits.float(), (targets == answer.no_id).long(), reduction="sum")
        else:
            total = F.cross_entropy(head(states).float(), targets, reduction="sum")
    return total, len(targets)


def install_answer_loss(model: Any, loss: str, answer: AnswerTokens, bf16: bool) -> None:
    """Make ``model``'s forward return :func:`answer_loss` (summed loss, count) for a collated batch, until
    :func:`remove_answer_loss`. The loss goes through the model's own forward so that whatever wraps it
    (DistributedDataParallel, DeepSpeed, Accelerate's autocast) sees a forward pass: DDP synchronises gradients
    only for passes that went through it."""
    def forward(**inputs: Any) -> tuple[Any, int]:
        return answer_loss(model, inputs, loss, answer, bf16)

    model.forward = forward


def remove_answer_loss(model: Any) -> None:
    model.__dict__.pop("forward", None)


def _trainer_class(loss: str) -> type:
    """SFTTrainer, with a cheaper exact loss when only answer tokens are labelled: see :func:`answer_loss`
    (installed as the model's forward by :func:`install_answer_loss`, so it runs under DDP too)."""
    from trl import SFTTrainer

    class AnswerLossTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            import torch

            if return_outputs:
                raise NotImplementedError("the answer loss returns no model outputs (evaluation is not used)")
            total, n = model(**inputs)
            if num_items_in_batch is not None:  # normalised over the whole accumulation window, like HF's loss
                self.loss_is_scaled_for_ga = True
                # num_items_in_batch counts every process's answers and DDP averages the gradients over the
                # processes: scale back up, as Trainer.compute_loss does, so the step equals one process's.
                scale = self.accelerator.num_processes if self.args.average_tokens_across_devices else 1
                return total * scale / torch.as_tensor(num_items_in_batch, device=total.device)
            self.loss_is_scaled_for_ga = False
            return total / max(1, n)

    if loss == "whole":
        return SFTTrainer
    return AnswerLossTrainer


def accumulation(cfg: Any, processes: int) -> int:
    """Gradient accumulation per process: ``sft.grad_accum`` is the one-process value, so the effective batch
    (``batch_size x grad_accum``) and the learning-rate schedule stay the profile's on any number of processes,
    and the adapter has the same settings, hence the same fingerprint, as a one-GPU run."""
    s = cfg.sft
    if s.grad_accum % processes:
        raise ValueError(f"sft.grad_accum={s.grad_accum} is the accumulation of one process (effective batch "
                         f"{s.batch_size} x {s.grad_accum}); it must divide by the {processes} processes: choose a "
                         "process count that divides it, or change sft.batch_size / sft.grad_accum")
    return s.grad_accum // processes


def training_arguments(cfg: Any, output_dir: Path, device: str) -> Any:
    from trl import SFTConfig

    s = cfg.sft
    if device == "cpu":  # say so to DeepSpeed (imported by the Trainer), which would warn that it found no GPU
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    bf16 = (device == "cuda" and cfg.model.dtype == "bfloat16") or s.mixed_precision == "bfloat16"
    fp16 = device == "cuda" and cfg.model.dtype == "float16"
    kwargs: dict[str, Any] = dict(
        output_dir=str(output_dir), seed=cfg.seed + s.seed_offset, data_seed=cfg.seed + s.seed_offset,
        learning_rate=s.learning_rate, per_device_train_batch_size=s.batch_size,
        gradient_accumulation_steps=accumulation(cfg, world()[1]), num_train_epochs=s.epochs, max_steps=s.max_steps or -1,
        weight_decay=s.weight_decay, warmup_steps=s.warmup_ratio, lr_scheduler_type="linear", optim="adamw_torch",
        # Explicit: TRL's defaults would turn on bf16 autocast and gradient checkpointing even on CPU.
        bf16=bf16, fp16=fp16, activation_checkpointing=s.gradient_checkpointing, use_cpu=device == "cpu",
        save_strategy="steps" if s.save_steps else "epoch", save_steps=s.save_steps or 500,
        logging_steps=s.logging_steps, logging_first_step=True, report_to="none",
        max_length=cfg.prompt.max_length + 1, packing=False, remove_unused_columns=False,
        dataset_kwargs={"skip_prepare_dataset": True},
        disable_tqdm=os.environ.get("TRSR_PROGRESS") == "0" or headless(),
        save_only_model=False,
        # Every LoRA matrix gets a gradient each step; rank 0 validates while the others wait at the next
        # all-reduce, which may take long on the paper's 1,000 users.
        ddp_find_unused_parameters=False, ddp_timeout=distributed.TIMEOUT_SECONDS,
        ddp_backend="gloo" if device == "cpu" and world()[1] > 1 else None,
    )
    if DEEPSPEED_ZERO2.exists() and world()[1] > 1 and os.environ.get("TRSR_DEEPSPEED"):
        kwargs["deepspeed"] = str(DEEPSPEED_ZERO2)
    args = SFTConfig(**kwargs)
    _ = args.device  # sets up the devices (and, under a launcher, the process group) now, before a model loads
    pin_one_gpu(args, device)
    return args


def pin_one_gpu(args: Any, device: str) -> bool:
    """One process on a multi-GPU node trains on one GPU. Left alone, the Trainer wraps the model in
    ``nn.DataParallel`` over every visible GPU, and the answer loss (which reads the model's hidden states itself)
    runs on cuda:0 with inputs on the others. Every Trainer's arguments pass through here (:func:`training_arguments`),
    so no caller can forget it. Returns whether it pinned."""
    import torch

    if args.world_size == 1 and device == "cuda" and torch.cuda.device_count() > 1:
        args._n_gpu = 1  # what TrainingArguments.n_gpu reads; the DataParallel wrap needs n_gpu > 1
        return True
    return False


def _check_launch(ckpt_dir: Path, args: Any, resume: str | None, main_process: bool) -> None:
    """A DeepSpeed checkpoint keeps its optimizer state in DeepSpeed's own files, which a plain Trainer does not
    read (it would resume with a fresh optimizer), and the other way round: resume the way training started."""
    marker = ckpt_dir / "launch.json"
    now = {"deepspeed": bool(args.deepspeed), "processes": args.world_size}
    if resume and marker.exists():
        before = io.read_json(marker)
        if before["deepspeed"] != now["deepspeed"]:
            how = (f"python -m trsr_utils.sft --gpus {before['processes']} --deepspeed" if before["deepspeed"]
                   else "without DeepSpeed (one process, or torchrun)")
            raise RuntimeError(f"the checkpoints in {ckpt_dir} were written {'with' if before['deepspeed'] else 'without'}"
                               f" DeepSpeed; resuming {'with' if now['deepspeed'] else 'without'} it would restart the "
                               f"optimizer from scratch. Resume {how}, or delete the folder to start over")
    if main_process and not marker.exists():
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        io.write_json(marker, now)


def _peak_memory_mb(device: str) -> float:
    import resource

    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def last_checkpoint(output_dir: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(output_dir)) if output_dir.exists() else None


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
    validator = Validator(cfg, tokenizer, out / "validation.json")
    # The training arguments set up the process group under a launcher (torchrun / accelerate launch): one
    # process per GPU, each on its own device; rank 0 validates and writes, the others wait for it.
    args = training_arguments(cfg, ckpt_dir, device)  # pinned to one GPU when one process runs on several
    main_process = args.process_index == 0
    if device == "cuda":  # one process beside idle GPUs: say so, with the command that trains on all of them
        distributed.warn_alone(f"LoRA training on {len(examples)} examples",
                               f"python -m trsr_utils.sft --gpus {{n}} --profile {cfg.profile} --run-dir {cfg.run_dir}")
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
    trainer = _trainer_class(cfg.sft.loss)(model=peft_model, args=args, train_dataset=dataset, processing_class=tokenizer,
                          callbacks=[_callback(validator, log)],
                          data_collator=shared_prefix_collator(tokenizer.pad_token_id) if shared else None)
    if args.disable_tqdm:  # without bars the Trainer prints every log as a raw dict: the report keeps them instead
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    resume = last_checkpoint(ckpt_dir)
    _check_launch(ckpt_dir, args, resume, main_process)
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
    best = max(trained, key=lambda r: (r["selection"], -r["step"]))
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
        "peak_memory_mb": round(_peak_memory_mb(device), 1), "train_loss": result.training_loss,
        "loss_history": [{"step": h["step"], "loss": h["loss"], "epoch": h.get("epoch")} for h in history],
        "validation": sorted(validator.records, key=lambda r: r["step"]), "best": best,
        "zero_shot": validator.done(0), "adapter": str(adapter), "reused": False,
    }
    io.write_json(out / "report.json", report)
    stages.finish(cfg, STAGE, round(seconds, 2), adapter_sha256=adapter_digest(adapter))
    log(f"best checkpoint: step {best['step']} (selection score {best['selection']:.3f} of 3); adapter saved to "
        f"{io.shown_path(adapter, cfg.run_dir)}")
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
        validator = Validator(cfg, tokenizer, out / "validation.json")
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
    return stages.file_digest(Path(adapter) / "adapter_model.safetensors")


def read_report(cfg: Any) -> dict[str, Any]:
    return io.read_json(stages.require(cfg, STAGE) / "report.json")


# ----------------------------------------------------------------- command line
def adapters_for_table(cfg: Any) -> list[Any]:
    """The settings of every adapter notebook 07's table scores with (each fine-tuned row of ``eval.llm`` for
    each of ``eval.sft_seeds``), notebook 06's first: what a cluster trains before running 07."""
    out = [cfg]
    for system in cfg.eval.llm:
        if system == "zero_shot":
            continue
        for seed in range(cfg.eval.sft_seeds):
            settings = stages.adapter_config(cfg, LLM_ROWS[system], seed)
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
    cmd += ["-m", "trsr_utils.sft", "--profile", profile, "--run-dir", run_dir, *extra]
    for s in sets:
        cmd += ["--set", s]
    return cmd


def accelerate_config(run_dir: Path, gpus: int) -> Path:
    """An accelerate config naming only what the DeepSpeed launch needs (written into the run directory):
    passed as ``--config_file``, it replaces the user's default config, whose ``mixed_precision`` or other
    settings beside a ``deepspeed_config_file`` make accelerate refuse to start."""
    path = Path(run_dir) / STAGE / "accelerate_deepspeed.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"compute_environment: LOCAL_MACHINE\ndistributed_type: DEEPSPEED\nnum_machines: 1\n"
                    f"num_processes: {gpus}\nmachine_rank: 0\ndeepspeed_config:\n"
                    f"  deepspeed_config_file: {DEEPSPEED_ZERO2}\n  zero3_init_flag: false\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trsr_utils.sft", description="LoRA SFT of the recommender")
    stage_arguments(parser)
    parser.add_argument("--gpus", type=int, default=1, help="> 1: one process per GPU through torchrun (DDP)")
    parser.add_argument("--deepspeed", action="store_true",
                        help="with --gpus: accelerate + DeepSpeed ZeRO-2 instead of plain DDP")
    parser.add_argument("--all", action="store_true",
                        help="train every adapter notebook 07's table needs (eval.llm rows x eval.sft_seeds), "
                             "not only notebook 06's")
    args = parser.parse_args(argv)
    cfg = stage_config(args)
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


if __name__ == "__main__":
    raise SystemExit(main())
