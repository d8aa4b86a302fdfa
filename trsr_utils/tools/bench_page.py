"""docs/benchmarks.md's generated section, written from ``make bench``'s JSON, never by hand.

    python -m trsr_utils results-page bench [--from runs/bench/bench.json] [--to docs/benchmarks.md]

``runs/bench/bench.json`` is copied to ``docs/benchmarks.json``; only the part of ``docs/benchmarks.md`` between its
two markers is generated, the prose around it is written by hand (as a run's page, :mod:`.results_page`).

Not a notebook's subject.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from trsr_utils.core import io
from trsr_utils.core.config import REPO_ROOT
from trsr_utils.tools.bench import public_model
from trsr_utils.tools.results_page import commit_text, fmt, is_scalar, markdown_table


BENCH_BEGIN = "<!-- begin: generated from benchmarks.json by python -m trsr_utils results-page bench -->"


BENCH_END = "<!-- end: generated -->"


def render_bench(bench: dict[str, Any] | None) -> str:
    """The generated part of docs/benchmarks.md from ``make bench``'s JSON (``None``: none recorded yet)."""
    if not bench or not bench.get("benchmarks"):
        return ("No `make bench` results are recorded in `docs/benchmarks.json` yet: run `make bench` (or "
                "`python -m trsr_utils bench --only NAME`, then `python -m trsr_utils results-page bench`), which "
                "writes them here.")
    lines = []
    for name, r in bench["benchmarks"].items():
        machine = r.get("machine") or bench.get("machine") or {}
        verdict = "not checked" if r.get("met") is None else ("met" if r.get("met") else "**not met**")
        lines += [f"### {name}", "",
                  f"Measured {r.get('when', 'at an unrecorded time')} on {machine.get('platform', '?')} "
                  f"({fmt(machine.get('cpu_count'))} CPUs, {fmt(machine.get('torch_threads'))} torch threads, torch "
                  f"{machine.get('torch', '?')}, GPU: {machine.get('cuda') or 'none'})"
                  + (f", model `{r['model']}`" if r.get("model") else "")
                  + (f", at commit {commit_text((r.get('git') or {}).get('commit'), (r.get('git') or {}).get('dirty'))}"
                     if r.get("git") else "") + ".", ""]
        summary = {k: v for k, v in r.items() if is_scalar(v) and k not in ("benchmark", "model", "when")}
        if summary:
            lines += markdown_table(["", ""], [[k, v] for k, v in summary.items()]) + [""]
        if r.get("rows"):
            columns = list(dict.fromkeys(c for row in r["rows"] for c in row))
            lines += markdown_table(columns, [[row.get(c) for c in columns] for row in r["rows"]]) + [""]
        lines += [f"Goal: {r.get('goal', '-')}: {verdict}.", ""]
    return "\n".join(lines).rstrip()


def bench_section(page: str) -> str:
    """The generated part of a benchmarks page (between the markers)."""
    try:
        start = page.index(BENCH_BEGIN) + len(BENCH_BEGIN)
        return page[start:page.index(BENCH_END)].strip()
    except ValueError:
        raise ValueError(f"the page has no generated section ({BENCH_BEGIN} ... {BENCH_END})") from None


def write_bench_page(bench_json: str | Path | None, page: str | Path) -> dict[str, Any]:
    """Copy ``bench_json`` beside ``page`` (``benchmarks.json``) and rewrite the page's generated section."""
    page = Path(page)
    text = page.read_text(encoding="utf-8")
    bench = io.read_json(bench_json) if bench_json and Path(bench_json).exists() else None
    if bench is not None:
        for r in bench.get("benchmarks", {}).values():  # a local model folder by its name, not this machine's path
            if r.get("model"):
                r["model"] = public_model(r["model"])
        io.write_json(page.with_suffix(".json"), bench)
    start, end = text.index(BENCH_BEGIN) + len(BENCH_BEGIN), text.index(BENCH_END)
    io.write_text(page, text[:start] + "\n\n" + render_bench(bench) + "\n\n" + text[end:])
    return {"page": str(page), "json": str(page.with_suffix(".json")) if bench else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trsr_utils results-page", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_bench = sub.add_parser("bench", help="docs/benchmarks.md's generated section from make bench's JSON")
    p_bench.add_argument("--from", dest="source", default="runs/bench/bench.json")
    p_bench.add_argument("--to", default=str(REPO_ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args(argv)
    if not Path(args.source).exists():
        print(f"FAILED: {args.source} does not exist: run make bench first", file=sys.stderr)
        return 1
    done = write_bench_page(args.source, args.to)
    print(f"written: {done['page']} and {done['json']}")
    return 0
