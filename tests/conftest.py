"""Shared fixtures: paths to the real-format fixture files and small configs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
os.environ.setdefault("TRSR_PROGRESS", "0")


@pytest.fixture
def fixture_copy(tmp_path):
    """Copy one fixture folder into tmp_path so a test can break it."""

    def make(name: str) -> Path:
        dest = tmp_path / name
        shutil.copytree(FIXTURES / name, dest)
        return dest

    return make


def insert_line(path: Path, after: int, raw: bytes) -> int:
    """Insert ``raw`` (bytes, without newline) after line ``after``; returns its 1-based line number."""
    lines = path.read_bytes().splitlines(keepends=True)
    lines.insert(after, raw + b"\n")
    path.write_bytes(b"".join(lines))
    return after + 1
