"""Accelerators for the plan: GPU datasheet rates, this CPU measured at a model's shapes (notebook 10)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from trsr_utils.core.progress import quiet_libraries
from trsr_utils.tools.plan.spec import ModelSpec, model_spec


GB = 1e9


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


