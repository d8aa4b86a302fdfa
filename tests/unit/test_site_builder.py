"""The course website's builder without a browser: the vendored scripts are the published ones, the staging
folder has the repository's layout and the navigation the notebooks' order, and nothing left on a page would be
fetched from another host (tests/browser/test_site.py opens the built site in Chromium)."""

from __future__ import annotations

import hashlib
import re
import shutil

import pytest

from trsr_utils import site
from trsr_utils.config import REPO_ROOT


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

    from trsr_utils import widgets

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
