"""Run the numbered notebooks in order with papermill.

    python -m trsr_utils run --profile demo [--out DIR] [--only 01,03] [--from 03] [--set data.n_train=50]
    python -m trsr_utils status --profile demo [--out DIR] [--set ...]   # what is up to date, and why not
    python -m trsr_utils list
    python -m trsr_utils strip          # remove outputs before committing
    python -m trsr_utils report --run runs/demo [--to docs/results/demo.md]   # the run's results page

Each notebook gets three parameters, ``profile``, ``run_dir`` and
``overrides``; the executed copy is written to ``<run_dir>/notebooks/`` and a
``manifest.json`` in the run directory records the profile, the resolved
configuration, package versions, the git commit (of the last invocation; each
notebook's record holds the commit it ran at), each notebook's status and
wall time, and each stage's fingerprint and whether its result was computed
or re-used (:mod:`trsr_utils.stages`). The first failing notebook stops the
run with its cell number and error; its executed copy is kept for inspection.

The run directory's top level (``manifest.json``, ``notebooks/``,
``results/``) describes the profile's own settings. A run with ``--set``
overrides is a *variant*: its manifest, executed notebooks and recorded
results go to ``<run_dir>/variants/<config digest>/``, while stage results
are shared through their fingerprints (nothing is computed twice).

Not a notebook's subject: the README's commands run it.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

import nbformat

from trsr_utils.core import io
from trsr_utils.tools import preflight, results_page
from trsr_utils import stages
from trsr_utils.core.config import ConfigError, REPO_ROOT, available_profiles, parse_sets, resolve_config
from trsr_utils.core.io import git_state

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
INJECTED = ("profile", "run_dir", "overrides")
PACKAGES = ["trsr", "torch", "transformers", "tokenizers", "peft", "trl", "accelerate", "datasets", "gguf",
            "recbole", "numpy", "pandas", "pyarrow", "scikit-learn", "papermill", "ipykernel", "matplotlib",
            "seaborn", "ipywidgets", "bitsandbytes", "deepspeed"]


class PipelineError(RuntimeError):
    """A notebook that failed, located by notebook and cell."""


@dataclass
class NotebookFailure:
    notebook: str
    cell: int | None  # 1-based position in the source notebook
    exec_count: int | None
    first_line: str
    ename: str
    evalue: str
    output: str

    def __str__(self) -> str:
        where = self.notebook
        if self.cell is not None:
            where += f", cell {self.cell} (In [{self.exec_count}]: {self.first_line})"
        return f"{where}: {self.ename}: {self.evalue}\n  executed notebook kept at {self.output}"


def _source_cell_number(executed: Path, cell_index: int | None) -> int | None:
    """Papermill counts its injected-parameters cell; map back to the source notebook (1-based)."""
    if cell_index is None:
        return None
    try:
        nb = nbformat.read(str(executed), as_version=4)
    except (OSError, ValueError):
        return cell_index + 1
    tags = [c.get("metadata", {}).get("tags", []) for c in nb.cells]
    # The error banner papermill adds on top is written after execution, so cell_index does not count it.
    tags = [t for t in tags if "papermill-error-cell-tag" not in t]
    extra = sum(1 for t in tags[: cell_index + 1] if "injected-parameters" in t)
    return cell_index - extra + 1


def discover(notebooks_dir: Path = NOTEBOOKS_DIR) -> list[Path]:
    """``NN_name.ipynb`` files, in number order."""
    found = [p for p in notebooks_dir.glob("[0-9][0-9]_*.ipynb")]
    return sorted(found, key=lambda p: p.name)


def select(notebooks: list[Path], only: list[str] | None = None, start: str | None = None) -> list[Path]:
    """Keep the notebooks named by number (``only``) or from a number on (``start``)."""
    numbers = {p.name[:2]: p for p in notebooks}
    for n in list(only or []) + ([start] if start else []):
        if n.zfill(2) not in numbers:
            raise PipelineError(f"no notebook numbered {n!r}; available: {', '.join(sorted(numbers))}")
    chosen = notebooks
    if only:
        wanted = {n.zfill(2) for n in only}
        chosen = [p for p in chosen if p.name[:2] in wanted]
    if start:
        chosen = [p for p in chosen if p.name[:2] >= start.zfill(2)]
    return chosen


def parameters_cell(nb: nbformat.NotebookNode) -> tuple[int, dict[str, Any]]:
    """The index and literal values of the cell tagged ``parameters``."""
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            values = {}
            for node in ast.parse(cell.source).body:
                if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                        and isinstance(node.targets[0], ast.Name)):
                    raise PipelineError(f"the parameters cell may only assign literals, found: {ast.unparse(node)}")
                try:
                    values[node.targets[0].id] = ast.literal_eval(node.value)
                except ValueError:
                    raise PipelineError(
                        f"parameter {node.targets[0].id!r} is not a literal: {ast.unparse(node.value)}"
                    ) from None
            return index, values
    raise PipelineError("no cell is tagged 'parameters'")


def package_versions() -> dict[str, str | None]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _load_manifest(path: Path) -> dict[str, Any]:
    if path.exists():
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            pass
    return {}


def _kernel_manager_class() -> type:
    """nbclient's kernel manager on IPC sockets: a local kernel over TCP warns (and is readable by any local user)."""
    from jupyter_client.manager import AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs: Any):
            kwargs.setdefault("transport", "ipc")
            super().__init__(**kwargs)

    return IPCKernelManager


def stage_record(cfg: Any, notebook: str, began: float) -> dict[str, Any] | None:
    """The stage a notebook computes: its fingerprint, folder, and whether its result was computed, re-used, or
    recomputed (written again under a fingerprint an earlier run had made: ``first_made`` says when, UTC)."""
    stage = stages.for_notebook(notebook)
    if stage is None:
        return None
    folder = stages.result_dir(cfg, stage.name)
    rec = stages.record(folder)
    if rec is None:
        return {"stage": stage.name, "fingerprint": None, "folder": str(folder), "result": "none"}
    created = rec.get("created", 0)
    first = (rec.get("first") or {}).get("created")
    out = {"stage": stage.name, "fingerprint": rec["fingerprint"], "folder": str(folder),
           "result": "re-used" if created < began else "recomputed" if first is not None and first < began
           else "computed"}
    if out["result"] == "recomputed":
        out["first_made"] = datetime.fromtimestamp(first, timezone.utc).isoformat(timespec="seconds")
    return out


def run(
    profile: str,
    out: str | os.PathLike[str] | None = None,
    only: list[str] | None = None,
    start: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    notebooks_dir: str | os.PathLike[str] = NOTEBOOKS_DIR,
    kernel_name: str = "python3",
    log=print,
) -> dict[str, Any]:
    """Execute the selected notebooks; returns the manifest. Raises :class:`PipelineError` on failure."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    overrides = dict(overrides or {})
    cfg = resolve_config(profile, run_dir=out, overrides=overrides)  # unknown keys fail here, before any work
    run_dir = Path(cfg.run_dir)
    home = stages.home(cfg, overrides)  # the run directory itself, or the variant's folder
    executed_dir = home / "notebooks"
    executed_dir.mkdir(parents=True, exist_ok=True)
    notebooks = select(discover(Path(notebooks_dir)), only, start)
    if not notebooks:
        raise PipelineError(f"no notebooks to run in {notebooks_dir}")

    # A GPU profile running a notebook that loads an LLM (03-09): every problem with this machine, before a
    # minute is spent (01, 02 and 10 run anywhere).
    if preflight.needs_gpu(cfg) and any("03" <= p.name[:2] <= "08" for p in notebooks):
        preflight.require(cfg)
    elif (slow := preflight.cpu_bfloat16(cfg)) and any("03" <= p.name[:2] <= "09" for p in notebooks):
        print(f"[{cfg.profile}] warning: {slow}", flush=True)  # slow, not wrong: it runs

    manifest_path = home / "manifest.json"
    manifest = _load_manifest(manifest_path)
    if manifest.get("config") not in (None, cfg.to_dict()):
        manifest = {}  # the profile's settings changed since: the old records describe another configuration
    manifest.update({
        "profile": cfg.profile,
        "run_dir": str(run_dir),
        "overrides": overrides,
        "config": cfg.to_dict(),
        "config_digest": stages.config_digest(cfg),
        "packages": package_versions(),
        "git": git_state(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })
    records = {r["notebook"]: r for r in manifest.get("notebooks", [])}
    params = {"profile": cfg.profile, "run_dir": str(run_dir), "overrides": overrides}
    # The kernel inherits this: package progress bars go plain and quiet (no widget state in outputs).
    os.environ["TRSR_HEADLESS"] = "1"

    def save() -> None:
        manifest["notebooks"] = [records[k] for k in sorted(records)]
        manifest["stages"] = {r["stage"]["stage"]: r["stage"] for r in manifest["notebooks"] if r.get("stage")}
        io.write_json(manifest_path, manifest)

    for path in notebooks:
        _, declared = parameters_cell(nbformat.read(path, as_version=4))
        missing = [p for p in INJECTED if p not in declared]
        if missing:
            raise PipelineError(f"{path.name}: its parameters cell does not declare {missing}")
        output = executed_dir / path.name
        log(f"[{cfg.profile}] {path.name} ...")
        began, wall = time.perf_counter(), time.time()
        record = {"notebook": path.name, "status": "running", "output": str(output),
                  "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  # The tree at this notebook's own start: a commit (or an edit) made while an hours-long run goes on
                  # shows here, where the top level holds only the invocation's start.
                  "git": git_state()}
        records[path.name] = record
        save()
        try:
            pm.execute_notebook(str(path), str(output), parameters=params, kernel_name=kernel_name,
                                cwd=str(run_dir), progress_bar=False, log_output=False,
                                request_save_on_cell_execute=True, kernel_manager_class=_kernel_manager_class())
        except PapermillExecutionError as exc:
            first_line = (exc.source or "").strip().splitlines()[0][:80] if (exc.source or "").strip() else ""
            failure = NotebookFailure(path.name, _source_cell_number(output, exc.cell_index), exc.exec_count,
                                      first_line, exc.ename, exc.evalue, str(output))
            record.update(status="failed", seconds=round(time.perf_counter() - began, 2),
                          error={"cell": failure.cell, "exec_count": exc.exec_count, "ename": exc.ename,
                                 "evalue": exc.evalue})
            save()
            raise PipelineError(str(failure)) from None
        record.update(status="ok", seconds=round(time.perf_counter() - began, 2),
                      stage=stage_record(cfg, path.name, wall))
        save()
        done = record["stage"]
        what = f", {done['stage']} {done['result']}" if done else ""
        log(f"[{cfg.profile}] {path.name} ok in {record['seconds']:.1f} s{what} -> {output}")
    return manifest


def read_results(executed: str | os.PathLike[str]) -> dict[str, Any]:
    """The results a notebook recorded (its last ``record_results`` output)."""
    nb = nbformat.read(str(executed), as_version=4)
    found: dict[str, Any] | None = None
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if io.RESULTS_MIME in data:
                found = data[io.RESULTS_MIME]
    if found is None:
        raise PipelineError(f"{executed}: no recorded results (the closing cell calls record_results)")
    return found


def strip(paths: list[Path]) -> list[Path]:
    """Remove outputs, execution counts and widget state; returns the files changed."""
    changed = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        before = nbformat.writes(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs = []
                cell.execution_count = None
            cell.metadata.pop("execution", None)
            cell.metadata.pop("papermill", None)
        for key in ("widgets", "papermill"):
            nb.metadata.pop(key, None)
        if nbformat.writes(nb) != before:
            nbformat.write(nb, path)
            changed.append(path)
    return changed


# What a handed-out run directory leaves behind: training checkpoints (a finished adapter does not need them to be
# re-used, only to resume an interrupted training) and the hand-out archives themselves.
HANDOUT_SKIP = ("checkpoints",)


def handout(run_dir: str | Path, archive: str | Path) -> dict[str, Any]:
    """Pack a run directory for a class: stage results, the LLM call cache and the score store, without checkpoints.

    Unpacked anywhere (``tar xzf ARCHIVE -C runs/``), every stage whose settings match is up to date there: stage
    folders are named by fingerprints of settings, inputs and models, never by path.
    """
    import tarfile

    run_dir, archive = Path(run_dir).resolve(), Path(archive).resolve()
    if not (run_dir / "manifest.json").exists():
        raise PipelineError(f"{run_dir} is not a run directory (no manifest.json): run the chain there first")
    files = sorted(p for p in run_dir.rglob("*") if p.is_file() and p != archive
                   and not any(part in HANDOUT_SKIP for part in p.relative_to(run_dir).parts))
    with tarfile.open(archive, "w:gz") as tar:
        for path in files:
            tar.add(path, arcname=str(Path(run_dir.name) / path.relative_to(run_dir)))
    return {"archive": str(archive), "files": len(files), "mb": round(archive.stat().st_size / 2**20, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trsr_utils", description="Run the notebook chain.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="execute notebooks with a profile")
    p_run.add_argument("--profile", default="demo")
    p_run.add_argument("--out", "--run-dir", dest="out", default=None,
                       help="run directory (default runs/<profile>); --run-dir as the stage commands spell it")
    p_run.add_argument("--only", default=None, help="comma-separated notebook numbers, e.g. 01,03")
    p_run.add_argument("--from", dest="start", default=None, help="start at this notebook number")
    p_run.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                       help="override one configuration value, e.g. --set data.n_train=50")
    p_run.add_argument("--notebooks", default=str(NOTEBOOKS_DIR), help=argparse.SUPPRESS)
    p_status = sub.add_parser("status", help="per stage: up to date, or what changed and would be recomputed")
    p_status.add_argument("--profile", default="demo")
    p_status.add_argument("--out", "--run-dir", dest="out", default=None,
                          help="run directory (default runs/<profile>); --run-dir as the stage commands spell it")
    p_status.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    p_handout = sub.add_parser("handout", help="pack a run directory for students (without training checkpoints)")
    p_handout.add_argument("--out", required=True, help="the run directory to pack, e.g. runs/demo")
    p_handout.add_argument("--to", required=True, help="the archive to write, e.g. class-demo.tar.gz")
    sub.add_parser("list", help="list the notebooks and profiles")
    p_strip = sub.add_parser("strip", help="strip outputs from notebooks (before committing)")
    p_strip.add_argument("paths", nargs="*")
    p_report = sub.add_parser("report", help="write a run's results page from its recorded results "
                                             "(trsr_utils.tools.results_page)")
    p_report.add_argument("--run", required=True, help="the run directory, e.g. runs/demo")
    p_report.add_argument("--to", default=None, help="the page to write, a .md file (default docs/results/<profile>.md, "
                                                     "for a variant docs/results/<profile>-<digest>.md); its JSON and "
                                                     "figures go beside it")
    args = parser.parse_args(argv)

    if args.command == "report":

        try:
            manifest = _load_manifest(Path(args.run) / "manifest.json")
            if not manifest.get("profile"):
                raise FileNotFoundError(f"{args.run} has no manifest.json: run the chain there first")
            done = results_page.write_run_page(args.run, args.to or results_page.default_page(args.run, manifest))
        except (FileNotFoundError, results_page.ReportError) as exc:
            print(f"FAILED: {exc}", file=sys.stderr)
            return 1
        print(f"written: {done['page']}, {done['json']} and {done['n_figures']} figures in {done['figures']}")
        return 0

    if args.command == "handout":
        try:
            packed = handout(args.out, args.to)
        except PipelineError as exc:
            print(f"FAILED: {exc}", file=sys.stderr)
            return 1
        print(f"{packed['archive']}: {packed['files']} files, {packed['mb']} MB; students unpack it with "
              f"tar xzf {args.to} -C runs/")
        return 0
    if args.command == "list":
        print("notebooks:", *[p.name for p in discover()], sep="\n  ")
        print("profiles:", *available_profiles(), sep="\n  ")
        return 0
    if args.command == "status":
        try:
            cfg = resolve_config(args.profile, args.out, parse_sets(args.sets))
            print(f"{cfg.profile} in {cfg.run_dir}:")
            print(stages.format_status(stages.status(cfg)))
        except (ConfigError, FileNotFoundError) as exc:
            print(f"\nFAILED: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.command == "strip":
        paths = [Path(p) for p in args.paths] or discover() + discover(NOTEBOOKS_DIR / "solutions")
        for p in strip(paths):
            print(f"stripped {p}")
        return 0
    began = time.perf_counter()
    try:
        only = [n.strip() for n in args.only.split(",")] if args.only else None
        manifest = run(args.profile, args.out, only, args.start, parse_sets(args.sets), args.notebooks)
    except (PipelineError, ConfigError) as exc:
        print(f"\nFAILED: {exc}", file=sys.stderr)
        return 1
    print(f"\nall notebooks ran in {time.perf_counter() - began:.1f} s")
    home = stages.home(resolve_config(args.profile, args.out, manifest["overrides"]), manifest["overrides"])
    print(f"executed notebooks: {home / 'notebooks'}")
    print(f"manifest:           {home / 'manifest.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
