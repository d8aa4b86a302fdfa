"""The course website's builder without a browser: the vendored scripts are the published ones, the staging
folder has the repository's layout and the navigation the notebooks' order, and nothing left on a page would be
fetched from another host (tests/browser/test_site.py opens the built site in Chromium)."""

from __future__ import annotations

import hashlib
import re
import shutil

import pytest

from trsr_utils.tools import site
from trsr_utils.core.config import REPO_ROOT


def test_the_vendored_scripts_are_the_published_files_their_readme_lists():
    listed = dict((path, digest) for digest, path in re.findall(r"^([0-9a-f]{64})  \./(\S+)$",
                                                                (site.VENDOR / "README.md").read_text(), re.M))
    present = {p.relative_to(site.VENDOR).as_posix() for p in site.VENDOR.rglob("*") if p.is_file()}
    assert present - {"README.md"} == set(listed), "vendored files and the README's list differ"
    for path, digest in listed.items():
        assert hashlib.sha256((site.VENDOR / path).read_bytes()).hexdigest() == digest, f"{path} was changed"
    assert (site.VENDOR / "html-manager" / "embed.js").stat().st_size > 1_000_000


def _run(tmp_path):
    """A run directory whose 'executed' notebooks are two of the committed ones."""
    run = tmp_path / "run"
    (run / "notebooks").mkdir(parents=True)
    for name in ("07_evaluation.ipynb", "01_data_filtering.ipynb"):
        shutil.copy2(REPO_ROOT / "notebooks" / name, run / "notebooks" / name)
    return run


def test_staging_keeps_the_repositorys_layout_and_orders_the_navigation(tmp_path):
    config, notes = site.stage(_run(tmp_path), tmp_path / "src")
    assert notes == []  # no notebook 05 in this run
    src = tmp_path / "src"
    for rel in ("index.md", "docs/course.md", "docs/results/demo.md", "docs/methods.md", "tests/README.md",
                "notebooks/01_data_filtering.ipynb", "notebooks/solutions/05_compare_summaries.ipynb",
                "assets/vendor/mathjax/tex-chtml.js", "assets/mathjax-config.js"):
        assert (src / rel).is_file(), rel
    assert (src / "index.md").read_text() == (REPO_ROOT / "README.md").read_text()
    assert (src / "profiles" / "demo.yaml").is_file()  # linked from the README: copied so the link resolves
    nav = config["nav"]
    assert nav[0] == {"Home": "index.md"} and nav[1] == {"Course guide": "docs/course.md"}
    assert [list(x.values())[0] for x in nav[2]["Notebooks"]] == ["notebooks/01_data_filtering.ipynb",
                                                                 "notebooks/07_evaluation.ipynb"]
    assert nav[3]["Solutions"][0] == {"01 data filtering": "notebooks/solutions/01_data_filtering.ipynb"}
    assert "docs/results/demo.md" in nav[4]["Results"]
    assert config["docs_dir"] == str(src) and config["theme"]["font"] is False


def test_a_run_without_executed_notebooks_is_refused(tmp_path):
    with pytest.raises(site.SiteError, match="no executed notebooks"):
        site.stage(tmp_path, tmp_path / "src")


def test_cdn_scripts_are_pointed_at_the_vendored_copies_relative_to_each_page(tmp_path):
    page = tmp_path / "notebooks" / "05.html"
    page.parent.mkdir()
    page.write_text(
        "<script>var widgetRendererSrc = 'https://unpkg.com/@jupyter-widgets/html-manager@*/dist/embed-amd.js';"
        "var old = 'https://unpkg.com/@jupyter-js-widgets@*/dist/embed.js';</script>\n"
        f'<!-- Load mathjax -->\n<script src="{site.MATHJAX_SENTINEL}"> </script>\n<script type="text/x-mathjax-config">'
        "init_mathjax()</script>\n<!-- End of mathjax configuration -->\n"
        '<script src="https://unpkg.com/iframe-worker/shim"></script><a href="https://example.org/">a link</a>')
    (tmp_path / "index.html").write_text('<script src="https://unpkg.com/iframe-worker/shim"></script>')
    assert site.external_fetches(tmp_path)  # before: CDN scripts
    assert site.localize(tmp_path) == 2
    text = page.read_text()
    assert text.count("'../assets/vendor/html-manager/embed.js'") == 2 and "mathjax" not in text.lower()
    assert '<script src="../assets/vendor/iframe-worker/shim.js">' in text
    assert '<script src="assets/vendor/iframe-worker/shim.js">' in (tmp_path / "index.html").read_text()
    assert site.external_fetches(tmp_path) == []  # a plain link is not a fetch


@pytest.mark.parametrize("html", [
    '<img src="https://example.org/a.png">', '<link rel="stylesheet" href="//cdn.example.org/a.css">',
    "<style>@import url('https://fonts.example.org/x.css');</style>", "<style>a{background:url(https://x/y.png)}</style>",
    "<script>import('https://cdn.example.org/m.mjs')</script>"])
def test_anything_a_browser_would_fetch_from_another_host_is_found(tmp_path, html):
    (tmp_path / "page.html").write_text(html)
    assert len(site.external_fetches(tmp_path)) == 1


def test_the_kernel_free_summary_browser_holds_every_users_view_linked_to_its_dropdown():
    """What the site puts in notebook 05's saved state (site.browsable_summaries): one static view per user in a
    Stack, its index linked in the page (jslink) to the dropdown's, so a selection needs no kernel."""
    import sys
    from pathlib import Path

    from ipywidgets import embed

    sys.path.insert(0, str(Path(__file__).parent))
    from test_compare_widgets import frames

    from trsr_utils.report import widgets

    blocks, steps, finals = frames()
    ui = widgets.SummaryComparison(blocks, steps, finals)
    ui.user.value = "u2"
    view, link = ui.kernel_free()
    dropdown, stack = view.children
    assert list(dropdown.options) == ["u1", "u2"] and dropdown.value == "u2" and stack.selected_index == 1
    assert "user u1:" in stack.children[0].children[0].value and "U2 hates" in stack.children[1].children[1].children[
        1].value
    assert ui.user.value == "u2"  # the live browser is left where it was
    assert link.source == (dropdown, "index") and link.target == (stack, "selected_index")
    state = embed.dependency_state([view, link], drop_defaults=True)
    assert {view.model_id, stack.model_id, link.model_id} <= set(state)
    assert state[link.model_id]["model_name"] == "LinkModel"


def _browser_run(tmp_path, n_users=3):
    """A run whose manifest records the stage folders notebook 05's browser reads, and an executed notebook 05
    whose saved widget state holds papermill's one-user view (model 'old')."""
    import json
    import sys
    from pathlib import Path

    import nbformat
    import pandas as pd

    sys.path.insert(0, str(Path(__file__).parent))
    from test_compare_widgets import frames

    from trsr_utils.core import io
    from trsr_utils import stages

    blocks, steps, finals = frames()
    users = [f"u{i}" for i in range(1, n_users + 1)]
    # Every user but u2 is a test user; u2 (the second in order) is a training user and is not shown.
    finals = {m: pd.DataFrame({"user_id": users, "summary": [f"User {u} likes comedy." for u in users],
                               "flag": [""] * n_users, "split": ["train" if u == "u2" else "test" for u in users]})
              for m in finals}
    run = tmp_path / "run"
    recorded = {}
    for name, files in ((stages.summarize.SUMMARY_STAGE["hierarchical"], {"steps": steps["hierarchical"],
                                                                "summaries": finals["hierarchical"]}),
                        (stages.summarize.SUMMARY_STAGE["recurrent"], {"steps": steps["recurrent"],
                                                             "summaries": finals["recurrent"]}),
                        ("02_text", {"blocks": blocks}), ("05_compare", {})):
        fp = name.encode().hex().ljust(64, "0")[:64]
        folder = run / name / fp[:12]
        folder.mkdir(parents=True)
        for stem, frame in files.items():
            io.write_parquet(folder / f"{stem}.parquet", frame)
        io.write_json(folder / stages.RECORD, {"stage": name, "fingerprint": fp})
        recorded[name] = {"stage": name, "fingerprint": fp, "folder": str(folder), "result": "computed"}
    io.write_json(run / "manifest.json", {"profile": "no-such-profile", "overrides": {}, "stages": recorded})
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("browser = widgets.SummaryComparison(blocks, steps, finals)\nbrowser")
    cell.outputs = [nbformat.v4.new_output("display_data", {site.WIDGET_VIEW: {"model_id": "old"},
                                                            "text/plain": "VBox()"})]
    nb.cells = [nbformat.v4.new_markdown_cell("# 05"), cell]
    nb.metadata["widgets"] = {site.WIDGET_STATE: {"version_major": 2, "version_minor": 0,
                                                  "state": {"old": {"model_name": "VBoxModel", "state": {}}}}}
    (run / "notebooks").mkdir()
    path = run / "notebooks" / site.SUMMARY_BROWSER
    nbformat.write(nb, str(path))
    return run, path, json


def test_the_site_rebuilds_the_summary_browser_from_the_runs_recorded_stages_for_its_test_users(tmp_path, monkeypatch):
    import nbformat

    monkeypatch.setattr(site, "MAX_BROWSER_USERS", 3)
    run, path, json = _browser_run(tmp_path, n_users=5)  # the profile does not exist: only the manifest is read
    note = site.browsable_summaries(path, run)
    assert "3 test users' views" in note and "the run's recorded stage results" in note, note
    nb = nbformat.read(str(path), as_version=4)
    state = nb.metadata["widgets"][site.WIDGET_STATE]["state"]
    assert "old" not in state  # papermill's one-user view is replaced, not added to
    view = nb.cells[1].outputs[0]["data"][site.WIDGET_VIEW]["model_id"]
    assert view in state and len(nb.cells) == 2  # no note: the run's own results were read
    dropdowns = [m for m in state.values() if m["model_name"] == "DropdownModel"]
    assert [d["state"]["_options_labels"] for d in dropdowns] == [["u1", "u3", "u4"]]  # test users, capped


def test_a_summary_browser_the_site_cannot_rebuild_says_so_on_the_page(tmp_path):
    import nbformat

    run, path, _ = _browser_run(tmp_path)
    (run / "02_text").rename(run / "02_text_gone")
    note = site.browsable_summaries(path, run)
    assert "keeps its saved state only" in note
    nb = nbformat.read(str(path), as_version=4)
    assert nb.cells[1].cell_type == "markdown" and "shows only the first user" in nb.cells[1].source
    assert "old" in nb.metadata["widgets"][site.WIDGET_STATE]["state"]


def test_mkdocs_warnings_are_picked_out_of_its_log_with_their_continuations():
    log = ("INFO    -  Cleaning site directory\nWARNING -  Doc file 'docs/a.md' contains a link 'b.md', but the target "
           "is not found.\n            (second line)\nINFO    -  Documentation built in 3.1 seconds\n"
           "ERROR   -  something else\n")
    assert site.mkdocs_warnings(log) == [
        "WARNING -  Doc file 'docs/a.md' contains a link 'b.md', but the target is not found.\n            (second line)",
        "ERROR   -  something else"]
    assert site.mkdocs_warnings("INFO - fine\n") == []
