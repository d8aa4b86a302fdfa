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


# A user's accelerate default config as `accelerate config` writes it on a shared cluster (multi-GPU, fp16, 8
# processes): our launches must never read it (tests/unit/test_sft.py, test_distributed.py).
HOSTILE_ACCELERATE_CONFIG = ("compute_environment: LOCAL_MACHINE\ndistributed_type: MULTI_GPU\nmixed_precision: fp16\n"
                             "num_machines: 1\nnum_processes: 8\ngpu_ids: all\nmachine_rank: 0\nuse_cpu: false\n")


def hostile_hf_home(root: Path) -> Path:
    """An HF_HOME whose accelerate/default_config.yaml is :data:`HOSTILE_ACCELERATE_CONFIG`; returns that file."""
    config = root / "accelerate" / "default_config.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(HOSTILE_ACCELERATE_CONFIG)
    return config


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """The whole notebook chain run once on the smoke profile: ``(run directory, manifest)``.

    Shared by the smoke-chain, solutions and browser tests; a test that writes into a run directory copies it first
    (``shutil.copytree``) so the others still see the chain's own results.
    """
    from trsr_utils.tools import pipeline

    out = tmp_path_factory.mktemp("smoke-run")
    manifest = pipeline.run("smoke", out=out, log=lambda *_: None)
    return out, manifest


@pytest.fixture(scope="session")
def smol_tokenizer():
    """The real SmolLM2-135M-Instruct tokenizer (converted from the GGUF once, then cached)."""
    from trsr_utils.method.llm import load_tokenizer

    return load_tokenizer("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def char_tokenizer():
    """A real character-level tokenizer with no chat template ("Yes" is 3 tokens)."""
    import string

    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = string.printable + "…"
    vocab = {c: i for i, c in enumerate(dict.fromkeys(chars))}
    vocab["<unk>"] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<unk>")
