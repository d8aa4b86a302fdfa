"""The course as a static website: docs/ and a run directory's executed notebooks, built with MkDocs.

    python -m trsr_utils site --run runs/demo [--out site]        # make site RUN=runs/demo

The front page is the README; then the course guide, notebooks 01-10 as the run executed them (outputs, figures
and the widgets' saved state; notebook 05's summary browser is rebuilt from the run's recorded stage results with
its test users' views, linked to its dropdown in the page, so it browses without a kernel: :func:`browsable_summaries`), the worked solutions (as
committed: their outputs are stripped), the results pages and the other docs. The build copies what it needs into
a staging folder (the repository's layout, so every link the README and docs/ make to ``docs/...`` or
``notebooks/NN_....ipynb`` resolves in the site too: a link to a notebook opens its executed page), runs MkDocs
(Material theme, mkdocs-jupyter) on it, then makes every page load its scripts from the site itself.

Nothing is fetched at build or view time: no web fonts (``font: false``), MathJax 3 and the Jupyter widgets' HTML
manager are vendored in ``website/vendor/`` (versions, sources, checksums in its README.md), nbconvert's CDN
script tags are rewritten to them or removed, and :func:`external_fetches` fails the build where any page, script
or stylesheet would still load something from another host. Material's offline plugin makes search work when the
site is opened straight from disk (``file://``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from trsr_utils.stages import chunking, summarize
from trsr_utils.core import io
from trsr_utils import stages
from trsr_utils.report import widgets
from trsr_utils.core.config import REPO_ROOT, resolve_config
from trsr_utils.stages import DIGEST_CHARS

WEBSITE = REPO_ROOT / "website"
VENDOR = WEBSITE / "vendor"
# The docs pages in the site's navigation after the notebooks, in this order (those that exist).
RESULT_PAGES = ["docs/results/demo.md", "docs/results/course-long.md", "docs/results/course.md",
                "docs/results/course-all.md", "docs/results/course-long-all.md", "docs/results/demo-2026-12-05.md", "docs/benchmarks.md"]
OTHER_PAGES = [("How each stage works", "docs/methods.md"), ("Design", "docs/design.md"),
               ("On a GPU cluster", "docs/cluster.md"), ("Extending", "docs/extending.md"),
               ("Tests", "tests/README.md"), ("Data", "data/README.md")]
# What nbconvert's templates load from CDNs, and what the site loads instead (paths from the site's root).
WIDGETS_CDN = re.compile(r"https://unpkg\.com/@jupyter-(?:widgets/html-manager|js-widgets)@[^'\"]*/dist/embed(?:-amd)?\.js")
WIDGETS_LOCAL = "assets/vendor/html-manager/embed.js"
IFRAME_WORKER_CDN = "https://unpkg.com/iframe-worker/shim"  # Material's offline plugin: search from file://
IFRAME_WORKER_LOCAL = "assets/vendor/iframe-worker/shim.js"
MATHJAX_SENTINEL = "TRSR-SITE-MATHJAX"  # mkdocs.yml's custom_mathjax_url: the site loads MathJax once, itself
MATHJAX_BLOCK = re.compile(r"<!-- Load mathjax -->\s*<script src=\"" + MATHJAX_SENTINEL
                           + r"\">\s*</script>.*?<!-- End of mathjax configuration -->", re.S)
MERMAID_BLOCK = re.compile(r"<script type=\"module\">\s*document\.addEventListener\(\"DOMContentLoaded\", async \(\) "
                           r"=> \{\s*const diagrams = document\.querySelectorAll\(\"\.jp-Mermaid.*?</script>", re.S)
# Links the notebooks' markdown cells make to other notebooks and docs (nbconvert leaves them as written; MkDocs
# rewrites only the markdown pages' links): relative hrefs to .ipynb / .md files, pointed at their pages.
SOURCE_LINK = re.compile(r'href="(?![a-z][a-z0-9+.-]*:|/|#)([^"#]*?)(README)?\.(ipynb|md)(#[^"]*)?"')
# An attribute or CSS url() that makes the browser fetch something (a plain <a href> is a link, not a fetch).
FETCHING = re.compile(r"<(?:script|img|link|iframe|source|video|audio)\b[^>]*?\b(?:src|href)=[\"'](https?:)?//"
                      r"|url\(\s*[\"']?(?:https?:)?//|@import\s+[\"']?(?:url\()?[\"']?(?:https?:)?//"
                      r"|import\(\s*[\"'](?:https?:)?//", re.I)


class SiteError(RuntimeError):
    """A site that cannot be built from this run directory, or that would fetch from the network."""


def notebooks(run_dir: Path) -> list[Path]:
    """The run's executed notebooks (``<run>/notebooks/NN_*.ipynb``) in number order."""
    found = sorted((run_dir / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise SiteError(f"{run_dir / 'notebooks'} has no executed notebooks: run the chain first "
                        f"(make demo, or python -m trsr_utils run --profile demo --out {run_dir})")
    return found


def _title(path: Path) -> str:
    """'07 evaluation' from 07_evaluation.ipynb."""
    return path.stem[:2] + " " + path.stem[3:].replace("_", " ")


LINK = re.compile(r"\]\(([^)\s]+)\)")


def _referenced_files(md: Path, repo: Path) -> set[Path]:
    """Repository files a markdown page links to by a relative path (not pages: those are staged on their own)."""
    out = set()
    for target in LINK.findall(md.read_text(encoding="utf-8")):
        if "://" in target or target.startswith(("#", "mailto:")):
            continue
        path = (md.parent / target.split("#")[0]).resolve()
        try:
            path.relative_to(repo)
        except ValueError:
            continue
        if path.is_file():
            out.add(path)
    return out


SUMMARY_BROWSER = "05_compare_summaries.ipynb"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
MAX_BROWSER_USERS = 60  # one static view per user goes into the page: the test users, at most this many


def _run_root(run_dir: Path) -> Path:
    return run_dir.parent.parent if run_dir.parent.name == "variants" else run_dir


def recorded_folders(run_dir: Path, manifest: dict[str, Any], names: tuple[str, ...]) -> dict[str, Path]:
    """Each stage's result folder as the run recorded it (the manifest's stage records: fingerprint and folder),
    checked against the folder's own completion record; :class:`SiteError` where one is missing or differs."""
    recorded = manifest.get("stages") or {}
    out = {}
    for name in names:
        rec = recorded.get(name) or {}
        if not rec.get("fingerprint"):
            raise SiteError(f"the run's manifest records no {name} result")
        folder = Path(rec["folder"]) if rec.get("folder") else None
        if folder is None or not folder.is_dir():
            folder = _run_root(run_dir) / name / rec["fingerprint"][:DIGEST_CHARS]
        done = stages.record(folder)
        if done is None or done.get("fingerprint") != rec["fingerprint"]:
            raise SiteError(f"{folder} does not hold the {name} result the run recorded ({rec['fingerprint'][:12]})")
        out[name] = folder
    return out


def _reachable(state: dict[str, Any], roots: set[str]) -> set[str]:
    """The widget models ``roots`` refer to, directly or not (``IPY_MODEL_<id>`` references in their state)."""
    seen: set[str] = set()
    todo = [r for r in roots if r in state]
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        todo += [m for m in re.findall(r"IPY_MODEL_([0-9a-f]+)", json.dumps(state[model])) if m in state]
    return seen


def _browser_inputs(run_dir: Path) -> tuple[Any, dict[str, Any], dict[str, Any], Any, str]:
    """Blocks, steps, summaries and audit for notebook 05's browser, read from the stage folders the run recorded
    (its manifest), or where it recorded none (an older manifest) from the profile's settings today, said so in
    the returned note."""
    manifest = io.read_json(run_dir / "manifest.json")
    methods = ("hierarchical", "recurrent")
    names = {"blocks": chunking.STAGE.name, "audit": "05_compare",
             **{m: summarize.SUMMARY_STAGE[m] for m in methods}}
    try:
        folders = recorded_folders(run_dir, manifest, tuple(names.values()))
        where = "the run's recorded stage results"
    except SiteError as exc:
        cfg = resolve_config(manifest["profile"], _run_root(run_dir), manifest.get("overrides") or {})
        folders = {name: stages.require(cfg, name) for name in names.values()}
        where = f"the stage results the profile gives today ({exc})"
    blocks = io.read_parquet(folders[names["blocks"]] / "blocks.parquet")
    for column in ("item_ids", "lines"):  # as chunking.read_blocks gives them
        if column in blocks:
            blocks[column] = blocks[column].map(list)
    steps, summaries = {}, {}
    for m in methods:
        steps[m] = io.read_parquet(folders[names[m]] / "steps.parquet")
        steps[m]["item_ids"] = steps[m]["item_ids"].map(list)
        summaries[m] = io.read_parquet(folders[names[m]] / "summaries.parquet")
    audit_path = folders[names["audit"]] / "audit.parquet"
    return blocks, steps, summaries, io.read_parquet(audit_path) if audit_path.exists() else None, where


def _browser_users(summaries: dict[str, Any]) -> list[Any]:
    """The users the site's browser shows: the test users both methods summarised, at most MAX_BROWSER_USERS."""
    frames = list(summaries.values())
    common = set(frames[0]["user_id"]).intersection(*(set(f["user_id"]) for f in frames[1:]))
    test = {u for f in frames if "split" in f for u in f.loc[f["split"] == "test", "user_id"]} & common
    return sorted(test or common, key=lambda u: (len(str(u)), str(u)))[:MAX_BROWSER_USERS]


def _note_cell(notebook: Any, before: Any, text: str) -> None:
    import nbformat

    notebook.cells.insert(notebook.cells.index(before), nbformat.v4.new_markdown_cell(f"> **On this website:** {text}"))


def browsable_summaries(notebook: Path, run_dir: Path) -> str:
    """Give the staged notebook 05's summary browser every test user's view (at most :data:`MAX_BROWSER_USERS`;
    :meth:`SummaryComparison.kernel_free`): the saved state papermill stored holds the first user only, and
    picking another one needs the kernel. The browser is rebuilt from the stage results the run recorded (blocks,
    both methods' steps and summaries, the audit), and its state replaces the old view's in the notebook's
    ``metadata.widgets`` (models other outputs use are kept). Where that cannot be done the saved view stays and
    a note above it on the page says why. Returns what was done."""
    import nbformat
    from ipywidgets import embed

    nb = nbformat.read(str(notebook), as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code" and "SummaryComparison(" in c.source
             and any(WIDGET_VIEW in o.get("data", {}) for o in c.get("outputs", []))]
    if not cells:
        return f"{notebook.name}: no summary browser output to make browsable"
    try:
        blocks, steps, summaries, audit, where = _browser_inputs(run_dir)
        users = set(_browser_users(summaries))
        summaries = {m: f[f["user_id"].isin(users)] for m, f in summaries.items()}
        browser = widgets.SummaryComparison(blocks, steps, summaries, audit=audit)
    except Exception as exc:  # noqa: BLE001 - the saved state stays: the browser shows its first user
        _note_cell(nb, cells[0], "the summary browser below shows only the first user (the view saved when the "
                   f"notebook ran): the run's stored results could not be read ({type(exc).__name__}: {exc}). "
                   "Run the notebook in JupyterLab to browse every user.")
        nbformat.write(nb, str(notebook))
        return (f"{notebook.name}: the summary browser keeps its saved state only ({type(exc).__name__}: {exc}); "
                "a note on the page says so")
    view, link = browser.kernel_free()
    state = embed.dependency_state([view, link], drop_defaults=True)
    output = next(o for o in cells[0].outputs if WIDGET_VIEW in o.get("data", {}))
    output["data"][WIDGET_VIEW] = {"version_major": 2, "version_minor": 0, "model_id": view.model_id}
    saved = (nb.metadata.get("widgets") or {}).get(WIDGET_STATE, {}).get("state", {})
    others = {o["data"][WIDGET_VIEW].get("model_id") for c in nb.cells for o in c.get("outputs", [])
              if WIDGET_VIEW in o.get("data", {}) and o is not output}
    kept = {k: saved[k] for k in _reachable(saved, others)}
    nb.metadata["widgets"] = {WIDGET_STATE: {"version_major": 2, "version_minor": 0, "state": {**kept, **state}}}
    n_users = len(browser.user.options)
    if not where.startswith("the run's recorded"):
        _note_cell(nb, cells[0], f"the summary browser below was rebuilt from {where}.")
    nbformat.write(nb, str(notebook))
    view.close_all()
    return (f"{notebook.name}: the summary browser holds {n_users} test users' views (browsable without a kernel), "
            f"from {where}")


def stage(run_dir: Path, staging: Path, repo: Path = REPO_ROOT) -> tuple[dict[str, Any], list[str]]:
    """Lay out the site's sources in ``staging`` (the repository's own layout); returns the MkDocs config and
    notes on what was done to the notebooks."""
    notes: list[str] = []
    executed = notebooks(run_dir)
    (staging / "docs").mkdir(parents=True)
    shutil.copytree(repo / "docs", staging / "docs", dirs_exist_ok=True)
    shutil.copy2(repo / "README.md", staging / "index.md")
    for path in executed:
        (staging / "notebooks").mkdir(exist_ok=True)
        shutil.copy2(path, staging / "notebooks" / path.name)
        if path.name == SUMMARY_BROWSER:
            try:
                notes.append(browsable_summaries(staging / "notebooks" / path.name, run_dir))
            except Exception as exc:  # noqa: BLE001 - the saved state stays: the browser shows its first user
                notes.append(f"{path.name}: the summary browser keeps its saved state only ({type(exc).__name__}: "
                             f"{exc})")
    solutions = sorted((repo / "notebooks" / "solutions").glob("[0-9][0-9]_*.ipynb"))
    for path in solutions:
        (staging / "notebooks" / "solutions").mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, staging / "notebooks" / "solutions" / path.name)
    pages = [p for _, p in OTHER_PAGES] + RESULT_PAGES
    for rel in pages:
        if (repo / rel).is_file() and not (staging / rel).exists():
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(repo / rel, staging / rel)
    # Files the pages link to (a profile, the Makefile, a module): copied as they are, so no link is broken.
    # The README is the front page here: its links are resolved from the repository's root, like index.md's.
    sources = [repo / "README.md"] + [repo / p for p in pages + ["docs/course.md"] if (repo / p).is_file()]
    for md in sources:
        for path in _referenced_files(md, repo):
            rel = path.relative_to(repo)
            dest = staging / rel
            if rel.suffix == ".ipynb" or dest.exists() or rel == Path("README.md"):
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
    shutil.copytree(WEBSITE / "assets", staging / "assets", dirs_exist_ok=True)
    shutil.copytree(VENDOR, staging / "assets" / "vendor", dirs_exist_ok=True)

    import yaml

    config = yaml.safe_load((WEBSITE / "mkdocs.yml").read_text(encoding="utf-8"))
    nav: list[Any] = [{"Home": "index.md"}, {"Course guide": "docs/course.md"},
                      {"Notebooks": [{_title(p): f"notebooks/{p.name}"} for p in executed]}]
    if solutions:
        nav.append({"Solutions": [{_title(p): f"notebooks/solutions/{p.name}"} for p in solutions]})
    results = [p for p in RESULT_PAGES if (staging / p).is_file()]  # titled by their first heading
    if results:
        nav.append({"Results": results})
    nav += [{name: p} for name, p in OTHER_PAGES if (staging / p).is_file()]
    config.update(nav=nav, docs_dir=str(staging))
    return config, notes


def _relative_root(html: Path, site: Path) -> str:
    depth = len(html.relative_to(site).parts) - 1
    return "../" * depth


def _page_link(m: re.Match) -> str:
    stem = m.group(1) + ("index" if m.group(2) else "")
    return f'href="{stem}.html{m.group(4) or ""}"'


def localize(site: Path) -> int:
    """Point every page's CDN scripts at the vendored copies (or drop them); returns the pages changed."""
    changed = 0
    for html in site.rglob("*.html"):
        text = html.read_text(encoding="utf-8")
        root = _relative_root(html, site)
        new = WIDGETS_CDN.sub(root + WIDGETS_LOCAL, text).replace(IFRAME_WORKER_CDN, root + IFRAME_WORKER_LOCAL)
        new = MATHJAX_BLOCK.sub("", new)  # the site's own MathJax (mkdocs.yml extra_javascript) typesets the page
        new = MERMAID_BLOCK.sub("", new)  # no notebook draws mermaid diagrams
        if html.is_relative_to(site / "notebooks"):
            new = SOURCE_LINK.sub(_page_link, new)
        if new != text:
            html.write_text(new, encoding="utf-8")
            changed += 1
    return changed


def external_fetches(site: Path) -> list[str]:
    """``file: excerpt`` for everything in the built site that would make a browser fetch from another host."""
    found = []
    for path in sorted(site.rglob("*")):
        if path.suffix not in (".html", ".css", ".js") or not path.is_file():
            continue
        if path.is_relative_to(site / "assets" / "vendor"):
            continue  # third-party bundles: their URLs are licence headers and never-taken branches (the test watches)
        text = path.read_text(encoding="utf-8", errors="replace")
        for m in FETCHING.finditer(text):
            found.append(f"{path.relative_to(site)}: {text[max(0, m.start() - 40):m.end() + 60]!r}")
    return found


def size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def mkdocs_warnings(output: str) -> list[str]:
    """MkDocs' ``WARNING``/``ERROR`` messages in its log output, each with its indented continuation lines."""
    found: list[str] = []
    open_message = False
    for line in output.splitlines():
        if re.match(r"^(WARNING|ERROR)\b", line):
            found.append(line.strip())
            open_message = True
        elif open_message and line[:1] in (" ", "\t") and line.strip():
            found[-1] += "\n" + line.rstrip()
        else:
            open_message = False
    return found


def build(run_dir: str | os.PathLike[str], out: str | os.PathLike[str] = "site", log=print) -> dict[str, Any]:
    """Build the site into ``out`` (replaced) from ``run_dir``; returns seconds, bytes, pages and the front page."""
    import yaml

    run_dir, out = Path(run_dir).resolve(), Path(out).resolve()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="trsr-site-") as tmp:
        staging = Path(tmp) / "src"
        config, notes = stage(run_dir, staging)
        config["site_dir"] = str(out)
        config_path = Path(tmp) / "mkdocs.yml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        env = dict(os.environ, JUPYTER_PLATFORM_DIRS="1", NO_MKDOCS_2_WARNING="1")  # the latter: see website/mkdocs.yml
        # Not strict (the executed notebooks give MkDocs warnings it cannot act on), but every warning is shown.
        done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--clean", "-f", str(config_path)],
                              capture_output=True, text=True, env=env, cwd=tmp)
        if done.returncode != 0:
            raise SiteError(f"mkdocs build failed ({done.returncode}):\n{done.stderr[-4000:]}")
    warnings = mkdocs_warnings(done.stderr + done.stdout)
    localize(out)
    fetches = external_fetches(out)
    if fetches:
        raise SiteError("the site would fetch from the network:\n  " + "\n  ".join(fetches[:20]))
    pages = sorted(str(p.relative_to(out)) for p in out.rglob("*.html") if p.name != "404.html")
    result = {"site": str(out), "index": str(out / "index.html"), "seconds": round(time.perf_counter() - began, 1),
              "bytes": size(out), "pages": pages, "run": str(run_dir), "warnings": warnings, "notes": notes}
    for warning in warnings:
        log(f"mkdocs: {warning}")
    log(f"site: {len(pages)} pages, {result['bytes'] / 2**20:.1f} MiB, built in {result['seconds']} s from {run_dir}")
    for note in notes:
        log(f"  {note}")
    log(f"{len(warnings)} MkDocs warning(s)" + (" (listed above)" if warnings else ""))
    log(f"open {result['index']}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trsr_utils site", description=__doc__.split("\n")[0])
    parser.add_argument("--run", default="runs/demo", help="the run directory whose executed notebooks to show")
    parser.add_argument("--out", default="site", help="where to write the site (replaced)")
    parser.add_argument("--json", action="store_true", help="print the build's summary as JSON")
    args = parser.parse_args(argv)
    try:  # with --json the log (warnings and their count included) goes to stderr, the summary to stdout
        result = build(args.run, args.out, log=(lambda *a: print(*a, file=sys.stderr)) if args.json else print)
    except SiteError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
