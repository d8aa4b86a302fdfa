"""Listwise ranking with a letter verbalizer (notebook 09).

Pointwise scoring (:mod:`.scoring`) asks one yes/no question per candidate.
Listwise scoring (InstructRec's listwise task form; LlamaRec's verbalizer)
puts a user's candidates into one prompt, labelled A, B, C, ..., and reads
*one* forward pass: a candidate's score is its letter's logit at the answer
position, normalised over the prompt's letters (a log-softmax: the same order
as the logits, and comparable between prompts, so scores of several orders
can be averaged). Every letter must be a single token of the tokenizer
(:func:`trsr_utils.method.prompts.letter_tokens`).

A list has an order, and an LLM reading it has *position bias*: the same
candidate gets another score in another place. :func:`orders` draws seeded
candidate orders per user; :func:`order_averaged` averages each candidate's
log-probability over them (the debiased variant); :func:`position_frame` and
:func:`position_bias` measure how far the positive's rank moves with its
place. Pointwise prompts hold one candidate each, so they have no place to be
biased by.

Fine-tuning is the pointwise path's (TRL ``SFTTrainer`` + a PEFT LoRA adapter,
the answer-only loss of :func:`trsr_utils.method.lora.answer_loss`): one example per
training user, its candidates listed in a seeded order, the positive's letter
the only labelled token.
"""

from __future__ import annotations

import os
import shutil
import time
import zlib
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from trsr_utils.core import distributed, io
from trsr_utils.method import llm, metrics
from trsr_utils.data.sampling import draw_negatives
from trsr_utils.method.prompts import LETTERS, ListwisePrompt, ListwisePrompter, letter_tokens  # noqa: F401 (LETTERS: re-exported)
from trsr_utils.method.scoring import decoder_and_head, score_users
from trsr_utils.method.user_prompts import user_parts
from trsr_utils.method import lora

IGNORE = -100


# ----------------------------------------------------------------- candidate orders
def order_rng(seed: int, order: int, user_id: str) -> np.random.Generator:
    """A generator for one user's ``order``-th candidate order: the run seed, the order and the user alone."""
    return np.random.default_rng([seed, 9, order, zlib.crc32(str(user_id).encode("utf-8"))])


def orders(user_ids: Sequence[str], n_candidates: int, n_orders: int, seed: int) -> list[list[np.ndarray]]:
    """``n_orders`` seeded permutations of each user's candidate indices: ``out[o][u][j]`` is the candidate shown
    at position ``j`` (letter ``LETTERS[j]``) in order ``o``. The same for a user whatever the other users."""
    return [[order_rng(seed, o, u).permutation(n_candidates) for u in user_ids] for o in range(n_orders)]


def to_candidates(position_scores: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Scores by position (letter) -> scores by candidate index: ``out[order[j]] = position_scores[j]``."""
    out = np.empty(len(order))
    out[np.asarray(order)] = position_scores
    return out


def order_averaged(per_order: Sequence[Sequence[np.ndarray]]) -> list[np.ndarray]:
    """Each candidate's log-probability averaged over the orders (``per_order[o][u]``, candidate order): a score
    that no single position decides (the debiased variant)."""
    return [np.mean([per_order[o][u] for o in range(len(per_order))], axis=0) for u in range(len(per_order[0]))]


# ----------------------------------------------------------------- prompts
def build(cfg: Any, samples: pd.DataFrame, catalog: Any, summaries: dict[str, str] | None, tokenizer: Any,
          candidate_lists: Sequence[Sequence[str]]) -> list[ListwisePrompt]:
    """One listwise prompt per sample: what its pointwise prompt shows (:func:`trsr_utils.method.user_prompts.user_parts`),
    the candidates of ``candidate_lists`` in the order given."""
    prompter = ListwisePrompter.from_config(cfg, tokenizer)
    return [prompter.build_list(*parts) for parts in user_parts(cfg, samples, catalog, summaries, tokenizer,
                                                                candidate_lists)]


# ----------------------------------------------------------------- scoring
def letter_logprobs(model: Any, prompts: Sequence[ListwisePrompt], letters: Sequence[int], batch_size: int = 4,
                    pad_id: int = 0, progress: Any = None, shard: bool = True) -> list[np.ndarray]:
    """log p(letter) at each prompt's answer position over that prompt's letters (A, B, ... for its candidates),
    one array per prompt in letter order: one forward pass per prompt, several prompts per batch (left-padded,
    explicit position ids). The letter logits come from float32 rows of the output layer, the log-softmax in
    float64, whatever the model's precision (as :func:`trsr_utils.method.scoring._answer_probs`)."""
    import torch

    if prompts and len(letters) < max(p.n_candidates for p in prompts):
        raise ValueError(f"{len(letters)} letter ids for prompts of up to {max(p.n_candidates for p in prompts)} "
                         "candidates")
    decoder, head = decoder_and_head(model)
    device = next(model.parameters()).device
    starts = list(range(0, len(prompts), batch_size))
    mine = [starts[b] for b in distributed.my_batches(len(starts))] if shard else starts
    done: list[tuple[int, list[np.ndarray]]] = []
    with torch.no_grad():
        for start in mine:
            group = prompts[start:start + batch_size]
            ids, mask = llm.pad_ids([p.ids for p in group], pad_id, left=True)
            ids, mask = ids.to(device), mask.to(device)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            hidden = decoder(input_ids=ids, attention_mask=mask, position_ids=positions).last_hidden_state[:, -1]
            width = max(p.n_candidates for p in group)
            with torch.autocast(device.type, enabled=False):
                w = head.weight[list(letters[:width])].float()
                logits = hidden.float() @ w.T
                if getattr(head, "bias", None) is not None:
                    logits = logits + head.bias[list(letters[:width])].float()
            logits = logits.double().cpu()
            done.append((start, [torch.log_softmax(logits[r, :p.n_candidates], -1).numpy()
                                 for r, p in enumerate(group)]))
            if progress is not None:
                progress.update(len(group))
    by_start = dict(distributed.gather(done) if shard else done)
    return [scores for start in starts for scores in by_start[start]]


def letters_for(tokenizer: Any, prompts: Sequence[ListwisePrompt]) -> list[int]:
    """The letter token ids for the longest of ``prompts`` (checked single-token and distinct)."""
    return letter_tokens(tokenizer, max(p.n_candidates for p in prompts), prompts[0].text)


def compare_speed(model: Any, pointwise: Sequence[Any], lists: Sequence[ListwisePrompt], answer: Any,
                  letters: Sequence[int], batch_size: int = 4, pad_id: int = 0) -> dict[str, dict[str, float]]:
    """Pointwise shared-prefix scoring (:func:`trsr_utils.method.scoring.score_users` of ``pointwise``) and listwise
    scoring of ``lists`` (the same users and candidates) in one process, one after the other: after a warm-up,
    each timed twice, alternating, the faster kept. Per scoring: ``seconds`` and ``tokens_per_user`` (pointwise:
    the prefix once and every suffix)."""
    run = {"pointwise": lambda: score_users(model, pointwise, answer, batch_size, pad_id, shard=False),
           "listwise": lambda: letter_logprobs(model, lists, letters, batch_size, pad_id, shard=False)}
    for f in run.values():  # warm-up
        f()
    best = {k: float("inf") for k in run}
    for _ in range(2):
        for k, f in run.items():
            began = time.perf_counter()
            f()
            best[k] = min(best[k], time.perf_counter() - began)
    tokens = {"pointwise": float(np.mean([len(p.prefix_ids) + sum(map(len, p.suffix_ids)) for p in pointwise])),
              "listwise": float(np.mean([len(p.ids) for p in lists]))}
    return {k: {"seconds": best[k], "tokens_per_user": tokens[k]} for k in run}


# ----------------------------------------------------------------- position bias
def position_frame(system: str, user_ids: Sequence[str], per_order: Sequence[Sequence[np.ndarray]],
                   order_list: Sequence[Sequence[np.ndarray]]) -> pd.DataFrame:
    """One row per user and order: where the positive (candidate 0) was shown (0 = letter A), its rank, and the
    position of the candidate ranked first (among tied first candidates a negative, as ranks are pessimistic)."""
    rows = []
    for o, (scores, perms) in enumerate(zip(per_order, order_list)):
        for u, (s, perm) in enumerate(zip(scores, perms)):
            perm = np.asarray(perm)
            s = np.asarray(s, dtype=np.float64)
            top = int(np.lexsort((np.arange(len(s)) == 0, -s))[0])  # a tie at the top goes to a negative
            rows.append({"system": system, "user_id": user_ids[u], "order": o,
                         "position": int(np.flatnonzero(perm == 0)[0]), "rank": metrics.positive_rank(s),
                         "top_position": int(np.flatnonzero(perm == top)[0])})
    return pd.DataFrame(rows)


def position_bias(positions: pd.DataFrame, n_candidates: int) -> pd.DataFrame:
    """Per system: how far the positive's rank moves when only its place changes (the mean over users of the
    largest minus the smallest rank over the orders; 0 = no position bias), Spearman's correlation between its
    place and its rank, and the share of prompts whose top candidate was shown first (1/n for an unbiased
    ranker)."""
    from scipy import stats

    rows = []
    for system, g in positions.groupby("system", sort=False):
        spread = g.groupby("user_id")["rank"].agg(lambda r: r.max() - r.min())
        rho = stats.spearmanr(g["position"], g["rank"]).statistic if g["rank"].nunique() > 1 else float("nan")
        rows.append({"system": system, "orders": int(g["order"].nunique()), "users": int(g["user_id"].nunique()),
                     "rank_range_mean": float(spread.mean()), "rank_range_max": int(spread.max()),
                     "users_rank_moved": float((spread > 0).mean()), "spearman_position_rank": float(rho),
                     "top_is_first": float((g["top_position"] == 0).mean()), "uniform_top_share": 1 / n_candidates})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------- fine-tuning
def training_candidates(cfg: Any, samples: pd.DataFrame, catalog_ids: Sequence[str]) -> list[list[str]]:
    """Each training user's listwise candidates: the positive first, their sampled negatives, topped up to
    ``1 + data.eval_negatives`` (what a test prompt lists) with seeded uniform draws outside the user's history,
    so training prompts have the length and letter range of the test prompts."""
    ids = np.asarray(sorted(catalog_ids))
    n = cfg.data.eval_negatives
    out = []
    for s in samples.itertuples(index=False):
        have = [s.positive, *list(s.negatives)[:n]]
        rng = np.random.default_rng([cfg.seed, 17, zlib.crc32(str(s.user_id).encode("utf-8"))])
        extra, _ = draw_negatives(rng, ids, {*s.history, *have}, n + 1 - len(have))
        out.append(have + extra)
    return out


def training_examples(prompts: Sequence[ListwisePrompt], answers: Sequence[int],
                      letters: Sequence[int]) -> list[dict[str, Any]]:
    """One example per prompt: its ids and the answer letter, the only labelled token (the answer-only loss)."""
    if len(prompts) != len(answers):
        raise ValueError(f"{len(answers)} answers for {len(prompts)} prompts")
    out = []
    for p, a in zip(prompts, answers):
        ids = list(p.ids) + [letters[a]]
        out.append({"input_ids": ids, "labels": [IGNORE] * (len(ids) - 1) + [letters[a]]})
    return out


def train(cfg: Any, base: Any, tokenizer: Any, examples: Sequence[dict[str, Any]], out: Path,
          log: Callable[[str], None] = print) -> dict[str, Any]:
    """LoRA fine-tuning of ``base`` on listwise ``examples`` with TRL's SFTTrainer and the sft section's settings
    (LoRA, learning rate, batch, epochs or max_steps; answer-only loss), into ``out``: checkpoints (an interrupted
    run resumes from the last), then ``adapter/`` (the last step's weights: no validation-based selection) and
    ``report.json``, written last."""
    from datasets import Dataset

    import torch

    device = llm.resolve_device(cfg.model.device)
    args = lora.training_arguments(cfg, out / "checkpoints", device)
    torch.manual_seed(cfg.seed + cfg.sft.seed_offset)  # the LoRA initialisation: before the Trainer seeds anything
    model = lora.with_lora(cfg, base)
    counts = lora.parameter_counts(model)
    dataset = Dataset.from_list([{"input_ids": e["input_ids"], "labels": e["labels"]} for e in examples])
    # The loss from the hidden state at the answer position only (no [batch, length, vocabulary] logits).
    lora.install_answer_loss(model, "answer", None, bool(args.bf16))
    trainer = lora.trainer_class("answer")(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    if args.disable_tqdm:
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    resume = lora.last_checkpoint(out / "checkpoints")
    if resume:
        log(f"resuming listwise fine-tuning from {resume}")
    began = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - began
    lora.remove_answer_loss(model)
    tmp, adapter = out / ".adapter.tmp", out / "adapter"
    if distributed.is_main():  # under a launcher every process holds the same weights (DDP); one writes them
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(str(tmp))
        shutil.rmtree(adapter, ignore_errors=True)
        os.replace(tmp, adapter)  # whole or not at all
    history = [h for h in trainer.state.log_history if "loss" in h]
    report = {"examples": len(examples), "parameters": counts, "global_step": trainer.state.global_step,
              "processes": distributed.world()[1],
              "train_seconds": round(seconds, 2), "train_loss": result.training_loss, "resumed_from": resume,
              "tokens_per_example_mean": float(np.mean([len(e["input_ids"]) for e in examples])),
              "loss_history": [{"step": h["step"], "loss": h["loss"]} for h in history],
              "adapter": str(adapter)}
    if distributed.is_main():
        io.write_json(out / "report.json", report)  # last: its presence marks the adapter finished
    distributed.barrier()  # no process reads the adapter before rank 0 has written it
    model.eval()
    model.unload()  # the base model without the LoRA layers, in eval mode
    return report

