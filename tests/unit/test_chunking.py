"""Chunking properties with the real SmolLM2 tokenizer."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trsr_utils.method.chunks import Chunker, block_text

WORDS = ["title:", "year:", "genres:", "Drama", "Comedy", "Star", "Wars", "1977", "Heat", "Toy", "Story", "é", ";",
         "Film-Noir", "Children's", "…", "Sci-Fi", "a", "the"]

histories = st.lists(
    st.lists(st.sampled_from(WORDS), min_size=1, max_size=40).map(" ".join), min_size=0, max_size=30
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=histories, per_block=st.integers(1, 7), budget=st.integers(12, 160), max_blocks=st.integers(1, 6))
def test_chunking_properties(smol_tokenizer, lines, per_block, budget, max_blocks):
    ids = [f"i{k}" for k in range(len(lines))]
    chunker = Chunker(smol_tokenizer, per_block, budget, max_blocks)
    out = chunker.split(ids, lines)
    # in order, nothing lost or duplicated except the counted oldest items
    assert out.item_ids == ids[out.dropped_items:]
    assert len(set(out.item_ids)) == len(out.item_ids)
    assert len(out.blocks) <= max_blocks
    for block in out.blocks:
        assert 1 <= len(block.item_ids) <= per_block
        recount = len(smol_tokenizer.encode(block_text(block.lines), add_special_tokens=False))
        assert block.n_tokens == recount <= budget
        for line, original, cut in zip(block.lines, [lines[ids.index(i)] for i in block.item_ids], block.truncated):
            assert (line == original) != cut  # an item is either intact or visibly truncated
            if cut:
                assert line.endswith("…")
    assert out.dropped_items == 0 or len(out.blocks) == max_blocks
    again = chunker.split(ids, lines)
    assert [b.lines for b in again.blocks] == [b.lines for b in out.blocks]  # deterministic


def test_paper_setting_five_items_per_block(smol_tokenizer):
    lines = [f"title: Movie {k}; year: 199{k % 10}" for k in range(24)]
    out = Chunker(smol_tokenizer, 5, 512, 5).split([str(k) for k in range(24)], lines)
    assert [len(b.item_ids) for b in out.blocks] == [5, 5, 5, 5, 4] and out.dropped_items == 0
    out = Chunker(smol_tokenizer, 5, 512, 3).split([str(k) for k in range(24)], lines)
    assert out.dropped_items == 10 and out.item_ids[0] == "10"


def test_oversized_item_is_truncated_not_dropped(smol_tokenizer):
    lines = ["title: short", "description: " + "very long text " * 100, "title: after"]
    out = Chunker(smol_tokenizer, 5, 40, 5).split(["a", "b", "c"], lines)
    assert out.item_ids == ["a", "b", "c"] and out.truncated_items == 1
    assert [b.item_ids for b in out.blocks] == [["a"], ["b"], ["c"]]


def test_budget_too_small_is_an_error(smol_tokenizer):
    with pytest.raises(ValueError, match="cannot hold"):
        Chunker(smol_tokenizer, 5, 1, 5)
