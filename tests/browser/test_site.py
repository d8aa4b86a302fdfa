"""The course website in a real browser: built from the session's smoke run, every page opened in Chromium.

The test builds the site (``trsr_utils.tools.site.build``, what ``make site`` runs) from the smoke run directory the
session's other notebook tests share (the ``smoke_run`` fixture: no second notebook chain), opens every page
from disk (``file://``, as a student offline would) in headless Chromium driven by Playwright, and checks:

- no console error and no uncaught exception on any page, and no request to any other host;
- every image has loaded and every internal link (and its ``#anchor``) resolves to a file of the site;
- each executed notebook's page shows its outputs (notebook 07 its tables and figures);
- notebook 05's summary browser is rendered from the widgets' saved state and shows another user's summaries
  when that user is picked in its dropdown, with no kernel (the site saves every user's view, linked to the
  dropdown in the page: ``trsr_utils.tools.site.browsable_summaries``).

It keeps screenshots of the front page and of notebook 07's table in the test's temporary directory and prints
their paths, with the build's time and size. Skipped, saying why, without Chromium or the playwright package
(as ``test_lab.py``).
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from trsr_utils.tools import site as site_builder

# browser_tools is a fixture: imported, it is this module's too (skips without Chromium or playwright).
try:  # the module pytest itself imports test_lab.py as (the default "prepend" import mode: tests/ has no __init__)
    from test_lab import browser_tools  # noqa: F401
except ImportError:  # --import-mode=importlib
    from tests.browser.test_lab import browser_tools  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.notebook]

PAGE_S = 30  # one page load
LINKS = """() => Array.from(document.querySelectorAll('a[href]')).map(a => a.href)"""
IMAGES = """() => Array.from(document.images).map(i => ({src: i.currentSrc || i.src, ok: i.complete && i.naturalWidth > 0}))"""


def _target(url: str, site: Path) -> tuple[Path, str] | None:
    """The file and anchor an internal link points at (None for links to other hosts, mail, javascript)."""
    parsed = urlparse(url)
    if parsed.scheme != "file":
        return None
    return Path(unquote(parsed.path)), unquote(parsed.fragment)


def test_every_page_of_the_course_website_loads_offline(browser_tools, smoke_run, tmp_path, capsys):
    sync_playwright, chromium = browser_tools
    run = smoke_run[0]
    began = time.perf_counter()
    built = site_builder.build(run, tmp_path / "site", log=lambda *_: None)
    out = Path(built["site"])
    pages = [out / p for p in built["pages"]]
    executed = sorted(p.stem for p in (run / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert {p.relative_to(out).as_posix() for p in pages} >= {"index.html", "docs/course.html",
                                                                "docs/results/demo.html"}
    assert [p.stem for p in sorted((out / "notebooks").glob("[0-9][0-9]_*.html"))] == executed

    problems: list[str] = []
    anchors: dict[Path, str] = {}
    shots: dict[str, Path] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(PAGE_S * 1000)
            current = {"page": ""}
            page.on("console", lambda m: problems.append(f"{current['page']}: console {m.type}: {m.text}")
                    if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"{current['page']}: uncaught: {e}"))
            # A request the next page's navigation cut short (the favicon, say) is aborted, not missing.
            page.on("requestfailed", lambda r: problems.append(f"{current['page']}: failed to load {r.url}: "
                                                               f"{r.failure}") if "ERR_ABORTED" not in
                    (r.failure or "") else None)
            page.on("request", lambda r: problems.append(f"{current['page']}: fetched from the network: {r.url}")
                    if not r.url.startswith(("file:", "data:", "blob:", "about:")) else None)
            for html in pages:
                rel = html.relative_to(out).as_posix()
                current["page"] = rel
                page.goto(html.as_uri(), wait_until="load")
                for img in page.evaluate(IMAGES):
                    if not img["ok"]:
                        problems.append(f"{rel}: image did not load: {img['src'][:120]}")
                for url in page.evaluate(LINKS):
                    target = _target(url, out)
                    if target is None:
                        continue
                    path, anchor = target
                    if not path.is_file():
                        problems.append(f"{rel}: broken link {url}")
                    elif anchor and path.suffix == ".html":
                        text = anchors.setdefault(path, path.read_text(encoding="utf-8"))
                        if f'id="{anchor}"' not in text:
                            problems.append(f"{rel}: link to a missing anchor {url}")
                if rel.startswith("notebooks/") and "/solutions/" not in rel:
                    outputs = page.locator(".jp-OutputArea-output").count()
                    if outputs == 0:
                        problems.append(f"{rel}: no cell outputs on an executed notebook's page")
                if rel == "index.html":
                    shots["front page"] = tmp_path / "site-front-page.png"
                    page.screenshot(path=str(shots["front page"]))
                if rel.startswith("notebooks/07_"):
                    assert page.locator(".jp-OutputArea-output img").count() >= 2, "07 shows no figures"
                    table = page.locator(".jp-OutputArea-output table").filter(has_text="TALLRec").filter(
                        has_text="recall@10").first  # Table 2: every system's row
                    cell = table.locator("xpath=ancestor::div[contains(@class, 'jp-OutputArea-output')][1]")
                    cell.scroll_into_view_if_needed()
                    shots["notebook 07's table"] = tmp_path / "site-07-table.png"
                    cell.screenshot(path=str(shots["notebook 07's table"]))
                if rel.startswith("notebooks/05_"):
                    problems += _summary_browser_takes_a_selection(page, rel)
            page.close()
        finally:
            browser.close()
    assert not problems, "\n".join(problems[:40])
    for name, path in shots.items():
        assert path.stat().st_size > 5_000, f"the screenshot of the {name} is empty"
    with capsys.disabled():
        print(f"\nsite test: {len(pages)} pages, {built['bytes'] / 2**20:.1f} MiB, built in {built['seconds']} s, "
              f"built and checked in {time.perf_counter() - began:.0f} s; screenshots: "
              + ", ".join(f"{name} {path}" for name, path in shots.items()))


def _summary_browser_takes_a_selection(page, rel: str) -> list[str]:
    """Notebook 05's summary browser, rendered by the vendored HTML manager from the saved widget state (the site
    gives it every user's view, linked to its dropdown in the page: trsr_utils.tools.site.browsable_summaries): another
    user picked in the dropdown shows that user's summaries, with no kernel."""
    from playwright.sync_api import expect

    widget = page.locator(".widget-vbox").filter(has=page.locator(".widget-dropdown select")).first
    try:
        expect(widget).to_be_visible()
    except AssertionError:
        return [f"{rel}: the summary browser did not render from the saved widget state"]
    select = widget.locator(".widget-dropdown select").first
    users = [o.strip() for o in select.locator("option").all_inner_texts()]
    if len(users) < 2:
        return [f"{rel}: the dropdown offers {users}"]
    expect(widget).to_contain_text(f"user {users[0]}:")
    panes = widget.locator(".widget-hbox .widget-html").filter(visible=True)
    before = [panes.nth(i).inner_text() for i in range(panes.count())]
    if len(before) != 2 or not all(t.strip() for t in before):
        return [f"{rel}: the summary panes are missing or empty: {before}"]
    select.select_option(label=users[-1])
    expect(widget).to_contain_text(f"user {users[-1]}:")  # that user's view, from the saved state alone
    expect(widget).not_to_contain_text(f"user {users[0]}:")
    after = [panes.nth(i).inner_text() for i in range(panes.count())]
    return [f"{rel}: the panes did not change with the user"] if after == before else []
