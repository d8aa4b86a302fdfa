"""Every worked solution (notebooks/solutions/NN_*.ipynb) runs on the smoke chain's results, so none of them rots.

Each solution is executed with papermill, as the pipeline executes the chain's notebooks (kernel python3, the run
directory as working directory, ``profile`` and ``run_dir`` injected), in its own copy of the smoke run directory:
solutions write into their run directory (new stage results under other settings, a scratch folder, variants), and
the copy keeps the shared chain's results as they were for the other tests.
"""

from __future__ import annotations

import shutil
import time

import nbformat
import pytest

from trsr_utils.tools import pipeline

pytestmark = pytest.mark.notebook

SOLUTIONS_DIR = pipeline.NOTEBOOKS_DIR / "solutions"
SOLUTIONS = pipeline.discover(SOLUTIONS_DIR)

# What shortens the costliest exercises on CI; each solution's parameters cell says what its parameter does, and the
# defaults (what a student runs) do exactly what the exercise asks.
QUICK = {
    "03_hierarchical_summary": {"users": 6},  # 6 users' summaries in memory, not all 22 stored (3 summary runs)
    "04_recurrent_summary": {"fresh_users": 4},  # the fresh-cache run for 4 users
    "07_evaluation": {"recbole_epochs": 4, "full": False},  # SASRec 4 epochs, not 100; no whole chain with 99 negatives
}


def test_one_solution_per_notebook():
    chain = [p.name for p in pipeline.discover()]
    assert [p.name for p in SOLUTIONS] == chain, "notebooks/solutions/ holds one NN_<same name>.ipynb per notebook"


def test_quick_parameters_are_declared():
    """A parameter the test sets must exist in the solution's parameters cell (papermill would only warn)."""
    for name, params in QUICK.items():
        _, declared = pipeline.parameters_cell(nbformat.read(SOLUTIONS_DIR / f"{name}.ipynb", as_version=4))
        assert set(params) <= set(declared), f"{name}: {sorted(set(params) - set(declared))} not declared"


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_solution_runs_on_smoke(path, smoke_run, tmp_path, monkeypatch):
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    out, _ = smoke_run
    run_dir = tmp_path / "run"
    shutil.copytree(out, run_dir)
    monkeypatch.setenv("TRSR_HEADLESS", "1")  # plain progress lines, no widgets, as in the chain
    executed = tmp_path / path.name
    params = {"profile": "smoke", "run_dir": str(run_dir), **QUICK.get(path.stem, {})}
    began = time.perf_counter()
    try:
        pm.execute_notebook(str(path), str(executed), parameters=params, kernel_name="python3", cwd=str(run_dir),
                            progress_bar=False, log_output=False,
                            kernel_manager_class=pipeline._kernel_manager_class())
    except PapermillExecutionError as exc:
        pytest.fail(f"{path.name}, cell {exc.cell_index} ({exc.exec_count}): {exc.ename}: {exc.evalue}\n"
                    f"executed copy: {executed}")
    print(f"{path.name}: {time.perf_counter() - began:.1f} s")
    noise = []
    for index, cell in enumerate(nbformat.read(executed, as_version=4).cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                noise.append(f"cell {index}: {output.get('ename')}: {output.get('evalue')}")
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                noise.append(f"cell {index}: stderr {output.get('text', '')[:160]!r}")
    assert not noise, "\n".join(noise)
