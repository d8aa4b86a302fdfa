"""Conventions every committed notebook keeps (course material, stripped, parameterised)."""

from __future__ import annotations

import json

import nbformat
import pytest

from trsr_utils.tools.pipeline import INJECTED, NOTEBOOKS_DIR, discover, parameters_cell

NOTEBOOKS = discover(NOTEBOOKS_DIR)


def test_there_are_notebooks():
    assert NOTEBOOKS and NOTEBOOKS[0].name.startswith("01_")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_conventions(path):
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert all("id" in cell for cell in raw["cells"]), f"{path.name}: a cell without an id (nbformat warns on every run)"
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


# ----------------------------------------------------------------- worked solutions (notebooks/solutions/)
SOLUTIONS = discover(NOTEBOOKS_DIR / "solutions")


def _exercises(text: str) -> list[str]:
    """The numbered exercises of a notebook's closing cell, whitespace-normalised."""
    import re

    items = re.findall(r"^\d\. (.*?)(?=^\d\. |^\s*$|\Z)", text, flags=re.M | re.S)
    return [" ".join(item.split()) for item in items]


def test_one_solution_per_notebook():
    assert [p.name for p in SOLUTIONS] == [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_solution_conventions(path):
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert all("id" in cell for cell in raw["cells"]), f"{path.name}: a cell without an id (nbformat warns on every run)"
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: outputs must be stripped (make strip)"
            assert cell.execution_count is None, f"{path.name}: execution counts must be stripped"
    assert "widgets" not in nb.metadata
    # The same parameter names as the chain's notebooks, so the same injection works; the defaults are the demo's.
    _, params = parameters_cell(nb)
    assert params["profile"] == "demo" and params["run_dir"] == "" and params.get("overrides", {}) == {}
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith(f"# Worked solutions · {path.name[:2]} ")
    assert f"notebooks/{path.name}" in first.source, "the first cell names the notebook it belongs to"
    # Per exercise: its heading restating it word for word, code, and a "How to read it" before the next one.
    markdown = [c.source for c in nb.cells if c.cell_type == "markdown"]
    headings = [s for s in markdown if s.startswith("## Exercise ")]
    assert len(headings) >= 3
    assert [h.splitlines()[0] for h in headings] == [f"## Exercise {i}" for i in range(1, len(headings) + 1)]
    quoted = [" ".join(" ".join(line[1:].strip() for line in h.splitlines() if line.startswith(">")).split())
              for h in headings]
    main = nbformat.read(NOTEBOOKS_DIR / path.name, as_version=4).cells[-1].source
    assert quoted == _exercises(main), "each exercise is quoted as the notebook states it"
    kinds = [("exercise" if c.source.startswith("## Exercise ") else "reading" if "**How to read it**" in c.source
              else "code" if c.cell_type == "code" else "") for c in nb.cells]
    sections: list[list[str]] = []
    for kind in kinds:
        if kind == "exercise":
            sections.append([])
        elif kind and sections:
            sections[-1].append(kind)
    for number, section in enumerate(sections, start=1):
        assert "code" in section and section[-1] == "reading", f"exercise {number}: code, then 'How to read it'"
