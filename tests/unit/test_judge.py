"""``python -m trsr_utils judge``: two hand-made runs with known differences."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trsr_utils.tools import judge

USERS = [str(u) for u in range(40)]
BASE = 1 + np.random.default_rng(1).integers(0, 21, len(USERS))  # each user's rank of the positive in run A


def make_run(root: Path, dtype: str = "float32", hierarchical_rank=None, tallrec_rank=None,
             summaries: dict[str, str] | None = None, coverage_shift: float = 0.0, variant: bool = False,
             shuffle: bool = False, second_seed=None) -> Path:
    """A run directory as the pipeline leaves it, with only what the judge reads."""
    rng = np.random.default_rng(0)
    home = root / "variants" / "abc123" if variant else root
    home.mkdir(parents=True)
    folders = {}
    for stage, method in judge.NOTEBOOK_STAGES.items():
        f = root / stage / "f"
        f.mkdir(parents=True)
        texts = {u: f"{method} summary of user {u}" for u in USERS}
        texts.update((summaries or {}) if method == "hierarchical" else {})
        pd.DataFrame({"user_id": USERS, "summary": [texts[u] for u in USERS]}).to_parquet(f / "summaries.parquet")
        (f / "meta.json").write_text(json.dumps({"cache_misses": 10, "generation_seconds": 8.0 if dtype ==
                                                 "float32" else 4.0}))
        folders[stage] = f
    f = root / "05_compare" / "f"
    f.mkdir(parents=True)
    cov = rng.uniform(0.2, 0.8, len(USERS))
    audit = pd.DataFrame([{"method": m, "user_id": u, "coverage": c + (coverage_shift if m == "hierarchical" else 0),
                           "faithfulness": 1.0, "named": 3, "invented": 0} for m in ("hierarchical", "recurrent")
                          for u, c in zip(USERS, cov)])
    # shuffle: the same values in another row order, so that only pairing by user id gives the right answer
    (audit.sample(frac=1, random_state=3) if shuffle else audit).to_parquet(f / "audit.parquet")
    pd.DataFrame([{"system": "hierarchical summary", "user_id": u, "rank": 1 + i % 21}
                  for i, u in enumerate(USERS)]).to_parquet(f / "predictiveness.parquet")
    folders["05_compare"] = f
    f = root / "07_eval" / "f"
    f.mkdir(parents=True)
    base = BASE
    ranks = {"random": base, "tallrec": tallrec_rank if tallrec_rank is not None else base,
             "hierarchical": hierarchical_rank if hierarchical_rank is not None else base}
    frame = pd.DataFrame([{"system": s, "label": s, "user_id": u, "rank": int(r), "seed": 0}
                          for s, rs in ranks.items() for u, r in zip(USERS, rs)])
    if second_seed is not None:  # a second SFT seed of the hierarchical row
        frame = pd.concat([frame, pd.DataFrame([{"system": "hierarchical", "label": "hierarchical", "user_id": u,
                                                 "rank": int(r), "seed": 1} for u, r in zip(USERS, second_seed)])])
    (frame.sample(frac=1, random_state=4) if shuffle else frame).to_parquet(f / "ranks.parquet")
    folders["07_eval"] = f
    (home / "results").mkdir()
    (home / "results" / "08_ablations.json").write_text(json.dumps({
        "summary_effect": {"hierarchical": {"diff": 0.02, "p": 0.8, "p_holm": 0.8, "decision": "undecided: +0.020"}},
        "controls": {"oracle vs hierarchical": {"diff": 0.2, "p_holm": 0.01, "significant": True}}}))
    manifest = {"config": {"run_dir": str(root), "model": {"summarizer_dtype": dtype},
                           "eval": {"equivalence_margin": 0.05}},
                "stages": {s: {"folder": str(p)} for s, p in folders.items()},
                "notebooks": [{"notebook": "03_hierarchical_summary.ipynb", "seconds": 10.0}]}
    (home / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_a_run_against_itself_changes_nothing(tmp_path):
    run = judge.Run(make_run(tmp_path / "a"))
    tables = judge.judge(run, run, n_resamples=999)
    assert tables["settings"].empty
    assert (tables["summaries"]["identical"] == len(USERS)).all()
    assert not tables["audit"]["differs"].any() and (tables["audit"]["diff"] == 0).all()
    assert not tables["ranking"]["moved"].any()
    lines = judge.reading(tables)
    assert "Every user's rank is the same in both runs for 3 of 3 other systems: random, tallrec, hierarchical." \
        in lines  # no setting differs, so no row is singled out as the negative control
    assert lines[-1] == "2 of 2 of notebook 08's findings get the same answer in both runs."


def test_a_changed_setting_is_found_where_it_acts(tmp_path):
    base = BASE
    worse = np.where(np.arange(len(USERS)) < 30, 21, base)  # 30 of 40 users' positives pushed to the bottom
    a = judge.Run(make_run(tmp_path / "a"))
    b = judge.Run(make_run(tmp_path / "b", dtype="bfloat16", hierarchical_rank=worse,
                           summaries={u: "another text" for u in USERS[:5]}, coverage_shift=0.3, variant=True,
                           shuffle=True))
    tables = judge.judge(a, b, n_resamples=999)
    assert tables["settings"].to_dict("records") == [{"setting": "model.summarizer_dtype", "A": "float32",
                                                      "B": "bfloat16"}]
    s = tables["summaries"].set_index("method")
    assert s.loc["hierarchical", "identical"] == 35 and s.loc["recurrent", "identical"] == 40
    assert s.loc["hierarchical", "s_per_call_A"] == pytest.approx(0.8)
    assert s.loc["hierarchical", "s_per_call_B"] == pytest.approx(0.4)
    audit = tables["audit"].set_index(["method", "measure"])
    assert audit.loc[("hierarchical", "coverage"), "diff"] == pytest.approx(0.3)
    assert audit.loc[("hierarchical", "coverage"), "differs"]
    assert not audit.drop(("hierarchical", "coverage"))["differs"].any()
    ranking = tables["ranking"].set_index("system")
    assert not ranking.loc["tallrec", "moved"] and not ranking.loc["random", "moved"]
    # Holm counts only what moved: one audit measure and one system here, so their Holm p is their p
    assert audit.loc[("hierarchical", "coverage"), "p_holm"] == audit.loc[("hierarchical", "coverage"), "p"]
    assert ranking.loc["hierarchical", "p_holm"] == ranking.loc["hierarchical", "p"]
    assert (ranking.drop("hierarchical")["p_holm"] == 1).all()
    expected = float(np.mean(worse <= 10) - np.mean(base <= 10))
    assert ranking.loc["hierarchical", "diff"] == pytest.approx(expected) and expected < 0
    assert ranking.loc["hierarchical", "decision"].startswith("shown")
    lines = judge.reading(tables)
    assert ("hierarchical: 35 of 40 users' final summaries are identical; 0.80 s per new LLM call in A (10 new "
            "calls), 0.40 in B (10).") in lines
    assert any(line.startswith("1 of the 1 audit measures that moved at all differ between A and B after Holm (7 are "
                               "equal for every user): hierarchical coverage") for line in lines)
    assert ("Negative control (tallrec, reads no summary, and only the summarizer's settings differ): every user's "
            "rank is the same in both runs.") in lines
    assert any(line.startswith("hierarchical (") and "shown" in line for line in lines)
    assert "# Judging one setting" in judge.page(a, b, tables)


def test_the_negative_control_says_when_it_moves(tmp_path):
    base = BASE
    moved = base.copy()
    moved[0] = 22 - moved[0] if moved[0] != 11 else 1
    a = judge.Run(make_run(tmp_path / "a"))
    tables = judge.judge(a, judge.Run(make_run(tmp_path / "b", dtype="bfloat16", tallrec_rank=moved)), n_resamples=999)
    assert any(line.startswith("Negative control (tallrec, reads no summary, and only the summarizer's settings "
                               "differ): 1 users' ranks changed") for line in judge.reading(tables))
    # a setting on the recommender's side may move TALLRec too: then it is not a control
    assert judge.negative_controls(pd.DataFrame({"setting": ["model.scoring_dtype"]})) == []


def test_several_seeds_are_averaged_per_user_and_a_missing_stage_is_named(tmp_path):
    worse = np.full(len(USERS), 21)
    a = judge.Run(make_run(tmp_path / "a", second_seed=BASE))
    b_dir = make_run(tmp_path / "b", second_seed=worse)
    ranking = judge.judge(a, judge.Run(b_dir), n_resamples=999)["ranking"].set_index("system")
    # seed 0 is equal, seed 1 pushes every positive to the bottom: the mean over seeds moves by half of that
    assert ranking.loc["hierarchical", "diff"] == pytest.approx(-float(np.mean(BASE <= 10)) / 2)
    assert ranking.loc["hierarchical", "users_rank_changed"] == int((BASE != 21).sum())
    for f in (b_dir / "07_eval" / "f").iterdir():
        f.unlink()
    (b_dir / "07_eval" / "f").rmdir()
    tables = judge.judge(a, judge.Run(b_dir), n_resamples=999)
    assert "ranking" not in tables
    assert f"Not compared: ranking (no 07_eval result in {b_dir})." in judge.reading(tables)


def test_a_directory_that_is_not_a_run_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        judge.Run(tmp_path)
    for v in ("x", "y"):
        (tmp_path / "variants" / v).mkdir(parents=True)
        (tmp_path / "variants" / v / "manifest.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="2 variants"):
        judge.Run(tmp_path)


def test_the_command_writes_the_page(tmp_path, capsys):
    a = make_run(tmp_path / "a")
    out = tmp_path / "judge.md"
    assert judge.main([str(a), str(a), "--to", str(out)]) == 0
    assert out.read_text().startswith("# Judging one setting: B against A")
