"""The roofline: each work item's FLOPs, bytes, seconds and memory on an accelerator, and a whole plan's
hours per stage on one or several devices.

Notebook 10 teaches it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable

from trsr_utils.core.config import Config
from trsr_utils.tools.plan.devices import (DEFAULT_QUANT_SLOWDOWN, DEFAULT_UTILIZATION, ENGINE_BATCH, GB, GPUS,
                                           Hardware, LOAD_GBS, QUANT_SLOWDOWN_RANGE, hardware)
from trsr_utils.tools.plan.spec import ModelSpec, kv_bytes_per_token, model_spec, weight_bytes
from trsr_utils.tools.plan.stats import data_stats
from trsr_utils.tools.plan.work import Work, workload


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
    torchrun deals its batches to the processes, :mod:`trsr_utils.core.distributed`; 06 trains with DDP,
    ``python -m trsr_utils sft --gpus N``; 09 with ``torchrun -m trsr_utils beyond``)."""
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
        "divide. As shipped, every LLM stage's command line runs so under torchrun (trsr_utils.core.distributed).",
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
                     f"trsr_utils.tools.plan.DEFAULT_QUANT_SLOWDOWN; not measured here): the quantized model's roofline "
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


