"""Notebook 09's listwise rows: its users, the listwise adapter (trained on listwise prompts of the training users,
kept in ``09_beyond/adapters/<key>/``), the listwise scores of every candidate order and the pointwise rows of
notebook 07 for the same users, each in the score store under a key of what made it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from trsr_utils import baselines
from trsr_utils.core import distributed, io
from trsr_utils.core.progress import bar
from trsr_utils.method import listwise, llm, score_store
from trsr_utils.method.prompts import answer_tokens
from trsr_utils.method.score_store import cached, scores_path
from trsr_utils.method.scoring import for_scoring
from trsr_utils.method.user_prompts import build, main_summary
from trsr_utils.stages import table_rows
from trsr_utils.stages.sft import load_adapter
from trsr_utils.stages.summarize import summaries_for
from trsr_utils.store import stages

FOLDER = "09_beyond"  # notebook 09's stage folder (trsr_utils.stages.beyond), where its listwise adapters live


VERSION = 1  # of the listwise and retrieval score keys


ADAPTER_VERSION = 1


POINTWISE = {False: "pointwise zero-shot", True: "pointwise fine-tuned"}  # notebook 07's rows for the main summary


def users(cfg: Any, prepared: Any) -> pd.DataFrame:
    """Notebook 07's test users, the first ``beyond.users`` of them when set."""
    samples = table_rows.test_samples(cfg, prepared)
    return samples.head(cfg.beyond.users).reset_index(drop=True) if cfg.beyond.users else samples


def samples_key(cfg: Any) -> dict[str, Any]:
    key = score_store.samples_key(cfg)
    return {**key, "beyond.users": cfg.beyond.users} if cfg.beyond.users else key


def llm_settings(cfg: Any) -> dict[str, Any]:
    m = cfg.model
    return {"settings": stages.settings(cfg, ["prompt", "text", "model.device", "model.scoring_dtype"]),
            "recommender": llm.model_id(m.recommender, m.dtype, m.quantization),
            "listwise prompt": stages.digest(stages.CODE["listwise prompt"](cfg))}


# ----------------------------------------------------------------- the listwise adapter
def adapter_key(cfg: Any) -> dict[str, Any]:
    """Everything the listwise adapter depends on: the training users and their candidates, the summaries, the
    sft section's training settings, the prompt, the model, the training orders."""
    # What listwise training does not read: the pointwise-only settings (loss, shared prefix, validation) and
    # the scoring precision.
    skip = ("sft.score_batch_users", "sft.logging_steps", "sft.validate_zero_shot", "sft.valid_users",
            "sft.summary", "sft.shared_prefix", "sft.loss")
    m = cfg.model
    return {"listwise adapter": ADAPTER_VERSION, "01_data": stages.fingerprint(cfg, "01_data").digest,
            "summary": table_rows.summary_id(cfg, main_summary(cfg)), "seed": cfg.seed,
            "sft": stages.settings(cfg, ["sft"], skip), "train_users": cfg.beyond.train_users,
            "train_orders": cfg.beyond.train_orders,
            "settings": stages.settings(cfg, ["prompt", "text", "model.device"]),
            "recommender": llm.model_id(m.recommender, m.dtype, m.quantization),
            "listwise prompt": stages.digest(stages.CODE["listwise prompt"](cfg))}


def adapter_dir(cfg: Any) -> Path:
    return Path(cfg.run_dir) / FOLDER / "adapters" / stages.digest(adapter_key(cfg))[:stages.DIGEST_CHARS]


def training_set(cfg: Any, prepared: Any, catalog: Any, tokenizer: Any) -> tuple[list[Any], list[int]]:
    """The listwise training prompts (the first ``beyond.train_users`` training users, or all, each in
    ``beyond.train_orders`` seeded orders) and the position of the positive in each (its letter: the answer)."""
    train = prepared.samples[prepared.samples["split"] == "train"].reset_index(drop=True)
    if cfg.beyond.train_users:
        train = train.head(cfg.beyond.train_users)
    if train.empty:
        raise ValueError("no training users: data.n_train must be > 0 to fine-tune the listwise recommender")
    cands = listwise.training_candidates(cfg, train, list(catalog))
    # Orders 100, 101, ...: never one of the evaluation orders (0 .. beyond.orders - 1) of any user.
    perms = [[listwise.order_rng(cfg.seed, 100 + t, u).permutation(len(c)) for u, c in zip(train["user_id"], cands)]
             for t in range(cfg.beyond.train_orders)]
    repeated = pd.concat([train] * cfg.beyond.train_orders, ignore_index=True)
    lists = [[c[j] for j in perm] for p in perms for c, perm in zip(cands, p)]
    answers = [int(np.flatnonzero(perm == 0)[0]) for p in perms for perm in p]
    prompts = listwise.build(cfg, repeated, catalog, summaries_for(cfg, main_summary(cfg)), tokenizer, lists)
    return prompts, answers


def ensure_adapter(cfg: Any, prepared: Any, catalog: Any, tokenizer: Any,
                   log: Callable[[str], None] = print) -> Path:
    """The listwise LoRA adapter for ``cfg``'s settings, trained unless a finished one has exactly them."""
    out = adapter_dir(cfg)
    if (out / "report.json").exists() and (out / "adapter" / "adapter_config.json").exists():
        return out / "adapter"
    prompts, answers = training_set(cfg, prepared, catalog, tokenizer)
    letters = listwise.letters_for(tokenizer, prompts)
    examples = listwise.training_examples(prompts, answers, letters)
    if distributed.is_main():
        out.mkdir(parents=True, exist_ok=True)
        io.write_json(out / "key.json", adapter_key(cfg))
    distributed.barrier()
    log(f"fine-tuning the listwise recommender: {len(examples)} prompts of {np.mean([len(e['input_ids']) for e in examples]):.0f}"
        f" tokens on average, the positive's letter the only label ({out})")
    m = cfg.model
    base = llm.load_model(m.recommender, m.dtype, m.quantization, m.device)
    listwise.train(cfg, base, tokenizer, examples, out, log)
    del base
    llm.release()
    return out / "adapter"


def listwise_adapter_id(adapter: Path) -> dict[str, str]:
    return {"listwise adapter": stages.file_digest(adapter / "adapter_model.safetensors")}


# ----------------------------------------------------------------- scoring the sampled candidates
def listwise_key(cfg: Any, adapter: Path | None, order: int) -> dict[str, Any]:
    return {"system": "listwise", "version": VERSION, "samples": samples_key(cfg), "method": main_summary(cfg),
            "summary": table_rows.summary_id(cfg, main_summary(cfg)), "seed": cfg.seed, "order": order,
            "adapter": listwise_adapter_id(adapter) if adapter else None, **llm_settings(cfg)}


def _scoring_model(cfg: Any, base: Any, adapter: Path | None) -> Any:
    model = base if adapter is None else load_adapter(cfg, adapter, base)
    return model, for_scoring(model, cfg.model.scoring_dtype)


def _release(model: Any, base: Any) -> None:
    if model is not base:
        model.unload()  # the base model without the LoRA layers, for the next system


def score_listwise(cfg: Any, samples: pd.DataFrame, catalog: Any, tokenizer: Any, base: Callable[[], Any],
                   adapter: Path | None, candidate_lists: Sequence[Sequence[str]], perms: Sequence[np.ndarray],
                   desc: str) -> list[np.ndarray]:
    """Log-probabilities of each user's ``candidate_lists`` items (in that order) from one listwise prompt per user
    listing them in ``perms[u]`` order: ``base`` alone (zero-shot) or with the listwise ``adapter``."""
    shown = [[c[j] for j in perm] for c, perm in zip(candidate_lists, perms)]
    prompts = listwise.build(cfg, samples, catalog, summaries_for(cfg, main_summary(cfg)), tokenizer, shown)
    model, scorer = _scoring_model(cfg, base(), adapter)
    try:
        with bar(len(prompts), desc, "user") as progress:
            by_letter = listwise.letter_logprobs(scorer, prompts, listwise.letters_for(tokenizer, prompts),
                                                 cfg.sft.score_batch_users, tokenizer.pad_token_id or 0, progress)
    finally:
        _release(model, base())
    return [listwise.to_candidates(s, perm) for s, perm in zip(by_letter, perms)]


def pointwise_frame(cfg: Any, finetuned: bool, samples: pd.DataFrame, prepared: Any, tokenizer: Any,
                    base: Callable[[], Any], log: Callable[[str], None],
                    perms: Sequence[np.ndarray] | None = None) -> pd.DataFrame:
    """Pointwise p(yes) with the main summary, zero-shot or with notebook 06's adapter: with the hierarchical
    summary, notebook 07's zero-shot or LLM-TRSR row (the same key: its stored scores, the first users of 07's
    frame when ``beyond.users`` takes fewer), else scored here. ``perms``: the candidates' suffixes scored in this order instead (stored under a
    key with the order; the scores come back in candidate order)."""
    method = main_summary(cfg)
    adapter = table_rows.ensure_adapter(cfg, method, log) if finetuned else None
    key07 = score_store.llm_key(cfg, method, table_rows.summary_id(cfg, method),
                                table_rows.adapter_id(cfg, method, adapter) if adapter else None)
    if perms is None:
        path = scores_path(cfg, key07)
        if path.exists():
            stored = io.read_parquet(path).head(len(samples)).reset_index(drop=True)
            if (list(stored["user_id"]) == list(samples["user_id"])
                    and [list(c) for c in stored["candidates"]] == baselines.candidates(samples)):
                return stored
    key = {**key07, "samples": samples_key(cfg), **({"order": stages.digest([p.tolist() for p in perms])}
                                                    if perms is not None else {})}

    def compute() -> list[np.ndarray]:
        cands = baselines.candidates(samples)
        lists = [[c[j] for j in perm] for c, perm in zip(cands, perms)] if perms is not None else None
        label = POINTWISE[finetuned]
        log(f"{label}: scoring {len(samples)} users" + (" in another order" if perms is not None else ""))
        prompts = build(cfg, samples, prepared.catalog, summaries_for(cfg, method), tokenizer, lists)
        scores = table_rows.score_prompts(cfg, prompts, base(), tokenizer, adapter, f"scoring {label}")
        return [listwise.to_candidates(s, perm) for s, perm in zip(scores, perms)] if perms is not None else scores

    return cached(scores_path(cfg, key), samples, compute, log, key)


def timing(cfg: Any, samples: pd.DataFrame, catalog: Any, tokenizer: Any, base: Any) -> dict[str, Any]:
    """Candidates/s of pointwise shared-prefix scoring and of listwise scoring (zero-shot, the scoring precision),
    on the same first ``beyond.timing_users`` users back to back (:func:`listwise.compare_speed`)."""
    sub = samples.head(cfg.beyond.timing_users)
    summaries = summaries_for(cfg, main_summary(cfg))
    point = build(cfg, sub, catalog, summaries, tokenizer)
    lists = listwise.build(cfg, sub, catalog, summaries, tokenizer, baselines.candidates(sub))
    measured = listwise.compare_speed(for_scoring(base, cfg.model.scoring_dtype), point, lists,
                                      answer_tokens(tokenizer, point[0].suffixes[0]),
                                      listwise.letters_for(tokenizer, lists), cfg.sft.score_batch_users,
                                      tokenizer.pad_token_id or 0)
    n_cand = sum(len(p.suffix_ids) for p in point)
    rows = [{"scoring": k, "users": len(sub), "candidates": n_cand, "seconds": round(m["seconds"], 3),
             "candidates_per_s": round(n_cand / m["seconds"], 2), "tokens_per_user": round(m["tokens_per_user"], 1),
             "forward_passes_per_user": "1 (every candidate)" if k == "listwise"
             else f"1 prefix + {n_cand // len(sub)} candidate suffixes"} for k, m in measured.items()]
    return {"rows": rows, "speedup_listwise": round(measured["pointwise"]["seconds"] / measured["listwise"]["seconds"], 2),
            "dtype": cfg.model.scoring_dtype or cfg.model.dtype}
