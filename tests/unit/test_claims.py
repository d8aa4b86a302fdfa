"""What the README and the course guide claim of every notebook holds for every notebook.

The README: "Every method notebook writes its core out in a few lines of plain Python (the chunking loop, the two
summary loops, the answer-only label mask and LoRA's update, shared-prefix scoring with the key/value cache, the
ranking metrics), with the math in LaTeX, and asserts that it agrees with the package's tested version; every
exercise has a worked solution" and "Each notebook starts with what you will learn, has one `parameters` cell
(profile, run directory, overrides), reads its inputs from the run directory, records its key results in its
last code cell and ends with exercises". The course guide: "Each notebook ends with three to five exercises (05
has five, 06 and 08 four)". A sentence that stops being true fails here, naming the notebook.
"""

from __future__ import annotations

import re

import nbformat
import pytest

from trsr_utils.core.config import REPO_ROOT
from trsr_utils.tools.pipeline import INJECTED, NOTEBOOKS_DIR, discover, parameters_cell

NOTEBOOKS = discover(NOTEBOOKS_DIR)
README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
GUIDE = (REPO_ROOT / "docs" / "course.md").read_text(encoding="utf-8")
# The cores the README names, by the notebook that writes each out by hand: a word the by-hand cell (the one that
# asserts agreement with the package) must contain.
CORES = {
    "02": ("the chunking loop", "Chunker"),
    "03": ("the hierarchical summary loop", "hierarchical"),
    "04": ("the recurrent summary loop", "recurrent"),
    "06": ("the answer-only label mask and LoRA's update", "lora"),
    "07": ("shared-prefix scoring with the key/value cache, the ranking metrics", "positive_rank"),
}
EXERCISES = {"05": 5, "06": 4, "08": 4}  # the guide's exceptions; every other notebook has three


def _nb(path):
    return nbformat.read(path, as_version=4)


def _asserting_cells(nb) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == "code" and re.search(r"^\s*assert\b", c.source, re.M)]


def test_the_sentences_checked_here_are_the_ones_the_readme_and_guide_say():
    said = " ".join(README.split())
    assert ("Every method notebook writes its core out in a few lines of plain Python (the chunking loop, the two "
            "summary loops, the answer-only label mask and LoRA's update, shared-prefix scoring with the key/value "
            "cache, the ranking metrics), with the math in LaTeX, and asserts that it agrees with the package's "
            "tested version") in said
    assert ("Each notebook starts with what you will learn, has one `parameters` cell (profile, run directory, "
            "overrides), reads its inputs from the run directory, records its key results in its last code cell "
            "and ends with exercises.") in said
    assert "Each notebook ends with three to five exercises (05 has five, 06 and 08 four)" in " ".join(GUIDE.split())


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_notebook_has_goals_one_parameters_cell_recorded_results_and_exercises(path):
    nb = _nb(path)
    assert "what you will learn" in (nb.cells[0].source + nb.cells[1].source).lower(), f"{path.name}: no goals"
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: {len(tagged)} parameters cells"
    _, declared = parameters_cell(nb)
    assert set(INJECTED) <= set(declared)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert "record_results(" in code[-1], f"{path.name}: the last code cell does not record the key results"
    assert any("run_dir" in s and ("stages." in s or "resolve_config" in s) for s in code), (
        f"{path.name}: reads nothing from the run directory")
    assert nb.cells[-1].cell_type == "markdown" and nb.cells[-1].source.startswith("## Exercises")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_notebook_checks_by_hand_work_against_the_package_and_shows_its_math(path):
    nb = _nb(path)
    asserting = _asserting_cells(nb)
    assert asserting, f"{path.name}: no cell asserts that by-hand work agrees with the package"
    assert any("$" in c.source for c in nb.cells if c.cell_type == "markdown"), f"{path.name}: no LaTeX math"
    number = path.name[:2]
    if number in CORES:
        what, word = CORES[number]
        assert any(word.lower() in s.lower() for s in asserting), (
            f"{path.name}: the README says it writes out {what}, but no asserting cell mentions {word!r}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_notebook_has_the_exercises_the_guide_counts_and_a_solution_for_each(path):
    exercises = re.findall(r"(?m)^(\d+)\. ", _nb(path).cells[-1].source)
    expected = EXERCISES.get(path.name[:2], 3)
    assert [int(e) for e in exercises] == list(range(1, expected + 1)), f"{path.name}: exercises {exercises}"
    solution = _nb(NOTEBOOKS_DIR / "solutions" / path.name)
    headings = re.findall(r"(?m)^## Exercise (\d+)", "\n".join(c.source for c in solution.cells
                                                               if c.cell_type == "markdown"))
    assert [int(h) for h in headings] == list(range(1, expected + 1)), f"solutions/{path.name}: {headings}"
