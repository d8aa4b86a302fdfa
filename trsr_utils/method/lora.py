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

    python -m trsr_utils sft --profile demo [--run-dir runs/demo] [--set sft.epochs=2] [--all]
    python -m trsr_utils sft --profile paper-mind --gpus 8 --all               # torchrun DDP
    python -m trsr_utils sft --profile paper-mind --gpus 8 --all --deepspeed   # accelerate + ZeRO-2
    torchrun --nproc_per_node 2 -m trsr_utils sft --profile smoke      # the same DDP by hand (gloo on CPU)

Under a launcher each process trains on its own device with ``sft.grad_accum``
divided by the process count (:func:`accumulation`): the effective batch, the
schedule and so the adapter's fingerprint are the one-GPU run's, and notebook
06 re-uses the adapter instead of training again. Rank 0 validates and writes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from trsr_utils.core import distributed, io
from trsr_utils.method import llm, metrics
from trsr_utils.core.config import REPO_ROOT
from trsr_utils.core.distributed import world
from trsr_utils.core.progress import headless
from trsr_utils.method.prompts import AnswerTokens, UserPrompts, answer_tokens
from trsr_utils.method.scoring import decoder_and_head, for_scoring, prefix_pass, score_users, suffix_states

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


def examples(cfg: Any, samples: Any, prompts: Sequence[UserPrompts], tokenizer: Any,
             shared: bool | None = None) -> list[dict[str, Any]]:
    """Training examples from the samples' prompts: one per candidate, or one per user when ``shared``
    (default: ``sft.shared_prefix``)."""
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


# ----------------------------------------------------------------- validation (model selection)
class Validator:
    """Ranks the validation users' candidates with the current model; remembers every result by step."""

    def __init__(self, cfg: Any, tokenizer: Any, samples: Any, prompts: Sequence[UserPrompts],
                 path: Path | None = None):
        self.samples, self.prompts = samples, list(prompts)
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


def callback(validator: Validator, log: Callable[[str], None]) -> Any:
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


def trainer_class(loss: str) -> type:
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


def check_launch(ckpt_dir: Path, args: Any, resume: str | None, main_process: bool) -> None:
    """A DeepSpeed checkpoint keeps its optimizer state in DeepSpeed's own files, which a plain Trainer does not
    read (it would resume with a fresh optimizer), and the other way round: resume the way training started."""
    marker = ckpt_dir / "launch.json"
    now = {"deepspeed": bool(args.deepspeed), "processes": args.world_size}
    if resume and marker.exists():
        before = io.read_json(marker)
        if before["deepspeed"] != now["deepspeed"]:
            how = (f"python -m trsr_utils sft --gpus {before['processes']} --deepspeed" if before["deepspeed"]
                   else "without DeepSpeed (one process, or torchrun)")
            raise RuntimeError(f"the checkpoints in {ckpt_dir} were written {'with' if before['deepspeed'] else 'without'}"
                               f" DeepSpeed; resuming {'with' if now['deepspeed'] else 'without'} it would restart the "
                               f"optimizer from scratch. Resume {how}, or delete the folder to start over")
    if main_process and not marker.exists():
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        io.write_json(marker, now)


def peak_memory_mb(device: str) -> float:
    import resource

    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def last_checkpoint(output_dir: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(output_dir)) if output_dir.exists() else None
