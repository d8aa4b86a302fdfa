"""Results pages written from recorded results, never by hand.

    python -m trsr_utils report --run runs/demo [--to docs/results/demo.md]

A run's page (:func:`write_run_page`) comes from what the run recorded: each notebook's key results
(``<run>/results/<notebook>.json``), the readings each notebook wrote under its tables (the markdown outputs of
the executed notebooks), the manifest's per-notebook times, machine, commit and stage fingerprints, and the
figures in the stage folders. They are gathered into one JSON beside the page (``docs/results/demo.json``), the
figures are copied next to it (``docs/results/demo/``), and the page is rendered from that JSON alone
(:func:`render_run`), so a test can render it again without the run directory and check that the committed page
is exactly what its recorded results give: a page can be stale only visibly.

The benchmarks page works the same way (:mod:`trsr_utils.tools.bench_page`).

Not a notebook's subject: docs/results/ holds its pages.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
from pathlib import Path
from typing import Any, Iterable

from trsr_utils.core import io
from trsr_utils.core.config import REPO_ROOT
from trsr_utils.stages import DIGEST_CHARS

FORMAT = 2  # of the JSON beside a results page (2: per-notebook commit and results digest, last invocation)
FIGURE_STAGES = ("05_compare", "07_eval", "08_ablations", "09_beyond")  # stage folders whose *.png a page shows
MARKER = "<!-- Written by `python -m trsr_utils report`"  # what every page this writer writes starts with
# The only files the writer puts in a page's figure folder: ``<stage>_<name>.png``.
FIGURE_FILE = re.compile(r"^(?:" + "|".join(FIGURE_STAGES) + r")_[^/]+\.png$")


class ReportError(ValueError):
    """A results page that cannot be written from this run, or not to this place."""


# ---------------------------------------------------------------------------------------------- formatting


def fmt(value: Any) -> str:
    """One recorded value as the page prints it (the rule :func:`numbers_recorded` applies too)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if value == int(value) and abs(value) < 1e15:
            return str(int(value))
        if abs(value) >= 1000:
            return f"{value:.1f}"
        if abs(value) >= 0.001:
            return f"{value:.4g}"
        return f"{value:.3g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str)) or (
        isinstance(value, list) and all(v is None or isinstance(v, (bool, int, float, str)) for v in value))


def markdown_table(header: list[str], rows: Iterable[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(fmt(h) for h in header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return out


def flat(value: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts of scalars as one level of dotted keys."""
    out: dict[str, Any] = {}
    for k, v in value.items():
        if isinstance(v, dict) and v:
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _records(value: Any) -> bool:
    """A dict of dicts (one row per key) or a list of dicts: shown as one table."""
    if isinstance(value, dict) and value and all(isinstance(v, dict) and v for v in value.values()):
        return all(all(is_scalar(x) for x in flat(v).values()) for v in value.values())
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return all(all(is_scalar(x) for x in flat(v).values()) for v in value)
    return False


def results_tables(results: dict[str, Any], title: str = "") -> list[str]:
    """A notebook's recorded results as markdown tables: its scalars in one key/value table, each dict of dicts
    or list of dicts as a table of its own (columns in the order first seen), deeper nesting by dotted names."""
    out: list[str] = []
    scalars = {k: v for k, v in results.items() if is_scalar(v) or (isinstance(v, dict) and not v)}
    if scalars:
        out += markdown_table(["key", "value"], [[k, v] for k, v in scalars.items()]) + [""]
    for key, value in results.items():
        if key in scalars:
            continue
        name = f"{title}{key}"
        if _records(value):
            rows = value.items() if isinstance(value, dict) else enumerate(value)
            flattened = [(k, flat(v)) for k, v in rows]
            columns = list(dict.fromkeys(c for _, row in flattened for c in row))
            first = [] if isinstance(value, list) else [""]
            out += [f"**{name}**", ""]
            out += markdown_table(first + columns, [([k] if isinstance(value, dict) else []) + [row.get(c) for c in columns]
                                            for k, row in flattened]) + [""]
        elif isinstance(value, dict):
            simple = {k: v for k, v in value.items() if is_scalar(v)}
            if simple:
                out += [f"**{name}**", ""] + markdown_table(["key", "value"], [[k, v] for k, v in simple.items()]) + [""]
            rest = {k: v for k, v in value.items() if k not in simple}
            if rest:
                out += results_tables(rest, f"{name}.")
        else:  # a list of mixed things: printed as JSON
            out += [f"**{name}**", "", "```json", json.dumps(value, indent=1), "```", ""]
    return out


# ---------------------------------------------------------------------------------------------- a run's page


def readings(executed: Path) -> list[str]:
    """The prose a notebook computed from its run: every markdown output of the executed notebook (the readings
    under its tables, notebook 10's plan check), in order; display math alone is left out."""
    import nbformat

    nb = nbformat.read(str(executed), as_version=4)
    out = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            text = output.get("data", {}).get("text/markdown")
            if isinstance(text, list):
                text = "".join(text)
            if text and not text.lstrip().startswith("$$"):
                out.append(text.strip())
    return out


def run_root(run: Path) -> Path:
    """The run directory whose stage folders a run's manifest refers to: ``run`` itself, or for a variant
    (``<run_dir>/variants/<digest>``) the run directory above it."""
    return run.parent.parent if run.parent.name == "variants" else run


def stage_folder(run: Path, stage: dict[str, Any]) -> Path:
    """Where a stage record's result lives: the folder it recorded, or ``<stage>/<fingerprint>`` in the run's root
    (a variant shares its stage results with the run directory above it)."""
    recorded = Path(stage["folder"]) if stage.get("folder") else None
    if recorded is not None and recorded.is_dir():
        return recorded
    return run_root(run) / stage["stage"] / stage["fingerprint"][:DIGEST_CHARS]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def collect(run_dir: str | Path) -> dict[str, Any]:
    """Everything a run's page shows, from the run directory (what :func:`render_run` reads). Refuses a run with
    a notebook that did not finish (:class:`ReportError`)."""
    run = Path(run_dir)
    manifest_path = run / "manifest.json"
    if not manifest_path.exists():
        raise FileNotFoundError(f"{run} is not a run directory (no manifest.json): run the chain there first")
    manifest = io.read_json(manifest_path)
    unfinished = [f"{r.get('notebook')} ({r.get('status')})" for r in manifest.get("notebooks", [])
                  if r.get("status") != "ok"]
    if unfinished:
        raise ReportError(f"{manifest_path}: not every notebook finished: {', '.join(unfinished)}; run them again "
                          "(python -m trsr_utils run ...) before writing the page")
    notebooks, figures = [], []
    for rec in manifest.get("notebooks", []):
        stem = rec["notebook"].removesuffix(".ipynb")
        results_path = run / "results" / f"{stem}.json"
        executed = run / "notebooks" / rec["notebook"]
        stage = rec.get("stage") or {}
        git = rec.get("git") or {}
        entry = {"notebook": stem, "status": rec.get("status"), "started": rec.get("started"),
                 "seconds": rec.get("seconds"), "commit": git.get("commit"), "dirty": git.get("dirty"),
                 "stage": stage.get("stage"), "fingerprint": stage.get("fingerprint"),
                 "stage_result": (f"recomputed (first made {stage['first_made']})" if stage.get("first_made")
                                  else stage.get("result")),
                 "results": io.read_json(results_path) if results_path.exists() else None,
                 "results_sha256": _sha256(results_path) if results_path.exists() else None,
                 "readings": readings(executed) if executed.exists() else [], "figures": []}
        if stage.get("stage") in FIGURE_STAGES and stage.get("fingerprint"):
            for png in sorted(stage_folder(run, stage).glob("*.png")):
                name = f"{stage['stage']}_{png.name}"
                entry["figures"].append(name)
                figures.append((png, name))
        notebooks.append(entry)
    seconds = [n["seconds"] for n in notebooks if isinstance(n["seconds"], (int, float))]
    data = {
        "format": FORMAT,
        "profile": manifest.get("profile"),
        "overrides": manifest.get("overrides") or {},
        "config_digest": manifest.get("config_digest"),
        # The manifest's top level is rewritten by every invocation of the runner: the last one's commit and start.
        "last_invocation": {"git": manifest.get("git"), "started": manifest.get("updated")},
        "machine": {"platform": manifest.get("platform"), "cpus": manifest.get("cpus"),
                    "python": manifest.get("python"),
                    "torch": (manifest.get("packages") or {}).get("torch"),
                    "transformers": (manifest.get("packages") or {}).get("transformers")},
        "total_seconds": round(sum(seconds), 2),
        "fingerprints": {n["stage"]: n["fingerprint"] for n in notebooks if n["stage"]},
        "notebooks": notebooks,
    }
    data["_figure_files"] = [(str(src), name) for src, name in figures]
    return data


def _short(commit: str | None) -> str:
    return (commit or "unknown")[:12]


def _last_invocation(data: dict[str, Any]) -> dict[str, Any]:
    if "last_invocation" in data:
        return data["last_invocation"] or {}
    return {"git": data.get("git"), "started": data.get("updated")}  # a format-1 JSON


def commit_text(commit: str | None, dirty: bool | None) -> str:
    if not commit:
        return "not recorded"
    return f"`{_short(commit)}`" + (" (uncommitted changes)" if dirty else "")


def _run_commit(notebooks: list[dict[str, Any]]) -> str:
    """The commit the run's notebooks were executed at, from their own records."""
    commits = {(n.get("commit"), bool(n.get("dirty"))) for n in notebooks}
    if not notebooks or any(c is None for c, _ in commits):
        return "not recorded for every notebook (a manifest written before the runner recorded it per notebook)"
    if len(commits) == 1:
        (commit, dirty), = commits
        return commit_text(commit, dirty) + ", every notebook"
    return "**differs between notebooks**: see the table below"


def render_run(data: dict[str, Any], figures_dir: str) -> str:
    """The results page (markdown) from :func:`collect`'s JSON; ``figures_dir``: the figures' folder, relative to
    the page."""
    profile = data["profile"]
    last = _last_invocation(data)
    last_git = last.get("git") or {}
    m = data["machine"]
    started = sorted(n["started"] for n in data["notebooks"] if n.get("started"))
    lines = [
        f"# Results of the `{profile}` profile (generated)",
        "",
        f"{MARKER} from {Path(figures_dir).name}.json, the recorded "
        "results of one run; do not edit by hand (tests/unit/test_results_page.py renders it again). -->",
        "",
        f"Every number on this page is one the run recorded: the notebooks' key results "
        f"(`results/<notebook>.json` in the run directory), the readings they wrote under their tables, and the "
        f"manifest's times. The JSON it was written from is [`{Path(figures_dir).name}.json`]"
        f"({Path(figures_dir).name}.json); the executed notebooks are on the course website (`make site`).",
        "",
        "| | |",
        "|---|---|",
        f"| profile | `{profile}`" + (f" with overrides `{json.dumps(data['overrides'])}`" if data["overrides"] else "")
        + " |",
        f"| commit the notebooks ran at | {_run_commit(data['notebooks'])} |",
        f"| configuration digest | `{data.get('config_digest')}` |",
        f"| first notebook started | {started[0] if started else 'not recorded'} |",
        f"| last pipeline invocation | started {last.get('started')}, commit "
        f"{commit_text(last_git.get('commit'), last_git.get('dirty'))} (the manifest's top level: the last invocation "
        "of the runner, which may have run only some of the notebooks) |",
        f"| machine (last pipeline invocation) | {m.get('platform')}, {fmt(m.get('cpus'))} CPUs, Python "
        f"{m.get('python')}, torch {m.get('torch')}, transformers {m.get('transformers')} |",
        f"| all notebooks | {fmt(data['total_seconds'])} s |",
        "",
        "## Time per notebook and stage fingerprints",
        "",
        "A stage's fingerprint names everything its result depends on (settings, inputs, models, prompts); "
        "`computed` means the run made it, `re-used` that it was already there, `recomputed` that the run made it "
        "again under a fingerprint an earlier run had made (from the caches where they hold its calls), the first "
        "time on the date shown. Each notebook's start and commit "
        "are those its own record in the manifest holds.",
        "",
    ]
    lines += markdown_table(["notebook", "status", "started", "seconds", "commit", "stage", "fingerprint", "result"],
                    [[f"[{n['notebook']}](#{n['notebook']})", n["status"], n.get("started") or "-", n["seconds"],
                      commit_text(n.get("commit"), n.get("dirty")) if n.get("commit") else "-",
                      n["stage"] or "-", f"`{n['fingerprint'][:12]}`" if n["fingerprint"] else "-",
                      n["stage_result"] or "-"] for n in data["notebooks"]])
    lines.append("")
    for n in data["notebooks"]:
        lines += [f"## {n['notebook']}", "",
                  f"The executed notebook: [{n['notebook']}.ipynb](../../notebooks/{n['notebook']}.ipynb) "
                  f"({fmt(n['seconds'])} s).", ""]
        if n["readings"]:
            lines += ["### What the notebook read from its results", ""]
            for text in n["readings"]:
                lines += [text, ""]
        if n["results"]:
            lines += ["### Recorded results", ""] + results_tables(n["results"])
        if n["figures"]:
            lines += ["### Figures", ""]
            lines += [f"![{name.removesuffix('.png')}]({figures_dir}/{name})" for name in n["figures"]] + [""]
    return "\n".join(lines).rstrip() + "\n"


def default_page(run_dir: str | Path, manifest: dict[str, Any]) -> Path:
    """Where ``pipeline report`` writes a run's page without ``--to``: ``docs/results/<profile>.md`` for a run
    directory, ``docs/results/<profile>-<config digest>.md`` for a variant (``<run_dir>/variants/<digest>``), so
    a variant never overwrites its profile's page."""
    run = Path(run_dir)
    profile = manifest["profile"]
    if run.resolve().parent.name == "variants" or manifest.get("overrides"):
        digest = manifest.get("config_digest") or run.resolve().name
        return REPO_ROOT / "docs" / "results" / f"{profile}-{digest}.md"
    return REPO_ROOT / "docs" / "results" / f"{profile}.md"


def _check_target(to: Path) -> Path:
    """The page's figure folder, after checking that writing ``to`` replaces only what this writer wrote."""
    if to.suffix != ".md":
        raise ReportError(f"--to {to}: a results page is a markdown file ending in .md (its JSON and figure folder "
                          "are named after it)")
    if to.exists() and MARKER not in to.read_text(encoding="utf-8", errors="replace"):
        raise ReportError(f"{to} exists and was not written by pipeline report (no '{MARKER.strip('<!- ')}' "
                          "line): pass another --to")
    json_path = to.with_suffix(".json")
    if json_path.exists() and not to.exists():
        raise ReportError(f"{json_path} exists without its page {to.name}: not written by pipeline report, pass "
                          "another --to")
    folder = to.with_suffix("")
    if folder.exists():
        if not folder.is_dir():
            raise ReportError(f"{folder} (where the page's figures go) is not a folder: pass another --to")
        foreign = sorted(p.name for p in folder.iterdir() if not (p.is_file() and FIGURE_FILE.match(p.name)))
        if foreign:
            raise ReportError(f"{folder} holds files the writer does not write ({', '.join(foreign[:5])}): it is not "
                              "this page's figure folder; pass another --to")
    return folder


def write_run_page(run_dir: str | Path, to: str | Path) -> dict[str, Any]:
    """Write ``to`` (markdown), its JSON beside it (``to`` with ``.json``) and its figures (folder ``to`` without
    the suffix); returns the paths."""
    to = Path(to)
    folder = _check_target(to)
    data = collect(run_dir)
    figure_files = data.pop("_figure_files")
    if folder.exists():  # only the figures an earlier page had (checked above): never a whole folder
        for old in folder.iterdir():
            old.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    for src, name in figure_files:
        shutil.copy2(src, folder / name)
    io.write_json(to.with_suffix(".json"), data)
    io.write_text(to, render_run(data, folder.name))
    return {"page": str(to), "json": str(to.with_suffix(".json")), "figures": str(folder),
            "n_figures": len(figure_files)}


def page_from_json(json_path: str | Path) -> str:
    """The page its JSON gives (what the committed page must equal)."""
    json_path = Path(json_path)
    return render_run(io.read_json(json_path), json_path.with_suffix("").name)


# ---------------------------------------------------------------------------------------------- checks


NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e[+-]?\d+)?")


def numbers_in(text: str) -> set[str]:
    """The numbers a text shows (as written: ``.65`` and ``0.65`` differ)."""
    text = re.sub(r"`[0-9a-f]{12,64}`", "", text)  # fingerprints and commits
    return set(NUMBER.findall(text))


def numbers_held(data: Any) -> set[str]:
    """Every number a JSON holds: its values as a page formats them, and every number in its keys and strings."""
    out: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                out.update(numbers_in(str(k)))
                walk(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)
        elif isinstance(value, str):
            out.update(numbers_in(value))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out.update(numbers_in(fmt(value)))

    walk(data)
    return out


def numbers_recorded(data: dict[str, Any]) -> set[str]:
    """The numbers a run's page may show as measured: those in the notebooks' recorded results (values as the page
    formats them, keys, strings) and readings, their wall times, the total and the CPU count; never those in
    fingerprints, digests, commits, timestamps, names or platform strings (:func:`numbers_shown` leaves those out
    of the page). A ``make bench`` JSON (``benchmarks``): every number it holds."""
    if "benchmarks" in data:
        return numbers_held(data)
    out = numbers_held([data.get("total_seconds"), (data.get("machine") or {}).get("cpus")])
    for n in data.get("notebooks", []):
        out |= numbers_held([n.get("results"), n.get("readings"), n.get("seconds")])
    return out


def provenance(data: dict[str, Any]) -> list[str]:
    """The identifying strings a run's page shows (names, times, versions, platform, digests), longest first."""
    last = _last_invocation(data)
    m = data.get("machine") or {}
    found = [data.get("profile"), data.get("config_digest"), last.get("started"), data.get("updated"),
             json.dumps(data.get("overrides")) if data.get("overrides") else None,
             m.get("platform"), m.get("python"), m.get("torch"), m.get("transformers")]
    for n in data.get("notebooks", []):
        # a recomputed stage's "(first made <timestamp>)" is provenance too, not a measured number
        found += [n.get("notebook"), n.get("stage"), n.get("started"), n.get("fingerprint"), n.get("stage_result"),
                  *n.get("figures", [])]
    return sorted({str(x) for x in found if x}, key=len, reverse=True)


def numbers_shown(page: str, data: dict[str, Any]) -> set[str]:
    """The numbers a run's page shows as measured: :func:`numbers_in` of the page without its provenance strings
    (what :func:`numbers_recorded` must hold)."""
    for text in provenance(data):
        page = page.replace(text, " ")
    return numbers_in(page)
