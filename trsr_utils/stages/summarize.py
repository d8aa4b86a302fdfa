"""Stages 03 and 04, notebooks 03_hierarchical_summary and 04_recurrent_summary: every user's summary by one
method, with its steps and report, in the run directory. The summarizer itself (prompts, checks, both
algorithms) is :mod:`trsr_utils.method.summarizer`; this module runs it over a run's blocks through the LLM call
cache and stores what it made."""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Mapping

from trsr_utils.core import distributed, io
from trsr_utils.core.config import Config
from trsr_utils.method import audit, llm, prompts, text
from trsr_utils.method import summarizer
from trsr_utils.method.summarizer import (FORMAT_VERSION, TemplateSummarizer, degeneracy_report, final_summaries,
                                          hierarchical, recurrent)
from trsr_utils.method.generation import LLMCaller, generation_params
from trsr_utils.stages import chunking, prepare
from trsr_utils.store import stages
from trsr_utils.store.callcache import open_cache


HIERARCHICAL = stages.register(stages.Stage(
    "03_hierarchical", "03_hierarchical_summary", (prepare.STAGE, chunking.STAGE),
    ("summary", "prompt.domain", "model.device"), exclude=("summary.batch_size",),
    models=("model.summarizer",), code=prompts.code_parts("block", "merge"),
    version=6))  # 2: summary checks; 3: unquoted invented names flagged; 4: BOS where the tokenizer adds one;
# 5: a closing quote after a sentence's end kept (was flagged unclosed); each step keeps its first attempt;
# 6: a sentence trailing off in "..." or split at an initialism ("G.I.J.J. and") is unfinished
RECURRENT = stages.register(stages.Stage(
    "04_recurrent", "04_recurrent_summary", (prepare.STAGE, chunking.STAGE),
    ("summary", "prompt.domain", "model.device"), exclude=("summary.batch_size", "summary.merge_fan_in"),
    models=("model.summarizer",), code=prompts.code_parts("block", "update"),
    version=6))  # 5, 6: as 03's
# The stage whose result a summary method's texts come from: the template is made from notebook 02's blocks, the
# oracle (notebook 08's positive control) from notebook 01's held-out positives.
SUMMARY_STAGE = {"hierarchical": HIERARCHICAL.name, "recurrent": RECURRENT.name, "template": chunking.STAGE.name,
                 "oracle": prepare.STAGE.name}


def summarize(cfg: Any, method: str, blocks: Any, catalog: Mapping[str, Mapping[str, str]],
              model: Any = None, tokenizer: Any = None, log: Callable[[str], None] = print,
              cache_from: Any = None) -> dict[str, Any]:
    """Run one method for every user in ``blocks`` and write its stage folder; returns the run's report.

    Loads the profile's summarizer at its first uncached call unless a model (or an :class:`llm.Lazy` one) is
    given. Re-running is cheap: finished calls come from the run directory's cache, and the model never loads.
    """
    _stage(method)  # an unknown method fails before the model loads
    name = cfg.model.summarizer
    if tokenizer is None:
        tokenizer = llm.load_tokenizer(name)
    dtype, quantization = cfg.model.precision("summarizer")
    if model is None:  # loaded at the first call the cache does not hold (none, when every call is cached)
        model = llm.lazy_model(name, dtype, quantization, cfg.model.device)
    domain = text.domain_of(cfg)
    template = TemplateSummarizer(catalog, domain)
    cache = open_cache(cache_from or cfg)  # cache_from: the run whose call cache to share (08's cells)
    model_id = llm.model_id(name, dtype, quantization)  # the cache key: weights and the precision they ran in
    # The command line that would share these calls over GPUs: 08's cells (cache_from, the run's config) have theirs.
    owner, module = (cache_from, "ablation") if cache_from is not None else (cfg, "summarize")
    caller = LLMCaller(model, tokenizer, model_id, cache, cfg.summary.batch_size, cfg.seed,
                       command=f"torchrun --nproc_per_node {{n}} -m trsr_utils {module} --profile {owner.profile} "
                               f"--run-dir {owner.run_dir}")
    began = time.perf_counter()
    try:
        run = hierarchical if method == "hierarchical" else recurrent
        steps = run(blocks, caller, cfg, template, domain)
    finally:
        cache.close()
    seconds = time.perf_counter() - began
    summaries = final_summaries(steps, blocks)
    report = {
        "method": method, "model": model_id, "users": int(len(summaries)),
        "params": generation_params(cfg), "retry_params": generation_params(cfg, retry=True),
        "merge_fan_in": cfg.summary.merge_fan_in if method == "hierarchical" else None,
        "cache_hits": caller.stats.hits, "cache_misses": caller.stats.misses,
        "generated_tokens": caller.stats.generated_tokens, "generation_seconds": round(caller.stats.seconds, 2),
        "tokens_per_second": round(caller.stats.generated_tokens / caller.stats.seconds, 2)
        if caller.stats.seconds else None,
        "wall_seconds": round(seconds, 2), "degeneracy": degeneracy_report(steps),
    }
    if distributed.is_main():
        write(cfg, method, summaries, steps, report)
    distributed.barrier()
    log(f"{method}: {len(summaries)} users, {len(steps)} summaries, {caller.stats.misses} new calls, "
        f"{caller.stats.hits} from cache, {seconds:.1f} s")
    return report


def _stage(method: str) -> str:
    if method not in SUMMARY_STAGE:
        raise ValueError(f"unknown summary method {method!r}; known: {sorted(SUMMARY_STAGE)}")
    return SUMMARY_STAGE[method]


def write(cfg: Any, method: str, summaries: Any, steps: Any, report: Mapping[str, Any]) -> None:
    stage = _stage(method)
    out = stages.result_dir(cfg, stage, create=True)
    io.write_parquet(out / "steps.parquet", steps)
    io.write_parquet(out / "summaries.parquet", summaries)
    io.write_json(out / "meta.json", {"format_version": FORMAT_VERSION, **report})
    stages.finish(cfg, stage, report.get("wall_seconds"))


def read_steps(cfg: Any, method: str) -> Any:
    steps = io.read_parquet(stages.require(cfg, _stage(method)) / "steps.parquet")
    steps["item_ids"] = steps["item_ids"].map(list)
    return steps


def read_summaries(cfg: Any, method: str) -> Any:
    """One row per user (user_id, split, summary, flag, cost columns) as written by notebook 03 or 04."""
    return io.read_parquet(stages.require(cfg, _stage(method)) / "summaries.parquet")


def read_report(cfg: Any, method: str) -> dict[str, Any]:
    return io.read_json(stages.require(cfg, _stage(method)) / "meta.json")


# ----------------------------------------------------------------- command line
def arguments(parser: Any) -> None:
    parser.add_argument("--method", choices=["hierarchical", "recurrent", "both"], default="both")


def command(cfg: Config, args: Any) -> int:
    """Notebooks 03 and 04 from the command line, on one process or several (torchrun / accelerate launch: the
    summarizer's batches are shared out, rank 0 writes; see :mod:`trsr_utils.core.distributed`). The notebooks then
    find every call in the cache."""
    blocks, prepared = chunking.read_blocks(cfg), prepare.read(cfg)  # notebooks 01 and 02 first
    name = cfg.model.summarizer
    tokenizer = llm.load_tokenizer(name)
    model = llm.lazy_model(name, *cfg.model.precision("summarizer"), cfg.model.device)
    quiet = not distributed.is_main()
    for method in (["hierarchical", "recurrent"] if args.method == "both" else [args.method]):
        report = summarize(cfg, method, blocks, prepared.catalog, model, tokenizer,
                           log=(lambda _: None) if quiet else print)
        if not quiet:
            print(json.dumps({k: report[k] for k in ("method", "users", "cache_hits", "cache_misses",
                                                     "wall_seconds")}))
    return 0


def summaries_for(cfg: Any, method: str, control: str = "") -> dict[str, str] | None:
    """user -> summary text of ``method`` under ``cfg``, or None for "none": hierarchical | recurrent (notebooks
    03/04), template (the no-LLM summary of notebook 05, from the blocks of notebook 02) or oracle (notebook 08's
    leaking positive control: only under the control's own settings, ``sft.summary: oracle``, or when the caller
    names it, ``control=audit.ORACLE``)."""
    if method == "none":
        return None

    if method == "template":
        template = summarizer.TemplateSummarizer(prepare.read(cfg).catalog, text.domain_of(cfg))
        frame = summarizer.template_summaries(chunking.read_blocks(cfg), template)
    elif method == "oracle":
        prepared = prepare.read(cfg)
        return audit.oracle_summaries(prepared.samples, prepared.catalog, text.domain_of(cfg),
                                      control=audit.ORACLE if cfg.sft.summary == "oracle" else control)
    else:
        frame = read_summaries(cfg, method)
    return dict(zip(frame["user_id"], frame["summary"]))
