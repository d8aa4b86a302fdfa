"""The package's layers (issue 28): no new upward or function-level import of our own modules."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from trsr_utils import layers

DEBT = Path(__file__).with_name("layer_debt.txt")


def _recorded() -> Counter:
    out: Counter = Counter()
    for line in DEBT.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            count, what = line.split(" ", 1)
            out[what] = int(count)
    return out


def test_every_module_has_a_floor():
    for path in layers.PACKAGE.rglob("*.py"):
        name = layers._module_name(path)
        if name:
            layers.floor(name)  # raises, naming the module, when LAYER lacks it


def test_no_import_breaks_the_layers_beyond_the_recorded_debt():
    now = Counter(f"{v.module} imports {v.target} ({v.kind})" for v in layers.violations())
    recorded = _recorded()
    new = now - recorded
    assert not new, f"imports that break the layers (move them to the top of the file, or down a floor): {dict(new)}"
    paid = recorded - now
    assert not paid, f"fixed, so remove or lower their lines in {DEBT.name}: {dict(paid)}"


def test_the_checker_finds_upward_and_indented_imports(tmp_path, monkeypatch):
    pkg = tmp_path / "pkg"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "data" / "__init__.py").write_text("from . import mind\n")
    (pkg / "data" / "mind.py").write_text("from .. import io\n\n\ndef f():\n    from ..plots import x\n")
    (pkg / "io.py").write_text("import os\n\n\ndef g():\n    from . import config\n")
    (pkg / "config.py").write_text("from .io import read\nfrom . import plots\n")
    (pkg / "plots.py").write_text("from .data import mind\nfrom . import io\n")
    monkeypatch.setattr(layers, "PACKAGE", pkg)
    found = {str(v).split(":", 1)[0] + ":" + str(v).split(" ", 1)[1] for v in layers.violations(pkg)}
    assert found == {"data.mind:imports plots (upward)",  # method -> report, and inside a function
                     "io:imports config (in a function)",  # same floor, but not at the top
                     "config:imports plots (upward)"}
    with pytest.raises(KeyError, match="trsr_utils.newmodule"):
        layers.floor("newmodule")
