"""JupyterLab in a real browser: the counterfactual summary widget re-scores a user's candidates with edited text.

The test writes a small notebook into a copy of the smoke run directory that builds
:class:`trsr_utils.report.counterfactual.Counterfactual` for the run's test users (the fine-tuned adapter of notebook 06
and the zero-shot recommender), runs it in JupyterLab in headless Chromium (the helpers of ``test_lab.py``),
types a new summary into the box, presses *score* and checks that a p(yes) in the table moved away from the
own-summary column and that the positive's rank is shown for both recommenders. It saves a screenshot to
``<run copy>/browser/08_counterfactual.png`` and prints the path.

Skipped, saying why, without Chromium or the playwright package (as ``test_lab.py``).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import nbformat
import pytest

# browser_tools is a fixture: imported, it is this module's too (skips without Chromium or playwright).
try:  # the module pytest itself imports test_lab.py as (the default "prepend" import mode: tests/ has no __init__)
    from test_lab import RUN_ALL_S, browser_tools, lab_page, screenshot_cell  # noqa: F401
except ImportError:  # --import-mode=importlib
    from tests.browser.test_lab import RUN_ALL_S, browser_tools, lab_page, screenshot_cell  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.notebook]

NOTEBOOK = "08_counterfactual.ipynb"
EDITED = "This user only watches silent black-and-white horror films from the 1920s."


def counterfactual_notebook(run: Path) -> nbformat.NotebookNode:
    """The widget for the smoke run in ``run``: config, test users and their prompt parts, the two scorers."""
    cells = [
        "from trsr_utils.core.config import resolve_config\n"
        "from trsr_utils.method import llm, user_prompts\n"
        "from trsr_utils.report import counterfactual\n"
        "from trsr_utils.stages import prepare, summarize, table_rows\n\n"
        f"cfg = resolve_config('smoke', {str(run)!r})",
        "prepared = prepare.read(cfg)\n"
        "samples = table_rows.test_samples(cfg, prepared)\n"
        "summaries = summarize.summaries_for(cfg, user_prompts.main_summary(cfg))\n"
        "tokenizer = llm.load_tokenizer(cfg.model.recommender)\n"
        "inputs = counterfactual.user_inputs(cfg, samples, prepared.catalog, summaries, tokenizer)\n"
        "len(inputs)",
        "ui = counterfactual.Counterfactual(inputs, counterfactual.load_scorers(cfg))\n"
        "ui",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


@pytest.fixture
def counterfactual_run(browser_tools, smoke_run, tmp_path):
    """A copy of the smoke run directory with the counterfactual notebook in ``browser/``."""
    run = tmp_path / "run"
    shutil.copytree(smoke_run[0], run, symlinks=True)
    (run / "browser").mkdir(exist_ok=True)
    nbformat.write(counterfactual_notebook(run), run / "browser" / NOTEBOOK)
    return run


# Full-precision p(yes) of every candidate, per scorer, in the own-summary and the edited column (data-p).
TABLE_P = """table => {
  const cells = kind => Array.from(table.querySelectorAll('td.' + kind))
    .map(td => ({scorer: td.dataset.scorer, p: parseFloat(td.dataset.p)}));
  return {own: cells('p-own'), edited: cells('p-edited')};
}"""


def test_counterfactual_widget_in_jupyterlab(browser_tools, counterfactual_run, tmp_path, capsys):
    from playwright.sync_api import expect

    began = time.perf_counter()
    with lab_page(browser_tools, counterfactual_run / "browser", tmp_path / "lab", NOTEBOOK) as (page, page_errors):
        # The widget: a VBox with the user dropdown, the summary box, the buttons and the table.
        widget = page.locator(".jp-OutputArea-output .widget-vbox").filter(
            has=page.locator(".widget-textarea textarea")).first
        expect(widget).to_be_visible()
        box = widget.locator(".widget-textarea textarea")
        own = box.input_value()
        assert own.strip(), "the summary box is empty: the user's own summary was not filled in"
        for name in ("own summary", "empty summary", "no summary"):
            expect(widget.get_by_role("button", name=name, exact=True)).to_be_visible()

        box.fill(EDITED)  # what a student's typing does (an input event: the kernel gets the text)
        widget.get_by_role("button", name="score", exact=True).click()
        # Scoring runs in the kernel (both recommenders, own summary and edited text): the status says so.
        expect(widget).to_contain_text("an edited summary", timeout=RUN_ALL_S * 1000)
        table = widget.locator("table.counterfactual")
        expect(table).to_be_visible()
        expect(table).to_contain_text("positive's rank")
        for scorer in ("fine-tuned", "zero-shot"):
            for kind in ("own", "edited"):
                rank = table.locator(f"td.rank-{kind}[data-scorer='{scorer}']")
                expect(rank).to_have_count(1)
                assert rank.inner_text().strip().isdigit(), f"{scorer} {kind} rank: {rank.inner_text()!r}"
        p_yes = table.evaluate(TABLE_P)
        assert p_yes["own"] and len(p_yes["own"]) == len(p_yes["edited"])
        assert {c["scorer"] for c in p_yes["own"]} == {"fine-tuned", "zero-shot"}
        moved = [(a, b) for a, b in zip(p_yes["own"], p_yes["edited"]) if a["p"] != b["p"]]
        assert moved, f"no p(yes) changed with the edited summary: {p_yes}"
        assert all(0 < c["p"] < 1 for c in p_yes["own"] + p_yes["edited"])
        assert box.input_value() == EDITED

        shot = screenshot_cell(page, widget, counterfactual_run / "browser" / "08_counterfactual.png")
    with capsys.disabled():
        print(f"\nbrowser test: counterfactual widget screenshot at {shot} ({len(moved)} of {len(p_yes['own'])} "
              f"p(yes) moved; {time.perf_counter() - began:.0f} s with JupyterLab; page errors: {len(page_errors)})")
