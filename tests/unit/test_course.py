"""The course material points where it says: exercises to their worked solutions, the guide to every notebook."""

from __future__ import annotations

import re

import nbformat
import pytest

from trsr_utils.core.config import REPO_ROOT
from trsr_utils.tools.pipeline import NOTEBOOKS_DIR, discover

NOTEBOOKS = discover(NOTEBOOKS_DIR)
GUIDE = REPO_ROOT / "docs" / "course.md"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_exercises_say_where_their_worked_solutions_are(path):
    exercises = nbformat.read(path, as_version=4).cells[-1].source
    linked = re.findall(r"solutions/(\d\d_[a-z_]+\.ipynb)", exercises)
    assert linked == [path.name] * len(linked) and linked, f"{path.name}: no link to solutions/{path.name}"
    assert (NOTEBOOKS_DIR / "solutions" / path.name).exists()


def test_the_course_guide_covers_every_notebook_with_measured_times():
    guide = GUIDE.read_text()
    for path in NOTEBOOKS:
        number, name = path.stem.split("_", 1)
        assert f"| {number} {name.replace('_', ' ')} |" in guide, f"no learning goals for {path.stem}"
        assert re.search(rf"^\| {number} [^|]*\| \d+ s \| \d+ s \|", guide, re.M), f"no measured times for {number}"
    assert "TIMES_TABLE" not in guide


def test_the_learning_goals_table_says_what_each_notebook_teaches():
    # (a bulk edit of the times table once replaced every goal by a time; the check above still passed)
    table = re.search(r"^\| notebook \| learning goals \|\n\|---\|---\|\n((?:\|.*\n)+)", GUIDE.read_text(), re.M)
    assert table, "no learning goals table in docs/course.md"
    rows = [r for r in table.group(1).splitlines() if r.strip()]
    assert len(rows) == len(NOTEBOOKS)
    for row in rows:
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        assert len(cells) == 2 and len(cells[1].split()) >= 15, f"not a learning goal: {row[:80]!r}"
