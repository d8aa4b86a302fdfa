"""History -> blocks the summarizer reads.

A block holds at most ``items_per_block`` items (the paper: 5) and at most
``block_token_budget`` tokens of its rendered text, counted with the
summarizer's real tokenizer on the exact text the prompt will contain. Blocks
are filled oldest first; when there are more than ``max_blocks``, the oldest
blocks are dropped and the dropped items counted. An item too long for the
budget on its own is truncated (with an ellipsis), never dropped.

Notebook 02 teaches it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from trsr_utils.method.text import cap_tokens

BULLET = "- "
# The shortest line a block may be cut to still shows that something was cut.
ELLIPSIS_PROBE = "…"


def block_text(lines: Sequence[str]) -> str:
    """How a block's item lines appear inside a prompt."""
    return "\n".join(BULLET + line for line in lines)


@dataclass
class Block:
    item_ids: list[str]
    lines: list[str]
    n_tokens: int
    truncated: list[bool] = field(default_factory=list)

    @property
    def text(self) -> str:
        return block_text(self.lines)


@dataclass
class Chunked:
    blocks: list[Block]
    dropped_items: int = 0  # oldest items left out because of max_blocks
    truncated_items: int = 0  # items cut to fit the budget on their own

    @property
    def item_ids(self) -> list[str]:
        return [i for b in self.blocks for i in b.item_ids]


class Chunker:
    """Splits histories with one tokenizer and one set of limits."""

    def __init__(self, tokenizer: Any, items_per_block: int = 5, block_token_budget: int = 512, max_blocks: int = 5):
        if items_per_block < 1 or max_blocks < 1:
            raise ValueError("items_per_block and max_blocks must be at least 1")
        self.tokenizer = tokenizer
        self.items_per_block = items_per_block
        self.budget = block_token_budget
        self.max_blocks = max_blocks
        min_budget = self.count([ELLIPSIS_PROBE])
        if block_token_budget < min_budget:
            raise ValueError(f"block_token_budget {block_token_budget} cannot hold even one truncated item")

    @classmethod
    def from_config(cls, cfg: Any, tokenizer: Any) -> "Chunker":
        c = cfg.chunking
        return cls(tokenizer, c.items_per_block, c.block_token_budget, c.max_blocks)

    def count(self, lines: Sequence[str]) -> int:
        return len(self.tokenizer.encode(block_text(lines), add_special_tokens=False))

    def _fit_alone(self, line: str) -> str:
        """Truncate one line until a block holding only it fits the budget."""
        overhead = self.count([""])
        limit = self.budget - overhead
        while True:
            cut = cap_tokens(line, self.tokenizer, limit)
            if self.count([cut]) <= self.budget or limit <= 1:
                return cut
            limit -= 1

    def split(self, item_ids: Sequence[str], lines: Callable[[str], str] | Sequence[str]) -> Chunked:
        """Chunk one history; ``lines`` maps an item id to its text (or lists the texts in order)."""
        texts = [lines(i) for i in item_ids] if callable(lines) else list(lines)
        if len(texts) != len(item_ids):
            raise ValueError("item_ids and lines differ in length")
        blocks: list[Block] = []
        current = Block([], [], 0, [])
        for item_id, line in zip(item_ids, texts):
            was_cut = False
            alone = self.count([line])
            if alone > self.budget:
                line, was_cut = self._fit_alone(line), True
                alone = self.count([line])
            candidate = current.lines + [line]
            n = self.count(candidate)
            if current.lines and (len(candidate) > self.items_per_block or n > self.budget):
                blocks.append(current)
                current = Block([], [], 0, [])
                candidate, n = [line], alone
            current = Block(current.item_ids + [item_id], candidate, n, current.truncated + [was_cut])
        if current.lines:
            blocks.append(current)
        dropped_blocks = max(0, len(blocks) - self.max_blocks)
        dropped_items = sum(len(b.item_ids) for b in blocks[:dropped_blocks])
        kept = blocks[dropped_blocks:]
        return Chunked(kept, dropped_items, sum(sum(b.truncated) for b in kept))



def chunk_samples(samples: Any, line_of: Callable[[str], str], chunker: Chunker) -> tuple[Any, dict[str, int]]:
    """Blocks for every sample's history: one row per (user, block), plus totals.

    Columns: user_id, split, block (0 = oldest), item_ids, lines (one item line each, as the summarizer
    prompts show them), text (the rendered block), n_items, n_tokens, truncated_items.
    """
    import pandas as pd

    rows, dropped, truncated = [], 0, 0
    for sample in samples.itertuples(index=False):
        chunked = chunker.split(list(sample.history), line_of)
        dropped += chunked.dropped_items
        truncated += chunked.truncated_items
        for index, block in enumerate(chunked.blocks):
            rows.append({"user_id": sample.user_id, "split": sample.split, "block": index,
                         "item_ids": block.item_ids, "lines": block.lines, "text": block.text,
                         "n_items": len(block.item_ids),
                         "n_tokens": block.n_tokens, "truncated_items": int(sum(block.truncated))})
    frame = pd.DataFrame(rows, columns=["user_id", "split", "block", "item_ids", "lines", "text", "n_items",
                                        "n_tokens", "truncated_items"])
    return frame, {"dropped_items": dropped, "truncated_items": truncated, "blocks": len(frame)}
