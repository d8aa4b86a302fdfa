"""What a run costs: tokens, FLOPs, memory and hours per stage, on a given accelerator (notebook 10).

    python -m trsr_utils.plan --profile paper-mind [--gpu a100-80gb|a100-40gb|h100-80gb|h200|cpu] [--gpus N]
                              [--utilization 0.4] [--out DIR] [--json]

The model is a roofline, written out so that it can be redone by hand:

* ``N`` = the parameters of the transformer layers (the matrices every token goes through; the input
  embedding is a table lookup and costs no FLOPs). ``L`` layers, hidden size ``d``, vocabulary ``V``.
* **Prefill** (a prompt read in one forward pass, batched): ``2·N`` FLOPs per token (one multiply and one add
  per weight) plus attention, ``4·L·d·c`` per token that attends to ``c`` earlier tokens (the scores ``QKᵀ`` and
  the weighted sum ``AV``), about ``2·L·d·s²`` for a whole prompt of ``s`` tokens. Only the last position's
  logits are computed, so the output layer is left out. Time = FLOPs / (peak FLOP/s × utilisation).
* **Decoding** (one new token per sequence per step): the same ``2·N + 4·L·d·c`` FLOPs plus the output layer,
  ``2·V·d``, per token; but a step with ``B`` sequences must also read *every weight once* and each sequence's
  key/value cache, so its time is ``max(FLOPs of the B tokens / FLOP/s, bytes read / bandwidth)``. With a
  batch of 16-32 that is the bytes: decoding is memory-bandwidth bound. A batch runs until its longest
  answer ends, so its steps are the longest answer's tokens (the finished rows are padding).
* **Training with LoRA** (frozen base weights): forward ``2·N`` + backward ``2·N`` per token. The backward
  pass computes the gradient with respect to the activations through every frozen matrix (``2·N``), but no
  gradient for the frozen weights themselves (the ``2·N`` a full fine-tune adds: the ``6·N`` rule of thumb);
  LoRA's own matrices add about ``6·r·(d_in + d_out)`` per adapted matrix, under 1% here. Gradient
  checkpointing recomputes the forward: ``6·N``.
* **Memory**: the weights at their precision (bitsandbytes 8-bit/4-bit: 1 or 0.5 byte per layer weight; the
  embedding and output layer stay in 16 bits), the key/value cache of a batch at its longest sequence
  (``2·L·n_kv·d_head`` values per token), and for training LoRA's parameters, gradients and AdamW moments
  (16 bytes per trainable parameter in float32) plus the activations kept for the backward pass
  (``34·s·b·L·d`` bytes in 16 bits, Korthikanti et al. 2022 without the attention scores SDPA does not keep:
  a rough upper bound, since frozen weights need no stored inputs).

Peak FLOP/s and bandwidth come from the vendors' datasheets for GPUs (dense bf16, no sparsity) and from a
measurement for ``cpu`` (a matrix product at the model's own shapes, and a large array read), so a CPU plan
needs no utilisation factor. Token counts come from the profile's settings and the data statistics: the
run directory's own results where they exist (users, history lengths, tokens per block, the summarizer's
measured prompt and answer tokens per call, the retries it needed), otherwise the paper's Table 1
statistics (MIND, Amazon-M2) or this package's measured MovieLens-100K figures, each row saying which.

Model loading is priced at :data:`LOAD_GBS`; a bitsandbytes-quantized model's compute time (prefill and decoding:
its kernels dequantize on the fly) is multiplied by :data:`DEFAULT_QUANT_SLOWDOWN` (reported for generation, with
its sources there; ``quant_slowdown`` sets your own); a serving
engine's generation is an extra, modelled column (:data:`ENGINE_BATCH`). Not modelled: tokenization, the non-LLM
baselines of notebook 07 (CPU work), Python overhead.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sqlite3
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

from . import ablation, evaluation, io, llm, prompts, stages, text
from .config import LLM_ROWS, Config, ConfigError, parse_sets, resolve_config, with_overrides
from .progress import quiet_libraries
from .summarize import CACHE_FILE

GB = 1e9


# ----------------------------------------------------------------------------- hardware
@dataclass(frozen=True)
class Hardware:
    """One accelerator: peak dense matrix throughput, memory and memory bandwidth."""

    name: str
    bf16_tflops: float  # dense bf16/fp16 tensor throughput (TFLOP/s)
    fp32_tflops: float  # float32 without TF32 (PyTorch's default for matmul)
    memory_gb: float
    bandwidth_gbs: float
    source: str
    measured: bool = False  # True: achieved rates (no utilisation factor needed)
    decode_fp32_tflops: float | None = None  # measured: the rate of a decode-shaped product (few rows)
    decode_bf16_tflops: float | None = None

    def tflops(self, dtype: str, decode: bool = False) -> float:
        if decode and self.decode_fp32_tflops is not None:
            return self.decode_fp32_tflops if dtype == "float32" else (self.decode_bf16_tflops or self.bf16_tflops)
        return self.fp32_tflops if dtype == "float32" else self.bf16_tflops


# NVIDIA datasheets, SXM parts, dense (no sparsity).
GPUS: dict[str, Hardware] = {
    "a100-40gb": Hardware("a100-40gb", 312.0, 19.5, 40.0, 1555.0, "NVIDIA A100 datasheet (SXM4 40 GB)"),
    "a100-80gb": Hardware("a100-80gb", 312.0, 19.5, 80.0, 2039.0, "NVIDIA A100 datasheet (SXM4 80 GB)"),
    "h100-80gb": Hardware("h100-80gb", 989.0, 67.0, 80.0, 3350.0, "NVIDIA H100 datasheet (SXM5 80 GB)"),
    "h200": Hardware("h200", 989.0, 67.0, 141.0, 4800.0, "NVIDIA H200 datasheet (SXM 141 GB)"),
}
DEFAULT_UTILIZATION = 0.4  # share of the datasheet peak a tuned training/inference job typically reaches
# bitsandbytes LLM.int8() decoding against bf16 on the same GPU, as users and maintainers report it (not measured
# here; no GPU ran this project): 2.4x (13B, Titan RTX: huggingface.co/Open-Orca/OpenOrcaxOpenChat-Preview2-13B
# discussion 8), 3-5x (13B: huggingface.co/IlyaGusev/saiga2_13b_lora discussion 4), "3-4x slower is about what we'd
# expect for dynamic 8-bit quantisation" (a transformers maintainer: huggingface.co/facebook/musicgen-large
# discussion 8), 5.7x (8B, A100: huggingface.co/meta-llama/Llama-Guard-3-8B-INT8 discussion 9). The plan takes 4x;
# ``--quant-slowdown`` sets another (1: the roofline's lower bound).
DEFAULT_QUANT_SLOWDOWN = 4.0
QUANT_SLOWDOWN_RANGE = (2.4, 5.7)
# Reading a model's weights when a process loads it: local NVMe reads 2-7 GB/s, a shared cluster filesystem often
# 1 GB/s or less per node; 1 GB/s is taken (an estimate: minutes for the paper's 30B summarizer).
LOAD_GBS = 1.0
# A serving engine (vLLM, SGLang): continuous batching (finished rows replaced at once, so decoding takes the mean
# answer's steps instead of each batch's longest, with many more rows per step) and FP8 weights (1 byte per
# weight, H100 tensor cores, no dequantization slowdown). Modelled with this roofline, not measured and not a
# published number: an estimate of what such an engine could do for the summarizer's generation.
ENGINE_BATCH = 128


def _per_cpu_second(work: float, run, seconds: float, repeats: int) -> float:
    """Best ``work`` per second of ``run()`` over ``repeats`` windows, counted in this process's CPU time per
    torch thread: on a machine shared with other processes the wall clock also counts the time they hold the
    cores, the CPU time does not (so the rate is the idle machine's)."""
    import time

    import torch

    threads = torch.get_num_threads()
    run()  # warm-up (first call allocates, picks a kernel)
    best = 0.0
    for _ in range(repeats):
        began, cpu, n = time.perf_counter(), time.process_time(), 0
        while time.perf_counter() - began < seconds:
            run()
            n += 1
        used = (time.process_time() - cpu) / threads
        best = max(best, work * n / used) if used > 0 else best
    return best


def _one_layer(spec: "ModelSpec", dtype: str) -> Any:
    """A decoder of one layer with ``spec``'s shapes (random weights, a vocabulary of 8: no embedding cost)."""
    import torch
    from transformers import LlamaConfig, LlamaModel

    quiet_libraries()
    config = LlamaConfig(vocab_size=8, hidden_size=spec.hidden, intermediate_size=spec.intermediate,
                         num_hidden_layers=1, num_attention_heads=spec.heads, num_key_value_heads=spec.kv_heads,
                         max_position_embeddings=8192)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return LlamaModel(config).to(getattr(torch, dtype)).eval()


def _layer_rates(spec: "ModelSpec", dtype: str, decode_rows: int = 32, context: int = 256,
                 steps: int = 4) -> tuple[float, float]:
    """(prefill, decoding) FLOP/s of one real decoder layer of ``spec``'s shape, per CPU second: a left-padded
    batch of 256-token prompts as ``generate`` reads them, and single-token steps of ``decode_rows`` rows on a
    ``context``-token key/value cache. A layer, not a bare matrix product: its norms, rotary embeddings, SiLU and
    softmax are memory-bound work that a FLOP count leaves out and a bare matrix product would not measure."""
    import torch

    model = _one_layer(spec, dtype)
    per_layer = (spec.layer_params - spec.hidden) / spec.layers
    d, s = spec.hidden, 256
    rows = max(1, min(8, int(2e9 / (2 * per_layer * s))))  # about 2 GFLOP per call, whatever the model's size
    ids = torch.zeros(rows, s, dtype=torch.long)
    mask = torch.ones(rows, s, dtype=torch.long)
    mask[0, :16] = 0  # left padding, as in a batch of prompts of different lengths
    with torch.no_grad():
        prefill = _per_cpu_second(rows * s * (2 * per_layer + 2 * d * s),
                                  lambda: model(input_ids=ids, attention_mask=mask, use_cache=False), 0.1, 3)
        cache = model(input_ids=torch.zeros(decode_rows, context, dtype=torch.long), use_cache=True).past_key_values
        one = torch.zeros(decode_rows, 1, dtype=torch.long)

        def decode() -> None:
            extra = cache.get_seq_length() - context  # back to the context the last call started from
            if extra > 0:
                cache.crop(-extra)
            for k in range(steps):
                pos = torch.full((decode_rows, 1), context + k)
                model(input_ids=one, past_key_values=cache, position_ids=pos, use_cache=True)

        rate = _per_cpu_second(steps * decode_rows * (2 * per_layer + 4 * d * (context + steps / 2)), decode, 0.1, 3)
    return prefill, rate


def _bandwidth(megabytes: int = 256, repeats: int = 3) -> float:
    """Bytes/s reading a float32 array far larger than the caches (best window, CPU time per thread)."""
    import torch

    x = torch.ones(megabytes * 2**20 // 4)
    return _per_cpu_second(x.numel() * 4.0, x.sum, 0.05, repeats)


_CPU: dict[tuple[int, ...], Hardware] = {}


def measure_cpu(spec: "ModelSpec", decode_rows: int = 32) -> Hardware:
    """This machine as a :class:`Hardware` for ``spec``'s layers: the FLOP/s of one real decoder layer of its
    shape reading prompts (also used for training) and decoding ``decode_rows`` rows, in float32 and bfloat16,
    and the read bandwidth of a 256 MB array.

    Measured on one thread per CPU second of this process, then multiplied by torch's thread count: a plan is
    for an otherwise idle machine whose threads each run as fast as one alone (other processes on the same
    cores slow a measurement on several threads far more than their share of the time: threads wait for each
    other). Measured once per process, shape and thread count."""
    import torch

    threads = torch.get_num_threads()
    key = (spec.hidden, spec.intermediate, spec.heads, spec.kv_heads, decode_rows, threads)
    if key not in _CPU:
        torch.set_num_threads(1)
        try:
            (fp32, dec32), (bf16, dec16) = (_layer_rates(spec, t, decode_rows) for t in ("float32", "bfloat16"))
            bandwidth = _bandwidth()
        finally:
            torch.set_num_threads(threads)
        try:
            memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GB
        except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
            memory = float("nan")
        _CPU[key] = Hardware(
            "cpu", threads * bf16 / 1e12, threads * fp32 / 1e12, memory, threads * bandwidth / GB,
            f"measured here: one decoder layer of {spec.name}'s shape on one thread, per CPU second, x "
            f"{threads} torch threads ({os.cpu_count()} cores)", measured=True,
            decode_fp32_tflops=threads * dec32 / 1e12, decode_bf16_tflops=threads * dec16 / 1e12)
    return _CPU[key]


def hardware(name: str, model: "ModelSpec | None" = None) -> Hardware:
    """A known GPU by name, or ``cpu`` measured at ``model``'s layer shapes."""
    if name == "cpu":
        return measure_cpu(model or model_spec("smollm2-135m-instruct"))
    if name not in GPUS:
        raise ValueError(f"unknown hardware {name!r}; known: {sorted(GPUS) + ['cpu']}")
    return GPUS[name]


# ----------------------------------------------------------------------------- models
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
        spec = spec_from_config(name, model.config.to_dict(), "built in code (trsr_utils.llm.tiny_random_model)")
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
                         f"hub model first, or add it to trsr_utils.plan.BUILT_IN (known: {sorted(BUILT_IN)})")
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


# ----------------------------------------------------------------------------- data statistics
# Mean history items and tokens per item line where no run directory has measured them. MIND and Amazon-M2:
# the paper's Table 1 (Llama tokenizer). MovieLens-100K: the demo's 68 users measured here (notebooks 01-02,
# 2026-12-02; SmolLM2 tokenizer, a line's "- " marker included; 19-24-item histories under the 10-25 rule).
DATASET_STATS: dict[str, dict[str, Any]] = {
    "mind": {"history": 16.23, "tokens_per_item": 40.83, "source": "paper Table 1"},
    "amazon-m2": {"history": 13.16, "tokens_per_item": 141.45, "source": "paper Table 1"},
    "movielens-100k": {"history": 20.99, "tokens_per_item": 22.9, "source": "the demo's users, notebooks 01-02"},
}


@dataclass
class Stats:
    """What the token counts are computed from, each with where it comes from."""

    users: dict[str, int]  # per split
    history: float  # mean items in a history
    tokens_per_item: float  # tokens of one item line (without its "- " marker)
    blocks: float  # mean blocks per user
    block_tokens: float  # mean tokens of a block's item lines
    block_tokens_max: float  # the longest block (what a batch's key/value cache is sized for)
    summary_tokens: float  # tokens of one generated summary (what merges, updates and prompts carry)
    new_tokens: float  # decoding steps of one summarizer batch (its longest answer)
    retry_rate: float  # share of summarizer calls retried
    sources: dict[str, str] = field(default_factory=dict)


def _stage_dir(cfg: Config, name: str) -> Path | None:
    """The complete result folder of stage ``name`` under ``cfg``, or None."""
    try:
        return stages.result_dir(cfg, name) if stages.is_complete(cfg, name) else None
    except (OSError, ValueError, KeyError):
        return None


def measured_training_tokens(cfg: Config) -> float | None:
    """Notebook 06's measured tokens per training candidate (its ``report.json``: every example's prompt and answer
    tokens over the candidates, a shared prefix counted once per user), where 06 ran under ``cfg``; else None."""
    folder = _stage_dir(cfg, "06_sft")
    return float(io.read_json(folder / "report.json")["tokens_per_example_mean"]) if folder is not None else None


def data_stats(cfg: Config) -> Stats:
    """Users, history lengths, block sizes and summary lengths: measured in the run directory where its
    stages are complete, estimated from the settings and :data:`DATASET_STATS` otherwise."""
    import pandas as pd

    d, c, s = cfg.data, cfg.chunking, cfg.summary
    base = DATASET_STATS[d.dataset]
    sources: dict[str, str] = {}
    users = {"train": d.n_train, "valid": d.n_valid, "test": d.n_test}
    history = float(base["history"])
    if d.long_history == "keep_recent" and d.max_interactions - 1 < history:
        history = float(d.max_interactions - 1)  # longer histories are cut to their most recent items
    sources["history"] = f"estimate ({base['source']})"
    tpi = float(base["tokens_per_item"])
    sources["tokens_per_item"] = f"estimate ({base['source']})"
    sources["users"] = "profile (data.n_train/n_valid/n_test)"
    covered = min(history, c.items_per_block * c.max_blocks)
    # A history of h items makes ceil(h / k) blocks: h/k plus, on average, half a block for the remainder.
    blocks = min(float(c.max_blocks), covered / c.items_per_block + 0.5 * (1 - 1 / c.items_per_block))
    block_tokens = covered / blocks * tpi if blocks else 0.0
    # without measurements the longest block is taken as twice the mean, within the block budget (an assumption)
    block_max = min(float(c.block_token_budget), 2 * block_tokens)
    sources["block_tokens_max"] = "estimate (twice the mean block, within chunking.block_token_budget)"
    sources["blocks"] = sources["block_tokens"] = "estimate (history / items_per_block)"
    # Without measurements: every answer runs to its budget (an upper bound; the sentence stop ends most earlier).
    summary_tokens, new_tokens, retry = float(s.max_new_tokens), float(s.max_new_tokens), 0.0
    sources["summary_tokens"] = "estimate (summary.max_new_tokens, an upper bound)"
    sources["retry_rate"] = "estimate (no retries assumed)"
    folder = _stage_dir(cfg, "01_data")
    if folder is not None:
        samples = pd.read_parquet(folder / "samples.parquet", columns=["split", "history"])
        users = {k: int(v) for k, v in samples["split"].value_counts().items()}
        history = float(samples["history"].map(len).mean())
        sources["users"] = sources["history"] = f"measured ({folder.parent.name}/{folder.name})"
    folder = _stage_dir(cfg, "02_text")
    if folder is not None:
        b = pd.read_parquet(folder / "blocks.parquet", columns=["user_id", "n_items", "n_tokens"])
        blocks = float(b.groupby("user_id").size().mean())
        # n_tokens is the rendered block ("- " marker per line): per item, that marker counts with the item
        block_tokens = float(b["n_tokens"].mean())
        block_max = float(b["n_tokens"].max())
        tpi = float(b["n_tokens"].sum() / b["n_items"].sum())
        sources["blocks"] = sources["block_tokens"] = sources["block_tokens_max"] = sources["tokens_per_item"] = (
            f"measured ({folder.parent.name}/{folder.name})")
    folder = _stage_dir(cfg, "03_hierarchical")
    if folder is not None:
        steps = pd.read_parquet(folder / "steps.parquet", columns=["calls", "new_tokens"])
        per_call = steps["new_tokens"].sum() / steps["calls"].sum()
        summary_tokens = float(per_call) + 2  # + the opening "This user" the prompt already wrote
        retry = float((steps["calls"] - 1).sum() / len(steps))
        sources["summary_tokens"] = sources["retry_rate"] = f"measured ({folder.parent.name}/{folder.name})"
        batches = summarizer_batches(cfg)
        if batches:
            new_tokens = sum(b["steps"] for b in batches) / len(batches)
            sources["new_tokens"] = "measured (cache/llm_calls.sqlite: the longest answer of each batch)"
    sources.setdefault("new_tokens", "estimate (summary.max_new_tokens: a batch runs until its longest answer)")
    return Stats(users, history, tpi, blocks, block_tokens, block_max, summary_tokens, new_tokens, retry, sources)


def summarizer_batches(cfg: Config, between: tuple[float, float] | None = None) -> list[dict[str, Any]]:
    """The batches the run's summarizer ran, read back from the LLM call cache (the rows of one batch are
    committed together, so they share their ``created`` time): rows, the widest (padded) prompt, the longest
    answer (the batch's decoding steps), tokens and seconds. ``between``: only batches created in that window."""
    path = Path(cfg.run_dir) / CACHE_FILE
    if not path.exists():
        return []
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT created, prompt_tokens, new_tokens, seconds FROM calls ORDER BY created").fetchall()
    out: dict[float, dict[str, Any]] = {}
    for created, p, n, sec in rows:
        if between and not between[0] <= created <= between[1]:
            continue
        b = out.setdefault(created, {"created": created, "rows": 0, "width": 0, "steps": 0, "prompt_tokens": 0,
                                     "new_tokens": 0, "seconds": 0.0})
        b["rows"] += 1
        b["width"] = max(b["width"], p)
        b["steps"] = max(b["steps"], n)
        b["prompt_tokens"] += p
        b["new_tokens"] += n
        b["seconds"] += sec
    return list(out.values())


# ----------------------------------------------------------------------------- prompt sizes
_OVERHEAD: dict[tuple[str, str, int, int], dict[str, float]] = {}


_TOKENIZERS: dict[str, tuple[Any, str]] = {}


def plan_tokenizer(name: str) -> tuple[Any, str]:
    """The tokenizer to count prompt tokens with: ``name``'s own where it loads offline, else SmolLM2's as a
    stand-in (said in the sources). Loaded once per process."""
    if name not in _TOKENIZERS:
        _TOKENIZERS[name] = _load_plan_tokenizer(name)
    return _TOKENIZERS[name]


def _load_plan_tokenizer(name: str) -> tuple[Any, str]:
    local = name in llm.OFFLINE or Path(name).expanduser().is_dir() or cached_hub_file(
        name, "tokenizer_config.json")
    if local:
        try:
            return llm.load_tokenizer(name), name
        except (llm.ModelNotAvailable, OSError, ValueError):
            pass
    return llm.load_tokenizer(llm.SMOLLM2), f"{llm.SMOLLM2} (stand-in for {name})"


def prompt_overheads(cfg: Config) -> dict[str, float]:
    """Tokens of each prompt without its data (the chat template, instruction and line markers), measured by
    rendering the package's own prompts with empty items and summaries: ``block`` (one block of
    ``items_per_block`` lines), ``merge_each`` and ``merge_fixed`` (k summaries: fixed + k x each), ``update``,
    ``prefix`` (recommendation prompt before the candidate, with a summary and the recent items) and
    ``prefix_no_summary``, ``suffix`` (one candidate's tail, answer included)."""
    domain = text.domain_of(cfg)
    key = (cfg.model.summarizer, cfg.model.recommender, cfg.chunking.items_per_block, cfg.prompt.recent_items,
           domain)
    if key in _OVERHEAD:
        return _OVERHEAD[key]
    out: dict[str, float] = {}
    for role, name in (("summarizer", cfg.model.summarizer), ("recommender", cfg.model.recommender)):
        tok, used = plan_tokenizer(name)
        out[f"tokenizer_{role}"] = used  # type: ignore[assignment]

        def n(text_: str, tok: Any = tok) -> int:
            encode = getattr(llm, "encode_prompt", None)
            return len(encode(tok, text_)) if encode else len(tok.encode(text_, add_special_tokens=False))

        if role == "summarizer":
            k = cfg.chunking.items_per_block
            out["block"] = n(prompts.generation_prompt(tok, prompts.block_summary_messages([""] * k, domain)))
            two = n(prompts.generation_prompt(tok, prompts.merge_messages(["", ""], domain)))
            three = n(prompts.generation_prompt(tok, prompts.merge_messages(["", "", ""], domain)))
            out["merge_each"], out["merge_fixed"] = three - two, two - 2 * (three - two)
            out["update"] = n(prompts.generation_prompt(tok, prompts.recurrent_messages("", [""] * k, domain)))
        else:
            recent = [""] * cfg.prompt.recent_items
            for label, summary in (("prefix", ""), ("prefix_no_summary", None)):
                rendered = prompts.render(tok, prompts.recommendation_messages(summary, recent, domain))
                head, _, tail = rendered.partition(prompts.CANDIDATE_SLOT)
                out[label] = n(head)
            out["suffix"] = len(tok.encode(" " + tail, add_special_tokens=False)) + 1  # + the answer token
    _OVERHEAD[key] = out
    return out


# ----------------------------------------------------------------------------- work items
@dataclass
class Work:
    """One homogeneous piece of LLM work of a stage."""

    stage: str  # "03".."08"
    label: str
    role: str  # summarizer | recommender
    kind: str  # generate | score | train | load
    sequences: float  # prompts (generate), users (score), training rows (train), model loads (load)
    prompt_tokens: float  # per sequence as run (a batch's padding included); score/shared train: the prefix
    new_tokens: float = 0.0  # generate: decoding steps of each batch
    batch: float = 1.0  # sequences run together (generate: prompts; score: users)
    suffixes: float = 0.0  # score/shared-prefix train: candidates per user
    suffix_tokens: float = 0.0
    passes: float = 1.0  # train: epochs
    longest: float = 0.0  # the longest sequence (memory)
    # How the work divides over GPUs: "batches" (its batches dealt to the processes in turn), "ddp" (training
    # with the global batch split), "one" (one process: validations on rank 0).
    parallel: str = "batches"
    model: str = ""  # another model than the role's (08's summarizer cells)
    source: str = "estimate"
    note: str = ""
    mean_new_tokens: float = 0.0  # generate: the mean answer's tokens (a serving engine's steps); 0: new_tokens


def _source(st: Stats, *keys: str) -> str:
    """Where a work item's token counts come from: the run's measured statistics, some of them, or estimates."""
    measured = [st.sources.get(k, "").startswith("measured") for k in keys]
    return ("measured statistics" if all(measured) else "partly measured statistics" if any(measured)
            else "estimated statistics")


def _merge_calls(parts: int, fan_in: int) -> int:
    """Merge calls of the hierarchical method for ``parts`` block summaries (level by level, a group of one
    is carried up without a call)."""
    calls = 0
    while parts > 1:
        groups = [min(fan_in, parts - i) for i in range(0, parts, fan_in)]
        calls += sum(g > 1 for g in groups)
        parts = len(groups)
    return calls


def _interp(x: float, f) -> float:
    """f at a fractional x, linear between floor and ceil (block counts are means)."""
    lo = math.floor(x)
    return f(lo) + (x - lo) * (f(lo + 1) - f(lo)) if x > lo else f(lo)


def _summary_work(cfg: Config, st: Stats, ov: dict[str, float], stage: str, users: float, method: str,
                  blocks: float, block_tokens: float, model: str = "", label: str = "",
                  block_max: float | None = None) -> list[Work]:
    """The summarizer calls of one method for ``users`` users (estimated from the statistics)."""
    s = cfg.summary
    src = _source(st, "blocks", "block_tokens", "summary_tokens", "new_tokens")
    retry = 1 + st.retry_rate * s.retry_token_factor  # retried calls, with 1.5x the answer budget
    block_prompt = ov["block"] + block_tokens
    if block_max is None:  # the longest block: twice the mean within the budget, unless measured
        block_max = min(float(cfg.chunking.block_token_budget), 2 * block_tokens)
    longest = block_max + ov["block"] + s.max_new_tokens
    out = []
    if method == "hierarchical":
        out.append(Work(stage, f"{label}block summaries", "summarizer", "generate", users * blocks * retry,
                        block_prompt, st.new_tokens, s.batch_size, longest=longest, model=model, source=src,
                        mean_new_tokens=min(st.summary_tokens, st.new_tokens)))
        merges = _interp(blocks, lambda b: _merge_calls(int(b), s.merge_fan_in))
        k = min(blocks, s.merge_fan_in)
        merge_prompt = ov["merge_fixed"] + k * (ov["merge_each"] + st.summary_tokens)
        if merges:
            out.append(Work(stage, f"{label}merges", "summarizer", "generate", users * merges * retry, merge_prompt,
                            st.new_tokens, s.batch_size, longest=merge_prompt + s.max_new_tokens, model=model,
                            source=src, mean_new_tokens=min(st.summary_tokens, st.new_tokens)))
    else:
        # step 0 is the hierarchical block 0 prompt: a cache hit when notebook 03 ran first
        update_prompt = ov["update"] + st.summary_tokens + block_tokens
        out.append(Work(stage, f"{label}updates (steps 1..)", "summarizer", "generate",
                        users * max(0.0, blocks - 1) * retry, update_prompt, st.new_tokens, s.batch_size,
                        longest=update_prompt - block_tokens + block_max + s.max_new_tokens, model=model, source=src,
                        note="step 0 = notebook 03's block 0 (cache hit)",
                        mean_new_tokens=min(st.summary_tokens, st.new_tokens)))
    return out


def _prompt_tokens(cfg: Config, st: Stats, ov: dict[str, float], summary: bool, recent: int | None = None
                   ) -> tuple[float, float]:
    """(prefix, candidate suffix) tokens of one recommendation prompt."""
    k = cfg.prompt.recent_items if recent is None else recent
    base = ov["prefix"] if summary else ov["prefix_no_summary"]
    # the overhead was measured with the profile's k recent items; each item adds its line
    prefix = base + (k - cfg.prompt.recent_items) * 2 + k * st.tokens_per_item
    if summary:
        prefix += min(st.summary_tokens, cfg.prompt.summary_max_tokens)
    return min(prefix, cfg.prompt.max_length), ov["suffix"] + st.tokens_per_item


def _sft_work(cfg: Config, st: Stats, ov: dict[str, float], stage: str, method: str, label: str,
              validations: bool = True, zero_shot: bool = True) -> list[Work]:
    """One adapter's training (and the validations that select its checkpoint)."""
    t, d = cfg.sft, cfg.data
    prefix, suffix = _prompt_tokens(cfg, st, ov, method != "none")
    candidates = 1 + d.train_negatives
    rows_per_step = t.batch_size * t.grad_accum
    rows = d.n_train if t.shared_prefix else d.n_train * candidates
    steps_per_epoch = math.ceil(rows / rows_per_step) if rows else 0
    steps = t.max_steps or math.ceil(steps_per_epoch * t.epochs)
    passes = steps * rows_per_step / rows if rows else 0.0
    out = []
    if t.shared_prefix:
        out.append(Work(stage, f"{label}training (shared prefix)", "recommender", "train", rows, prefix,
                        batch=t.batch_size, suffixes=candidates, suffix_tokens=suffix, passes=passes,
                        longest=prefix + suffix, parallel="ddp", source=_source(st, "tokens_per_item", "summary_tokens"),
                        note="shared prefix: one prefix pass per user"))
    else:
        out.append(Work(stage, f"{label}training", "recommender", "train", rows, prefix + suffix,
                        batch=t.batch_size, passes=passes, longest=prefix + suffix, parallel="ddp",
                        source=_source(st, "tokens_per_item", "summary_tokens")))
    if validations:
        checkpoints = math.ceil(steps / t.save_steps) if t.save_steps else max(1, math.ceil(t.epochs))
        n = checkpoints + (1 if zero_shot and t.validate_zero_shot else 0)
        users = min(t.valid_users, d.n_valid) if t.valid_users else d.n_valid
        out.append(Work(stage, f"{label}validations ({n} x {users} users)", "recommender", "score", n * users,
                        prefix, batch=t.score_batch_users, suffixes=1 + d.eval_negatives, suffix_tokens=suffix,
                        longest=prefix + suffix, parallel="one", source=_source(st, "tokens_per_item", "summary_tokens"),
                        note="on rank 0 only"))
    return out


def workload(cfg: Config, st: Stats | None = None, ov: dict[str, float] | None = None) -> list[Work]:
    """Every piece of LLM work notebooks 03-09 do under ``cfg`` (and each model's load per stage), estimated from the
    statistics."""
    st = st or data_stats(cfg)
    ov = ov or prompt_overheads(cfg)
    d, e = cfg.data, cfg.eval
    everyone = sum(st.users.values())
    test = min(e.test_users, st.users.get("test", 0)) if e.test_users else st.users.get("test", 0)
    work = _summary_work(cfg, st, ov, "03", everyone, "hierarchical", st.blocks, st.block_tokens,
                         block_max=st.block_tokens_max)
    work += _summary_work(cfg, st, ov, "04", everyone, "recurrent", st.blocks, st.block_tokens,
                          block_max=st.block_tokens_max)
    work += _sft_work(cfg, st, ov, "06", cfg.sft.summary, "")
    # 07: the LLM rows (each fine-tuned row once per SFT seed), and the adapters notebook 06 did not train
    for row in e.llm:
        method = LLM_ROWS[row]
        seeds = 1 if row == "zero_shot" else e.sft_seeds
        prefix, suffix = _prompt_tokens(cfg, st, ov, method != "none")
        work.append(Work("07", f"scoring {row}" + (f" x {seeds} seeds" if seeds > 1 else ""), "recommender",
                         "score", test * seeds, prefix, batch=cfg.sft.score_batch_users, suffixes=1 + d.eval_negatives,
                         suffix_tokens=suffix, longest=prefix + suffix, source=_source(st, "tokens_per_item", "summary_tokens")))
        if row != "zero_shot":
            for seed in range(seeds):
                if method == cfg.sft.summary and seed == 0:
                    continue  # notebook 06's adapter
                work += _sft_work(cfg, st, ov, "07", method, f"adapter {method}{f' seed {seed}' if seed else ''}: ",
                                  zero_shot=False)
    if cfg.model.scoring_dtype is not None:
        prefix, suffix = _prompt_tokens(cfg, st, ov, True)
        work.append(Work("07", "precision check (main row again)", "recommender", "score", test, prefix,
                         batch=cfg.sft.score_batch_users, suffixes=1 + d.eval_negatives, suffix_tokens=suffix,
                         longest=prefix + suffix))
    main = evaluation.main_row(cfg, e.llm)
    if main and d.negative_source != "upstream":
        prefix, suffix = _prompt_tokens(cfg, st, ov, True)
        work.append(Work("07", "upstream negatives (main row again)", "recommender", "score", test, prefix,
                         batch=cfg.sft.score_batch_users, suffixes=1 + d.eval_negatives, suffix_tokens=suffix,
                         longest=prefix + suffix))
    # 08: the grid cells notebook 07 has not scored, new summaries for other block sizes / summarizers / the order
    # test, and the positive controls' adapters
    for cell in ablation.grid(cfg):
        if ablation.same_as_evaluation(cfg, cell):
            continue
        cell_cfg = with_overrides(cfg, cell.overrides)
        recent = cell_cfg.prompt.recent_items
        prefix, suffix = _prompt_tokens(cfg, st, ov, cell.method != "none", recent)
        work.append(Work("08", f"scoring {cell.name}", "recommender", "score", test, prefix,
                         batch=cfg.sft.score_batch_users, suffixes=1 + d.eval_negatives, suffix_tokens=suffix,
                         longest=prefix + suffix, source=_source(st, "tokens_per_item", "summary_tokens")))
        if cell.axis == "positive_control":  # a recommender fine-tuned on the template / oracle summary
            work += _sft_work(cfg, st, ov, "08", cell.method, f"adapter {cell.method}: ", zero_shot=False)
        if cell.needs_summaries:
            c = cell_cfg.chunking
            covered = min(st.history, c.items_per_block * c.max_blocks)
            blocks = covered / c.items_per_block + 0.5 * (1 - 1 / c.items_per_block)
            blocks = min(float(c.max_blocks), blocks)
            sub_ov = prompt_overheads(cell_cfg)
            work += _summary_work(cell_cfg, st, sub_ov, "08", test, "hierarchical", blocks,
                                  covered / blocks * st.tokens_per_item,
                                  model=cell_cfg.model.summarizer if cell_cfg.model.summarizer != cfg.model.summarizer
                                  else "", label=f"{cell.name}: ")
    work += _beyond_work(cfg, st, ov, test)
    work += _loads(cfg, work)
    return work


def _beyond_work(cfg: Config, st: Stats, ov: dict[str, float], test: float) -> list[Work]:
    """Notebook 09: the listwise adapter, the listwise scores in every order (zero-shot and fine-tuned), the
    pointwise row in a second order, and the re-rankings of each retriever's top ``beyond.retrieve``."""
    b, d, t = cfg.beyond, cfg.data, cfg.sft
    users = min(b.users, test) if b.users else test
    n_cand = 1 + d.eval_negatives
    prefix, suffix = _prompt_tokens(cfg, st, ov, True)
    listed = min(prefix + n_cand * suffix, cfg.prompt.max_length)  # one prompt holds every candidate
    train_rows = (min(b.train_users, d.n_train) if b.train_users else d.n_train) * b.train_orders
    steps = t.max_steps or math.ceil(math.ceil(train_rows / (t.batch_size * t.grad_accum)) * t.epochs)
    passes = steps * t.batch_size * t.grad_accum / train_rows if train_rows else 0.0
    src = _source(st, "tokens_per_item", "summary_tokens")
    reranked = min(prefix + b.retrieve * suffix, cfg.prompt.max_length)
    return [
        Work("09", "listwise adapter training", "recommender", "train", train_rows, listed, batch=t.batch_size,
             passes=passes, longest=listed, parallel="ddp", source=src),
        Work("09", f"listwise scoring (zero-shot and fine-tuned) x {b.orders} orders", "recommender", "score",
             2 * b.orders * users, listed, batch=t.score_batch_users, longest=listed, source=src),
        Work("09", "pointwise fine-tuned, second order", "recommender", "score", users, prefix,
             batch=t.score_batch_users, suffixes=n_cand, suffix_tokens=suffix, longest=prefix + suffix, source=src),
        Work("09", f"re-ranking 3 retrievers' top {b.retrieve}, pointwise", "recommender", "score", 3 * users,
             prefix, batch=t.score_batch_users, suffixes=b.retrieve, suffix_tokens=suffix, longest=prefix + suffix,
             source=src),
        Work("09", f"re-ranking 3 retrievers' top {b.retrieve}, listwise", "recommender", "score", 3 * users,
             reranked, batch=t.score_batch_users, longest=reranked, source=src),
    ]


def _loads(cfg: Config, work: list[Work]) -> list[Work]:
    """Loading each model once per stage and launch (:data:`LOAD_GBS`): every process of a launch reads its own
    copy at the same time, so a load costs the same on one GPU or eight."""
    out = []
    for stage in sorted({w.stage for w in work}):
        for role, model in sorted({(w.role, w.model) for w in work if w.stage == stage}):
            out.append(Work(stage, f"loading the {role}" + (f" {model}" if model else ""), role, "load", 1.0, 0.0,
                            parallel="one", model=model, note=f"{LOAD_GBS:g} GB/s"))
    return out


def measured_summary_work(cfg: Config) -> list[Work]:
    """Notebooks 03 and 04's summarizer work as the run did it: one :class:`Work` per batch read back from the
    call cache (its rows, padded width and decoding steps), each assigned to the stage whose run window
    (``stage.json``: finished at ``created``, after ``seconds``) contains it."""
    out, seen = [], set()
    for name, number in (("03_hierarchical", "03"), ("04_recurrent", "04")):
        folder = _stage_dir(cfg, name)
        rec = stages.record(folder) if folder is not None else None
        if not rec or not rec.get("seconds"):
            continue
        window = (rec["created"] - rec["seconds"] - 0.5, rec["created"])
        for b in summarizer_batches(cfg, window):
            if b["created"] in seen:  # a batch at the border of two windows belongs to the earlier stage
                continue
            seen.add(b["created"])
            out.append(Work(number, "batch", "summarizer", "generate", b["rows"], b["width"], b["steps"], b["rows"],
                            longest=b["width"] + b["steps"], source="measured (call cache)"))
    return out


# ----------------------------------------------------------------------------- costs
@dataclass
class Precision:
    dtype: str
    quantization: str | None

    @property
    def label(self) -> str:
        return self.quantization or self.dtype


def precision_of(cfg: Config, role: str) -> Precision:
    dtype, quant = cfg.model.precision(role)
    return Precision(dtype, quant)


def cost(work: Work, spec: ModelSpec, hw: Hardware, prec: Precision, utilization: float = 1.0,
         checkpointing: bool = False, quant_slowdown: float = 1.0) -> dict[str, float]:
    """FLOPs, seconds on one device and peak memory of ``work`` (see the module docstring for the formulas)."""
    N, L, d, V = spec.layer_params, spec.layers, spec.hidden, spec.vocab
    compute_dtype = prec.dtype if not prec.quantization else ("bfloat16" if prec.dtype == "float32" else prec.dtype)
    flops_s = hw.tflops(compute_dtype) * 1e12 * utilization
    decode_flops_s = hw.tflops(compute_dtype, decode=True) * 1e12 * utilization
    bandwidth = hw.bandwidth_gbs * GB * utilization
    weights = weight_bytes(spec, prec.dtype, prec.quantization)
    kvb = kv_bytes_per_token(spec, compute_dtype)
    act_bytes = 2.0 if compute_dtype != "float32" else 4.0
    s, n = work.prompt_tokens, work.sequences
    out = {"tokens": 0.0, "generated": 0.0, "flops": 0.0, "seconds": 0.0, "weights_gb": weights / GB}
    if work.kind == "generate":
        prefill = 2 * N * s * n + 2 * L * d * s * s * n
        batches = math.ceil(n / work.batch) if n else 0
        rows = n / batches if batches else 0.0
        ctx = s + work.new_tokens / 2  # mean context while decoding
        step_flops = rows * (2 * (N + V * d) + 4 * L * d * ctx)
        step_bytes = weights + rows * ctx * kvb
        step = max(step_flops / decode_flops_s, step_bytes / bandwidth)
        out.update(tokens=s * n, generated=work.new_tokens * n,
                   flops=prefill + batches * work.new_tokens * step_flops,
                   prefill_seconds=prefill / flops_s, decode_seconds=batches * work.new_tokens * step,
                   memory_gb=(weights + work.batch * work.longest * kvb) / GB,
                   kv_gb=work.batch * work.longest * kvb / GB)
    elif work.kind == "score":
        # the prefix once per user; each candidate's suffix attends to the prefix and itself
        suffix_tokens = n * work.suffixes * work.suffix_tokens
        flops = (2 * N * (s * n + suffix_tokens) + 2 * L * d * s * s * n
                 + 4 * L * d * suffix_tokens * (s + work.suffix_tokens / 2))
        copies = n * work.suffixes * s * kvb * 2  # the prefix cache copied for each candidate (read + write)
        cand_rows = min(work.suffixes, 21) + 1
        out.update(tokens=s * n + suffix_tokens, flops=flops, prefill_seconds=flops / flops_s,
                   decode_seconds=copies / bandwidth,
                   memory_gb=(weights + work.batch * cand_rows * work.longest * kvb) / GB,
                   kv_gb=work.batch * cand_rows * work.longest * kvb / GB)
    elif work.kind == "train":
        per_row = s + work.suffixes * work.suffix_tokens if work.suffixes else s
        tokens = n * work.passes * per_row
        factor = 6 if checkpointing else 4
        attn = 2 * L * d * per_row * per_row * n * work.passes * (factor / 2)
        flops = factor * N * tokens + attn
        # Korthikanti et al.'s 34·s·b·d bytes per layer in 16 bits; their 5·heads·s² term (the stored attention
        # scores) is left out: PyTorch's SDPA, transformers' default attention, does not keep them.
        activations = work.batch * work.longest * L * 34 * d * act_bytes / 2
        if checkpointing:
            activations = work.batch * work.longest * L * 2 * d * act_bytes + activations / L
        lora = spec.lora_params(8, ("q_proj", "k_proj", "v_proj", "o_proj")) * 16
        out.update(tokens=tokens, flops=flops, prefill_seconds=flops / flops_s, decode_seconds=0.0,
                   memory_gb=(weights + activations + lora) / GB, kv_gb=0.0, activations_gb=activations / GB)
    elif work.kind == "load":
        out.update(flops=0.0, prefill_seconds=work.sequences * weights / (LOAD_GBS * GB), decode_seconds=0.0,
                   memory_gb=weights / GB, kv_gb=0.0)
    else:
        raise ValueError(f"unknown kind {work.kind!r}")
    slow = quant_slowdown if prec.quantization and work.kind != "load" else 1.0
    out["seconds"] = (out["prefill_seconds"] + out["decode_seconds"]) * slow
    out["seconds_engine"] = engine_seconds(work, spec, hw, utilization, out) if work.kind == "generate" else \
        out["seconds"]
    return out


def engine_seconds(work: Work, spec: ModelSpec, hw: Hardware, utilization: float, hf: dict[str, float]) -> float:
    """``work``'s generation under a serving engine (:data:`ENGINE_BATCH`): FP8 weights read once per step for
    ``ENGINE_BATCH`` rows, steps for the mean answer (``mean_new_tokens``) rather than each batch's longest, the
    prefill as before. An estimate from the same roofline (see :data:`ENGINE_BATCH`)."""
    N, L, d, V = spec.layer_params, spec.layers, spec.hidden, spec.vocab
    bandwidth = hw.bandwidth_gbs * GB * utilization
    answer = work.mean_new_tokens or work.new_tokens
    rows = min(ENGINE_BATCH, work.sequences) or 1.0
    ctx = work.prompt_tokens + answer / 2
    step_bytes = weight_bytes(spec, "bfloat16", "8bit") + rows * ctx * kv_bytes_per_token(spec, "bfloat16")
    step_flops = rows * (2 * (N + V * d) + 4 * L * d * ctx)
    step = max(step_flops / (hw.tflops("bfloat16", decode=True) * 1e12 * utilization), step_bytes / bandwidth)
    return hf["prefill_seconds"] + work.sequences * answer / rows * step


# ----------------------------------------------------------------------------- the plan
STAGE_NAMES = {"03": "03 hierarchical summaries", "04": "04 recurrent summaries", "06": "06 LoRA SFT",
               "07": "07 scoring + adapters", "08": "08 ablations", "09": "09 listwise + two-stage",
               "nb": "notebook pass (1 process)"}


def sharded_seconds(work: Work, seconds: float, gpus: int) -> float:
    """``work``'s time on ``gpus`` devices, one model copy each: its batches dealt to them in turn (the slowest
    device runs ceil(batches / gpus) of them), training's global batch split, one-process work not divided."""
    if gpus == 1 or work.parallel == "one":
        return seconds
    if work.parallel == "ddp":
        return seconds / gpus
    batches = math.ceil(work.sequences / max(work.batch, 1))
    return seconds * math.ceil(batches / gpus) / batches if batches else 0.0


def multi_gpu_stages() -> set[str]:
    """The stages whose work the shipped code spreads over several GPUs: every LLM stage (its command line under
    torchrun deals its batches to the processes, :mod:`trsr_utils.distributed`; 06 trains with DDP,
    ``python -m trsr_utils.sft --gpus N``; 09 with ``torchrun -m trsr_utils.beyond``)."""
    return {"03", "04", "06", "07", "08", "09"}


@dataclass
class Plan:
    """A profile's cost on one kind of hardware: per work item, per stage and in total."""

    profile: str
    hardware: Hardware
    gpus: int
    utilization: float
    items: list[dict[str, Any]]
    models: dict[str, dict[str, Any]]
    stats: dict[str, Any]
    notes: list[str]

    def stages(self) -> "Any":
        """One row per stage: tokens, FLOPs, hours on 1 and on ``gpus`` devices, peak memory, fit."""
        import pandas as pd

        frame = pd.DataFrame(self.items)
        rows = []
        for stage, part in frame.groupby("stage", sort=True):
            rows.append({
                "stage": STAGE_NAMES.get(stage, stage),
                "model": "/".join(sorted(set(part["model"]))),
                "tokens (M)": part["tokens"].sum() / 1e6,
                "generated (M)": part["generated"].sum() / 1e6,
                "PFLOP": part["flops"].sum() / 1e15,
                "hours (1)": part["seconds"].sum() / 3600,
                **({f"hours ({self.gpus}, sharded)": part["seconds_sharded"].sum() / 3600,
                    f"hours ({self.gpus}, as shipped)": part["seconds_shipped"].sum() / 3600} if self.gpus > 1 else {}),
                f"hours ({self.gpus}, engine est.)": part["seconds_engine_sharded"].sum() / 3600,
                "peak GB": part["memory_gb"].max(),
                "fits": "; ".join(sorted(set(part["fits"]))),
                "statistics": "measured" if part["source"].str.startswith("measured").all() else (
                    "partly measured" if part["source"].str.contains("measured").any() else "estimated"),
            })
        table = pd.DataFrame(rows)
        total = {"stage": "total", "model": "", "fits": "", "statistics": "",
                 **{c: table[c].sum() for c in table.columns if c not in ("stage", "model", "fits", "statistics",
                                                                          "peak GB")},
                 "peak GB": table["peak GB"].max()}
        return pd.concat([table, pd.DataFrame([total])], ignore_index=True)

    def hours(self, sharded: bool = True, engine: bool = False) -> float:
        key = "seconds_engine_sharded" if engine else "seconds_sharded" if sharded else "seconds_shipped"
        return sum(i[key] for i in self.items) / 3600

    def to_json(self) -> dict[str, Any]:
        return {"profile": self.profile, "hardware": asdict(self.hardware), "gpus": self.gpus,
                "utilization": self.utilization, "models": self.models, "stats": self.stats,
                "stages": self.stages().to_dict(orient="records"), "items": self.items, "notes": self.notes}


def _fit(memory_gb: float, weights_gb: float, hw: Hardware, quantization: str | None, work: Work,
         headroom: float = 0.9) -> str:
    """Whether a work item fits one device (``headroom``: the share usable after the CUDA context, fragments)."""
    if quantization and hw.name == "cpu":
        return "no: bitsandbytes needs a CUDA GPU"
    usable = hw.memory_gb * headroom
    if weights_gb > usable:
        return f"no: weights {weights_gb:.0f} GB > {usable:.0f} GB"
    if memory_gb > usable:
        per_row = (memory_gb - weights_gb) / max(work.batch, 1)
        fits = int((usable - weights_gb) // per_row) if per_row else 0
        return f"only batch <= {fits} at the longest sequence" if fits >= 1 else "no: one sequence does not fit"
    return "yes"


def plan(cfg: Config, gpu: str = "a100-80gb", gpus: int = 1, utilization: float | None = None,
         quant_slowdown: float = DEFAULT_QUANT_SLOWDOWN, work: list[Work] | None = None) -> Plan:
    """The cost of ``cfg``'s notebooks 03-09 on ``gpus`` devices of kind ``gpu`` (or ``cpu``, measured here)."""
    if gpus < 1:
        raise ValueError("gpus must be >= 1")
    st = data_stats(cfg)
    work = work if work is not None else workload(cfg, st)
    specs = {"summarizer": model_spec(cfg.model.summarizer), "recommender": model_spec(cfg.model.recommender)}
    hw = hardware(gpu, specs["recommender"])
    util = utilization if utilization is not None else (1.0 if hw.measured else DEFAULT_UTILIZATION)
    items = []
    for w in work:
        spec = model_spec(w.model) if w.model else specs[w.role]
        dev = hardware("cpu", spec) if hw.measured else hw  # a CPU is measured at each model's own shapes
        prec = precision_of(cfg, w.role)
        c = cost(w, spec, dev, prec, util, cfg.sft.gradient_checkpointing and w.kind == "train", quant_slowdown)
        sharded = sharded_seconds(w, c["seconds"], gpus)
        shipped = sharded if w.stage in multi_gpu_stages() else c["seconds"]
        items.append({**asdict(w), "model": spec.name, "precision": prec.label, **c,
                      "seconds_sharded": sharded, "seconds_shipped": shipped,
                      "seconds_engine_sharded": sharded_seconds(w, c["seconds_engine"], gpus),
                      "fits": _fit(c["memory_gb"], c["weights_gb"], dev, prec.quantization, w)})
    if gpus > 1:
        # After the command lines, the notebook pass (one process, every store full) still loads the recommender
        # for the by-hand cells of 06-09; the summarizer only if a call is missing (llm.Lazy).
        w = Work("nb", "the recommender, loaded by the by-hand cells of 06-09", "recommender", "load", 4.0, 0.0,
                 parallel="one")
        c = cost(w, specs["recommender"], hw, precision_of(cfg, "recommender"), util)
        items.append({**asdict(w), "model": specs["recommender"].name, "precision": precision_of(cfg, "recommender").label,
                      **c, "seconds_sharded": 0.0, "seconds_shipped": c["seconds"],
                      "seconds_engine_sharded": c["seconds"], "fits": "yes"})
    notes = [
        f"Utilisation {util:g} of {hw.source} peaks ({hw.bf16_tflops:g} TFLOP/s bf16, {hw.bandwidth_gbs:g} GB/s).",
        "Decoding: each step takes the longer of its FLOPs and its bytes (every weight read once for the whole batch, "
        "and each row's key/value cache): bandwidth-bound for large models in 16 or 8 bits, compute-bound for a small "
        "model with a large vocabulary in float32.",
        "Sharded: one model copy per GPU, each stage's batches dealt to them in turn (a GPU runs ceil(batches / "
        "GPUs) of them: few batches leave GPUs idle), training's global batch split; validations (rank 0) do not "
        "divide. As shipped, every LLM stage's command line runs so under torchrun (trsr_utils.distributed).",
        f"Model loading: each stage's launch reads every model it uses at {LOAD_GBS:g} GB/s (all GPUs at once); "
        "with several GPUs the notebook pass afterwards loads the recommender again for 06-09's by-hand cells.",
        f"Engine (estimate, modelled, not measured): the summarizer's generation in a serving engine (vLLM, "
        f"SGLang): continuous batching of {ENGINE_BATCH} rows, decoding the mean answer's steps, FP8 weights with no "
        "dequantization slowdown; scoring and training as with transformers.",
        "Not modelled: tokenization, Python overhead, the non-LLM baselines (CPU).",
    ]
    if any(precision_of(cfg, r).quantization for r in ("summarizer", "recommender")):
        low, high = QUANT_SLOWDOWN_RANGE
        notes.append(f"bitsandbytes 8-/4-bit decoding is reported {low:g}-{high:g}x slower than bf16 (sources: "
                     f"trsr_utils.plan.DEFAULT_QUANT_SLOWDOWN; not measured here): the quantized model's roofline "
                     f"hours are multiplied by quant_slowdown={quant_slowdown:g}.")
    # Every stage with a work item that does not fit gets its line (the first two items; the rest counted), so a
    # stage late in the chain is not crowded out by an earlier stage's many grid cells.
    no_fit: dict[str, list[str]] = {}
    for i in items:
        if i["fits"] != "yes":
            line = f"{i['stage']} {i['label']}: {i['fits']}"
            if line not in no_fit.setdefault(i["stage"], []):
                no_fit[i["stage"]].append(line)
    for stage in sorted(no_fit):
        lines = no_fit[stage]
        notes += [f"Does not fit as planned: {x}" for x in lines[:2]]
        if len(lines) > 2:
            notes.append(f"Does not fit as planned: {len(lines) - 2} more work items of stage {stage}")
    models = {role: {"name": s.name, "params": s.params, "layer_params": s.layer_params, "layers": s.layers,
                     "hidden": s.hidden, "source": s.source, "precision": precision_of(cfg, role).label,
                     "weights_gb": weight_bytes(s, *cfg.model.precision(role)) / GB}
              for role, s in specs.items()}
    return Plan(cfg.profile, hw, gpus, util, items, models, asdict(st), notes)


def fit_table(models: Iterable[tuple[str, str, str | None]] = (
        ("upstage/llama-30b-instruct-2048", "bfloat16", None), ("upstage/llama-30b-instruct-2048", "bfloat16", "8bit"),
        ("upstage/llama-30b-instruct-2048", "bfloat16", "4bit"), ("meta-llama/Llama-2-7b-hf", "bfloat16", None),
        ("meta-llama/Llama-2-7b-hf", "float32", None)), headroom: float = 0.9) -> Any:
    """Weights of each (model, dtype, quantization) against each GPU's memory: which fit at all."""
    import pandas as pd

    rows = []
    for name, dtype, quant in models:
        spec = model_spec(name)
        gb = weight_bytes(spec, dtype, quant) / GB
        rows.append({"model": name, "precision": quant or dtype, "params (B)": spec.params / 1e9,
                     "weights GB": gb, **{g: "fits" if gb <= hw.memory_gb * headroom else "no"
                                          for g, hw in GPUS.items()}})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- validation against a run
def measured_seconds(cfg: Config) -> dict[str, dict[str, Any]]:
    """What the run directory measured per stage: ``stage.json`` seconds (the LLM part the stage times:
    03/04 summarize()'s wall time, 06 the training), 06's validations, and the notebooks' wall time from the
    manifest."""
    out: dict[str, dict[str, Any]] = {}
    manifest = Path(cfg.run_dir) / "manifest.json"
    notebooks = {}
    if manifest.exists():
        notebooks = {r["notebook"][:2]: r.get("seconds") for r in json.loads(manifest.read_text()).get(
            "notebooks", []) if r.get("status") == "ok"}
    for name in ("03_hierarchical", "04_recurrent", "06_sft"):
        folder = _stage_dir(cfg, name)
        rec = stages.record(folder) if folder is not None else None
        if not rec:
            continue
        row = {"stage_seconds": rec.get("seconds"), "notebook_seconds": notebooks.get(name[:2])}
        if name == "06_sft" and (folder / "validation.json").exists():
            row["validation_seconds"] = sum(r.get("seconds", 0) for r in json.loads(
                (folder / "validation.json").read_text()))
        out[name[:2]] = row
    return out


def run_hardware(cfg: Config) -> str:
    """The kind of hardware a run on this machine measures on: its GPU (the name and memory matched against
    :data:`GPUS`) where the profile runs on one, else ``cpu``. A GPU the table does not know: ``cpu`` is wrong,
    so it is an error naming the known kinds."""
    if llm.resolve_device(cfg.model.device) != "cuda":
        return "cpu"
    import torch

    name = torch.cuda.get_device_name(0).lower()
    memory = torch.cuda.get_device_properties(0).total_memory / GB
    family = [k for k in GPUS if k.split("-")[0] in name]
    if not family:
        raise ValueError(f"GPU {name!r} is not in trsr_utils.plan.GPUS ({sorted(GPUS)}): add its datasheet peaks "
                         "there to compare its measured times with a plan")
    return min(family, key=lambda k: abs(GPUS[k].memory_gb - memory))


def validate(cfg: Config, hardware_kind: str | None = None) -> Any:
    """Predicted against measured seconds per stage for a run on this machine (``hardware_kind``; default
    :func:`run_hardware`: its GPU where the run used one, else the CPU measured here): the plan from the settings
    alone (estimate), the plan fed with the run's own batches (03, 04: the call cache) and statistics, and what
    the run measured. Stages without a measurement are left out."""
    import pandas as pd

    measured = measured_seconds(cfg)
    if not measured:
        return pd.DataFrame(columns=["stage", "predicted s (from settings)", "predicted s (from the run)",
                                     "measured s", "ratio"])

    kind = hardware_kind or run_hardware(cfg)
    blank = with_overrides(cfg, {}, run_dir=Path(cfg.run_dir) / ".plan-no-results")  # nothing measured there
    estimate = plan(blank, kind)
    from_run = plan(cfg, kind)
    ran = measured_summary_work(cfg)
    batches = plan(cfg, kind, work=ran) if ran else None

    def seconds(p: Plan, stage: str, kinds: tuple[str, ...] = ("generate", "score", "train"),
                exclude_label: str = "") -> float:
        return sum(i["seconds"] for i in p.items if i["stage"] == stage and i["kind"] in kinds
                   and (not exclude_label or exclude_label not in i["label"]))

    rows = []
    for stage in ("03", "04"):
        if stage not in measured or not measured[stage]["stage_seconds"]:
            continue
        run_pred = seconds(batches, stage) if batches else seconds(from_run, stage)
        rows.append({"stage": STAGE_NAMES[stage], "what is timed": "summarize() (stage.json seconds)",
                     "predicted s (from settings)": seconds(estimate, stage),
                     "predicted s (from the run)": run_pred, "measured s": measured[stage]["stage_seconds"]})
    if "06" in measured:
        m = measured["06"]
        rows.append({"stage": "06 LoRA SFT: training", "what is timed": "training (stage.json seconds)",
                     "predicted s (from settings)": seconds(estimate, "06", ("train",)),
                     "predicted s (from the run)": seconds(from_run, "06", ("train",)),
                     "measured s": m["stage_seconds"]})
        if m.get("validation_seconds"):
            rows.append({"stage": "06 LoRA SFT: validations", "what is timed": "validation.json seconds",
                         "predicted s (from settings)": seconds(estimate, "06", ("score",)),
                         "predicted s (from the run)": seconds(from_run, "06", ("score",)),
                         "measured s": m["validation_seconds"]})
    table = pd.DataFrame(rows)
    if len(table):
        table["ratio"] = table["predicted s (from the run)"] / table["measured s"]
    return table


# ----------------------------------------------------------------------------- command line
def format_plan(p: Plan) -> str:
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:,.3g}".format):
        lines = [f"{p.profile} on {p.gpus} x {p.hardware.name} ({p.hardware.source}; utilisation {p.utilization:g})",
                 "models: " + "; ".join(f"{r} {m['name']} {m['params'] / 1e9:.3g}B params in {m['precision']} "
                                       f"({m['weights_gb']:.1f} GB; shape from {m['source']})"
                                       for r, m in p.models.items()),
                 "", p.stages().to_string(index=False), ""]
    lines += [f"- {n}" for n in p.notes]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trsr_utils.plan", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="paper-mind")
    parser.add_argument("--out", default=None, help="run directory (measured statistics are read from it)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--gpu", default="a100-80gb", help=f"one of {sorted(GPUS) + ['cpu']}")
    parser.add_argument("--gpus", type=int, default=1)
    parser.add_argument("--utilization", type=float, default=None,
                        help=f"share of the datasheet peak reached (default {DEFAULT_UTILIZATION}; cpu: 1, measured)")
    parser.add_argument("--quant-slowdown", type=float, default=DEFAULT_QUANT_SLOWDOWN,
                        help="multiply a bitsandbytes-quantized model's time by this (unknown here: 1)")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    args = parser.parse_args(argv)
    try:
        cfg = resolve_config(args.profile, args.out, parse_sets(args.sets))
        p = plan(cfg, args.gpu, args.gpus, args.utilization, args.quant_slowdown)
    except (ConfigError, ValueError) as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(p.to_json(), indent=2, default=str) if args.json else format_plan(p))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
