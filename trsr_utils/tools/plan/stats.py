"""The data a plan prices: users, history and block lengths, summary lengths and prompt sizes, measured in a
run directory where its stages ran, estimated from the settings and the datasets' statistics otherwise.

Notebook 10 teaches it.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trsr_utils.core import io
from trsr_utils.method import llm, prompts, text
from trsr_utils import stages
from trsr_utils.store.callcache import CACHE_FILE
from trsr_utils.core.config import Config
from trsr_utils.tools.plan import spec


# Mean history items and tokens per item line where no run directory has measured them. MIND and Amazon-M2:
# the paper's Table 1 (Llama tokenizer). MovieLens-100K: the demo's 68 users measured here (notebooks 01-02,
# 2026-12-02; SmolLM2 tokenizer, a line's "- " marker included; 19-24-item histories under the 10-25 rule).
DATASET_STATS: dict[str, dict[str, Any]] = {
    "mind": {"history": 16.23, "tokens_per_item": 40.83, "source": "paper Table 1"},
    "amazon-m2": {"history": 13.16, "tokens_per_item": 141.45, "source": "paper Table 1"},
    "movielens-100k": {"history": 20.99, "tokens_per_item": 22.9, "source": "the demo's users, notebooks 01-02"},
}


@dataclass
class Stats:
    """What the token counts are computed from, each with where it comes from."""

    users: dict[str, int]  # per split
    history: float  # mean items in a history
    tokens_per_item: float  # tokens of one item line (without its "- " marker)
    blocks: float  # mean blocks per user
    block_tokens: float  # mean tokens of a block's item lines
    block_tokens_max: float  # the longest block (what a batch's key/value cache is sized for)
    summary_tokens: float  # tokens of one generated summary (what merges, updates and prompts carry)
    new_tokens: float  # decoding steps of one summarizer batch (its longest answer)
    retry_rate: float  # share of summarizer calls retried
    sources: dict[str, str] = field(default_factory=dict)


def _stage_dir(cfg: Config, name: str) -> Path | None:
    """The complete result folder of stage ``name`` under ``cfg``, or None."""
    try:
        return stages.result_dir(cfg, name) if stages.is_complete(cfg, name) else None
    except (OSError, ValueError, KeyError):
        return None


def measured_training_tokens(cfg: Config) -> float | None:
    """Notebook 06's measured tokens per training candidate (its ``report.json``: every example's prompt and answer
    tokens over the candidates, a shared prefix counted once per user), where 06 ran under ``cfg``; else None."""
    folder = _stage_dir(cfg, "06_sft")
    return float(io.read_json(folder / "report.json")["tokens_per_example_mean"]) if folder is not None else None


def data_stats(cfg: Config) -> Stats:
    """Users, history lengths, block sizes and summary lengths: measured in the run directory where its
    stages are complete, estimated from the settings and :data:`DATASET_STATS` otherwise."""
    import pandas as pd

    d, c, s = cfg.data, cfg.chunking, cfg.summary
    base = DATASET_STATS[d.dataset]
    sources: dict[str, str] = {}
    users = {"train": d.n_train, "valid": d.n_valid, "test": d.n_test}
    history = float(base["history"])
    if d.long_history == "keep_recent" and d.max_interactions - 1 < history:
        history = float(d.max_interactions - 1)  # longer histories are cut to their most recent items
    sources["history"] = f"estimate ({base['source']})"
    tpi = float(base["tokens_per_item"])
    sources["tokens_per_item"] = f"estimate ({base['source']})"
    sources["users"] = "profile (data.n_train/n_valid/n_test)"
    covered = min(history, c.items_per_block * c.max_blocks)
    # A history of h items makes ceil(h / k) blocks: h/k plus, on average, half a block for the remainder.
    blocks = min(float(c.max_blocks), covered / c.items_per_block + 0.5 * (1 - 1 / c.items_per_block))
    block_tokens = covered / blocks * tpi if blocks else 0.0
    # without measurements the longest block is taken as twice the mean, within the block budget (an assumption)
    block_max = min(float(c.block_token_budget), 2 * block_tokens)
    sources["block_tokens_max"] = "estimate (twice the mean block, within chunking.block_token_budget)"
    sources["blocks"] = sources["block_tokens"] = "estimate (history / items_per_block)"
    # Without measurements: every answer runs to its budget (an upper bound; the sentence stop ends most earlier).
    summary_tokens, new_tokens, retry = float(s.max_new_tokens), float(s.max_new_tokens), 0.0
    sources["summary_tokens"] = "estimate (summary.max_new_tokens, an upper bound)"
    sources["retry_rate"] = "estimate (no retries assumed)"
    folder = _stage_dir(cfg, "01_data")
    if folder is not None:
        samples = pd.read_parquet(folder / "samples.parquet", columns=["split", "history"])
        users = {k: int(v) for k, v in samples["split"].value_counts().items()}
        history = float(samples["history"].map(len).mean())
        sources["users"] = sources["history"] = f"measured ({folder.parent.name}/{folder.name})"
    folder = _stage_dir(cfg, "02_text")
    if folder is not None:
        b = pd.read_parquet(folder / "blocks.parquet", columns=["user_id", "n_items", "n_tokens"])
        blocks = float(b.groupby("user_id").size().mean())
        # n_tokens is the rendered block ("- " marker per line): per item, that marker counts with the item
        block_tokens = float(b["n_tokens"].mean())
        block_max = float(b["n_tokens"].max())
        tpi = float(b["n_tokens"].sum() / b["n_items"].sum())
        sources["blocks"] = sources["block_tokens"] = sources["block_tokens_max"] = sources["tokens_per_item"] = (
            f"measured ({folder.parent.name}/{folder.name})")
    folder = _stage_dir(cfg, "03_hierarchical")
    if folder is not None:
        steps = pd.read_parquet(folder / "steps.parquet", columns=["calls", "new_tokens"])
        per_call = steps["new_tokens"].sum() / steps["calls"].sum()
        summary_tokens = float(per_call) + 2  # + the opening "This user" the prompt already wrote
        retry = float((steps["calls"] - 1).sum() / len(steps))
        sources["summary_tokens"] = sources["retry_rate"] = f"measured ({folder.parent.name}/{folder.name})"
        batches = summarizer_batches(cfg)
        if batches:
            new_tokens = sum(b["steps"] for b in batches) / len(batches)
            sources["new_tokens"] = "measured (cache/llm_calls.sqlite: the longest answer of each batch)"
    sources.setdefault("new_tokens", "estimate (summary.max_new_tokens: a batch runs until its longest answer)")
    return Stats(users, history, tpi, blocks, block_tokens, block_max, summary_tokens, new_tokens, retry, sources)


def summarizer_batches(cfg: Config, between: tuple[float, float] | None = None) -> list[dict[str, Any]]:
    """The batches the run's summarizer ran, read back from the LLM call cache (the rows of one batch are
    committed together, so they share their ``created`` time): rows, the widest (padded) prompt, the longest
    answer (the batch's decoding steps), tokens and seconds. ``between``: only batches created in that window."""
    path = Path(cfg.run_dir) / CACHE_FILE
    if not path.exists():
        return []
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT created, prompt_tokens, new_tokens, seconds FROM calls ORDER BY created").fetchall()
    out: dict[float, dict[str, Any]] = {}
    for created, p, n, sec in rows:
        if between and not between[0] <= created <= between[1]:
            continue
        b = out.setdefault(created, {"created": created, "rows": 0, "width": 0, "steps": 0, "prompt_tokens": 0,
                                     "new_tokens": 0, "seconds": 0.0})
        b["rows"] += 1
        b["width"] = max(b["width"], p)
        b["steps"] = max(b["steps"], n)
        b["prompt_tokens"] += p
        b["new_tokens"] += n
        b["seconds"] += sec
    return list(out.values())


# ----------------------------------------------------------------------------- prompt sizes
_OVERHEAD: dict[tuple[str, str, int, int], dict[str, float]] = {}


_TOKENIZERS: dict[str, tuple[Any, str]] = {}


def plan_tokenizer(name: str) -> tuple[Any, str]:
    """The tokenizer to count prompt tokens with: ``name``'s own where it loads offline, else SmolLM2's as a
    stand-in (said in the sources). Loaded once per process."""
    if name not in _TOKENIZERS:
        _TOKENIZERS[name] = _load_plan_tokenizer(name)
    return _TOKENIZERS[name]


def _load_plan_tokenizer(name: str) -> tuple[Any, str]:
    local = name in llm.OFFLINE or Path(name).expanduser().is_dir() or spec.cached_hub_file(
        name, "tokenizer_config.json")
    if local:
        try:
            return llm.load_tokenizer(name), name
        except (llm.ModelNotAvailable, OSError, ValueError):
            pass
    return llm.load_tokenizer(llm.SMOLLM2), f"{llm.SMOLLM2} (stand-in for {name})"


def prompt_overheads(cfg: Config) -> dict[str, float]:
    """Tokens of each prompt without its data (the chat template, instruction and line markers), measured by
    rendering the package's own prompts with empty items and summaries: ``block`` (one block of
    ``items_per_block`` lines), ``merge_each`` and ``merge_fixed`` (k summaries: fixed + k x each), ``update``,
    ``prefix`` (recommendation prompt before the candidate, with a summary and the recent items) and
    ``prefix_no_summary``, ``suffix`` (one candidate's tail, answer included)."""
    domain = text.domain_of(cfg)
    key = (cfg.model.summarizer, cfg.model.recommender, cfg.chunking.items_per_block, cfg.prompt.recent_items,
           domain)
    if key in _OVERHEAD:
        return _OVERHEAD[key]
    out: dict[str, float] = {}
    for role, name in (("summarizer", cfg.model.summarizer), ("recommender", cfg.model.recommender)):
        tok, used = plan_tokenizer(name)
        out[f"tokenizer_{role}"] = used  # type: ignore[assignment]

        def n(text_: str, tok: Any = tok) -> int:
            encode = getattr(llm, "encode_prompt", None)
            return len(encode(tok, text_)) if encode else len(tok.encode(text_, add_special_tokens=False))

        if role == "summarizer":
            k = cfg.chunking.items_per_block
            out["block"] = n(prompts.generation_prompt(tok, prompts.block_summary_messages([""] * k, domain)))
            two = n(prompts.generation_prompt(tok, prompts.merge_messages(["", ""], domain)))
            three = n(prompts.generation_prompt(tok, prompts.merge_messages(["", "", ""], domain)))
            out["merge_each"], out["merge_fixed"] = three - two, two - 2 * (three - two)
            out["update"] = n(prompts.generation_prompt(tok, prompts.recurrent_messages("", [""] * k, domain)))
        else:
            recent = [""] * cfg.prompt.recent_items
            for label, summary in (("prefix", ""), ("prefix_no_summary", None)):
                rendered = prompts.render(tok, prompts.recommendation_messages(summary, recent, domain))
                head, _, tail = rendered.partition(prompts.CANDIDATE_SLOT)
                out[label] = n(head)
            out["suffix"] = len(tok.encode(" " + tail, add_special_tokens=False)) + 1  # + the answer token
    _OVERHEAD[key] = out
    return out


