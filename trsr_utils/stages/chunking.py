"""Stage 02, notebook 02_chunking_and_prompts: every history cut into blocks that fit the summarizer's prompt
(:mod:`trsr_utils.method.chunks` cuts them), stored in the run directory."""

from __future__ import annotations

from typing import Any

from trsr_utils.core import io
from trsr_utils.method import chunks, llm
from trsr_utils.method.text import ItemTexter
from trsr_utils.stages import prepare
from trsr_utils.store import stages


STAGE = stages.register(stages.Stage("02_text", "02_chunking_and_prompts", (prepare.STAGE,), ("text", "chunking"),
                                     tokenizers=("model.summarizer",)))


def write_blocks(cfg: Any, blocks: Any, meta: dict[str, Any]) -> dict[str, Any]:
    out = stages.result_dir(cfg, STAGE, create=True)
    paths = {"blocks": io.write_parquet(out / "blocks.parquet", blocks),
             "meta": io.write_json(out / "meta.json", {"format_version": 1, **meta})}
    stages.finish(cfg, STAGE)
    return paths


def read_blocks(cfg: Any) -> Any:
    """The blocks notebook 02 wrote under these settings, ``item_ids`` and ``lines`` as lists."""
    blocks = io.read_parquet(stages.require(cfg, STAGE) / "blocks.parquet")
    for column in ("item_ids", "lines"):
        blocks[column] = blocks[column].map(list)
    return blocks


def cut_blocks(cfg: Any, samples: Any, catalog: Any) -> tuple[Any, dict[str, Any]]:
    """(blocks, the meta :func:`write_blocks` stores) of ``samples``' histories under ``cfg``'s text and chunking
    settings, cut as notebook 02 cuts them (its summarizer's tokenizer counts the tokens)."""
    tokenizer = llm.load_tokenizer(cfg.model.summarizer)
    texter = ItemTexter.from_config(cfg, catalog, tokenizer)
    blocks, report = chunks.chunk_samples(samples, texter, chunks.Chunker.from_config(cfg, tokenizer))
    return blocks, {"chunking": cfg.to_dict()["chunking"], **report}


def ensure_blocks(cfg: Any, prepared: Any) -> Any:
    """The blocks under these settings: the stored ones, else every sample's history cut now and stored exactly as
    notebook 02 stores them (an exercise that changes ``chunking.*`` needs blocks notebook 02 never made)."""
    if not stages.is_complete(cfg, STAGE):
        write_blocks(cfg, *cut_blocks(cfg, prepared.samples, prepared.catalog))
    return read_blocks(cfg)
