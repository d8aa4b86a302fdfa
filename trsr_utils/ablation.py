"""Notebook 08: the ablations a reader of the paper asks about, as a cached grid.

Each *cell* changes one thing around the profile's setting (one factor at a
time) and ranks the same test users' candidates as notebook 07:

* ``summary``: none / hierarchical / recurrent, each zero-shot and fine-tuned
  (the other axes use the fine-tuned model, or the zero-shot one with
  ``eval.ablation_finetuned: false``)
* ``recent_items``: how many recent items the prompt shows (k)
* ``items_per_block``: block size of the hierarchical summary (new summaries
  of the test users with the frozen summarizer; scored with the adapter
  trained on the profile's block size)
* ``summarizer``: another summarizer model (where the profile lists one)

Scores go to the run's score store (``cache/scores/<key>.parquet``, see
:mod:`trsr_utils.evaluation`) under a key of everything they depend on, so a
cell whose settings equal one of notebook 07's rows finds that row's scores,
an interrupted sweep resumes where it stopped, and a re-run costs nothing.
Cells needing new summaries (another block size or summarizer) summarize the
test users in their own run folder ``08_ablations/cells/<cell>-<key>/`` with
its own LLM call cache, unless notebook 03 already ran with those settings.
The table goes to ``08_ablations/<fingerprint>/``.

Cost is counted in LLM tokens per user: the summarizer's prompt + generated
tokens for the user's summary, and the recommender's tokens to score 21
candidates (the shared prefix once, plus every candidate suffix).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from . import distributed, evaluation, io, metrics, stages
from .config import with_overrides
from .user_prompts import main_summary

STAGE = "08_ablations"


@dataclass
class Cell:
    axis: str
    value: str
    finetuned: bool
    method: str  # the summary in the prompt: none | hierarchical | recurrent
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        raw = f"{self.axis}={self.value}-{'ft' if self.finetuned else 'zs'}"
        return re.sub(r"[^A-Za-z0-9=._-]+", "_", raw)

    @property
    def needs_summaries(self) -> bool:
        """Cells that change how summaries are written need their own summaries."""
        return any(k.startswith(("chunking.", "model.summarizer", "summary.")) for k in self.overrides)


def grid(cfg: Any) -> list[Cell]:
    """The profile's grid: every axis value on its own, around the profile's setting."""
    e = cfg.eval
    ft = e.ablation_finetuned
    main = main_summary(cfg)
    # The summary axis is shown zero-shot and fine-tuned (does a summary help a model never taught to use one?);
    # the other axes with one model, the fine-tuned one by default, as in the paper's ablations.
    cells = [Cell("summary", m, tuned, m) for m in ("none", "hierarchical", "recurrent")
             for tuned in ((False, True) if ft else (False,))]
    cells += [Cell("recent_items", str(k), ft, main, {"prompt.recent_items": int(k)}) for k in e.ablation_recent_items]
    # A block-size cell keeps the history the profile covers (items_per_block x max_blocks items): with blocks
    # of 3 and the profile's 5 blocks, 15 of 25 items would be dropped and the cell would measure truncation.
    covered = cfg.chunking.items_per_block * cfg.chunking.max_blocks
    cells += [Cell("items_per_block", str(n), ft, "hierarchical",
                   {"chunking.items_per_block": int(n), "chunking.max_blocks": -(-covered // int(n))})
              for n in e.ablation_items_per_block]
    cells += [Cell("summarizer", m, ft, "hierarchical", {"model.summarizer": m}) for m in e.ablation_summarizers]
    return cells


def _is_default(cfg: Any, cell: Cell) -> bool:
    return all(getattr(getattr(cfg, k.split(".")[0]), k.split(".")[1]) == v for k, v in cell.overrides.items())


def same_as_evaluation(cfg: Any, cell: Cell) -> str | None:
    """The notebook 07 system with exactly this cell's settings, if any."""
    if not _is_default(cfg, cell):
        return None
    if not cell.finetuned:
        return "zero_shot" if cell.method == "hierarchical" else None
    return {"none": "tallrec", "hierarchical": "hierarchical", "recurrent": "recurrent"}[cell.method]


def cell_dir(cfg: Any, cell: Cell, samples_key: dict[str, Any]) -> Path:
    """The run folder of a cell's own summaries: named by the cell and what its summaries depend on."""
    key = stages.digest({"03": stages.fingerprint(with_overrides(cfg, cell.overrides), "03_hierarchical").digest,
                         "samples": samples_key})
    return Path(cfg.run_dir) / STAGE / "cells" / f"{cell.name}-{key[:stages.DIGEST_CHARS]}"


def prepare_summaries(cfg: Any, cell: Cell, prepared: Any, samples: pd.DataFrame,
                      log: Callable[[str], None] = print) -> tuple[Any, str]:
    """(config of the cell's own run folder, id of its summaries): the test users' blocks and hierarchical
    summaries under the cell's settings, computed there unless already complete."""
    from . import chunking, llm, summarize
    from .text import ItemTexter

    sub = with_overrides(cfg, cell.overrides, str(cell_dir(cfg, cell, evaluation.samples_key(cfg))))
    summary_id = stages.digest({"cell_summaries": stages.fingerprint(sub, "03_hierarchical").digest,
                                "users": list(samples["user_id"])})
    if stages.is_complete(sub, "03_hierarchical"):
        return sub, summary_id
    tokenizer = llm.load_tokenizer(sub.model.summarizer)
    texter = ItemTexter.from_config(sub, prepared.catalog, tokenizer)
    blocks, report = chunking.chunk_samples(samples, texter, chunking.Chunker.from_config(sub, tokenizer))
    if distributed.is_main():
        chunking.write_blocks(sub, blocks, {"chunking": sub.to_dict()["chunking"], **report})
    log(f"{cell.name}: summarizing {len(samples)} test users ({len(blocks)} blocks)")
    summarize.summarize(sub, "hierarchical", blocks, prepared.catalog, log=log, cache_from=cfg)
    return sub, summary_id


def summary_tokens(cfg: Any, method: str, users: pd.Series) -> float:
    """Mean summarizer tokens (prompt + generated) per user for ``method`` in ``cfg``'s run folder."""
    if method == "none":
        return 0.0
    from . import summarize

    frame = summarize.read_summaries(cfg, method).set_index("user_id")
    return float(frame.loc[list(users), "llm_tokens"].mean())


def run(cfg: Any, log: Callable[[str], None] = print) -> pd.DataFrame:
    """Score every cell of the grid (from the score store when its key matches) and write the table to
    ``08_ablations/<fingerprint>/``."""
    from . import llm
    from .data import prepare
    from .user_prompts import build, summaries_for

    prepared = prepare.read(cfg)
    samples = evaluation.test_samples(cfg, prepared)
    tokenizer = llm.load_tokenizer(cfg.model.recommender)
    base = evaluation.recommender_loader(cfg)

    # Every cell's summaries first, each summarizer loaded, used and released in turn, before the recommender
    # is loaded: on a GPU the paper's 30B summarizer and 7B recommender would not share one card. New summaries
    # only where no notebook-03 result has the cell's settings (a block size equal to the profile's is the
    # profile's own summary).
    summary_of = {}
    for cell in grid(cfg):
        cell_cfg = with_overrides(cfg, cell.overrides)
        summary_of[cell.name] = cell_cfg, evaluation.summary_id(cell_cfg, cell.method)
        if cell.needs_summaries and not stages.is_complete(cell_cfg, "03_hierarchical"):
            summary_of[cell.name] = prepare_summaries(cfg, cell, prepared, samples, log)
            llm.release()

    rows = []
    for cell in grid(cfg):
        cell_cfg = with_overrides(cfg, cell.overrides)
        adapter = evaluation.ensure_adapter(cfg, cell.method, log) if cell.finetuned else None
        summary_cfg, summary_id = summary_of[cell.name]
        key = evaluation.llm_key(cell_cfg, cell.method, summary_id,
                                 evaluation.adapter_id(cfg, cell.method, adapter) if adapter else None)
        source = same_as_evaluation(cfg, cell)
        if source and evaluation.system_key(cfg, source, adapter) != key:
            source = None

        prompts = build(cell_cfg, samples, prepared.catalog, summaries_for(summary_cfg, cell.method), tokenizer)

        def compute(cell=cell, prompts=prompts, adapter=adapter) -> list[np.ndarray]:
            log(f"{cell.name}: scoring {len(samples)} users")
            return evaluation.score_prompts(cfg, prompts, base(), tokenizer, adapter, f"scoring {cell.name}")

        frame = evaluation.cached(evaluation.scores_path(cfg, key), samples, compute, log, key)
        m = metrics.metrics_from_ranks(frame["rank"])
        rows.append({
            "cell": cell.name, "axis": cell.axis, "value": cell.value, "finetuned": cell.finetuned,
            "method": cell.method, "source": f"07:{source}" if source else "08",
            **{c: m[c] for c in evaluation.COLUMNS},
            "summary_tokens_per_user": summary_tokens(summary_cfg, cell.method, samples["user_id"]),
            "scoring_tokens_per_user": float(np.mean([len(p.prefix_ids) + sum(map(len, p.suffix_ids))
                                                      for p in prompts])),
            "seconds": float(frame["seconds"].iloc[0]), "users": len(frame),
            "scores": str(evaluation.scores_path(cfg, key)),
        })
    table = pd.DataFrame(rows)
    table["llm_tokens_per_user"] = table["summary_tokens_per_user"] + table["scoring_tokens_per_user"]
    if distributed.is_main():  # under a launcher every process holds the table; rank 0 writes it
        out = stages.result_dir(cfg, STAGE, create=True)
        io.write_text(out / "results.csv", table.to_csv(index=False))
        io.write_json(out / "results.json", {"n_users": len(samples), "rows": table.to_dict(orient="records")})
        stages.finish(cfg, STAGE)
    distributed.barrier()
    return table


def read_ranks(table: pd.DataFrame) -> pd.DataFrame:
    """Every cell's per-user ranks (``system`` = the cell's name), from the score store the table points at."""
    frames = [io.read_parquet(row.scores)[["user_id", "rank"]].assign(system=row.cell) for row in table.itertuples()]
    return pd.concat(frames, ignore_index=True)[["system", "user_id", "rank"]]


def reference_pairs(table: pd.DataFrame, cfg: Any) -> list[tuple[str, str]]:
    """Each cell against the profile's own setting with the same model state (zero-shot cells against the
    zero-shot reference); cells scored by the very same scores as their reference are left out (a zero difference
    by construction)."""
    main = main_summary(cfg)
    by_name = table.set_index("cell")
    pairs = []
    for row in table.itertuples():
        reference = Cell("summary", main, bool(row.finetuned), main).name
        if reference in by_name.index and by_name.loc[reference, "scores"] != row.scores:
            pairs.append((row.cell, reference))
    return pairs


def reading(table: pd.DataFrame, metric: str = "recall@10") -> list[str]:
    """What the grid shows, in sentences computed from its table: each axis's spread against what one user is worth."""
    n = int(table["users"].iloc[0])
    width = 2 * 1.96 * 0.5 / n ** 0.5  # a 95% interval of a rate near 0.5 (normal approximation)
    out = [f"{n} test users: one user moves {metric} by {1 / n:.3f}; a 95% interval of {metric} over this many users "
           f"is about {width:.2f} wide (normal approximation at a rate of 0.5), so cells closer than that are not "
           "shown to differ."]
    for axis, sub in table.groupby("axis", sort=False):
        for tuned, cells in sub.groupby("finetuned", sort=False):
            if len(cells) < 2:
                continue
            best, worst = cells.loc[cells[metric].idxmax()], cells.loc[cells[metric].idxmin()]
            users = round((best[metric] - worst[metric]) * n)
            where = f"{axis} ({'fine-tuned' if tuned else 'zero-shot'})"
            if users == 0:
                out.append(f"{where}: the same {metric}, {best[metric]:.3f}, for every value.")
                continue
            out.append(f"{where}: {metric} from {worst[metric]:.3f} ({worst['value']}) to {best[metric]:.3f} "
                       f"({best['value']}), {users} user{'s' if users != 1 else ''} apart.")
    cost = table.groupby("method")["summary_tokens_per_user"].mean()
    if "none" in cost and len(cost) > 1:
        extra = ", ".join(f"{m} {v:.0f}" for m, v in cost.items() if m != "none")
        out.append(f"A summary costs the summarizer LLM tokens per test user ({extra}) on top of scoring; "
                   "whether it buys quality is read from the summary axis above, within its uncertainty.")
    return out


def main(argv: list[str] | None = None) -> int:
    """Notebook 08's grid from the command line, on one process or several (torchrun / accelerate launch: each
    cell's summaries and scores shared out, rank 0 writes; see :mod:`trsr_utils.distributed`)."""
    import argparse

    from .config import stage_arguments, stage_config

    parser = argparse.ArgumentParser(prog="python -m trsr_utils.ablation", description=main.__doc__)
    stage_arguments(parser)
    args = parser.parse_args(argv)
    cfg = stage_config(args)
    table = run(cfg, log=print if distributed.is_main() else (lambda _: None))
    if distributed.is_main():
        print(table[["cell", "recall@10", "seconds"]].to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
