"""The ablation grid: one factor at a time, cells shared with notebook 07 recognised, names safe as file names."""

from __future__ import annotations

from trsr_utils import ablation
from trsr_utils.config import resolve_config


def test_grid_is_one_factor_at_a_time_around_the_profile(tmp_path):
    cfg = resolve_config("smoke", tmp_path, {"eval.ablation_recent_items": [1, 3, 5],
                                             "eval.ablation_items_per_block": [3, 5, 10]})
    cells = ablation.grid(cfg)
    assert len(cells) == 6 + 3 + 3  # summaries x {zero-shot, fine-tuned}; the other axes fine-tuned
    assert all(c.finetuned for c in cells if c.axis != "summary")
    assert len({c.name for c in cells}) == len(cells)
    k1 = next(c for c in cells if c.name == "recent_items=1-ft")
    assert k1.overrides == {"prompt.recent_items": 1} and k1.method == "hierarchical" and not k1.needs_summaries
    b3 = next(c for c in cells if c.name == "items_per_block=3-ft")
    assert b3.needs_summaries
    # a cell's own summaries live in a folder named by the cell and by what they depend on
    one = ablation.cell_dir(cfg, b3, {"01_data": "x", "test_users": 0})
    assert one.name.startswith("items_per_block=3-ft-") and one != ablation.cell_dir(
        cfg, b3, {"01_data": "y", "test_users": 0})
    assert ablation.with_overrides(cfg, b3.overrides).chunking.items_per_block == 3
    # every block size covers at least the profile's 5 x 5 items, so a cell measures block size, not truncation
    for c in cells:
        if c.axis == "items_per_block":
            ch = ablation.with_overrides(cfg, c.overrides).chunking
            assert 25 <= ch.items_per_block * ch.max_blocks < 25 + ch.items_per_block
    assert next(c for c in cells if c.name == "items_per_block=5-ft").overrides["chunking.max_blocks"] == 5
    assert cfg.chunking.items_per_block == 5  # the profile's config is not modified


def test_cells_equal_to_a_notebook_07_row_are_recognised(tmp_path):
    cfg = resolve_config("smoke", tmp_path, {"prompt.recent_items": 3, "eval.ablation_recent_items": [1, 3]})
    by_name = {c.name: c for c in ablation.grid(cfg)}
    same = {n: ablation.same_as_evaluation(cfg, c) for n, c in by_name.items()}
    assert same["summary=hierarchical-zs"] == "zero_shot" and same["summary=none-ft"] == "tallrec"
    assert same["summary=recurrent-ft"] == "recurrent" and same["recent_items=3-ft"] == "hierarchical"
    assert same["summary=none-zs"] is None and same["recent_items=1-ft"] is None


def test_finetuned_cells_can_be_switched_off(tmp_path):
    cfg = resolve_config("smoke", tmp_path, {"eval.ablation_finetuned": False})
    assert not any(c.finetuned for c in ablation.grid(cfg))


def test_reading_puts_each_axis_spread_in_users():
    import pandas as pd

    table = pd.DataFrame([
        {"axis": "summary", "value": "none", "finetuned": True, "method": "none", "recall@10": 0.65, "users": 20,
         "summary_tokens_per_user": 0.0},
        {"axis": "summary", "value": "hierarchical", "finetuned": True, "method": "hierarchical", "recall@10": 0.75,
         "users": 20, "summary_tokens_per_user": 727.0},
    ])
    text = "\n".join(ablation.reading(table))
    assert "one user moves recall@10 by 0.050" in text and "0.44 wide" in text
    assert "summary (fine-tuned): recall@10 from 0.650 (none) to 0.750 (hierarchical), 2 users apart." in text
    assert "hierarchical 727" in text
    table.loc[1, "recall@10"] = 0.65
    assert "summary (fine-tuned): the same recall@10, 0.650, for every value." in "\n".join(ablation.reading(table))


def test_each_cell_is_compared_with_the_profiles_setting_in_the_same_model_state(tmp_path):
    import pandas as pd

    from trsr_utils import io

    cfg = resolve_config("smoke", tmp_path, {"eval.ablation_recent_items": [1, 3]})
    rows = []
    for index, cell in enumerate(ablation.grid(cfg)):
        # recent_items=3 is the profile's setting: the very scores of summary=hierarchical-ft
        key = "hier-ft" if cell.name == "recent_items=3-ft" else cell.name
        path = tmp_path / f"{key}.parquet"
        io.write_parquet(path, pd.DataFrame({"user_id": ["u1", "u2"], "rank": [1 + index, 2]}))
        rows.append({"cell": cell.name, "finetuned": cell.finetuned,
                     "scores": str(tmp_path / ("hier-ft.parquet" if cell.name == "summary=hierarchical-ft" else
                                               f"{key}.parquet"))})
    table = pd.DataFrame(rows)
    pairs = ablation.reference_pairs(table, cfg)
    assert ("summary=none-zs", "summary=hierarchical-zs") in pairs
    assert ("summary=recurrent-ft", "summary=hierarchical-ft") in pairs
    assert ("recent_items=1-ft", "summary=hierarchical-ft") in pairs
    # a cell is never compared with itself or with the same scores under another name
    assert all(a != b for a, b in pairs) and ("recent_items=3-ft", "summary=hierarchical-ft") not in pairs
    ranks = ablation.read_ranks(table)
    assert list(ranks.columns) == ["system", "user_id", "rank"] and len(ranks) == 2 * len(table)
