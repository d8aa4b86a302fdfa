"""Results pages come from recorded results: docs/results/demo.md from demo.json, docs/benchmarks.md from
benchmarks.json (trsr_utils.tools.results_page). A committed page that no longer equals what its JSON gives, or that
shows a number its JSON does not hold, fails here: a page can be stale only visibly."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nbformat
import pytest

from trsr_utils.core import io
from trsr_utils.tools import pipeline
from trsr_utils.tools import results_page as rp
from trsr_utils.tools import bench_page
from trsr_utils.core.config import REPO_ROOT, resolve_config

RESULTS = REPO_ROOT / "docs" / "results"
BENCH_PAGE = REPO_ROOT / "docs" / "benchmarks.md"
BENCH_FIXTURE = Path(__file__).parents[1] / "fixtures" / "bench" / "tiny-random.json"
REGENERATE = ("after a fresh `make demo`: python -m trsr_utils report --run runs/demo "
              "--to docs/results/demo.md")


def committed_pages() -> list[Path]:
    """The generated results pages in docs/results (each has its JSON beside it)."""
    return sorted(p.with_suffix(".md") for p in RESULTS.glob("*.json") if p.with_suffix(".md").exists()
                  and p.name != "controls.json")


def test_the_demo_results_page_is_committed_with_its_json_and_figures():
    page = RESULTS / "demo.md"
    assert page in committed_pages()
    data = io.read_json(page.with_suffix(".json"))
    assert data["profile"] == "demo" and data["format"] == rp.FORMAT
    for n in data["notebooks"]:
        for name in n["figures"]:
            assert (RESULTS / "demo" / name).is_file(), f"{name} is referenced but not committed"
    referenced = {name for n in data["notebooks"] for name in n["figures"]}
    assert {p.name for p in (RESULTS / "demo").iterdir()} == referenced, "a figure nobody references"


@pytest.mark.parametrize("page", committed_pages(), ids=lambda p: p.name)
def test_a_committed_results_page_is_exactly_what_its_recorded_results_give(page):
    assert page.read_text(encoding="utf-8") == rp.page_from_json(page.with_suffix(".json")), (
        f"{page.relative_to(REPO_ROOT)} was edited by hand or written from other results: {REGENERATE}")


@pytest.mark.parametrize("page", committed_pages(), ids=lambda p: p.name)
def test_every_number_on_a_committed_results_page_is_one_its_run_recorded(page):
    data = io.read_json(page.with_suffix(".json"))
    shown = rp.numbers_shown(page.read_text(encoding="utf-8"), data)
    recorded = rp.numbers_recorded(data)
    assert shown <= recorded, f"{page.name} shows numbers its run did not record: {sorted(shown - recorded)[:20]}"


@pytest.mark.parametrize("page", committed_pages(), ids=lambda p: p.name)
def test_the_writer_shows_only_recorded_numbers_on_a_page_rendered_again_from_its_json(page):
    """Holds for the page the writer gives today (its provenance rows change; its numbers must stay recorded)."""
    data = io.read_json(page.with_suffix(".json"))
    shown = rp.numbers_shown(rp.page_from_json(page.with_suffix(".json")), data)
    assert shown <= rp.numbers_recorded(data), sorted(shown - rp.numbers_recorded(data))[:20]


@pytest.mark.regenerate
def test_the_demo_results_page_was_made_under_the_demo_profile_as_it_is_now(tmp_path):
    """The stage fingerprints the page carries are those the demo profile gives today (settings, data, models,
    prompts, stage versions). Fails after a change that would give other numbers, until the page is written again
    from a fresh demo run (see tests/README.md, marker ``regenerate``)."""
    from trsr_utils import stages

    data = io.read_json(RESULTS / "demo.json")
    cfg = resolve_config("demo", tmp_path / "demo")
    stale = {name: (fp[:12], stages.fingerprint(cfg, name).digest[:12]) for name, fp in data["fingerprints"].items()
             if fp != stages.fingerprint(cfg, name).digest}
    assert not stale, f"docs/results/demo.md was made under other fingerprints (page, now): {stale}; {REGENERATE}"
    dirty = [nb["notebook"] for nb in data["notebooks"] if nb.get("dirty")]
    assert data["overrides"] == {} and not dirty and not (data["last_invocation"].get("git") or {}).get("dirty"), (
        f"a results page comes from a clean run (dirty: {dirty})")


# ------------------------------------------------------------------------------------------- the writer


def _tiny_run(root: Path) -> Path:
    """A run directory with what a results page reads: a manifest, recorded results, an executed notebook with a
    reading, and a stage folder with a figure."""
    run = root / "run"
    fp = "ab" * 32
    (run / "results").mkdir(parents=True)
    (run / "notebooks").mkdir()
    (run / "07_eval" / fp[:12]).mkdir(parents=True)
    (run / "07_eval" / fp[:12] / "metric_bars.png").write_bytes(b"\x89PNG fake")
    io.write_json(run / "results" / "07_evaluation.json", {
        "n_users": 20, "systems": {"random": {"recall@10": 0.55, "mrr@10": 0.15492063492063493},
                                   "tfidf": {"recall@10": 0.85, "mrr@10": 0.47041666666666665}},
        "two_stage": [{"retriever": "SASRec", "recall@10": 0.25}], "precision": None})
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("Markdown(...)")
    cell.outputs = [nbformat.v4.new_output("execute_result", {"text/markdown": "**Reading the table**\n\n- TF-IDF "
                                                               "leads with 0.850.", "text/plain": "<Markdown>"}),
                    nbformat.v4.new_output("display_data", {"text/markdown": "$$x^2$$"})]
    nb.cells = [cell]
    nbformat.write(nb, run / "notebooks" / "07_evaluation.ipynb")
    io.write_json(run / "manifest.json", {
        "profile": "demo", "overrides": {}, "config_digest": "e4794a1d6d1c",
        "git": {"commit": "52b0b93f1f3754095622a447ec2547ca681a0032", "dirty": False},
        "python": "3.11.7", "platform": "Linux-x86_64", "cpus": 2, "updated": "2026-12-06T06:08:07+00:00",
        "packages": {"torch": "2.13.0+cpu", "transformers": "5.23.0"},
        "notebooks": [{"notebook": "07_evaluation.ipynb", "status": "ok", "seconds": 322.2,
                       "started": "2026-12-06T06:17:00+00:00",
                       "git": {"commit": "c0ffee" + "0" * 34, "dirty": False},
                       "stage": {"stage": "07_eval", "fingerprint": fp, "folder": "/elsewhere", "result": "computed"}},
                      {"notebook": "10_scaling_plan.ipynb", "status": "ok", "seconds": 11.6, "stage": None,
                       "git": {"commit": "c0ffee" + "0" * 34, "dirty": False}}]})
    return run


def test_a_recomputed_stage_says_when_it_was_first_made(tmp_path):
    run = _tiny_run(tmp_path)
    manifest = io.read_json(run / "manifest.json")
    manifest["notebooks"][0]["stage"].update(result="recomputed", first_made="2026-12-05T10:00:00+00:00")
    io.write_json(run / "manifest.json", manifest)
    to = tmp_path / "page.md"
    assert pipeline.main(["report", "--run", str(run), "--to", str(to)]) == 0
    assert "| recomputed (first made 2026-12-05T10:00:00+00:00) |" in to.read_text()
    # the date is provenance, not a number the run measured (course-long-all's page failed on it)
    data = io.read_json(to.with_suffix(".json"))
    assert not {"2026", "05", "10"} & rp.numbers_shown(to.read_text(), data) - rp.numbers_recorded(data)


def test_report_writes_the_page_its_json_and_its_figures_from_a_run(tmp_path, capsys):
    run = _tiny_run(tmp_path)
    to = tmp_path / "docs" / "results" / "demo.md"
    assert pipeline.main(["report", "--run", str(run), "--to", str(to)]) == 0
    assert "1 figures" in capsys.readouterr().out
    page, data = to.read_text(), io.read_json(to.with_suffix(".json"))
    assert (to.parent / "demo" / "07_eval_metric_bars.png").read_bytes() == b"\x89PNG fake"
    assert "![07_eval_metric_bars](demo/07_eval_metric_bars.png)" in page
    assert "**Reading the table**\n\n- TF-IDF leads with 0.850." in page and "$$x^2$$" not in page
    assert "| random | 0.55 | 0.1549 |" in page and "| tfidf | 0.85 | 0.4704 |" in page  # systems, as a table
    assert "| SASRec | 0.25 |" in page and "| precision | - |" in page
    assert "| all notebooks | 333.8 s |" in page and "`ababababab" in page
    # The notebooks' own commit, and the manifest's top level labelled for what it is: the last invocation.
    assert "| commit the notebooks ran at | `c0ffee000000`, every notebook |" in page
    assert "| last pipeline invocation | started 2026-12-06T06:08:07+00:00, commit `52b0b93f1f37`" in page
    assert "| first notebook started | 2026-12-06T06:17:00+00:00 |" in page and "run started" not in page
    assert data["fingerprints"] == {"07_eval": "ab" * 32} and data["total_seconds"] == 333.8
    results = run / "results" / "07_evaluation.json"
    assert data["notebooks"][0]["results_sha256"] == hashlib.sha256(results.read_bytes()).hexdigest()
    assert data["notebooks"][1]["results_sha256"] is None  # 10 recorded no results file here
    assert rp.page_from_json(to.with_suffix(".json")) == page
    assert rp.numbers_shown(page, data) <= rp.numbers_recorded(data)
    # Only recorded values and readings count as recorded: not the fingerprints, timestamps, commits or platform.
    recorded = rp.numbers_recorded(data)
    assert {"0.55", "0.1549", "322.2", "333.8", "20", "2"} <= recorded
    assert not {"2026", "06", "11", "13", "07", "06T06"} & recorded

    # A number changed by hand on the page, or a stale page after new results: both are caught.
    edited = page.replace("| tfidf | 0.85 |", "| tfidf | 0.9 |")
    assert "0.9" in rp.numbers_shown(edited, data) - rp.numbers_recorded(data)
    assert "2027" in rp.numbers_shown(page + "\nIn 2027 it was better.\n", data) - recorded
    data["notebooks"][0]["results"]["systems"]["tfidf"]["recall@10"] = 0.8
    assert rp.render_run(data, "demo") != page


def test_report_refuses_a_folder_that_is_no_run(tmp_path, capsys):
    assert pipeline.main(["report", "--run", str(tmp_path)]) == 1
    assert "no manifest.json" in capsys.readouterr().err


def test_report_names_the_page_after_the_runs_profile_by_default(tmp_path, monkeypatch):
    run = _tiny_run(tmp_path)
    written = {}
    monkeypatch.setattr(rp, "write_run_page", lambda run_dir, to: written.update(to=Path(to)) or
                        {"page": str(to), "json": "", "figures": "", "n_figures": 0})
    assert pipeline.main(["report", "--run", str(run)]) == 0
    assert written["to"] == REPO_ROOT / "docs" / "results" / "demo.md"


def test_report_writes_only_md_pages_and_never_over_what_it_did_not_write(tmp_path, capsys):
    run = _tiny_run(tmp_path)
    assert pipeline.main(["report", "--run", str(run), "--to", str(tmp_path / "page.txt")]) == 1
    assert "ending in .md" in capsys.readouterr().err and not (tmp_path / "page").exists()

    handwritten = tmp_path / "notes.md"
    handwritten.write_text("# My notes\n")
    assert pipeline.main(["report", "--run", str(run), "--to", str(handwritten)]) == 1
    err = capsys.readouterr().err
    assert str(handwritten) in err and "pass another --to" in err
    assert handwritten.read_text() == "# My notes\n"

    # A folder named like the figure folder that holds other things is left alone (no rmtree of a stranger's folder).
    page = tmp_path / "out" / "demo.md"
    (page.parent / "demo").mkdir(parents=True)
    (page.parent / "demo" / "thesis.tex").write_text("precious")
    assert pipeline.main(["report", "--run", str(run), "--to", str(page)]) == 1
    assert "thesis.tex" in capsys.readouterr().err and (page.parent / "demo" / "thesis.tex").read_text() == "precious"

    # Its own page is rewritten: the old figures go, the new ones come.
    (page.parent / "demo" / "thesis.tex").unlink()
    assert pipeline.main(["report", "--run", str(run), "--to", str(page)]) == 0
    (page.parent / "demo" / "07_eval_old.png").write_bytes(b"old")
    assert pipeline.main(["report", "--run", str(run), "--to", str(page)]) == 0
    assert sorted(p.name for p in (page.parent / "demo").iterdir()) == ["07_eval_metric_bars.png"]


def test_report_refuses_a_run_whose_notebooks_did_not_all_finish(tmp_path, capsys):
    run = _tiny_run(tmp_path)
    manifest = io.read_json(run / "manifest.json")
    manifest["notebooks"][1].update(status="failed")
    manifest["notebooks"].append({"notebook": "08_ablations.ipynb", "status": "running"})
    io.write_json(run / "manifest.json", manifest)
    assert pipeline.main(["report", "--run", str(run), "--to", str(tmp_path / "p.md")]) == 1
    err = capsys.readouterr().err
    assert "10_scaling_plan.ipynb (failed)" in err and "08_ablations.ipynb (running)" in err
    assert not (tmp_path / "p.md").exists()


def test_a_variants_page_is_named_after_its_digest_and_finds_its_figures_in_the_run_directory(tmp_path, monkeypatch):
    run = _tiny_run(tmp_path)
    variant = run / "variants" / "0123456789ab"
    (variant / "results").mkdir(parents=True)
    for rel in ("manifest.json", "notebooks", "results/07_evaluation.json"):
        (run / rel).rename(variant / rel)
    manifest = io.read_json(variant / "manifest.json")
    manifest.update(overrides={"data.n_train": 50}, config_digest="0123456789ab")
    io.write_json(variant / "manifest.json", manifest)
    assert rp.default_page(variant, manifest) == REPO_ROOT / "docs" / "results" / "demo-0123456789ab.md"
    assert rp.default_page(run, {"profile": "demo", "overrides": {}}) == REPO_ROOT / "docs" / "results" / "demo.md"
    to = tmp_path / "variant.md"
    assert pipeline.main(["report", "--run", str(variant), "--to", str(to)]) == 0
    assert (tmp_path / "variant" / "07_eval_metric_bars.png").read_bytes() == b"\x89PNG fake"
    # The stage record's own folder comes first where it exists.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "other.png").write_bytes(b"other")
    manifest["notebooks"][0]["stage"]["folder"] = str(elsewhere)
    io.write_json(variant / "manifest.json", manifest)
    assert pipeline.main(["report", "--run", str(variant), "--to", str(to)]) == 0
    assert [p.name for p in (tmp_path / "variant").iterdir()] == ["07_eval_other.png"]


def test_recorded_values_are_formatted_one_way():
    assert [rp.fmt(v) for v in (0.15492063492063493, 1442.2758620689656, 0.0002, 1.0, 20, True, None,
                                float("nan"), 61.437, "a|b", [1, 0.5])] == [
        "0.1549", "1442.3", "0.0002", "1", "20", "yes", "-", "-", "61.44", "a\\|b", "1, 0.5"]


# ------------------------------------------------------------------------------------------- benchmarks


def test_the_benchmarks_page_is_generated_from_benchmarks_json_between_its_markers():
    page = BENCH_PAGE.read_text(encoding="utf-8")
    source = BENCH_PAGE.with_suffix(".json")
    bench = io.read_json(source) if source.exists() else None
    assert bench_page.bench_section(page) == bench_page.render_bench(bench), (
        "docs/benchmarks.md's generated section is not what docs/benchmarks.json gives: run `make bench` or "
        "`python -m trsr_utils results-page bench --from runs/bench/bench.json`")
    if bench is not None:
        shown = rp.numbers_in(bench_page.bench_section(page))
        assert shown <= rp.numbers_recorded(bench), sorted(shown - rp.numbers_recorded(bench))


def test_the_bench_writer_turns_bench_json_into_tables_and_keeps_the_prose(tmp_path, capsys):
    page = tmp_path / "benchmarks.md"
    page.write_text(f"# Benchmarks\n\nHand-written prose.\n\n{bench_page.BENCH_BEGIN}\nold\n{bench_page.BENCH_END}\n\n## History\n")
    assert bench_page.main(["bench", "--from", str(BENCH_FIXTURE), "--to", str(page)]) == 0
    text = page.read_text()
    assert text.startswith("# Benchmarks\n\nHand-written prose.\n\n") and text.endswith("## History\n")
    assert "old" not in bench_page.bench_section(text)
    bench = json.loads(BENCH_FIXTURE.read_text())
    assert io.read_json(page.with_suffix(".json")) == bench
    section = bench_page.bench_section(text)
    assert "### scoring" in section and "### precision" in section
    assert "| shared prefix | 8 | 168 | 0.5 | 333.3 |" in section  # a row of the scoring table
    assert "Goal: >= 5x vs independent (and |p difference| <= 1e-4): met." in section
    assert ": **not met**." in section and ": met." in section
    assert rp.numbers_in(section) <= rp.numbers_recorded(bench)
    assert bench_page.main(["bench", "--from", str(tmp_path / "none.json"), "--to", str(page)]) == 1
    assert "run make bench first" in capsys.readouterr().err


def test_bench_results_name_a_local_model_folder_by_its_name_and_carry_their_commit(tmp_path):
    from trsr_utils.tools.bench import public_model

    assert public_model("/home/me/models/foo@0123456789abcdef|float32|none") == "foo@0123456789abcdef|float32|none"
    assert public_model("HuggingFaceTB/SmolLM2-135M-Instruct|float32|none") == (
        "HuggingFaceTB/SmolLM2-135M-Instruct|float32|none")
    bench = json.loads(BENCH_FIXTURE.read_text())
    first = next(iter(bench["benchmarks"].values()))
    first.update(model="/home/me/models/foo@0123456789abcdef|float32|none",
                 git={"commit": "c0ffee" + "0" * 34, "dirty": False})
    source, page = tmp_path / "bench.json", tmp_path / "benchmarks.md"
    source.write_text(json.dumps(bench))
    page.write_text(f"# B\n\n{bench_page.BENCH_BEGIN}\n{bench_page.BENCH_END}\n")
    bench_page.write_bench_page(source, page)
    text, written = page.read_text(), page.with_suffix(".json").read_text()
    assert "/home/me" not in text and "/home/me" not in written
    assert "model `foo@0123456789abcdef|float32|none`, at commit `c0ffee000000`." in text


def test_a_page_without_bench_results_says_how_to_make_them():
    assert "run `make bench`" in bench_page.render_bench(None)
    with pytest.raises(ValueError, match="no generated section"):
        bench_page.bench_section("# nothing here")
