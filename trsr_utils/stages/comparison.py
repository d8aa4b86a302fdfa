"""Stage 05, notebook 05_compare_summaries: the summaries compared and audited (the measures are
:mod:`trsr_utils.method.compare`'s and :mod:`trsr_utils.method.audit`'s), stored in the run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trsr_utils.core import io
from trsr_utils.core.config import Config
from trsr_utils.method import compare
from trsr_utils.stages import chunking, prepare, summarize
from trsr_utils.store import stages


def mention_aliases(cfg: Config) -> Any:
    """The genre aliases notebook 05 invites you to edit: what they are is part of 05's fingerprint."""
    return compare.MENTION_ALIASES  # read at each call: a kernel that edits or replaces them sees the change


STAGE = stages.register(stages.Stage(
    "05_compare", "05_compare_summaries", (prepare.STAGE, chunking.STAGE, summarize.HIERARCHICAL, summarize.RECURRENT),
    ("seed", "prompt.domain", "prompt.recent_items", "text"), code={"mention aliases": mention_aliases},
    version=2))  # 2: the summary audit (faithfulness, coverage, specificity, drift, predictiveness)


def write(cfg: Any, template: Any, table: Any, **frames: Any) -> Path:
    """Notebook 05's outputs (the template summaries, the comparison table and any further named frames: the
    audit, drift and predictiveness tables) in the stage's folder."""
    out = stages.result_dir(cfg, STAGE, create=True)
    io.write_parquet(out / "template_summaries.parquet", template)
    io.write_parquet(out / "comparison.parquet", table)
    for name, frame in frames.items():
        io.write_parquet(out / f"{name}.parquet", frame)
    return stages.finish(cfg, STAGE)
