"""Conventions every committed notebook keeps (course material, stripped, parameterised)."""

from __future__ import annotations

import nbformat
import pytest

from trsr_utils.pipeline import INJECTED, NOTEBOOKS_DIR, discover, parameters_cell

NOTEBOOKS = discover(NOTEBOOKS_DIR)


def test_there_are_notebooks():
    assert NOTEBOOKS and NOTEBOOKS[0].name.startswith("01_")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_conventions(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: outputs must be stripped (make strip)"
            assert cell.execution_count is None, f"{path.name}: execution counts must be stripped"
    assert "widgets" not in nb.metadata
    _, params = parameters_cell(nb)
    assert set(params) == set(INJECTED), "the parameters cell holds only profile, run_dir and overrides"
    assert params["profile"] == "demo" and params["overrides"] == {}
    first, last = nb.cells[0], nb.cells[-1]
    assert first.cell_type == "markdown" and "What you will learn" in first.source
    assert last.cell_type == "markdown" and "Exercises" in last.source
    results = [c for c in nb.cells if "results" in c.get("metadata", {}).get("tags", [])]
    assert len(results) == 1 and "record_results" in results[0].source
    assert nb.cells[-2] is results[0], "the results cell closes the notebook, before the exercises"
