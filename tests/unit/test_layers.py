"""The package's layers (issue 28): every import of our own modules points down a floor, sits at the top of its
file and closes no circle. ``python -m trsr_utils layers`` lists any that does not."""

from __future__ import annotations

import pytest

from trsr_utils.core import layers


def test_every_module_has_a_floor():
    for path in layers.PACKAGE.rglob("*.py"):
        name = layers._module_name(path)
        if name:
            layers.floor(name)  # raises, naming the module, when LAYER lacks it


def test_no_import_breaks_the_layers():
    found = [str(v) for v in layers.violations()]
    assert not found, "imports that break the layers (move them to the top of the file, or down a floor):\n" + \
        "\n".join(found)


def _write(pkg, files):
    for name, text in files.items():
        path = pkg / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checker_finds_upward_indented_and_circular_imports(tmp_path, monkeypatch):
    pkg = tmp_path / "pkg"
    _write(pkg, {
        "__init__.py": "",
        "core/__init__.py": "", "method/__init__.py": "", "report/__init__.py": "", "data/__init__.py": "",
        "core/io.py": "import os\n\n\ndef g():\n    from pkg.core import config\n",  # same floor, not at the top
        "core/config.py": "from pkg.core.io import read\nfrom pkg.report import plots\n",  # upward
        "data/mind.py": "from pkg.core import io\n\n\ndef f():\n    from pkg.report.plots import x\n",  # upward, indented
        "report/plots.py": "from pkg.data import mind\nfrom pkg.core import io\n",
        "method/a.py": "from pkg.method import b\n",  # a <-> b: a circle on one floor
        "method/b.py": "from pkg.method.a import thing\n",
    })
    monkeypatch.setattr(layers, "PACKAGE", pkg)
    found = {f"{v.module} imports {v.target} ({v.kind})" for v in layers.violations(pkg)}
    assert found == {"data.mind imports report.plots (upward)",
                     "core.io imports core.config (in a function)",
                     "core.config imports report.plots (upward)",
                     "method.a imports method.b (in a circle)",
                     "method.b imports method.a (in a circle)"}
    with pytest.raises(KeyError, match="trsr_utils.newmodule"):
        layers.floor("newmodule")
