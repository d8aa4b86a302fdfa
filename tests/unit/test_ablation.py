"""The ablation grid: one factor at a time, cells shared with notebook 07 recognised, names safe as file names."""

from __future__ import annotations

import numpy as np
import pytest

from trsr_utils.stages import ablation
from trsr_utils.stages import evaluation, grid, sft, table_rows
from trsr_utils.core import io
from trsr_utils.core.config import resolve_config, with_overrides
from trsr_utils.store import stages


def test_grid_is_one_factor_at_a_time_around_the_profile(tmp_path):
    cfg = resolve_config("smoke", tmp_path, {"eval.ablation_recent_items": [1, 3, 5],
                                             "eval.ablation_items_per_block": [3, 5, 10]})
    cells = [c for c in grid.grid(cfg) if not c.is_control]  # the controls of section 4: their own test below
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
    by_name = {c.name: c for c in grid.grid(cfg)}
    same = {n: grid.same_as_evaluation(cfg, c) for n, c in by_name.items()}
    assert same["summary=hierarchical-zs"] == "zero_shot" and same["summary=none-ft"] == "tallrec"
    assert same["summary=recurrent-ft"] == "recurrent" and same["recent_items=3-ft"] == "hierarchical"
    assert same["summary=none-zs"] is None and same["recent_items=1-ft"] is None


@pytest.mark.parametrize("main", ["hierarchical", "recurrent"])
def test_the_profiles_own_cells_follow_its_summary(tmp_path, main):
    cfg = resolve_config("smoke", tmp_path, {"prompt.recent_items": 3, "sft.summary": main,
                                             "eval.ablation_recent_items": [1, 3],
                                             "eval.ablation_items_per_block": [3, 5]})
    own = sorted(c.name for c in grid.grid(cfg) if grid.is_profile_setting(cfg, c))
    expected = ["recent_items=3-ft", f"summary={main}-ft"]
    if main == "hierarchical":  # the block-size axis summarizes hierarchically: its profile's block size is it
        expected.insert(0, "items_per_block=5-ft")
    assert own == expected


def test_finetuned_cells_can_be_switched_off(tmp_path):
    cfg = resolve_config("smoke", tmp_path, {"eval.ablation_finetuned": False})
    assert not any(c.finetuned for c in grid.grid(cfg))


def test_the_summary_axis_can_leave_out_the_zero_shot_cells(tmp_path):
    both = resolve_config("smoke", tmp_path)
    cfg = resolve_config("smoke", tmp_path, {"eval.ablation_zero_shot": False})
    summary = [c for c in grid.grid(cfg) if c.axis == "summary"]
    assert [c.method for c in summary] == ["none", "hierarchical", "recurrent"] and all(c.finetuned for c in summary)
    # every other cell as before, and the fine-tuned reference is still there to compare against
    assert [c.name for c in grid.grid(both) if c.axis != "summary" or c.finetuned] == [c.name for c in grid.grid(cfg)]
    assert grid.reference(cfg, True) in {c.name for c in summary}
    # the default keeps earlier fingerprints (a setting added later); the other value is a new result
    assert stages.fingerprint(both, ablation.STAGE) != stages.fingerprint(cfg, ablation.STAGE)
    assert "eval.ablation_zero_shot" not in stages.parts(both, ablation.STAGE)["settings"]
    # ignored when the whole grid is zero-shot (notebook 08's exercises switch ablation_finetuned off on any profile)
    zero = resolve_config("smoke", tmp_path, {"eval.ablation_zero_shot": False, "eval.ablation_finetuned": False})
    assert [c.name for c in grid.grid(zero)] == [
        c.name for c in grid.grid(resolve_config("smoke", tmp_path, {"eval.ablation_finetuned": False}))]


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
    # with the cells' ranks: the width notebook 07 reports for one system (the median bootstrap interval)
    ranks = pd.DataFrame({"system": ["a"] * 20 + ["b"] * 20, "user_id": [f"u{i}" for i in range(20)] * 2,
                          "rank": [1, 15] * 10 + [1] * 20})
    from trsr_utils.stages import evaluation
    widths = [np.subtract(*evaluation.bootstrap_interval(g["rank"].to_numpy(), "recall@10", 1000, 0)[::-1])
              for _, g in ranks.groupby("system")]
    with_ranks = "\n".join(ablation.reading(table, ranks=ranks))
    assert f"the median 95% bootstrap interval of one cell's recall@10 (notebook 07's measure for one system) is " \
           f"{np.median(widths):.2f} wide" in with_ranks and np.median(widths) > 0
    assert "summary (fine-tuned): recall@10 from 0.650 (none) to 0.750 (hierarchical), 2 users apart." in text
    assert "hierarchical 727" in text
    table.loc[1, "recall@10"] = 0.65
    assert "summary (fine-tuned): the same recall@10, 0.650, for every value." in "\n".join(ablation.reading(table))


def test_each_cell_is_compared_with_the_profiles_setting_in_the_same_model_state(tmp_path):
    import pandas as pd

    from trsr_utils.core import io

    cfg = resolve_config("smoke", tmp_path, {"eval.ablation_recent_items": [1, 3]})
    rows = []
    for index, cell in enumerate(grid.grid(cfg)):
        # recent_items=3 is the profile's setting: the very scores of summary=hierarchical-ft
        key = "hier-ft" if cell.name == "recent_items=3-ft" else cell.name
        path = tmp_path / f"{key}.parquet"
        io.write_parquet(path, pd.DataFrame({"user_id": ["u1", "u2"], "rank": [1 + index, 2]}))
        rows.append({"cell": cell.name, "finetuned": cell.finetuned, "axis": cell.axis,
                     "scores": str(tmp_path / ("hier-ft.parquet" if cell.name == "summary=hierarchical-ft" else
                                               f"{key}.parquet"))})
    table = pd.DataFrame(rows)
    pairs = grid.reference_pairs(table, cfg)
    assert ("summary=none-zs", "summary=hierarchical-zs") in pairs
    assert ("summary=recurrent-ft", "summary=hierarchical-ft") in pairs
    assert ("recent_items=1-ft", "summary=hierarchical-ft") in pairs
    # a cell is never compared with itself or with the same scores under another name
    assert all(a != b for a, b in pairs) and ("recent_items=3-ft", "summary=hierarchical-ft") not in pairs
    ranks = grid.read_ranks(table)
    assert list(ranks.columns) == ["system", "user_id", "rank"] and len(ranks) == 2 * len(table)
    # the controls are their own family: never in the ablations' pairs, all in the controls' pairs
    controls = grid.reference_pairs(table, cfg, controls=True)
    assert {a for a, _ in controls} == {c.name for c in grid.grid(cfg) if c.is_control}
    assert not {a for a, _ in pairs} & {a for a, _ in controls}


def test_control_cells_of_section_4(tmp_path):
    cfg = resolve_config("smoke", tmp_path)
    by_name = {c.name: c for c in grid.grid(cfg) if c.is_control}
    assert set(by_name) == {"reliance=other_user-ft", "reliance=empty-ft", "reliance=template-ft",
                            "positive_control=template-ft", "positive_control=oracle-ft", "order=shuffled-ft"}
    assert by_name["reliance=other_user-ft"].method == "hierarchical"  # the profile's summary, replaced at inference
    assert not by_name["reliance=other_user-ft"].needs_summaries and by_name["order=shuffled-ft"].needs_summaries
    oracle = by_name["positive_control=oracle-ft"]
    assert oracle.label == ablation.audit.ORACLE and "never a result" in oracle.label  # labelled wherever it shows
    assert all(grid.same_as_evaluation(cfg, c) is None for c in by_name.values())
    # the order test summarizes in its own folder, apart from the profile's order
    assert ablation.cell_dir(cfg, by_name["order=shuffled-ft"], {"s": 1}) != ablation.cell_dir(
        cfg, grid.Cell("order", "shuffled", True, "hierarchical"), {"s": 1})
    demo = resolve_config("demo", tmp_path)
    assert [c.name for c in grid.grid(demo) if c.is_control] == ["reliance=other_user-ft"]
    zero_shot = grid.grid(resolve_config("smoke", tmp_path, {"eval.ablation_finetuned": False}))
    assert not any(c.axis == "positive_control" for c in zero_shot)  # a positive control is a training
    assert {c.name for c in zero_shot if c.is_control} == {"reliance=other_user-zs", "reliance=empty-zs",
                                                          "reliance=template-zs", "order=shuffled-zs"}


def test_shuffled_histories_keep_the_items():
    import pandas as pd

    samples = pd.DataFrame({"user_id": ["a", "b"], "history": [list("abcdefgh"), list("xyz")]})
    out = grid.shuffled_histories(samples, 0)
    assert [sorted(h) for h in out["history"]] == [sorted(h) for h in samples["history"]]
    assert list(out["history"][0]) != list("abcdefgh") and samples["history"][0] == list("abcdefgh")
    assert [list(h) for h in grid.shuffled_histories(samples, 0)["history"]] == [list(h) for h in out["history"]]


def _scores(tmp_path, name, ranks_and_scores):
    import pandas as pd

    from trsr_utils.core import io

    path = tmp_path / f"{name}.parquet"
    io.write_parquet(path, pd.DataFrame({"user_id": [f"u{i}" for i in range(len(ranks_and_scores))],
                                         "rank": [r for r, _ in ranks_and_scores],
                                         "scores": [s for _, s in ranks_and_scores]}))
    return str(path)


def test_probability_shift_and_summary_effect(tmp_path):
    import pandas as pd

    cfg = resolve_config("smoke", tmp_path, {"eval.equivalence_margin": 0.05})
    n = 100  # no user changes between the first two cells: 100 users bound that (.95^100 < .05)
    ref = [(1, [0.9, 0.1]) for _ in range(n)]
    table = pd.DataFrame([
        {"cell": "summary=hierarchical-ft", "finetuned": True, "axis": "summary", "users": n,
         "scores": _scores(tmp_path, "h", ref)},
        {"cell": "summary=none-ft", "finetuned": True, "axis": "summary", "users": n,
         "scores": _scores(tmp_path, "n", ref)},  # the very same ranks: a difference of exactly 0
        {"cell": "reliance=other_user-ft", "finetuned": True, "axis": "reliance", "users": n,
         "scores": _scores(tmp_path, "o", [(2, [0.4, 0.6]) if i % 2 else (1, [0.9, 0.1]) for i in range(n)])},
    ])
    shift = grid.probability_shift(table, cfg).set_index("cell")
    assert shift.loc["reliance=other_user-ft", "mean_abs_dp"] == pytest.approx(0.25)  # half the users move by .5
    assert shift.loc["reliance=other_user-ft", "rank_changed"] == 0.5
    assert shift.loc["reliance=other_user-ft", "reference_spread"] == pytest.approx(0.4)  # std of [.9, .1]
    effect = grid.summary_effect(table, cfg)
    assert list(effect["method"]) == ["hierarchical"] and effect["diff"].iloc[0] == 0
    assert effect[["step", "reference_step", "steps"]].isna().all().all()  # no adapters trained here: no steps
    for method, step in (("none", 50), ("hierarchical", 75)):  # each method's own report; the reference is TALLRec's
        folder = stages.finish(sft.adapter_config(cfg, method), sft.STAGE)  # a complete adapter's record
        io.write_json(folder / "report.json", {"best": {"step": step}, "global_step": 80 + step})
    steps = grid.summary_effect(table, cfg).iloc[0]
    assert (steps["step"], steps["reference_step"], steps["steps"]) == (75, 50, 130)
    assert bool(effect["equivalent"].iloc[0]) and effect["decision"].iloc[0].startswith("bounded")
    lines = ablation.controls_reading(
        table.assign(value=["hierarchical", "none", "other_user"], method="hierarchical",
                     control=["", "", "other_user"]),
        pd.DataFrame([{"a": "reliance=other_user-ft", "b": "summary=hierarchical-ft", "metric": "recall@10",
                       "diff": -0.5, "p": 0.001, "p_holm": 0.001, "significant": True}]),
        grid.probability_shift(table, cfg), effect)
    assert lines[0].startswith("hierarchical: bounded")
    assert any("reads whose summary it is" in line for line in lines)
    # another user's summary significantly *better* on one metric (not Recall@10): said, from every metric
    better = pd.DataFrame([{"a": "reliance=other_user-ft", "b": "summary=hierarchical-ft", "metric": m,
                            "diff": d, "p": p, "p_holm": p, "significant": p < 0.05}
                           for m, d, p in (("recall@10", 0.2, 0.2), ("mrr@10", 0.06, 0.01))])
    lines = ablation.controls_reading(
        table.assign(value=["hierarchical", "none", "other_user"], method="hierarchical",
                     control=["", "", "other_user"], **{"recall@10": [0.5, 0.45, 0.7]}),
        better, grid.probability_shift(table, cfg), effect, {"recall@10": 10 / 21})
    text = "\n".join(lines)
    assert "significant after Holm on mrr@10" in text and "ranks *better* (mrr@10)" in text
    assert "reaches 0.500 Recall@10 where a random order reaches 0.476: within the ±0.10" in text
    assert "the reference is not told apart from a random ranker" in text  # the tests compare near-chance rankers


def test_shipped_control_results_are_printed_or_missing_said(tmp_path):
    assert "No recorded results" in ablation.shipped_reading(None)
    shipped = {"runs": {"course": {"users": 100, "fingerprint": "f" * 64, "git": {"commit": "abc"},
                                   "reading": ["hierarchical: undecided.",
                                               "recurrent: shown: -0.151 recall@10 (Holm p = 0.000) on 773 users.",
                                               "oracle: +0.210 (p = 0.000, Holm 0.001; ...)"]}}}
    text = ablation.shipped_reading(shipped)
    assert "**course** (100 test users" in text and "- hierarchical: undecided." in text
    # records written before significance.p_text: a p below .0005 printed as 0.000 reads as the readings do now
    assert "(Holm p < 0.001) on 773 users" in text and "(p < 0.001, Holm = 0.001;" in text and "0.000" not in text
    assert "profiles/course-long-all.yaml" in text  # where an unrecorded profile's time and CPU are
    assert "**course-long**: not recorded in this copy; make it once with `python -m trsr_utils run " \
           "--profile course-long" in text and "**course**: not recorded" not in text
    assert ablation.shipped_controls(tmp_path / "none.json") is None


def test_the_shipped_results_carry_their_fingerprint_and_are_marked_stale_when_the_profile_moved_on(tmp_path):
    """docs/results/controls.json ships the deciding runs' findings (notebook 08 prints them). Each carries the
    fingerprint (and its parts) of the run that made it; where the profile gives another fingerprint under the
    current settings, data, models and stage versions, 08's reading says **stale** and what changed, so a finding
    is never quoted as this code's when it is an earlier commit's (re-recording course-long takes ~4 h)."""
    from trsr_utils import stages

    shipped = ablation.shipped_controls()
    assert shipped is not None and shipped["runs"], f"{ablation.SHIPPED} is missing or empty"
    now = ablation.fingerprints_now(shipped)
    text = ablation.shipped_reading(shipped, now)
    for profile, run in shipped["runs"].items():
        if run.get("parts"):
            assert stages.digest(run["parts"]) == run["fingerprint"]
        cfg = resolve_config(profile, tmp_path / profile)
        assert now[profile].digest == stages.fingerprint(cfg, ablation.STAGE).digest
        stale = f"**Stale**: this copy's {profile} profile gives fingerprint {now[profile].digest[:12]}"
        assert (stale in text) == (run["fingerprint"] != now[profile].digest)
        assert run["users"] == cfg.data.n_test and run["reading"]


def test_a_stale_shipped_result_names_what_changed():
    cfg = resolve_config("smoke")
    fp = ablation.stages.fingerprint(cfg, ablation.STAGE)
    old = {**fp.parts, "version": fp.parts["version"] - 1}
    run = {"users": 6, "git": {"commit": "abc"}, "reading": ["hierarchical: undecided."]}
    fresh = {"runs": {"smoke": {**run, "fingerprint": fp.digest, "parts": fp.parts}}}
    assert "Stale" not in ablation.shipped_reading(fresh, {"smoke": fp})
    stale = {"runs": {"smoke": {**run, "fingerprint": ablation.stages.digest(old), "parts": old}}}
    text = ablation.shipped_reading(stale, {"smoke": fp})
    assert f"stage version: {old['version']} -> {fp.parts['version']}" in text and "finding of commit abc" in text
    assert "- hierarchical: undecided." in text  # the record is kept beside, not dropped


def test_the_decision_says_when_the_compared_recommenders_were_chosen_at_different_steps(tmp_path):
    import pandas as pd

    cfg = resolve_config("smoke", tmp_path)
    for method, step in (("none", 50), ("hierarchical", 75)):
        folder = stages.finish(sft.adapter_config(cfg, method), sft.STAGE)  # a complete adapter's record
        io.write_json(folder / "report.json", {"best": {"step": step}, "global_step": 75})
    assert sft.selected_step(cfg, "none") == (50, 75) and sft.selected_step(cfg, "recurrent") == (None, None)
    stale = stages.result_dir(sft.adapter_config(cfg, "template"), sft.STAGE, create=True)  # unfinished: no record
    io.write_json(stale / "report.json", {"best": {"step": 25}, "global_step": 75})
    assert sft.selected_step(cfg, "template") == (None, None)
    # notebook 07's table names each fine-tuned row's checkpoint; zero-shot has none, an untrained adapter "-"
    assert evaluation.checkpoints(cfg) == {table_rows.label("tallrec"): "step 50 of 75",
                                           table_rows.label("hierarchical"): "step 75 of 75",
                                           table_rows.label("recurrent"): "-"}
    assert evaluation.checkpoint_reading(cfg)[0].startswith(  # the table's reading says they differ
        f"The fine-tuned rows were chosen at different checkpoints ({table_rows.label('tallrec')}: step 50 of 75; ")
    assert evaluation.checkpoint_reading(with_overrides(cfg, {"eval.llm": ["tallrec", "recurrent"]})) == []
    table = pd.DataFrame(columns=["cell", "users", "axis", "value", "method", "control", "finetuned", "recall@10"])
    effect = pd.DataFrame([{"method": "hierarchical", "decision": "bounded", "step": 75, "reference_step": 50,
                            "steps": 75}])
    lines = ablation.controls_reading(table, pd.DataFrame(), pd.DataFrame(), effect)
    assert lines[0] == "hierarchical: bounded."
    assert "chosen at different steps (TALLRec at step 50; hierarchical at step 75; of 75 trained)" in lines[1]
    # the same step, or a record without steps (made before they were recorded): nothing to say
    assert ablation.controls_reading(table, pd.DataFrame(), pd.DataFrame(), effect.assign(step=50)) == lines[:1]
    assert ablation.controls_reading(table, pd.DataFrame(), pd.DataFrame(), effect[["method", "decision"]]) == lines[:1]
    # sft.select: last with different training lengths: the length differs, not a validation choice
    last = ablation.controls_reading(table, pd.DataFrame(), pd.DataFrame(), effect.assign(select="last"))[1]
    assert "its last checkpoint, and they trained for different numbers of steps (TALLRec 50; hierarchical 75)" \
        in last and "best validation" not in last and "sft.select=last" not in last
    assert "sft.select=last" in ablation.controls_reading(table, pd.DataFrame(), pd.DataFrame(),
                                                           effect.assign(select="best"))[1]
    last_cfg = with_overrides(cfg, {"sft.select": "last"})  # other adapters (select is in their fingerprint)
    for method, step in (("none", 50), ("hierarchical", 75)):
        folder = stages.finish(sft.adapter_config(last_cfg, method), sft.STAGE)
        io.write_json(folder / "report.json", {"best": {"step": step}, "global_step": step})
    assert "--set sft.select=last" not in evaluation.checkpoint_reading(last_cfg)[0]
    assert "--set sft.select=last" in evaluation.checkpoint_reading(cfg)[0]


def test_the_decision_on_recall_at_10_is_checked_at_the_other_cutoffs(tmp_path):
    """Every user's positive at rank 4 with the summary, at rank 1 without: no difference at Recall@5 or @10 (the
    decision bounds it), all of it at Recall@3 and MRR: the reading says the answer depends on the cut-off."""
    import pandas as pd

    cfg = resolve_config("smoke", tmp_path, {"eval.equivalence_margin": 0.05})
    n = 60  # .95^60 < .05: no user changing at Recall@10 bounds it
    table = pd.DataFrame([
        {"cell": "summary=hierarchical-ft", "finetuned": True, "axis": "summary", "users": n,
         "scores": _scores(tmp_path, "h", [(4, [0.1] * 5) for _ in range(n)])},
        {"cell": "summary=none-ft", "finetuned": True, "axis": "summary", "users": n,
         "scores": _scores(tmp_path, "n", [(1, [0.9] * 5) for _ in range(n)])},
    ])
    assert grid.summary_effect(table, cfg)["decision"].iloc[0].startswith("bounded")
    others = grid.effect_at_cutoffs(table, cfg).set_index("metric")
    assert list(others.index) == ["recall@3", "recall@5", "mrr@10", "ndcg@10"]
    assert others.loc["recall@3", "diff"] == -1 and others.loc["recall@5", "diff"] == 0
    assert others.loc["mrr@10", "diff"] == pytest.approx(0.25 - 1)
    line, = ablation.cutoffs_reading(others.reset_index())
    assert line.startswith("hierarchical at the other metrics (recall@3 -1.000, recall@5 +0.000, mrr@10 -0.750")
    assert "shown on recall@3 (Holm p < 0.001), mrr@10 (Holm p < 0.001), ndcg@10" in line
    assert "recall@5 (" not in line.split("shown on")[1]
    assert ablation.cutoffs_reading(pd.DataFrame()) == []
