"""The run's LLM call cache: every generation the summarizers make (notebooks 03, 04 and 08's summarizer cells),
in one SQLite file of the run directory keyed by (model id, exact prompt text, generation parameters) and
committed after each batch, so a re-run costs nothing for finished calls and a killed run resumes where it
stopped. Under a launcher only rank 0 opens it (:class:`NotOpened` elsewhere). Notebook 03 teaches it;
:class:`trsr_utils.method.generation.LLMCaller` calls through it."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from trsr_utils.core import distributed, io

CACHE_FILE = Path("cache") / "llm_calls.sqlite"


def call_key(model_id: str, prompt: str, params: Mapping[str, Any]) -> str:
    """The cache key of one call: sha256 over model id, exact prompt and generation parameters."""
    blob = json.dumps([model_id, prompt, dict(sorted(params.items()))], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass
class Call:
    """One finished LLM call (from the model or from the cache)."""

    text: str  # the generated continuation only
    finish: str  # eos | length | sentences
    prompt_tokens: int
    new_tokens: int
    seconds: float
    cached: bool


class CallCache:
    """Finished LLM calls in SQLite (WAL on a local disk, a rollback journal on a network filesystem;
    synchronous=FULL): a commit is on disk before the next batch starts.

    One process opens it: rank 0 under a launcher (:func:`open_cache`). WAL needs shared memory on one host and
    SQLite's locks are unreliable on NFS, Lustre and GPFS, so processes on other nodes (or other GPUs) never touch
    the file: they get what rank 0 read through the process group, and rank 0 writes what they generated."""

    def __init__(self, path: str | Path):
        if not distributed.is_main():
            raise RuntimeError(f"rank {distributed.world()[0]} opened the call cache {path}: only rank 0 may "
                               "(open_cache gives the others a stand-in)")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=60)
        # WAL keeps its index in shared memory beside the file, which a network filesystem cannot provide: there
        # the classic rollback journal, as safe and a little slower.
        self.journal = "DELETE" if io.network_filesystem(self.path.parent) else "WAL"
        self.db.execute(f"PRAGMA journal_mode={self.journal}")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, model TEXT, prompt TEXT, params TEXT, "
            "text TEXT, finish TEXT, prompt_tokens INTEGER, new_tokens INTEGER, seconds REAL, created REAL)")
        self.db.commit()

    def __len__(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]

    def get_many(self, keys: Sequence[str]) -> dict[str, Call]:
        found: dict[str, Call] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):  # SQLite limits the number of bound variables
            chunk = unique[start:start + 500]
            rows = self.db.execute(
                f"SELECT key, text, finish, prompt_tokens, new_tokens, seconds FROM calls "
                f"WHERE key IN ({','.join('?' * len(chunk))})", chunk)
            for key, text, finish, p, n, s in rows:
                found[key] = Call(text, finish, p, n, s, True)
        return found

    def put_many(self, rows: Sequence[tuple[str, str, str, Mapping[str, Any], Call]]) -> None:
        """Store (key, model id, prompt, params, call) rows and commit them."""
        now = time.time()
        self.db.executemany(
            "INSERT OR IGNORE INTO calls VALUES (?,?,?,?,?,?,?,?,?,?)",
            [(k, m, p, json.dumps(dict(params), sort_keys=True), c.text, c.finish, c.prompt_tokens, c.new_tokens,
              c.seconds, now) for k, m, p, params, c in rows])
        self.db.commit()

    def close(self) -> None:
        self.db.close()


class NotOpened:
    """What a process other than rank 0 holds instead of the call cache: nothing to read or write
    (:meth:`LLMCaller.__call__` receives rank 0's lookups, rank 0 stores every process's calls)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def get_many(self, keys: Sequence[str]) -> dict[str, Call]:
        raise RuntimeError("only rank 0 reads the call cache")

    def put_many(self, rows: Sequence[Any]) -> None:
        raise RuntimeError("only rank 0 writes the call cache")

    def close(self) -> None:
        pass


def open_cache(cfg: Any) -> CallCache | NotOpened:
    """The run directory's call cache (shared by all summarizers of the run; notebook 08's cells pass the run's
    own config: a call is keyed by model, precision, prompt and parameters, so a cell re-uses every call the run
    already made instead of starting from an empty cache). Under a launcher only rank 0 opens it."""
    path = Path(cfg.run_dir) / CACHE_FILE
    return CallCache(path) if distributed.is_main() else NotOpened(path)
