"""Every piece of LLM work notebooks 03-09 do under a configuration, as :class:`Work` items (rows, tokens,
batches), estimated from the statistics or read back from a run's call cache."""

from __future__ import annotations

import math
from dataclasses import dataclass

from trsr_utils.stages import grid
from trsr_utils.stages import protocols
from trsr_utils import stages
from trsr_utils.core.config import Config, with_overrides
from trsr_utils.core.schema import LLM_ROWS
from trsr_utils.tools.plan.devices import LOAD_GBS
from trsr_utils.tools.plan.stats import Stats, _stage_dir, data_stats, prompt_overheads, summarizer_batches


@dataclass
class Work:
    """One homogeneous piece of LLM work of a stage."""

    stage: str  # "03".."08"
    label: str
    role: str  # summarizer | recommender
    kind: str  # generate | score | train | load
    sequences: float  # prompts (generate), users (score), training rows (train), model loads (load)
    prompt_tokens: float  # per sequence as run (a batch's padding included); score/shared train: the prefix
    new_tokens: float = 0.0  # generate: decoding steps of each batch
    batch: float = 1.0  # sequences run together (generate: prompts; score: users)
    suffixes: float = 0.0  # score/shared-prefix train: candidates per user
    suffix_tokens: float = 0.0
    passes: float = 1.0  # train: epochs
    longest: float = 0.0  # the longest sequence (memory)
    # How the work divides over GPUs: "batches" (its batches dealt to the processes in turn), "ddp" (training
    # with the global batch split), "one" (one process: validations on rank 0).
    parallel: str = "batches"
    model: str = ""  # another model than the role's (08's summarizer cells)
    source: str = "estimate"
    note: str = ""
    mean_new_tokens: float = 0.0  # generate: the mean answer's tokens (a serving engine's steps); 0: new_tokens


def _source(st: Stats, *keys: str) -> str:
    """Where a work item's token counts come from: the run's measured statistics, some of them, or estimates."""
    measured = [st.sources.get(k, "").startswith("measured") for k in keys]
    return ("measured statistics" if all(measured) else "partly measured statistics" if any(measured)
            else "estimated statistics")


def _merge_calls(parts: int, fan_in: int) -> int:
    """Merge calls of the hierarchical method for ``parts`` block summaries (level by level, a group of one
    is carried up without a call)."""
    calls = 0
    while parts > 1:
        groups = [min(fan_in, parts - i) for i in range(0, parts, fan_in)]
        calls += sum(g > 1 for g in groups)
        parts = len(groups)
    return calls


def _interp(x: float, f) -> float:
    """f at a fractional x, linear between floor and ceil (block counts are means)."""
    lo = math.floor(x)
    return f(lo) + (x - lo) * (f(lo + 1) - f(lo)) if x > lo else f(lo)


def _summary_work(cfg: Config, st: Stats, ov: dict[str, float], stage: str, users: float, method: str,
                  blocks: float, block_tokens: float, model: str = "", label: str = "",
                  block_max: float | None = None) -> list[Work]:
    """The summarizer calls of one method for ``users`` users (estimated from the statistics)."""
    s = cfg.summary
    src = _source(st, "blocks", "block_tokens", "summary_tokens", "new_tokens")
    retry = 1 + st.retry_rate * s.retry_token_factor  # retried calls, with 1.5x the answer budget
    block_prompt = ov["block"] + block_tokens
    if block_max is None:  # the longest block: twice the mean within the budget, unless measured
        block_max = min(float(cfg.chunking.block_token_budget), 2 * block_tokens)
    longest = block_max + ov["block"] + s.max_new_tokens
    out = []
    if method == "hierarchical":
        out.append(Work(stage, f"{label}block summaries", "summarizer", "generate", users * blocks * retry,
                        block_prompt, st.new_tokens, s.batch_size, longest=longest, model=model, source=src,
                        mean_new_tokens=min(st.summary_tokens, st.new_tokens)))
        merges = _interp(blocks, lambda b: _merge_calls(int(b), s.merge_fan_in))
        k = min(blocks, s.merge_fan_in)
        merge_prompt = ov["merge_fixed"] + k * (ov["merge_each"] + st.summary_tokens)
        if merges:
            out.append(Work(stage, f"{label}merges", "summarizer", "generate", users * merges * retry, merge_prompt,
                            st.new_tokens, s.batch_size, longest=merge_prompt + s.max_new_tokens, model=model,
                            source=src, mean_new_tokens=min(st.summary_tokens, st.new_tokens)))
    else:
        # step 0 is the hierarchical block 0 prompt: a cache hit when notebook 03 ran first
        update_prompt = ov["update"] + st.summary_tokens + block_tokens
        out.append(Work(stage, f"{label}updates (steps 1..)", "summarizer", "generate",
                        users * max(0.0, blocks - 1) * retry, update_prompt, st.new_tokens, s.batch_size,
                        longest=update_prompt - block_tokens + block_max + s.max_new_tokens, model=model, source=src,
                        note="step 0 = notebook 03's block 0 (cache hit)",
                        mean_new_tokens=min(st.summary_tokens, st.new_tokens)))
    return out


def _prompt_tokens(cfg: Config, st: Stats, ov: dict[str, float], summary: bool, recent: int | None = None
                   ) -> tuple[float, float]:
    """(prefix, candidate suffix) tokens of one recommendation prompt."""
    k = cfg.prompt.recent_items if recent is None else recent
    base = ov["prefix"] if summary else ov["prefix_no_summary"]
    # the overhead was measured with the profile's k recent items; each item adds its line
    prefix = base + (k - cfg.prompt.recent_items) * 2 + k * st.tokens_per_item
    if summary:
        prefix += min(st.summary_tokens, cfg.prompt.summary_max_tokens)
    return min(prefix, cfg.prompt.max_length), ov["suffix"] + st.tokens_per_item


def _sft_work(cfg: Config, st: Stats, ov: dict[str, float], stage: str, method: str, label: str,
              validations: bool = True, zero_shot: bool = True) -> list[Work]:
    """One adapter's training (and the validations that select its checkpoint)."""
    t, d = cfg.sft, cfg.data
    prefix, suffix = _prompt_tokens(cfg, st, ov, method != "none")
    candidates = 1 + d.train_negatives
    rows_per_step = t.batch_size * t.grad_accum
    rows = d.n_train if t.shared_prefix else d.n_train * candidates
    steps_per_epoch = math.ceil(rows / rows_per_step) if rows else 0
    steps = t.max_steps or math.ceil(steps_per_epoch * t.epochs)
    passes = steps * rows_per_step / rows if rows else 0.0
    out = []
    if t.shared_prefix:
        out.append(Work(stage, f"{label}training (shared prefix)", "recommender", "train", rows, prefix,
                        batch=t.batch_size, suffixes=candidates, suffix_tokens=suffix, passes=passes,
                        longest=prefix + suffix, parallel="ddp", source=_source(st, "tokens_per_item", "summary_tokens"),
                        note="shared prefix: one prefix pass per user"))
    else:
        out.append(Work(stage, f"{label}training", "recommender", "train", rows, prefix + suffix,
                        batch=t.batch_size, passes=passes, longest=prefix + suffix, parallel="ddp",
                        source=_source(st, "tokens_per_item", "summary_tokens")))
    if validations:
        checkpoints = math.ceil(steps / t.save_steps) if t.save_steps else max(1, math.ceil(t.epochs))
        n = checkpoints + (1 if zero_shot and t.validate_zero_shot else 0)
        users = min(t.valid_users, d.n_valid) if t.valid_users else d.n_valid
        out.append(Work(stage, f"{label}validations ({n} x {users} users)", "recommender", "score", n * users,
                        prefix, batch=t.score_batch_users, suffixes=1 + d.eval_negatives, suffix_tokens=suffix,
                        longest=prefix + suffix, parallel="one", source=_source(st, "tokens_per_item", "summary_tokens"),
                        note="on rank 0 only"))
    return out


def workload(cfg: Config, st: Stats | None = None, ov: dict[str, float] | None = None) -> list[Work]:
    """Every piece of LLM work notebooks 03-09 do under ``cfg`` (and each model's load per stage), estimated from the
    statistics."""
    st = st or data_stats(cfg)
    ov = ov or prompt_overheads(cfg)
    d, e = cfg.data, cfg.eval
    everyone = sum(st.users.values())
    test = min(e.test_users, st.users.get("test", 0)) if e.test_users else st.users.get("test", 0)
    work = _summary_work(cfg, st, ov, "03", everyone, "hierarchical", st.blocks, st.block_tokens,
                         block_max=st.block_tokens_max)
    work += _summary_work(cfg, st, ov, "04", everyone, "recurrent", st.blocks, st.block_tokens,
                          block_max=st.block_tokens_max)
    work += _sft_work(cfg, st, ov, "06", cfg.sft.summary, "")
    # 07: the LLM rows (each fine-tuned row once per SFT seed), and the adapters notebook 06 did not train
    for row in e.llm:
        method = LLM_ROWS[row]
        seeds = 1 if row == "zero_shot" else e.sft_seeds
        prefix, suffix = _prompt_tokens(cfg, st, ov, method != "none")
        work.append(Work("07", f"scoring {row}" + (f" x {seeds} seeds" if seeds > 1 else ""), "recommender",
                         "score", test * seeds, prefix, batch=cfg.sft.score_batch_users, suffixes=1 + d.eval_negatives,
                         suffix_tokens=suffix, longest=prefix + suffix, source=_source(st, "tokens_per_item", "summary_tokens")))
        if row != "zero_shot":
            for seed in range(seeds):
                if method == cfg.sft.summary and seed == 0:
                    continue  # notebook 06's adapter
                work += _sft_work(cfg, st, ov, "07", method, f"adapter {method}{f' seed {seed}' if seed else ''}: ",
                                  zero_shot=False)
    if cfg.model.scoring_dtype is not None:
        prefix, suffix = _prompt_tokens(cfg, st, ov, True)
        work.append(Work("07", "precision check (main row again)", "recommender", "score", test, prefix,
                         batch=cfg.sft.score_batch_users, suffixes=1 + d.eval_negatives, suffix_tokens=suffix,
                         longest=prefix + suffix))
    main = protocols.main_row(cfg, e.llm)
    if main and d.negative_source != "upstream" and e.upstream_check:  # as protocols.upstream_check decides
        prefix, suffix = _prompt_tokens(cfg, st, ov, True)
        work.append(Work("07", "upstream negatives (main row again)", "recommender", "score", test, prefix,
                         batch=cfg.sft.score_batch_users, suffixes=1 + d.eval_negatives, suffix_tokens=suffix,
                         longest=prefix + suffix))
    # 08: the grid cells notebook 07 has not scored, new summaries for other block sizes / summarizers / the order
    # test, and the positive controls' adapters
    for cell in grid.grid(cfg):
        if grid.same_as_evaluation(cfg, cell):
            continue
        cell_cfg = with_overrides(cfg, cell.overrides)
        recent = cell_cfg.prompt.recent_items
        prefix, suffix = _prompt_tokens(cfg, st, ov, cell.method != "none", recent)
        work.append(Work("08", f"scoring {cell.name}", "recommender", "score", test, prefix,
                         batch=cfg.sft.score_batch_users, suffixes=1 + d.eval_negatives, suffix_tokens=suffix,
                         longest=prefix + suffix, source=_source(st, "tokens_per_item", "summary_tokens")))
        if cell.axis == "positive_control":  # a recommender fine-tuned on the template / oracle summary
            work += _sft_work(cfg, st, ov, "08", cell.method, f"adapter {cell.method}: ", zero_shot=False)
        if cell.needs_summaries:
            c = cell_cfg.chunking
            covered = min(st.history, c.items_per_block * c.max_blocks)
            blocks = covered / c.items_per_block + 0.5 * (1 - 1 / c.items_per_block)
            blocks = min(float(c.max_blocks), blocks)
            sub_ov = prompt_overheads(cell_cfg)
            work += _summary_work(cell_cfg, st, sub_ov, "08", test, "hierarchical", blocks,
                                  covered / blocks * st.tokens_per_item,
                                  model=cell_cfg.model.summarizer if cell_cfg.model.summarizer != cfg.model.summarizer
                                  else "", label=f"{cell.name}: ")
    work += _beyond_work(cfg, st, ov, test)
    work += _loads(cfg, work)
    return work


def _beyond_work(cfg: Config, st: Stats, ov: dict[str, float], test: float) -> list[Work]:
    """Notebook 09: the listwise adapter, the listwise scores in every order (zero-shot and fine-tuned), the
    pointwise row in a second order, and the re-rankings of each retriever's top ``beyond.retrieve``."""
    b, d, t = cfg.beyond, cfg.data, cfg.sft
    users = min(b.users, test) if b.users else test
    n_cand = 1 + d.eval_negatives
    prefix, suffix = _prompt_tokens(cfg, st, ov, True)
    listed = min(prefix + n_cand * suffix, cfg.prompt.max_length)  # one prompt holds every candidate
    train_rows = (min(b.train_users, d.n_train) if b.train_users else d.n_train) * b.train_orders
    steps = t.max_steps or math.ceil(math.ceil(train_rows / (t.batch_size * t.grad_accum)) * t.epochs)
    passes = steps * t.batch_size * t.grad_accum / train_rows if train_rows else 0.0
    src = _source(st, "tokens_per_item", "summary_tokens")
    reranked = min(prefix + b.retrieve * suffix, cfg.prompt.max_length)
    return [
        Work("09", "listwise adapter training", "recommender", "train", train_rows, listed, batch=t.batch_size,
             passes=passes, longest=listed, parallel="ddp", source=src),
        Work("09", f"listwise scoring (zero-shot and fine-tuned) x {b.orders} orders", "recommender", "score",
             2 * b.orders * users, listed, batch=t.score_batch_users, longest=listed, source=src),
        Work("09", "pointwise fine-tuned, second order", "recommender", "score", users, prefix,
             batch=t.score_batch_users, suffixes=n_cand, suffix_tokens=suffix, longest=prefix + suffix, source=src),
        Work("09", f"re-ranking 3 retrievers' top {b.retrieve}, pointwise", "recommender", "score", 3 * users,
             prefix, batch=t.score_batch_users, suffixes=b.retrieve, suffix_tokens=suffix, longest=prefix + suffix,
             source=src),
        Work("09", f"re-ranking 3 retrievers' top {b.retrieve}, listwise", "recommender", "score", 3 * users,
             reranked, batch=t.score_batch_users, longest=reranked, source=src),
    ]


def _loads(cfg: Config, work: list[Work]) -> list[Work]:
    """Loading each model once per stage and launch (:data:`LOAD_GBS`): every process of a launch reads its own
    copy at the same time, so a load costs the same on one GPU or eight."""
    out = []
    for stage in sorted({w.stage for w in work}):
        for role, model in sorted({(w.role, w.model) for w in work if w.stage == stage}):
            out.append(Work(stage, f"loading the {role}" + (f" {model}" if model else ""), role, "load", 1.0, 0.0,
                            parallel="one", model=model, note=f"{LOAD_GBS:g} GB/s"))
    return out


def measured_summary_work(cfg: Config) -> list[Work]:
    """Notebooks 03 and 04's summarizer work as the run did it: one :class:`Work` per batch read back from the
    call cache (its rows, padded width and decoding steps), each assigned to the stage whose run window
    (``stage.json``: finished at ``created``, after ``seconds``) contains it."""
    out, seen = [], set()
    for name, number in (("03_hierarchical", "03"), ("04_recurrent", "04")):
        folder = _stage_dir(cfg, name)
        rec = stages.record(folder) if folder is not None else None
        if not rec or not rec.get("seconds"):
            continue
        window = (rec["created"] - rec["seconds"] - 0.5, rec["created"])
        for b in summarizer_batches(cfg, window):
            if b["created"] in seen:  # a batch at the border of two windows belongs to the earlier stage
                continue
            seen.add(b["created"])
            out.append(Work(number, "batch", "summarizer", "generate", b["rows"], b["width"], b["steps"], b["rows"],
                            longest=b["width"] + b["steps"], source="measured (call cache)"))
    return out


