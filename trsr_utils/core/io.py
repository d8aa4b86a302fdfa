"""Run-directory I/O: atomic writes and the results each notebook records.

Every stage writes its outputs through these helpers: the data goes to a
temporary file in the same folder, is flushed to disk, then renamed over the
target, so a run killed at any moment leaves either the old file or the new
one, never half a file.

Not a notebook's subject: every notebook writes and reads through it (docs/design.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from trsr_utils.core.config import REPO_ROOT

RESULTS_MIME = "application/vnd.trsr.results+json"
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it over ``target`` on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; results are meant to be shared
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2, ensure_ascii=False, default=json_default) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """A JSON file (stage results are located through :func:`trsr_utils.stages.require`, which names the
    notebook that writes a missing one)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_parquet(path: str | os.PathLike[str], frame: pd.DataFrame) -> Path:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
    return Path(path)


def read_parquet(path: str | os.PathLike[str]) -> pd.DataFrame:
    return pd.read_parquet(path)


NETWORK_FILESYSTEMS = ("nfs", "nfs4", "lustre", "gpfs", "cifs", "smb3", "smbfs", "beegfs", "ceph", "fuse.sshfs",
                       "glusterfs", "fuse.glusterfs", "panfs", "wekafs")


def filesystem_type(path: str | os.PathLike[str], mounts: str = "/proc/mounts") -> str:
    """The type of the filesystem ``path`` lives on ("ext4", "nfs4", "lustre", ...), from the longest mount point
    that contains it; "unknown" where the mount table cannot be read (not Linux)."""
    target = Path(path).resolve()
    best, kind = -1, "unknown"
    try:
        lines = Path(mounts).read_text().splitlines()
    except OSError:
        return kind
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = Path(fields[1].replace("\\040", " "))
        if (target == point or point in target.parents) and len(str(point)) > best:
            best, kind = len(str(point)), fields[2]
    return kind


def network_filesystem(path: str | os.PathLike[str]) -> bool:
    """Is ``path`` on a network or cluster filesystem (NFS, Lustre, GPFS, ...), where SQLite's WAL cannot work?"""
    return filesystem_type(path) in NETWORK_FILESYSTEMS


def shown_path(path: str | Path, root: str | Path | None) -> str:
    """``path`` relative to ``root`` (a run directory) when it lies inside it, else as given: what a notebook prints,
    so that an output reads the same wherever the run directory is."""
    if root is None:
        return str(path)
    try:
        return str(Path(path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(path)


def git_state() -> dict[str, Any]:
    """The repository's commit and whether tracked files differ from it (what made a result: manifests, stages)."""
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10,
                                  check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
