"""JupyterLab in a real browser: notebook 05's summary browser renders and follows its dropdown.

The test starts JupyterLab (loopback only, a random token) on a copy of the smoke run directory, opens a
copy of notebook 05 parameterised for that run in headless Chromium (the system's, driven by Playwright),
runs all cells through JupyterLab's own ``notebook:run-all-cells`` command, checks that no cell failed,
that the ipywidgets summary browser renders, and that picking another user in its dropdown changes the
panes. It saves a screenshot of the widget to ``<run copy>/browser/05_summary_browser.png`` and prints
the path.

Needs Chromium (``apt-get install -y chromium``, or ``TRSR_CHROMIUM=/path/to/chromium``) and the
``playwright`` Python package (``pip install playwright``, in the ``dev`` extra; ``playwright install``
is not needed): without either the test is skipped, saying which is missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest

from trsr_utils.tools import pipeline

pytestmark = [pytest.mark.browser, pytest.mark.notebook]

NOTEBOOK = "05_compare_summaries.ipynb"
CHROMIUM = os.environ.get("TRSR_CHROMIUM", "/usr/bin/chromium")
SERVER_START_S = 90  # JupyterLab answering on its port
RUN_ALL_S = 240  # kernel start + every cell of notebook 05
UI_S = 60  # one widget update, one page load

# JupyterLab settings for this server only (its own settings folder): every cell attached to the page, so the
# DOM checks see all outputs; no news or update checks (the machine may have no network).
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                        "checkForUpdates": False},
}


@pytest.fixture(scope="session")
def browser_tools():
    """Playwright's ``sync_playwright`` and the Chromium to drive; skips (before the smoke chain runs) without them."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"browser test skipped: no Chromium at {CHROMIUM} (install it with "
                    f"`apt-get install -y chromium` as root, or set TRSR_CHROMIUM to a Chromium binary)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("browser test skipped: the playwright Python package is missing (`.venv/bin/pip install "
                    "playwright`, part of the dev extra; `playwright install` is not needed, the system "
                    "Chromium is used)")
    return sync_playwright, CHROMIUM


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _parameterised_copy(run: Path, dest: Path) -> Path:
    """Notebook 05 with the parameters the pipeline would inject (profile smoke, this run directory)."""
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    nb = load_notebook_node(str(pipeline.NOTEBOOKS_DIR / NOTEBOOK))  # as papermill reads it (every cell has tags)
    _, declared = pipeline.parameters_cell(nb)
    assert set(pipeline.INJECTED) <= set(declared)
    nb = parameterize_notebook(nb, {"profile": "smoke", "run_dir": str(run), "overrides": {}},
                               kernel_name="python3", language="python")
    dest.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dest / NOTEBOOK)
    return dest / NOTEBOOK


class Lab:
    """A JupyterLab server on 127.0.0.1 with a random token, stopped by :meth:`stop`."""

    def __init__(self, root: Path, home: Path):
        self.root, self.port, self.token = root, _free_port(), secrets.token_hex(24)
        self.log_path = home / "jupyterlab.log"
        settings, workspaces = home / "settings", home / "workspaces"
        for name, values in LAB_SETTINGS.items():
            (settings / name).parent.mkdir(parents=True, exist_ok=True)
            (settings / name).write_text(json.dumps(values))
        workspaces.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser",
               "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
               f"--ServerApp.token={self.token}", f"--ServerApp.root_dir={root}",
               "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: run cells through Lab's own commands
               f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={workspaces}"]
        if os.geteuid() == 0:
            cmd.append("--allow-root")
        env = dict(os.environ, JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_RUNTIME_DIR=str(home / "runtime"))
        env.pop("TRSR_HEADLESS", None)  # set by the pipeline run in this process; a Lab session is not headless
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}?token={self.token}"

    def log_tail(self, n: int = 40) -> str:
        self.log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def wait_ready(self, timeout: float = SERVER_START_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"JupyterLab exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url("/api/status"), timeout=5) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        raise AssertionError(f"JupyterLab did not answer on port {self.port} in {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Shut down through the API (its kernels too), then make sure the process group is gone."""
        if self.proc.poll() is None:
            try:
                req = urllib.request.Request(self.url("/api/shutdown"), method="POST")
                urllib.request.urlopen(req, timeout=10).close()
                self.proc.wait(timeout=20)
            except (urllib.error.URLError, OSError, subprocess.TimeoutExpired):
                pass
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is not None:
                break
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        self.log.close()


# JavaScript run in the page (window.jupyterapp is there because of --LabApp.expose_app_in_browser).
# The notebook's kernel is idle ("idle"), or Lab shows an error dialog (its text: a kernel that failed to start).
KERNEL_IDLE = """name => {
  const dialog = document.querySelector('.jp-Dialog');
  if (dialog) return 'dialog: ' + dialog.innerText;
  const app = window.jupyterapp;
  const panel = app && app.shell.currentWidget;
  if (!panel || !panel.context || !panel.context.path.endsWith(name) || !panel.sessionContext) return false;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  return !!kernel && kernel.status === 'idle' && 'idle';
}"""

RUN_ALL = """async ms => {
  const app = window.jupyterapp;
  await app.shell.currentWidget.sessionContext.ready;
  const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error(`run all: not done in ${ms} ms`)), ms));
  return await Promise.race([app.commands.execute('notebook:run-all-cells'), timeout]);
}"""

CELL_REPORT = """() => {
  const text = t => Array.isArray(t) ? t.join('') : (t || '');
  return window.jupyterapp.shell.currentWidget.content.widgets
    .filter(cell => cell.model.type === 'code')
    .map(cell => {
      const outputs = cell.model.outputs.toJSON();
      const errors = outputs.filter(o => o.output_type === 'error').map(o => `${o.ename}: ${o.evalue}`)
        .concat(outputs.filter(o => o.output_type === 'stream' && o.name === 'stderr' && /Traceback/.test(text(o.text)))
          .map(o => text(o.text).slice(-500)));
      return {source: cell.model.sharedModel.getSource().split('\\n')[0], count: cell.model.executionCount, errors};
    });
}"""


def open_and_run_all(browser, lab: "Lab", notebook: str, page_errors: list[str]):
    """A page with ``notebook`` open in JupyterLab, its kernel started and every cell run; fails, with the server's
    log, where a cell failed or did not run. Errors the page raises go to ``page_errors``."""
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.set_default_timeout(UI_S * 1000)
    page.on("pageerror", lambda exc: page_errors.append(str(exc)))
    page.goto(lab.url(f"/lab/tree/{notebook}"))
    state = page.wait_for_function(KERNEL_IDLE, arg=notebook, timeout=RUN_ALL_S * 1000).json_value()
    assert state == "idle", f"the kernel did not start: {state}\nserver log:\n{lab.log_tail()}"
    ok = page.evaluate(RUN_ALL, RUN_ALL_S * 1000)
    cells = page.evaluate(CELL_REPORT)
    failed = [c for c in cells if c["errors"]]
    assert not failed, f"cells failed in JupyterLab: {failed}\nserver log:\n{lab.log_tail()}"
    assert ok is True, f"run all cells returned {ok!r}: {cells}"
    assert all(c["count"] for c in cells), f"cells not executed: {[c for c in cells if not c['count']]}"
    return page


@contextlib.contextmanager
def lab_page(browser_tools, root: Path, home: Path, notebook: str):
    """JupyterLab on ``root`` and headless Chromium with ``notebook`` open and every cell run
    (:func:`open_and_run_all`): ``(page, page errors)``; both stop when the block ends."""
    sync_playwright, chromium = browser_tools
    lab = Lab(root, home)
    page_errors: list[str] = []
    try:
        lab.wait_ready()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
            try:
                yield open_and_run_all(browser, lab, notebook, page_errors), page_errors
            finally:
                browser.close()
    finally:
        lab.stop()


def screenshot_cell(page, widget, path: Path) -> Path:
    """The whole Lab window with ``widget``'s cell scrolled to the top (a widget is taller than the window)."""
    widget.locator("xpath=ancestor::div[contains(@class, 'jp-CodeCell')][1]").evaluate(
        "cell => cell.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(300)  # let the scroll settle before the screenshot
    page.screenshot(path=str(path))
    assert path.stat().st_size > 10_000
    return path


@pytest.fixture
def lab_run(browser_tools, smoke_run, tmp_path):
    """A copy of the smoke run directory (notebook 05 writes its results) with the parameterised notebook."""
    run = tmp_path / "run"
    shutil.copytree(smoke_run[0], run, symlinks=True)
    _parameterised_copy(run, run / "browser")
    return run


def test_summary_browser_in_jupyterlab(browser_tools, lab_run, tmp_path, capsys):
    from playwright.sync_api import expect

    root = lab_run / "browser"
    began = time.perf_counter()
    with lab_page(browser_tools, root, tmp_path / "lab", NOTEBOOK) as (page, page_errors):
        tracebacks = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]',
                                  has_text="Traceback")
        assert tracebacks.count() == 0, tracebacks.first.inner_text()

        # The summary browser: a VBox of the user dropdown, the stats line, two panes and the history.
        widget = page.locator(".jp-OutputArea-output .widget-vbox").filter(
            has=page.locator(".widget-dropdown select")).first
        expect(widget).to_be_visible()
        select = widget.locator(".widget-dropdown select")
        panes = widget.locator(".widget-hbox .widget-html")
        expect(panes).to_have_count(2)
        users = [o.strip() for o in select.locator("option").all_inner_texts()]
        assert len(users) >= 2, f"the dropdown offers {users}"
        first = select.input_value()
        before = [panes.nth(i).text_content() for i in range(2)]
        history = widget.locator(":scope > .widget-html").last
        history_before = history.text_content()
        assert all(before) and history_before, "the summary browser's panes are empty"
        assert f"user {users[0]}:" in widget.text_content()

        other = users[-1]
        select.select_option(label=other)
        expect(widget).to_contain_text(f"user {other}:", timeout=UI_S * 1000)  # the kernel answered
        expect(panes.nth(0)).not_to_have_text(before[0])
        expect(panes.nth(1)).not_to_have_text(before[1])
        assert history.text_content() != history_before
        assert select.input_value() != first

        shot = screenshot_cell(page, widget, lab_run / "browser" / "05_summary_browser.png")
    with capsys.disabled():
        print(f"\nbrowser test: summary browser screenshot at {shot} "
              f"({time.perf_counter() - began:.0f} s with JupyterLab; page errors: {len(page_errors)})")
