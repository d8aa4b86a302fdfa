"""Model shapes for the plan: layers, width, vocabulary and the parameters they make; bytes of weights and cache.

Notebook 10 teaches it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from trsr_utils.method import llm


@dataclass(frozen=True)
class ModelSpec:
    """A decoder-only (Llama-style) model's shape; the parameter count follows from it."""

    name: str
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool  # input embedding and output layer share one matrix
    source: str

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def layer_params(self) -> float:
        """N: the matrices (and norms) of all layers, what every token multiplies through."""
        d, kv = self.hidden, self.kv_heads * self.head_dim
        per_layer = d * d + 2 * d * kv + d * d + 3 * d * self.intermediate + 2 * d  # q, k+v, o, gate/up/down, norms
        return self.layers * per_layer + d  # + the final norm

    @property
    def embedding_params(self) -> float:
        return self.vocab * self.hidden

    @property
    def params(self) -> float:
        return self.layer_params + self.embedding_params * (1 if self.tied else 2)

    def kv_values_per_token(self) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim

    def lora_params(self, r: int, modules: Iterable[str]) -> float:
        """Trainable parameters of a rank-``r`` LoRA on the named attention/MLP projections of every layer."""
        d, kv, i = self.hidden, self.kv_heads * self.head_dim, self.intermediate
        shapes = {"q_proj": (d, d), "k_proj": (d, kv), "v_proj": (d, kv), "o_proj": (d, d),
                  "gate_proj": (d, i), "up_proj": (d, i), "down_proj": (i, d)}
        return self.layers * sum(r * (shapes[m][0] + shapes[m][1]) for m in modules if m in shapes)


# Shapes of the paper's models for hub ids that are not on this machine (their config.json values).
BUILT_IN: dict[str, dict[str, Any]] = {
    "meta-llama/llama-2-7b-hf": dict(layers=32, hidden=4096, intermediate=11008, heads=32, kv_heads=32,
                                     vocab=32000, tied=False),
    "upstage/llama-30b-instruct-2048": dict(layers=60, hidden=6656, intermediate=17920, heads=52, kv_heads=52,
                                            vocab=32000, tied=False),
    "smollm2-135m-instruct": dict(layers=30, hidden=576, intermediate=1536, heads=9, kv_heads=3, vocab=49152,
                                  tied=True),
}
BUILT_IN["meta-llama/llama-2-7b-chat-hf"] = BUILT_IN["meta-llama/llama-2-7b-hf"]
BUILT_IN["huggyllama/llama-30b"] = BUILT_IN["upstage/llama-30b-instruct-2048"]


def spec_from_config(name: str, config: dict[str, Any], source: str) -> ModelSpec:
    """A :class:`ModelSpec` from a Hugging Face ``config.json`` dictionary (Llama-style keys)."""
    heads = config["num_attention_heads"]
    return ModelSpec(name, config["num_hidden_layers"], config["hidden_size"], config["intermediate_size"], heads,
                     config.get("num_key_value_heads") or heads, config["vocab_size"],
                     bool(config.get("tie_word_embeddings", False)), source)


def cached_hub_file(repo_id: str, filename: str) -> str | None:
    """The path of ``filename`` of hub model ``repo_id`` in the local Hugging Face cache, or None."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - a transformers dependency
        return None
    try:
        found = try_to_load_from_cache(repo_id, filename)
    except Exception:  # an id that is not a valid repo name
        return None
    return found if isinstance(found, str) else None


_SPECS: dict[str, ModelSpec] = {}


def model_spec(name: str) -> ModelSpec:
    """The shape of model ``name``: its local config where there is one (the embedded SmolLM2 once converted,
    a local folder, a hub id in the Hugging Face cache), the tiny random model as built, else the built-in
    table of the paper's models."""
    if name in _SPECS:
        return _SPECS[name]
    spec: ModelSpec | None = None
    if name in llm.TINY_MODELS:
        model = llm.tiny_random_model(name=name)
        spec = spec_from_config(name, model.config.to_dict(), "built in code (trsr_utils.method.llm.tiny_random_model)")
        assert abs(spec.params - sum(p.numel() for p in model.parameters())) < 1e3
    else:
        candidates = []
        if name == llm.SMOLLM2:
            candidates.append(llm.cache_dir() / llm.SMOLLM2 / "config.json")
        elif Path(name).expanduser().is_dir():
            candidates.append(Path(name).expanduser() / "config.json")
        else:
            hub = cached_hub_file(name, "config.json")
            if hub:
                candidates.append(Path(hub))
        for path in candidates:
            if path.exists():
                spec = spec_from_config(name, json.loads(path.read_text()), f"config.json ({path})")
                break
        if spec is None and name.lower() in BUILT_IN:
            spec = ModelSpec(name, **BUILT_IN[name.lower()], source="built-in table (the model's config.json values)")
    if spec is None:
        raise ValueError(f"no shape known for model {name!r}: give a local folder with a config.json, download the "
                         f"hub model first, or add it to trsr_utils.tools.plan.BUILT_IN (known: {sorted(BUILT_IN)})")
    _SPECS[name] = spec
    return spec


BYTES = {"float32": 4.0, "bfloat16": 2.0, "float16": 2.0, "8bit": 1.0, "4bit": 0.5}


def weight_bytes(spec: ModelSpec, dtype: str, quantization: str | None = None) -> float:
    """Bytes of the weights: layer matrices at the quantized width (bitsandbytes), the embedding and output
    layer in ``dtype`` (bitsandbytes leaves them unquantized)."""
    layer = BYTES[quantization] if quantization else BYTES[dtype]
    embed = BYTES["bfloat16"] if quantization and dtype == "float32" else BYTES[dtype]
    return spec.layer_params * layer + spec.embedding_params * (1 if spec.tied else 2) * embed


def kv_bytes_per_token(spec: ModelSpec, dtype: str) -> float:
    """Key/value cache bytes per token of one sequence (the cache is kept in the compute dtype)."""
    return spec.kv_values_per_token() * BYTES[dtype]


