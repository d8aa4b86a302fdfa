"""Benchmarks that keep the speed claims honest (``make bench``).

    python -m trsr_utils bench [--only summarize] [--model smollm2-135m-instruct] [--out runs/bench]
    python -m trsr_utils bench --only loaders [--scale 0.1]

Each benchmark measures the compared variants in one process, one after the
other, on the same inputs, so their *ratio* holds even on a noisy shared
machine; it prints a table and writes JSON next to it. Speed is never checked
by a timed test assertion.

* summarize: batched, left-padded generation vs one prompt at a time, on real
  block-summary prompts (MovieLens-100K, the embedded default model).
* scoring: p(yes) for 21 candidates per user with the shared prefix
  (:func:`trsr_utils.method.scoring.score_users`) vs 21 independent full prompts
  (dynamically padded, one user per batch) vs every prompt padded to 2048
  tokens as the original release did; candidates/s, ratios, and the largest
  probability difference between the variants.
* sft: LoRA training throughput (examples/s, tokens/s, peak memory) with our
  answer-position loss vs TRL's full-vocabulary loss on the whole text.
* precision: scoring in float32 vs bfloat16 (speed; how many users' positive
  changes rank, or moves in or out of the top 10).
* sft_shared: one training example per candidate vs one shared prefix per user,
  in float32 and under bf16 autocast (candidates trained per second).
* listwise: one listwise prompt per user (21 candidates labelled A-U, one
  forward pass; :mod:`trsr_utils.method.listwise`) vs pointwise shared-prefix p(yes),
  on the same users, in float32 and bfloat16: candidates/s and tokens per user.
* loaders: the data stage (load + filter + split + negatives) with the paper
  profiles' settings on synthetic files of MIND-large's and Amazon-M2's size
  (:mod:`trsr_synth`, generated once into ``<out>/synth``): wall
  and CPU seconds and peak memory, each dataset in a child process.
  ``--scale 0.1`` runs it on a tenth.

Not a notebook's subject: docs/benchmarks.md shows its results.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any, Callable

from trsr_synth import synthetic_data
from trsr_utils.core import io
from trsr_utils.method import listwise, llm, metrics, prompts
from trsr_utils.core.config import resolve_config
from trsr_utils.method.prompts import ListwisePrompter, RecommendationPrompter, answer_tokens
from trsr_utils.method.scoring import for_scoring, score_full, score_users
from trsr_utils.data import preparation
from trsr_utils.method.summarizer import TemplateSummarizer
from trsr_utils.stages import prepare, sft
from trsr_utils.method.text import ItemTexter


def machine() -> dict[str, Any]:
    import os

    import torch

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def block_prompts(tokenizer: Any, n: int, items_per_block: int = 5, seed: int = 0) -> list[str]:
    """``n`` real block-summary prompts: consecutive MovieLens-100K ratings of random users."""
    cfg = resolve_config("demo", "/tmp/trsr-bench-unused", {"data.n_train": n, "data.n_valid": 0, "data.n_test": 0,
                                                             "seed": seed})
    prepared = preparation.prepare(cfg)
    texter = ItemTexter.from_config(cfg, prepared.catalog, tokenizer)
    out = []
    for sample in prepared.samples.itertuples(index=False):
        lines = [texter(i) for i in list(sample.history)[:items_per_block]]
        out.append(prompts.generation_prompt(tokenizer, prompts.block_summary_messages(lines, "movies")))
    return out[:n]


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    began = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - began


def bench_summarize(model_name: str = llm.SMOLLM2, n: int = 32, batch_size: int = 32, max_new_tokens: int = 40,
                    log: Callable[[str], None] = print) -> dict[str, Any]:
    """Generated tokens/s: one prompt at a time vs batches of ``batch_size`` (same prompts, greedy, fixed length)."""
    tokenizer = llm.load_tokenizer(model_name)
    model = llm.load_model(model_name, device="auto")
    texts = block_prompts(tokenizer, n)
    # No sentence stop here: every row generates exactly max_new_tokens unless it ends, in both variants alike.
    llm.generate(model, tokenizer, texts[:2], max_new_tokens=4, batch_size=2)  # warm-up
    rows = []
    for label, bs in (("one at a time", 1), (f"batched ({batch_size})", batch_size)):
        gens, seconds = _timed(lambda: llm.generate(model, tokenizer, texts, max_new_tokens=max_new_tokens,
                                                    batch_size=bs))
        tokens = sum(g.new_tokens for g in gens)
        rows.append({"variant": label, "batch_size": bs, "prompts": len(texts), "new_tokens": tokens,
                     "seconds": round(seconds, 2), "tokens_per_s": round(tokens / seconds, 2),
                     "prompts_per_s": round(len(texts) / seconds, 3)})
        log(f"  {label}: {tokens} tokens in {seconds:.1f} s")
    same = [g.text for g in gens]
    ratio = rows[1]["tokens_per_s"] / rows[0]["tokens_per_s"]
    return {"benchmark": "summarize", "model": llm.model_id(model_name), "max_new_tokens": max_new_tokens,
            "prompt_tokens_mean": round(sum(len(tokenizer.encode(t, add_special_tokens=False)) for t in texts)
                                        / len(texts), 1),
            "rows": rows, "speedup": round(ratio, 2), "goal": ">= 3x", "met": ratio >= 3.0,
            "example_output": same[0]}


def bench_users(tokenizer: Any, n_users: int, recent_items: int = 5, seed: int = 0) -> list[tuple[str, list[str],
                                                                                                list[str]]]:
    """(preference summary, recent item lines, 21 candidate lines) of ``n_users`` MovieLens-100K test users: a
    rule-based summary (no LLM needed), the last ``recent_items`` items, the positive and 20 negatives."""
    cfg = resolve_config("demo", "/tmp/trsr-bench-unused", {"data.n_train": 0, "data.n_valid": 0,
                                                             "data.n_test": n_users, "seed": seed})
    prepared = preparation.prepare(cfg)
    texter = ItemTexter.from_config(cfg, prepared.catalog, tokenizer)
    template = TemplateSummarizer(prepared.catalog, "movies")
    out = []
    for s in prepared.samples.itertuples(index=False):
        history = list(s.history)
        out.append((template(history, history[-5:]), [texter(i) for i in history[-recent_items:]],
                    [texter(i) for i in [s.positive, *s.negatives]]))
    return out


def scoring_prompts(tokenizer: Any, n_users: int, recent_items: int = 5, seed: int = 0) -> list[Any]:
    """Real recommendation prompts of ``n_users`` MovieLens-100K test users (:func:`bench_users`)."""
    prompter = RecommendationPrompter(tokenizer, "movies", 2048)
    return [prompter.build(*parts) for parts in bench_users(tokenizer, n_users, recent_items, seed)]


def bench_scoring(model_name: str = llm.SMOLLM2, n_users: int = 8, users_per_batch: int = 4, pad_to: int = 2048,
                  padded_candidates: int = 7, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Candidates/s of shared-prefix scoring vs independent full prompts (dynamic padding, and padded to 2048)."""
    import numpy as np

    tokenizer = llm.load_tokenizer(model_name)
    model = llm.load_model(model_name, device="auto")
    user_prompts = scoring_prompts(tokenizer, n_users)
    answer = answer_tokens(tokenizer, user_prompts[0].suffixes[0])
    pad = tokenizer.pad_token_id or 0
    score_users(model, user_prompts[:1], answer, 1, pad)  # warm-up
    shared, t_shared = _timed(lambda: score_users(model, user_prompts, answer, users_per_batch, pad))
    independent, t_ind = _timed(lambda: [score_full(model, [p.full_ids(i) for i in range(len(p.suffix_ids))],
                                                    answer, len(p.suffix_ids), pad) for p in user_prompts])
    # Padding to 2048 is so slow on a CPU that a few candidates of one user say enough.
    first = user_prompts[0]
    n_pad = min(padded_candidates, len(first.suffix_ids))
    padded, t_pad = _timed(lambda: score_full(model, [first.full_ids(i) for i in range(n_pad)], answer, n_pad, pad,
                                              pad_to=pad_to))
    n_cand = sum(len(p.suffix_ids) for p in user_prompts)
    diff_ind = max(float(np.abs(a - b).max()) for a, b in zip(shared, independent))
    diff_pad = float(np.abs(shared[0][:n_pad] - padded).max())
    rows = []
    for label, cands, users, seconds in (("shared prefix", n_cand, n_users, t_shared),
                                         ("independent, dynamic padding", n_cand, n_users, t_ind),
                                         (f"independent, padded to {pad_to}", n_pad, 1, t_pad)):
        rows.append({"variant": label, "users": users, "candidates": cands, "seconds": round(seconds, 2),
                     "candidates_per_s": round(cands / seconds, 2)})
        log(f"  {label}: {cands} candidates in {seconds:.1f} s")
    speedup = rows[0]["candidates_per_s"] / rows[1]["candidates_per_s"]
    return {"benchmark": "scoring", "model": llm.model_id(model_name), "users_per_batch": users_per_batch,
            "prefix_tokens_mean": round(sum(len(p.prefix_ids) for p in user_prompts) / n_users, 1),
            "suffix_tokens_mean": round(sum(len(x) for p in user_prompts for x in p.suffix_ids) / n_cand, 1),
            "rows": rows, "speedup": round(speedup, 2),
            "speedup_vs_padded": round(rows[0]["candidates_per_s"] / rows[2]["candidates_per_s"], 1),
            "max_abs_diff_vs_independent": diff_ind, "max_abs_diff_vs_padded": diff_pad,
            "goal": ">= 5x vs independent (and |p difference| <= 1e-4)",
            "met": speedup >= 5.0 and max(diff_ind, diff_pad) <= 1e-4}


def bench_sft(model_name: str = llm.SMOLLM2, n_train: int = 16, steps: int = 6,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """LoRA SFT throughput on real prompts (no summary, so no LLM summaries are needed): our answer-position
    loss vs TRL's loss over the whole text, same examples, same number of steps.

    Peak memory is the process's peak so far (RSS on CPU): the answer-loss variant runs first, so its figure
    is its own; the whole-text figure is the larger of the two.
    """
    import tempfile

    rows = []
    for loss in ("answer", "whole"):
        with tempfile.TemporaryDirectory(prefix="trsr-bench-sft-") as tmp:
            cfg = resolve_config("demo", tmp, {
                "data.n_train": n_train, "data.n_valid": 1, "data.n_test": 0, "model.recommender": model_name,
                "sft.summary": "none", "sft.loss": loss, "sft.shared_prefix": False, "sft.max_steps": steps,
                "sft.save_steps": steps,
                "sft.batch_size": 2, "sft.grad_accum": 1, "sft.logging_steps": steps,
                "sft.validate_zero_shot": False})
            prepare.write(cfg, preparation.prepare(cfg))
            report = sft.train(cfg, log=lambda *_: None)
        rows.append({"variant": f"loss={loss}", "steps": report["steps_this_run"],
                     "tokens_per_example": round(report["tokens_per_example_mean"], 1),
                     "seconds": report["train_seconds"], "examples_per_s": report["examples_per_second"],
                     "tokens_per_s": report["tokens_per_second"], "peak_memory_mb": report["peak_memory_mb"]})
        log(f"  loss={loss}: {report['examples_per_second']} examples/s, peak {report['peak_memory_mb']} MiB")
    ratio = rows[0]["examples_per_s"] / rows[1]["examples_per_s"]
    return {"benchmark": "sft", "model": llm.model_id(model_name), "batch_size": 2, "rows": rows,
            "speedup": round(ratio, 2), "goal": "answer-position loss >= 1x TRL whole-text loss",
            "met": ratio >= 1.0}


def bench_precision(model_name: str = llm.SMOLLM2, n_users: int = 24, users_per_batch: int = 4,
                    log: Callable[[str], None] = print) -> dict[str, Any]:
    """Shared-prefix scoring in float32 vs bfloat16 (a cast copy, :func:`trsr_utils.method.scoring.for_scoring`): users/s,
    the largest p(yes) difference, and how many users' positive moved in the ranking or in or out of the top 10."""
    import numpy as np

    tokenizer = llm.load_tokenizer(model_name)
    model = llm.load_model(model_name, device="auto")
    user_prompts = scoring_prompts(tokenizer, n_users)
    answer = answer_tokens(tokenizer, user_prompts[0].suffixes[0])
    pad = tokenizer.pad_token_id or 0
    scores, rows = {}, []
    for dtype in ("float32", "bfloat16"):
        m = for_scoring(model, dtype)
        score_users(m, user_prompts[:1], answer, 1, pad)  # warm-up
        scores[dtype], seconds = _timed(lambda: score_users(m, user_prompts, answer, users_per_batch, pad))
        rows.append({"variant": dtype, "users": n_users, "seconds": round(seconds, 2),
                     "users_per_s": round(n_users / seconds, 3)})
        log(f"  {dtype}: {n_users} users in {seconds:.1f} s")
    full = np.array([metrics.positive_rank(s) for s in scores["float32"]])
    cheap = np.array([metrics.positive_rank(s) for s in scores["bfloat16"]])
    dp = max(float(np.abs(a - b).max()) for a, b in zip(scores["float32"], scores["bfloat16"]))
    # how close the candidates' p(yes) lie: what a perturbation of dp has to reorder
    gaps = [float(np.median(np.diff(np.sort(s)))) for s in scores["float32"]]
    speedup = rows[1]["users_per_s"] / rows[0]["users_per_s"]
    share_top10 = float(np.mean((full <= 10) != (cheap <= 10)))
    return {"benchmark": "precision", "model": llm.model_id(model_name), "rows": rows, "speedup": round(speedup, 2),
            "max_abs_p_difference": dp, "median_gap_between_candidates": float(np.median(gaps)),
            "share_rank_changed": float(np.mean(full != cheap)), "mean_abs_rank_change": float(np.abs(full - cheap).mean()),
            "share_top10_changed": share_top10,
            "goal": ">= 1.5x, and at most 1 user in 10 moving in or out of the top 10",
            "met": speedup >= 1.5 and share_top10 <= 0.1}


def bench_sft_shared(model_name: str = llm.SMOLLM2, n_train: int = 8, train_negatives: int = 4,
                     log: Callable[[str], None] = print) -> dict[str, Any]:
    """One epoch of LoRA SFT on the same users and candidates (no summary): one example per candidate vs one
    shared prefix per user (:mod:`trsr_utils.method.lora`, ``sft.shared_prefix``), each in float32 and under bf16
    autocast (``sft.mixed_precision``). Candidates/s of training."""
    import tempfile

    rows = []
    for shared, mixed in ((False, None), (True, None), (False, "bfloat16"), (True, "bfloat16")):
        with tempfile.TemporaryDirectory(prefix="trsr-bench-sft-") as tmp:
            per_step = 1 if shared else 1 + train_negatives  # one user's candidates per step either way
            cfg = resolve_config("demo", tmp, {
                "data.n_train": n_train, "data.n_valid": 1, "data.n_test": 0, "data.train_negatives": train_negatives,
                "model.recommender": model_name, "sft.summary": "none", "sft.shared_prefix": shared,
                "sft.mixed_precision": mixed, "sft.batch_size": per_step, "sft.grad_accum": 1, "sft.epochs": 1,
                "sft.logging_steps": 100, "sft.validate_zero_shot": False})
            prepare.write(cfg, preparation.prepare(cfg))
            report = sft.train(cfg, log=lambda *_: None)
        label = f"{'shared prefix' if shared else 'one per candidate'}, {mixed or 'float32'}"
        rows.append({"variant": label, "users": report["users"], "candidates": report["examples"],
                     "steps": report["steps_this_run"], "seconds": report["train_seconds"],
                     "candidates_per_s": report["examples_per_second"], "peak_memory_mb": report["peak_memory_mb"]})
        log(f"  {label}: {report['examples_per_second']} candidates/s")
    speedup = rows[3]["candidates_per_s"] / rows[0]["candidates_per_s"]
    return {"benchmark": "sft_shared", "model": llm.model_id(model_name), "train_negatives": train_negatives,
            "rows": rows, "speedup": round(speedup, 2),
            "speedup_shared_float32": round(rows[1]["candidates_per_s"] / rows[0]["candidates_per_s"], 2),
            "speedup_bf16_per_candidate": round(rows[2]["candidates_per_s"] / rows[0]["candidates_per_s"], 2),
            "goal": "shared prefix + bf16 >= 2x one example per candidate in float32", "met": speedup >= 2.0}


# The paper profiles whose data settings the loaders benchmark uses, and its goals on a 2-core machine.
LOADER_PROFILES = {"mind": "paper-mind", "amazon-m2": "paper-amazon"}
LOADER_GOALS = {"mind": {"seconds": 300, "peak_gib": 8}, "amazon-m2": {"seconds": 600, "peak_gib": 12}}

# Runs in a fresh interpreter so that its peak memory is the data stage's own (and nothing else is imported).
_LOADER_CHILD = """
import json, resource, sys, tempfile, time
from trsr_utils.core.config import resolve_config
from trsr_utils.data import preparation
profile, folder, sizes, seed = json.loads(sys.argv[1])
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
with tempfile.TemporaryDirectory(prefix="trsr-bench-loaders-") as tmp:
    cfg = resolve_config(profile, tmp, {"data.source_dir": folder, "seed": seed,
                                        **{f"data.n_{k}": v for k, v in sizes.items()}})
    t0, c0 = time.perf_counter(), cpu()
    raw = preparation.load_raw(cfg)
    t1, c1 = time.perf_counter(), cpu()
    prepared = preparation.prepare(cfg, raw)
    t2, c2 = time.perf_counter(), cpu()
meta = prepared.meta
print(json.dumps({"load_s": t1 - t0, "load_cpu_s": c1 - c0, "prepare_s": t2 - t1, "prepare_cpu_s": c2 - c1,
                  "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "catalog": meta["catalog_size"], "users": meta["users_loaded"], "filter": meta["filter"],
                  "samples": prepared.samples["split"].value_counts().to_dict(),
                  "items": len(prepared.items), "skipped_rows": meta["bad_input"]["skipped"],
                  "negatives_topped_up": meta["sampling"]["negatives_topped_up"]}))
"""


def bench_loaders(model_name: str | None = None, scale: float = 1.0, data_dir: str | Path = "runs/bench/synth",
                  datasets: tuple[str, ...] = ("mind", "amazon-m2"), seed: int = 0,
                  log: Callable[[str], None] = print) -> dict[str, Any]:
    """The data stage at the real datasets' size: load + filter + split + negatives, as :func:`preparation.prepare`
    does for the paper profiles, on synthetic files of MIND-large's and Amazon-M2's size (``scale`` 1).

    Each dataset runs in its own child process (wall time, CPU time, peak RSS). The split sizes are the
    paper's (10000/1000/1000) times ``scale``; the files are generated once and cached in ``data_dir``
    (generation time is reported apart). ``model_name`` is unused (every benchmark gets it).
    """
    import subprocess
    import sys
    import tempfile

    rows, cases = [], {}
    for dataset in datasets:
        folder, generated = synthetic_data(dataset, scale, data_dir, seed, log)
        paper = resolve_config(LOADER_PROFILES[dataset], tempfile.gettempdir()).data
        sizes = {k: max(1, round(getattr(paper, f"n_{k}") * scale)) for k in ("train", "valid", "test")}
        args = json.dumps([LOADER_PROFILES[dataset], str(folder.resolve()), sizes, seed])
        done = subprocess.run([sys.executable, "-c", _LOADER_CHILD, args], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"loaders benchmark ({dataset}) failed:\n{done.stderr[-3000:]}")
        case = json.loads(done.stdout.strip().splitlines()[-1])
        goal = LOADER_GOALS[dataset]
        seconds, peak_gib = case["load_s"] + case["prepare_s"], case["peak_rss_kb"] / 2**20
        case.update(generated=generated, sizes=sizes,
                    met=(seconds <= goal["seconds"] and peak_gib <= goal["peak_gib"]) if scale == 1 else None)
        cases[dataset] = case
        rows.append({"dataset": dataset, "rows_read": generated.get("impressions", generated.get("sessions")),
                     "MB_read": round(sum(generated["bytes"].values()) / 1e6), "catalogue": case["catalog"],
                     "users": case["users"], "kept": case["filter"]["kept"],
                     "load_s": round(case["load_s"], 1), "prepare_s": round(case["prepare_s"], 1),
                     "total_s": round(seconds, 1), "cpu_s": round(case["load_cpu_s"] + case["prepare_cpu_s"], 1),
                     "peak_GiB": round(peak_gib, 2), "generate_s": generated["seconds"],
                     "generate_cpu_s": generated.get("cpu_seconds"),
                     "generated": "cached" if generated["cached"] else "now"})
        log(f"  {dataset}: {seconds:.1f} s, peak {peak_gib:.2f} GiB")
    met = None if scale != 1 else all(c["met"] for c in cases.values())
    goal = "; ".join(f"{d} <= {g['seconds'] // 60} min and {g['peak_gib']} GiB" for d, g in LOADER_GOALS.items()
                     if d in datasets)
    return {"benchmark": "loaders", "scale": scale, "seed": seed, "rows": rows, "cases": cases,
            "goal": goal + ("" if scale == 1 else " (checked at scale 1 only)"), "met": met}


def bench_listwise(model_name: str = llm.SMOLLM2, n_users: int = 16, users_per_batch: int = 4,
                   log: Callable[[str], None] = print) -> dict[str, Any]:
    """Candidates/s of listwise scoring (one prompt per user, the letter logits at its answer position) vs
    pointwise shared-prefix scoring (:func:`trsr_utils.method.scoring.score_users`), on the same users' summaries,
    recent items and 21 candidates, in float32 and bfloat16 (:func:`trsr_utils.method.listwise.compare_speed`)."""
    tokenizer = llm.load_tokenizer(model_name)
    model = llm.load_model(model_name, device="auto")
    users = bench_users(tokenizer, n_users)
    point = [RecommendationPrompter(tokenizer, "movies", 2048).build(*parts) for parts in users]
    lists = [ListwisePrompter(tokenizer, "movies", 2048).build_list(*parts) for parts in users]
    answer, letters = answer_tokens(tokenizer, point[0].suffixes[0]), listwise.letters_for(tokenizer, lists)
    n_cand = sum(len(p.suffix_ids) for p in point)
    names = {"pointwise": "pointwise (shared prefix)", "listwise": "listwise (letters)"}
    rows = []
    for dtype in ("float32", "bfloat16"):
        measured = listwise.compare_speed(for_scoring(model, dtype), point, lists, answer, letters, users_per_batch,
                                          tokenizer.pad_token_id or 0)
        for k, m in measured.items():
            rows.append({"variant": f"{names[k]}, {dtype}", "users": n_users, "candidates": n_cand,
                         "seconds": round(m["seconds"], 2), "candidates_per_s": round(n_cand / m["seconds"], 1),
                         "tokens_per_user": round(m["tokens_per_user"], 1)})
            log(f"  {names[k]}, {dtype}: {n_cand} candidates in {m['seconds']:.1f} s")
    speedup = rows[1]["candidates_per_s"] / rows[0]["candidates_per_s"]
    return {"benchmark": "listwise", "model": llm.model_id(model_name), "users_per_batch": users_per_batch,
            "rows": rows, "speedup": round(speedup, 2),
            "speedup_bfloat16": round(rows[3]["candidates_per_s"] / rows[2]["candidates_per_s"], 2),
            "goal": "measured, no target (both read each candidate's tokens once: about the same tokens per user)",
            "met": None}


BENCHMARKS: dict[str, Callable[..., dict[str, Any]]] = {"summarize": bench_summarize, "scoring": bench_scoring,
                                                        "sft": bench_sft, "precision": bench_precision,
                                                        "sft_shared": bench_sft_shared, "listwise": bench_listwise,
                                                        "loaders": bench_loaders}


def table(result: dict[str, Any]) -> str:
    import pandas as pd

    model = f" ({result['model']})" if result.get("model") else ""
    speed = f"speed-up {result['speedup']}x " if "speedup" in result else ""
    verdict = "not checked" if result["met"] is None else ("met" if result["met"] else "NOT met")
    head = f"== {result['benchmark']}{model}: {speed}(goal {result['goal']}: {verdict})"
    return head + "\n" + pd.DataFrame(result["rows"]).to_string(index=False)


def public_model(model: str | None) -> str | None:
    """A benchmark's model as the published results name it: a local model folder by its basename (``/home/me/
    models/foo@<digest>|float32|none`` -> ``foo@<digest>|float32|none``), never by an absolute path."""
    if not model:
        return model
    name, sep, rest = model.partition("@")
    if name.startswith(("/", "~")) or (len(name) > 2 and name[1] == ":" and name[2] in "\\/"):
        name = Path(name.replace("\\", "/")).name
    return name + sep + rest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trsr_utils bench", description=__doc__.split("\n")[0])
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS), help="run only these benchmarks")
    parser.add_argument("--model", default=llm.SMOLLM2, help="model name (default: the embedded SmolLM2)")
    parser.add_argument("--out", default="runs/bench", help="folder for the JSON results")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="loaders: size of the synthetic data as a fraction of MIND-large / Amazon-M2 (and of "
                             "the paper's split sizes)")
    parser.add_argument("--data-dir", default=None,
                        help="loaders: where the generated files are cached (default: <out>/synth)")
    args = parser.parse_args(argv)

    # Only the loaders benchmark takes these; the others are called with the model alone.
    extra = {"loaders": {"scale": args.scale, "data_dir": args.data_dir or str(Path(args.out) / "synth")}}
    path = Path(args.out) / "bench.json"
    # Results of benchmarks not run this time are kept (each with its own machine and time).
    results = io.read_json(path) if path.exists() else {}
    results.setdefault("benchmarks", {})
    for name in args.only or list(BENCHMARKS):
        print(f"running {name} ...", flush=True)
        result = BENCHMARKS[name](model_name=args.model, **extra.get(name, {}))
        # Each entry its own commit, machine and time: entries from earlier invocations are kept.
        result.update({"machine": machine(), "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "git": io.git_state()})
        if result.get("model"):
            result["model"] = public_model(result["model"])
        results["benchmarks"][name] = result
        print(table(result), flush=True)
    results["machine"] = machine()
    out = io.write_json(path, results)
    print(f"\nmachine: {json.dumps(results['machine'])}\nwritten: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
