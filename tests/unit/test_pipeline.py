"""The papermill runner: selection, parameters, the failure path, the manifest."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from trsr_utils.tools import pipeline
from trsr_utils.store import stages
from trsr_utils.core.config import ConfigError, resolve_config


def make_nb(path: Path, body: list[str], params: str = 'profile = "demo"\nrun_dir = ""\noverrides = {}\n') -> Path:
    cell = new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb = new_notebook(cells=[new_markdown_cell("# t"), cell, *[new_code_cell(src) for src in body]])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_select_only_and_from(tmp_path):
    paths = [make_nb(tmp_path / f"{n}_x.ipynb", []) for n in ("01", "02", "03")]
    assert pipeline.discover(tmp_path) == paths
    assert [p.name[:2] for p in pipeline.select(paths, only=["1", "03"])] == ["01", "03"]
    assert [p.name[:2] for p in pipeline.select(paths, start="02")] == ["02", "03"]
    with pytest.raises(pipeline.PipelineError, match="no notebook numbered '07'"):
        pipeline.select(paths, only=["07"])


def test_parameters_cell_must_hold_literals(tmp_path):
    good = nbformat.read(make_nb(tmp_path / "01_a.ipynb", []), as_version=4)
    assert pipeline.parameters_cell(good)[1] == {"profile": "demo", "run_dir": "", "overrides": {}}
    bad = nbformat.read(make_nb(tmp_path / "02_b.ipynb", [], params="import os\nprofile = 'x'\n"), as_version=4)
    with pytest.raises(pipeline.PipelineError, match="may only assign literals"):
        pipeline.parameters_cell(bad)
    derived = nbformat.read(make_nb(tmp_path / "03_c.ipynb", [], params="profile = 'a' + 'b'\n"), as_version=4)
    with pytest.raises(pipeline.PipelineError, match="not a literal"):
        pipeline.parameters_cell(derived)


@pytest.mark.notebook
def test_failure_stops_the_chain_and_keeps_the_notebook(tmp_path, capsys, monkeypatch):
    # Each notebook's record holds the tree at its own start (a commit made while a long run goes on shows there).
    states = iter([{"commit": c * 40, "dirty": c == "c"} for c in "abc"])
    monkeypatch.setattr(pipeline, "git_state", lambda: next(states))
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    make_nb(nbs / "01_ok.ipynb", ["x = 1", "print('first ran', profile)"])
    make_nb(nbs / "02_fails.ipynb", ["y = 2", "raise ValueError('boom in cell four')", "z = 3"])
    make_nb(nbs / "03_never.ipynb", ["print('must not run')"])
    out = tmp_path / "run"
    code = pipeline.main(["run", "--profile", "smoke", "--out", str(out), "--notebooks", str(nbs)])
    assert code == 1
    err = capsys.readouterr().err
    assert "FAILED: 02_fails.ipynb, cell 4 (In [4]: raise ValueError('boom in cell four'))" in err
    assert "ValueError: boom in cell four" in err and "executed notebook kept at" in err
    manifest = json.loads((out / "manifest.json").read_text())
    status = {r["notebook"]: r["status"] for r in manifest["notebooks"]}
    assert status == {"01_ok.ipynb": "ok", "02_fails.ipynb": "failed"}
    assert manifest["notebooks"][1]["error"]["ename"] == "ValueError"
    assert manifest["git"]["commit"] == "a" * 40  # the invocation's start
    assert [r["git"] for r in manifest["notebooks"]] == [{"commit": "b" * 40, "dirty": False},
                                                          {"commit": "c" * 40, "dirty": True}]
    assert (out / "notebooks" / "02_fails.ipynb").exists() and not (out / "notebooks" / "03_never.ipynb").exists()
    assert manifest["packages"]["torch"].startswith("2.13") and manifest["config"]["profile"] == "smoke"
    executed = nbformat.read(out / "notebooks" / "01_ok.ipynb", as_version=4)
    assert any("first ran smoke" in o.get("text", "") for c in executed.cells for o in c.get("outputs", []))


def test_unknown_override_fails_before_running(tmp_path, capsys):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    make_nb(nbs / "01_ok.ipynb", ["x = 1"])
    code = pipeline.main(["run", "--profile", "smoke", "--out", str(tmp_path / "r"), "--notebooks", str(nbs),
                          "--set", "data.n_trainn=3"])
    assert code == 1
    assert "did you mean 'data.n_train'" in capsys.readouterr().err
    assert not (tmp_path / "r" / "manifest.json").exists()
    with pytest.raises(ConfigError):
        pipeline.run("smoke", tmp_path / "r", notebooks_dir=nbs, overrides={"nope": 1})


def test_notebook_must_declare_injected_parameters(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    make_nb(nbs / "01_x.ipynb", [], params='profile = "demo"\n')
    with pytest.raises(pipeline.PipelineError, match=r"does not declare \['run_dir', 'overrides'\]"):
        pipeline.run("smoke", tmp_path / "r", notebooks_dir=nbs)


def test_strip_removes_outputs(tmp_path):
    path = make_nb(tmp_path / "01_a.ipynb", ["print(1)"])
    nb = nbformat.read(path, as_version=4)
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="1\n")]
    nb.cells[2].execution_count = 3
    nb.metadata["widgets"] = {"state": {}}
    nbformat.write(nb, path)
    assert pipeline.strip([path]) == [path]
    again = nbformat.read(path, as_version=4)
    assert again.cells[2].outputs == [] and again.cells[2].execution_count is None and "widgets" not in again.metadata
    assert pipeline.strip([path]) == []


def test_set_values_are_yaml_parsed():
    from trsr_utils.core.config import parse_sets

    assert parse_sets(["data.n_train=5", "model.quantization=null", "text.attributes=[title, year]"]) == {
        "data.n_train": 5, "model.quantization": None, "text.attributes": ["title", "year"]}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_sets(["oops"])


def test_stage_record_tells_computed_reused_and_recomputed(tmp_path):
    """A notebook's stage: made by this run, there before it, or made again under a fingerprint made earlier."""
    cfg = resolve_config("smoke", tmp_path)
    notebook = "01_data_filtering.ipynb"
    assert pipeline.stage_record(cfg, notebook, time.time())["result"] == "none"
    assert pipeline.stage_record(cfg, "10_scaling_plan.ipynb", time.time()) is None
    began = time.time() - 1
    stages.finish(cfg, "01_data", 3.0)
    first = pipeline.stage_record(cfg, notebook, began)
    assert first["result"] == "computed" and "first_made" not in first
    assert pipeline.stage_record(cfg, notebook, time.time() + 1)["result"] == "re-used"
    made = stages.record(stages.result_dir(cfg, "01_data"))["created"]
    again = time.time()
    time.sleep(0.01)
    stages.finish(cfg, "01_data", 0.5)  # a later pass writes the same result again
    second = pipeline.stage_record(cfg, notebook, again)
    assert second["result"] == "recomputed" and second["fingerprint"] == first["fingerprint"]
    assert second["first_made"] == datetime.fromtimestamp(made, timezone.utc).isoformat(timespec="seconds")
