"""Benchmarks that keep the speed claims honest (``make bench``).

    python -m trsr_utils.bench [--only summarize] [--model smollm2-135m-instruct] [--out runs/bench]

Each benchmark measures the compared variants in one process, one after the
other, on the same inputs, so their *ratio* holds even on a noisy shared
machine; it prints a table and writes JSON next to it. Speed is never checked
by a timed test assertion.

* summarize: batched, left-padded generation vs one prompt at a time, on real
  block-summary prompts (MovieLens-100K, the embedded default model).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any, Callable

from . import io, llm, prompts


def machine() -> dict[str, Any]:
    import os

    import torch

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def block_prompts(tokenizer: Any, n: int, items_per_block: int = 5, seed: int = 0) -> list[str]:
    """``n`` real block-summary prompts: consecutive MovieLens-100K ratings of random users."""
    from .config import resolve_config
    from .data import prepare
    from .text import ItemTexter

    cfg = resolve_config("demo", "/tmp/trsr-bench-unused", {"data.n_train": n, "data.n_valid": 0, "data.n_test": 0,
                                                             "seed": seed})
    prepared = prepare.prepare(cfg)
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


BENCHMARKS: dict[str, Callable[..., dict[str, Any]]] = {"summarize": bench_summarize}


def table(result: dict[str, Any]) -> str:
    import pandas as pd

    head = f"== {result['benchmark']} ({result.get('model', '')}): speed-up {result['speedup']}x " \
           f"(goal {result['goal']}: {'met' if result['met'] else 'NOT met'})"
    return head + "\n" + pd.DataFrame(result["rows"]).to_string(index=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trsr_utils.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS), help="run only these benchmarks")
    parser.add_argument("--model", default=llm.SMOLLM2, help="model name (default: the embedded SmolLM2)")
    parser.add_argument("--out", default="runs/bench", help="folder for the JSON results")
    args = parser.parse_args(argv)
    results = {"machine": machine(), "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "benchmarks": {}}
    for name in args.only or list(BENCHMARKS):
        print(f"running {name} ...", flush=True)
        result = BENCHMARKS[name](model_name=args.model)
        results["benchmarks"][name] = result
        print(table(result), flush=True)
    out = io.write_json(Path(args.out) / "bench.json", results)
    print(f"\nmachine: {json.dumps(results['machine'])}\nwritten: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
